//! openraft glue: the type configuration, the glommio runtime, and storage over the
//! per-core log engine. One Raft group per shard; all of a shard's Raft tasks run on the
//! core that owns it.

pub mod log_store;
pub mod network;
pub mod record;
pub mod runtime;
pub mod state_machine;

pub use log_store::{LogStore, NodeId, ShardLog};
pub use state_machine::{Reply, StateMachine};

openraft::declare_raft_types!(
    /// Starcite's Raft types: commands are session commands, replies are apply outcomes.
    pub TypeConfig:
        D = crate::session::Command,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = runtime::GlommioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
