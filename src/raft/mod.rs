//! openraft glue: the type configuration, the glommio runtime, and storage over the
//! per-core log engine. One Raft group per shard; all of a shard's Raft tasks run on the
//! core that owns it.

pub mod events;
pub mod log_store;
pub mod record;
pub mod replay;
pub mod runtime;
pub mod state_machine;

pub use log_store::{LogStore, NodeId, ShardLog};
pub use state_machine::{Reply, StateMachine};

use std::sync::Arc;

use crate::limits::POSITION_SLOT_BITS;
use crate::session::{ApiError, Command};

/// What one Raft entry carries: the commands a shard collected while its previous entry
/// was being committed (openraft 0.9 waits for each entry's flush before taking the next
/// one, so packing commands is what lets one hot shard go faster than one fdatasync per
/// append). Commands apply in order, each with its own outcome.
///
/// Shared (`Arc`), as a list and command by command: openraft hands an entry to the state
/// machine as a copy of the one the log store cached at append time, and the caller that
/// proposed a command keeps it until it is answered (to send it elsewhere if this replica
/// turns out not to lead); deep copies cost every event its strings again, twice (issue
/// #13: about six allocations each). A clone is now a reference count. The wire form
/// (serde) and the log record's bytes are those of the plain list.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Proposal(pub Arc<Vec<Arc<Command>>>);

impl Proposal {
    pub fn new(commands: Vec<Arc<Command>>) -> Proposal {
        Proposal(Arc::new(commands))
    }
}

/// Why a replica did not do a shard operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refused {
    /// Decided: the client's answer (a 4xx of the contract, or a 503 that may or may not
    /// have committed, e.g. a timeout after proposing).
    Api(ApiError),
    /// This replica is not the shard's leader and proposed nothing (openraft's
    /// `ForwardToLeader`, which it also answers for a proposal its log later truncated, so
    /// never for one that may commit): the caller may try `leader` (a member name), when known.
    NotLeader { leader: Option<String> },
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Refused {
        Refused::Api(e)
    }
}

/// An event's position: the Raft log index of its entry and its slot in that entry.
pub fn position(log_index: u64, slot: usize) -> u64 {
    assert!(slot < 1 << POSITION_SLOT_BITS, "proposal slot {slot} out of range");
    assert!(log_index < 1 << (64 - POSITION_SLOT_BITS), "log index {log_index} out of range");
    (log_index << POSITION_SLOT_BITS) | slot as u64
}

/// (log index, slot) of a position.
pub fn split_position(position: u64) -> (u64, usize) {
    (position >> POSITION_SLOT_BITS, (position & ((1 << POSITION_SLOT_BITS) - 1)) as usize)
}

openraft::declare_raft_types!(
    /// Starcite's Raft types: entries carry proposals, replies are one outcome per command.
    pub TypeConfig:
        D = Proposal,
        R = Vec<Reply>,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = runtime::GlommioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order_like_log_order() {
        assert_eq!(split_position(position(42, 7)), (42, 7));
        assert!(position(42, 7) < position(42, 8));
        assert!(position(42, 1023) < position(43, 0));
    }
}
