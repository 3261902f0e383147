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

/// How many rendered events fit a byte budget: each event costs its length plus one byte
/// (the separator of a JSON array); the first event is always admitted (a page or a tail
/// batch is never empty while events exist), every later one only if it still fits. Used by
/// every read path so a page's body stays within `PAGE_BYTES_MAX` (limits.rs).
#[derive(Debug, Clone, Copy)]
pub struct ByteBudget {
    used: usize,
    max: usize,
    admitted: usize,
}

impl ByteBudget {
    pub fn new(max: usize) -> ByteBudget {
        ByteBudget { used: 0, max, admitted: 0 }
    }

    /// Whether an event of `len` bytes fits; if so it is counted.
    pub fn admit(&mut self, len: usize) -> bool {
        let cost = len + 1;
        if self.admitted > 0 && self.used + cost > self.max {
            return false;
        }
        self.used += cost;
        self.admitted += 1;
        true
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::ByteBudget;

    #[test]
    fn a_byte_budget_always_admits_the_first_event_and_never_overflows_after() {
        let mut b = ByteBudget::new(10);
        assert!(b.admit(50), "the first event always fits");
        assert!(!b.admit(0));
        let mut b = ByteBudget::new(10);
        assert!(b.admit(4) && b.admit(4)); // 5 + 5 = 10
        assert!(!b.admit(0), "one more separator would overflow");
        assert_eq!(b.used(), 10);
    }
}
