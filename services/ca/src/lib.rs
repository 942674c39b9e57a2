//! The CA role: an operator's own PKI tree (roots, intermediates, rotation, cross-signing),
//! where every operation that extends trust is gated by an m-of-n key ceremony whose approvals
//! custodians sign with their own keys. Design: docs/rfcs/0003.
//!
//! Built so far: the error mapping ([`error`]) and the ceremony parameters with their canonical
//! form and digest ([`params`]). The service itself comes next.

pub mod error;
pub mod params;

pub use crate::error::CaError;
