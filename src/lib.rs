//! Starcite: a durable, ordered, replayable event log per session.
pub mod http;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod raft;
pub mod session;
