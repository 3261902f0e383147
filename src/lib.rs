//! Starcite: a durable, ordered, replayable event log per session.
pub mod limits;
pub mod log;
pub mod metrics;
