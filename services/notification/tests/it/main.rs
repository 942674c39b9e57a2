//! Integration tests for certmesh-notification.

mod channel;
mod relay;
