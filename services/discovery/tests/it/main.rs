//! Integration tests for certmesh-discovery.

mod inventory;
mod scan;
