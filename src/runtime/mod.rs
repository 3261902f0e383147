//! The shard runtime: on each pinned glommio executor, a [`core::Core`] owning the shards
//! that [`placement`] assigns it and its own log engine; the cross-core mesh; the in-process
//! API ([`api`]) the front calls from any core.
//!
//! Startup per core (driven by `node.rs`): [`join_mesh`] (answer other cores at once), then
//! [`open_shards`] (log scan, state machines, Raft groups); until the latter is done every
//! operation answers "starting". Shutdown: [`shutdown`] has the sequence; [`stop_shards`]
//! is its last step.
//!
//! Rule of this layer: it imports raft, session, log, archive, config, limits and metrics,
//! never the HTTP front or the node.

pub mod api;
pub mod archiver;
pub mod compactor;
pub mod core;
pub mod membership;
pub mod placement;
pub mod shard;
pub mod shutdown;
pub mod watch;

use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::{Full, MeshBuilder};

use self::core::{Core, CoreMsg, Op};
use crate::cluster::handshake::{ClusterKey, Peer, Shape};
use crate::cluster::links::{Links, Member};
use crate::config::Config;
use crate::limits::{
    PROPOSALS_SETTLE_MS, RAFT_ELECTION_TIMEOUT_MAX_MS, RAFT_ELECTION_TIMEOUT_MIN_MS, RAFT_HEARTBEAT_MS, RAFT_PAYLOAD_ENTRIES_MAX,
};
use crate::log::file::{Fault, FaultPlan, FaultyFs, FileOp, Rule};
use crate::log::{DmaFs, FileSystem, LogError};
use crate::raft::replay::open_core;
use crate::raft::state_machine::SnapshotFileError;
use crate::raft::{LogStore, StateMachine};

/// Why a core could not open its shards.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("joining the core mesh failed")]
    Mesh,
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotFileError),
    #[error("Raft group of shard {shard}: {reason}")]
    Raft { shard: u32, reason: String },
    #[error("{dir} holds log records of shards {shards:?} that core {core} does not own (was STARCITE_CORES or STARCITE_SHARDS changed?)")]
    StrayShards { dir: String, core: usize, shards: Vec<u32> },
}

pub fn raft_config() -> Result<Arc<openraft::Config>, Box<openraft::ConfigError>> {
    let cfg = openraft::Config {
        cluster_name: "starcite".into(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        max_payload_entries: RAFT_PAYLOAD_ENTRIES_MAX,
        // Snapshots and purges are Starcite's decision (runtime/compactor.rs): only with the
        // archive on, and never below an event this replica can serve only from its log.
        // openraft's own purge after a snapshot would ignore that bound: off.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        ..Default::default()
    };
    cfg.validate().map(Arc::new).map_err(Box::new)
}

/// Who this node is in its cluster: its identity (name and this data dir's Raft node id),
/// every member (itself included; only itself for a single node) and the key peers
/// authenticate with.
#[derive(Clone)]
pub struct ClusterPlan {
    pub me: Peer,
    pub members: Vec<Member>,
    pub key: ClusterKey,
    /// What every node must agree on (handshake-checked): shard count and member names.
    pub shape: Shape,
}

impl ClusterPlan {
    pub fn is_single_node(&self) -> bool {
        self.members.len() <= 1
    }
}

/// Join the channel mesh as this executor's core (the mesh peer id *is* the core id),
/// make the core current on this thread, and start answering other cores at once (their
/// requests report "starting" until [`open_shards`] is done).
pub async fn join_mesh(config: Arc<Config>, plan: &ClusterPlan, mesh: MeshBuilder<CoreMsg, Full>) -> Result<Rc<Core>, OpenError> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| OpenError::Mesh)?;
    let id = senders.peer_id();
    let links = Rc::new(Links::new(plan.me.clone(), plan.key.clone(), plan.shape, &plan.members));
    let names = plan.members.iter().map(|m| m.name.clone()).collect();
    let core = Rc::new(Core::new(id, config.clone(), links, names, senders));
    self::core::set_current(core.clone());
    for (_peer, rx) in receivers.streams() {
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    // A write only hands its command to the shard's proposer, which answers
                    // the caller itself: done here, without a task per hop (the common
                    // cross-core request). Anything else may wait, so it gets a task.
                    CoreMsg::Request(Op::Write(cmd, reply)) => self::core::handle_write(cmd, reply),
                    CoreMsg::Request(op) => {
                        glommio::spawn_local(self::core::handle(op)).detach();
                    }
                    CoreMsg::Notify { session, first_seq, last_seq, events } => {
                        self::core::current().watch.notify_local(&session, first_seq, last_seq, &events)
                    }
                }
            }
        })
        .detach();
    }
    Ok(core)
}

/// Open this core's log (`<data dir>/<core>/`), rebuild each shard's log index and state
/// machine in one scan, open every local shard's Raft group (initializing fresh ones), then
/// mark the core started.
pub async fn open_shards(core: &Rc<Core>) -> Result<(), OpenError> {
    let config = core.config.clone();
    let id = core.id;
    let node_id = core.node_id;
    let dir = config.data_dir.join(id.to_string());
    let snapshots = dir.join("snapshots");
    let has_snapshot = |shard: u32| snapshots.join(format!("{shard}.snap")).exists();
    let fs = file_system(&config);
    let opened = open_core(fs, &dir, config.segment_bytes, config.tail_keep, &|s| !has_snapshot(s)).await?;
    let (engine, mut logs, mut replayed, spill) = (opened.engine, opened.logs, opened.replayed, opened.spill);
    let new_log = || Rc::new(std::cell::RefCell::new(crate::raft::ShardLog::new(spill.clone())));
    *core.engine.borrow_mut() = Some(engine.clone());
    // The vouch table (log/vouch.rs): a log that lost what it acknowledged makes its groups
    // abstain from votes and elections until they caught up (docs/ARCHITECTURE.md §3b).
    // A single node has nobody to catch up from and no vote to give: it keeps no table
    // (measured: the table's fdatasync per batch costs a single node 0.57–0.72× of its
    // append throughput, PERF.md "Session 9").
    if core.members.len() > 1 {
        for (shard, payload) in engine.open_vouch(config.shards).await? {
            let vouched = crate::raft::log_store::Vouched::decode(&payload);
            let log = logs.entry(shard).or_insert_with(new_log);
            if let Some(damage) = log.borrow_mut().check_vouched(vouched, core.node_id) {
                tracing::warn!(
                    shard,
                    "damaged log: {damage}; this replica abstains from votes and elections until it has caught up from the leader"
                );
            }
        }
    }
    let raft_config = raft_config().map_err(|e| OpenError::Raft { shard: 0, reason: e.to_string() })?;
    let alone = core.members.len() <= 1;
    let local: Vec<u32> = (0..config.shards).filter(|s| placement::owner_core(*s, config.cores) == id && core.hosts(*s)).collect();
    for shard in local {
        let store = LogStore::new(shard, engine.clone(), logs.remove(&shard).unwrap_or_else(new_log));
        let sm = match replayed.remove(&shard) {
            Some(r) => StateMachine::rebuilt(shard, r.state, r.last_applied, r.membership, snapshots.clone(), store.clone()),
            None => StateMachine::open(shard, config.tail_keep, snapshots.clone(), store.clone())?,
        };
        let network = crate::cluster::network::Network { links: core.links.clone(), shard };
        let opened = shard::Shard::open(shard, node_id, raft_config.clone(), network, store, sm, alone).await?;
        opened.machine.borrow_mut().listener = Some(Rc::new(|_shard, appended, _bytes| {
            self::core::with_current(|c| {
                for (session, first, last) in appended {
                    c.announce(session, *first, *last);
                }
            });
        }));
        core.shards.borrow_mut().insert(shard, Rc::new(opened));
    }
    if !logs.is_empty() {
        let shards: Vec<u32> = logs.keys().copied().collect();
        return Err(OpenError::StrayShards { dir: dir.display().to_string(), core: id, shards });
    }
    core.started.set(true);
    if !alone {
        glommio::spawn_local(membership::maintain(core.clone())).detach();
    }
    Ok(())
}

/// The file system under the log: glommio DMA files; in debug builds, with the test-only
/// fdatasync failpoint when `STARCITE_TEST_FAIL_FDATASYNC_AFTER` is set (release builds
/// ignore it, so no production binary can be told to fail its disk).
fn file_system(config: &Config) -> Rc<dyn FileSystem> {
    match config.test_fail_fdatasync_after {
        Some(nth) if cfg!(debug_assertions) => {
            let rule = Rule { op: Some(FileOp::Fdatasync), nth, fault: Fault::Errno(libc::EIO), sticky: true };
            Rc::new(FaultyFs { plan: FaultPlan::new(vec![rule]) })
        }
        _ => Rc::new(DmaFs),
    }
}

/// The last step of a graceful shutdown on this core: stop every Raft group, then write
/// and fdatasync whatever the log still holds (lazy committed marks included).
pub async fn stop_shards(core: &Rc<Core>) {
    core.stopping.set(true);
    let shards: Vec<Rc<shard::Shard>> = core.shards.borrow().values().cloned().collect();
    // Proposals still in flight (e.g. made just before leadership moved, which the new
    // leader commits) get their answers before the groups stop, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PROPOSALS_SETTLE_MS);
    while shards.iter().any(|s| s.is_proposing()) && std::time::Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    for shard in shards {
        let _ = shard.raft.shutdown().await;
    }
    let engine = core.engine.borrow().clone();
    if let Some(engine) = engine {
        engine.flush().await;
        engine.shutdown();
    }
}
