//! Every format that crosses a process, version or disk boundary.
//!
//! Bytes and types only: no threads, no sockets, no global state. What two
//! versions of the software must agree on lives here, versioned.

pub mod access_log;
pub mod api;
pub mod config;
pub mod handoff;
pub mod rafs;
pub mod www_authenticate;
