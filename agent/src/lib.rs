//! The certmesh fleet agent: a pull-based daemon that enrolls once with a bootstrap token,
//! holds one mTLS stream to the fleet role, makes every private key on the host, installs the
//! certificates it is sent and checks that the live endpoint serves them.
//!
//! One file per flow: [`enroll`] (bootstrap token → identity), [`session`] (the stream and its
//! heartbeats), [`identity`] (the mTLS identity and its renewal), [`jobs`] (what a job does on
//! the host), [`deploy`] (the install/validate/reload/verify/rollback contract), [`verify`]
//! (reading the served leaf), [`discover`] (the certificates on disk, reported for the
//! inventory) and [`status`] (the `status` command). [`config`] merges file,
//! environment and flags; [`state`] owns the state directory; [`files`] writes files
//! atomically; [`channel`] dials the server; [`backoff`] paces reconnects; [`host`] describes
//! the host; [`error`] is the one error type. The wall clock is read only through [`clock`].

pub mod backoff;
pub mod channel;
pub mod clock;
pub mod config;
pub mod deploy;
pub mod discover;
pub mod enroll;
pub mod error;
pub mod files;
pub mod host;
pub mod identity;
pub mod jobs;
pub mod session;
pub mod state;
pub mod status;
pub mod verify;

pub use error::{AgentError, Result};
