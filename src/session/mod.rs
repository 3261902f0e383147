//! Sessions of the Starcite event log: request validation, replicated commands,
//! and the deterministic per-shard state machine.
//!
//! Invariants: validation (`validate`) happens once on the node receiving the
//! request; the leader turns the validated request into a `Command` carrying
//! every non-deterministic input (ids, timestamps, fingerprints); `state` applies
//! commands deterministically, so all replicas agree on every seq and outcome.

pub mod command;
pub mod error;
pub mod json;
mod snapshot;
pub mod state;
pub mod validate;

pub use command::{format_timestamp, generate_session_id, now_micros, Command, EventBody};
pub use error::{ApiError, ErrorCode};
pub use snapshot::SnapshotError;
pub use state::{render_event, render_event_parts, ColdEvent, EventParts, HotRead, Outcome, SessionHeader, ShardState};
pub use validate::{
    is_valid_session_id, parse_append, parse_batch_size, parse_create, parse_cursor, parse_limit, AppendRequest, CreateRequest,
};
