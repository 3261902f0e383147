//! A core: one pinned glommio executor owning a set of shards, its log engine, its
//! metrics and its tail registry. Nothing here is shared with other cores; work for a
//! shard owned elsewhere travels as a [`CoreMsg`] over the glommio channel mesh and the
//! answer comes back on a oneshot (glommio wakes the waiting task across threads).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use glommio::channels::channel_mesh::Senders;
use openraft::AsyncRuntime;

use super::placement::{owner_core, shard_of};
use super::shard::{Page, Shard};
use super::shutdown::Latch;
use super::watch::{TailSignal, WatchRegistry};
use crate::cluster::links::Links;
use crate::cluster::rpc::{Consistency, Forward, Forwarded, Request, Response};
use crate::config::{Config, PayloadPlane};
use crate::log::LogEngine;
use crate::metrics::{CoreMetrics, CoreStats, ShardStats};
use crate::raft::runtime::GlommioRuntime;
use crate::raft::{Refused, Reply};
use crate::session::{ApiError, Command};

/// Where an operation's answer goes: each request carries its own typed reply channel.
pub type ReplyTo<T> = oneshot::Sender<T>;

/// Work for the core that owns a shard, each with the channel its typed answer goes to.
/// Shard operations are done only by the replica that can do them (writes and
/// linearizable reads by the leader); any other answers [`Refused::NotLeader`] and the
/// caller (runtime/api.rs) goes to the leader.
pub enum Op {
    /// Propose a create or append (shared with the caller, which keeps it to send it on
    /// if this replica does not lead; the owner answers on the reply channel directly).
    Write(Arc<Command>, ReplyTo<Result<Reply, Refused>>),
    /// The session record, linearizable.
    Get(String, ReplyTo<Result<String, Refused>>),
    Read {
        session: String,
        after: u64,
        limit: usize,
        max_bytes: usize,
        consistency: Consistency,
        reply: ReplyTo<Result<Page, Refused>>,
    },
    /// A tail of `session` opened (`on`) or closed on `core`.
    Watch {
        session: String,
        core: usize,
        on: bool,
        reply: ReplyTo<()>,
    },
    Stats(ReplyTo<Box<CoreStats>>),
    Ready(ReplyTo<Result<(), NotReady>>),
    /// A peer node's RPC for `shard` (Raft messages, forwarded operations).
    Peer(u32, Box<Request>, ReplyTo<Response>),
}

/// Why a node cannot serve writes (`/health/ready` is 503 with [`NotReady::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("core {core}: recovery in progress")]
    Recovering { core: usize },
    #[error("shard {shard} has no leader")]
    NoLeader { shard: u32 },
    #[error("shard {shard}: its leader {leader} is not reachable from this node")]
    LeaderUnreachable { shard: u32, leader: String },
    #[error("shard {shard} is still applying its log")]
    Applying { shard: u32 },
    /// A write or fdatasync failed: the core acknowledges nothing more until restarted.
    #[error("core {core}: log engine stopped: {reason}")]
    LogStopped { core: usize, reason: String },
    #[error("shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Unreachable(CallError),
}

impl NotReady {
    /// `(status, reason)` of the `/health/ready` body: `starting`/`raft_sync` while the
    /// node comes up (SPEC §3), `unavailable`/`log_stopped` after a fatal log error,
    /// `stopping`/`shutting_down` during a graceful shutdown.
    pub fn status_and_reason(&self) -> (&'static str, &'static str) {
        match self {
            NotReady::Recovering { .. } | NotReady::NoLeader { .. } | NotReady::LeaderUnreachable { .. } | NotReady::Applying { .. } => {
                ("starting", "raft_sync")
            }
            NotReady::LogStopped { .. } | NotReady::Unreachable(_) => ("unavailable", "log_stopped"),
            NotReady::ShuttingDown => ("stopping", "shutting_down"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOk {
    pub seq: u64,
    pub last_seq: u64,
    pub deduped: bool,
}

/// A call that never reached its owner core or never came back: the one failure of the
/// cross-core hop itself (the answer's own errors travel inside `T`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("core {0} is gone")]
    CoreGone(usize),
    #[error("core {0} dropped the request")]
    Dropped(usize),
}

/// The one place a failed hop becomes a client answer: the shard is unavailable right now
/// (503 raft_unavailable; retrying is safe, an append may or may not have committed).
impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        ApiError::raft_unavailable(e.to_string())
    }
}

#[allow(clippy::large_enum_variant)] // Notify is the hot, common message; boxing it would add an allocation per commit.
pub enum CoreMsg {
    Request(Op),
    /// Events `first_seq..=last_seq` of `session` committed. With the dual-write payload
    /// plane, `events` carries them (shared, not copied) for the receiving core's mirror;
    /// otherwise it is empty.
    Notify {
        session: String,
        first_seq: u64,
        last_seq: u64,
        events: Vec<Arc<str>>,
    },
}

pub struct Core {
    pub id: usize,
    pub cores: usize,
    pub config: Arc<Config>,
    pub node_id: u64,
    /// Every member's name (this node's alone for a single node), in `CLUSTER_NODES` order.
    pub members: Vec<String>,
    /// Each shard's replica names, first replica first (`placement::replicas`, computed
    /// once: the member list is fixed for the process's life).
    replica_sets: Vec<Vec<String>>,
    /// This core's connections to the other members.
    pub links: Rc<Links>,
    /// The last leader seen per shard this node does not host (where forwards go first).
    pub leader_hints: RefCell<HashMap<u32, String>>,
    senders: Senders<CoreMsg>,
    pub shards: RefCell<HashMap<u32, Rc<Shard>>>,
    pub engine: RefCell<Option<Rc<LogEngine>>>,
    pub metrics: CoreMetrics,
    pub watch: WatchRegistry,
    /// Recovery finished and every local shard is open.
    pub started: Cell<bool>,
    /// The shards' Raft groups are being stopped (the last step of a graceful shutdown):
    /// operations are refused before they propose anything.
    pub stopping: Cell<bool>,
    /// The archive thread's handle when `STARCITE_ARCHIVER_ENABLED` (set once at startup,
    /// before the shards open): reads of trimmed events go through it. A `OnceCell`, so a
    /// read borrows it without a clone or a `RefCell` guard.
    pub archive: std::cell::OnceCell<crate::archive::Archive>,
    /// Events committed on this core since its last archive flush (a hint: the archiver
    /// flushes before the interval once a full batch's worth waits; runtime/archiver.rs).
    pub archive_backlog: Cell<u64>,
    /// Set once a graceful shutdown began: listeners stop accepting, connections finish
    /// what they are in, tails end (runtime/shutdown.rs).
    pub draining: Latch,
    /// Set once this core's groups are stopped: peers are told GOODBYE on every cluster
    /// connection (cluster/listener.rs).
    pub leaving: Latch,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

pub fn set_current(core: Rc<Core>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(core));
}

/// The core running on this thread.
pub fn current() -> Rc<Core> {
    CURRENT.with(|c| c.borrow().clone()).expect("called on a Starcite core thread")
}

pub fn with_current<R>(f: impl FnOnce(&Core) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(|core| f(core)))
}

impl Core {
    pub fn new(id: usize, config: Arc<Config>, links: Rc<Links>, members: Vec<String>, senders: Senders<CoreMsg>) -> Core {
        let watch = WatchRegistry::default();
        watch.set_mirror_keep(config.tail_keep);
        let replica_sets =
            (0..config.shards).map(|s| super::placement::replicas(s, &members).into_iter().map(str::to_string).collect()).collect();
        Core {
            id,
            cores: config.cores,
            config,
            node_id: links.me().node_id,
            members,
            replica_sets,
            links,
            leader_hints: RefCell::new(HashMap::new()),
            senders,
            shards: RefCell::new(HashMap::new()),
            engine: RefCell::new(None),
            metrics: CoreMetrics::default(),
            watch,
            started: Cell::new(false),
            stopping: Cell::new(false),
            archive: std::cell::OnceCell::new(),
            archive_backlog: Cell::new(0),
            draining: Latch::default(),
            leaving: Latch::default(),
        }
    }

    pub fn owner_of(&self, session: &str) -> (u32, usize) {
        let shard = shard_of(session, self.config.shards);
        (shard, owner_core(shard, self.cores))
    }

    /// Run the operation `make` builds on `owner` (here, or over the mesh) and wait for its
    /// typed answer. Forwarding to another node will be one more way to deliver the same Op.
    pub async fn call<T>(&self, owner: usize, make: impl FnOnce(ReplyTo<T>) -> Op) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        let op = make(tx);
        if owner == self.id {
            handle(op).await;
        } else if self.senders.send_to(owner, CoreMsg::Request(op)).await.is_err() {
            return Err(CallError::CoreGone(owner));
        }
        rx.await.map_err(|_| CallError::Dropped(owner))
    }

    /// Send a notify to another core without blocking the caller (apply path).
    fn send_notify(&self, core: usize, msg: CoreMsg) {
        if let Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) = self.senders.try_send_to(core, msg) {
            // The channel is full: deliver later, from a task, rather than drop a wake-up.
            let me = current();
            glommio::spawn_local(async move {
                let _ = me.senders.send_to(core, msg).await;
            })
            .detach();
        }
    }

    /// Announce committed events `first_seq..=last_seq` of `session` to every core tailing it.
    pub fn announce(&self, session: &str, first_seq: u64, last_seq: u64) {
        self.archive_backlog.set(self.archive_backlog.get() + (last_seq + 1 - first_seq));
        let cores = self.watch.watching_cores(session);
        if cores.is_empty() {
            return;
        }
        let events = if self.config.payload_plane == PayloadPlane::DualWrite {
            self.committed_events(session, first_seq, last_seq)
        } else {
            Vec::new()
        };
        for core in cores {
            if core == self.id {
                self.watch.notify_local(session, first_seq, last_seq, &events);
            } else {
                let msg = CoreMsg::Notify { session: session.to_string(), first_seq, last_seq, events: events.clone() };
                self.send_notify(core, msg);
            }
        }
    }

    /// The rendered events `first..=last` from the owner's hot tail (empty when some of
    /// them already left it; the mirrors then simply miss and tails read from the owner).
    fn committed_events(&self, session: &str, first: u64, last: u64) -> Vec<Arc<str>> {
        let (shard, _) = self.owner_of(session);
        let Some(shard) = self.shards.borrow().get(&shard).cloned() else { return Vec::new() };
        let machine = shard.machine.borrow();
        match machine.state.hot_events(session, first - 1, (last - first + 1) as usize) {
            Ok(Some(read)) if read.cold.is_empty() && read.hot.len() as u64 == last - first + 1 => read.hot,
            _ => Vec::new(),
        }
    }

    /// The names of `shard`'s replicas, first replica first.
    pub fn replicas(&self, shard: u32) -> &[String] {
        &self.replica_sets[shard as usize]
    }

    /// The voters `shard`'s group should have: its replicas' current incarnations (the
    /// ids their handshakes proved), or `None` while one is unknown (not connected).
    pub fn wanted_voters(&self, shard: u32) -> Option<std::collections::BTreeSet<u64>> {
        self.replicas(shard).iter().map(|name| self.links.peer_id(name)).collect()
    }

    /// Whether this node holds a replica of `shard` (placement over the members).
    pub fn hosts(&self, shard: u32) -> bool {
        self.replicas(shard).contains(&self.config.node_name)
    }

    /// The shard of `session`, when this replica can serve now. When it cannot (starting,
    /// still applying its log, stopping), nothing was done: in a cluster that is "not
    /// leader" (the caller tries another replica until its deadline); a single node answers
    /// 503 at once.
    fn shard(&self, session: &str) -> Result<Rc<Shard>, Refused> {
        let (shard, owner) = self.owner_of(session);
        assert_eq!(owner, self.id, "operations run on the owner core");
        let unavailable = |why: String| {
            if self.members.len() > 1 {
                Refused::NotLeader { leader: None }
            } else {
                Refused::Api(ApiError::raft_unavailable(why))
            }
        };
        if !self.started.get() {
            return Err(unavailable("node is starting (recovery in progress)".into()));
        }
        if self.stopping.get() {
            return Err(unavailable("node is shutting down".into()));
        }
        let found = self.shards.borrow().get(&shard).cloned();
        match found {
            None => Err(unavailable(format!("shard {shard} is not open on this node"))),
            Some(s) if !s.is_caught_up() => Err(unavailable(format!("shard {shard} is still applying its log after restart"))),
            Some(s) => Ok(s),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    fn stats(&self) -> CoreStats {
        let m = &self.metrics;
        let mut s = CoreStats::empty(self.id);
        s.counters = m.counters.snapshot();
        s.counters.cluster_bytes_sent = crate::cluster::peer::bytes_sent();
        s.counters.allocations = crate::alloc::thread_allocations();
        s.append_micros = m.append_micros.borrow().clone();
        s.http_requests = m.http_requests.borrow().clone();
        if let Some(engine) = self.engine.borrow().as_ref() {
            s.log = engine.stats.counters.snapshot();
            s.log_histograms = engine.stats.histograms.borrow().clone();
        }
        for shard in self.shards.borrow().values() {
            let metrics = shard.raft.metrics().borrow().clone();
            s.shards.push(ShardStats {
                shard: shard.id,
                is_leader: metrics.current_leader == Some(self.node_id),
                has_leader: metrics.current_leader.is_some(),
                term: metrics.current_term,
            });
            if self.members.len() > 1 && shard.under_replicated(self.wanted_voters(shard.id)) {
                s.counters.raft_groups_under_replicated += 1;
            }
            let machine = shard.machine.borrow();
            s.counters.sessions += machine.state.session_count() as u64;
            s.counters.hot_tail_events += machine.state.hot_event_count() as u64;
            s.counters.archive_trimmed += machine.state.trimmed_total();
        }
        s.archive_flush_ms = m.archive_flush_ms.borrow().clone();
        if self.config.archiver_enabled {
            for shard in self.shards.borrow().values() {
                let (rows, sessions) = shard.archive_pending();
                s.counters.archive_pending_rows += rows;
                s.counters.archive_pending_sessions += sessions;
                s.counters.archive_lag += rows;
            }
        }
        s
    }

    async fn ready(&self) -> Result<(), NotReady> {
        if self.draining.is_set() {
            return Err(NotReady::ShuttingDown);
        }
        if let Some(reason) = self.engine.borrow().as_ref().and_then(|e| e.poisoned()) {
            return Err(NotReady::LogStopped { core: self.id, reason });
        }
        if !self.started.get() {
            return Err(NotReady::Recovering { core: self.id });
        }
        let shards: Vec<Rc<Shard>> = self.shards.borrow().values().cloned().collect();
        for shard in shards {
            let metrics = shard.raft.metrics().borrow().clone();
            let Some(leader) = metrics.current_leader else { return Err(NotReady::NoLeader { shard: shard.id }) };
            if leader != self.node_id {
                let name = metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone()).unwrap_or_default();
                // A follower may never have needed a connection to its leader: dial it
                // (the live connection when there is one).
                if self.links.connect(&name).await.is_err() {
                    return Err(NotReady::LeaderUnreachable { shard: shard.id, leader: name });
                }
            }
            if !shard.is_caught_up() {
                return Err(NotReady::Applying { shard: shard.id });
            }
        }
        Ok(())
    }
}

/// Execute an operation on this (the owner) core and send its answer to its reply channel
/// (a requester that went away is not an error).
///
/// Only the write arm runs inline: every other arm is boxed, because a future is as large
/// as its largest state and is moved (memcpy) several times on its way into a task. With
/// the peer and read arms inline this future was ~5 KB, copied on every append (memmove
/// was 10 % of the one-core server's CPU, PERF.md "Hot path").
pub async fn handle(op: Op) {
    let core = current();
    match op {
        Op::Write(cmd, reply) => handle_write(cmd, reply),
        Op::Get(session, reply) => {
            let _ = reply.send(Box::pin(core.get(&session)).await);
        }
        Op::Read { session, after, limit, max_bytes, consistency, reply } => {
            let _ = reply.send(Box::pin(core.read(&session, after, limit, max_bytes, consistency)).await);
        }
        Op::Watch { session, core: watcher, on, reply } => {
            core.watch.set_remote(&session, watcher, on);
            let _ = reply.send(());
        }
        Op::Stats(reply) => {
            let _ = reply.send(Box::new(core.stats()));
        }
        Op::Ready(reply) => {
            let _ = reply.send(Box::pin(core.ready()).await);
        }
        Op::Peer(shard, request, reply) => {
            let _ = reply.send(Box::pin(core.answer_peer(shard, *request)).await);
        }
    }
}

/// Hand a write to its shard's proposer, which answers `reply` itself (no task waits
/// here), or refuse it at once. Synchronous: the mesh's receiving loop calls it inline.
pub fn handle_write(cmd: Arc<Command>, reply: super::shard::WriteReply) {
    let core = current();
    match core.shard(cmd.session_id()) {
        Ok(shard) => Shard::submit(&shard, cmd, reply, core.timeout()),
        Err(refused) => drop(reply.send(Err(refused))),
    }
}

impl Core {
    async fn write(&self, cmd: Arc<Command>) -> Result<Reply, Refused> {
        let shard = self.shard(cmd.session_id())?;
        Shard::write(&shard, cmd, self.timeout()).await
    }

    async fn get(&self, session: &str) -> Result<String, Refused> {
        let shard = self.shard(session)?;
        shard.linearize(self.timeout()).await?;
        Ok(shard.header_json(session)?)
    }

    async fn read(&self, session: &str, after: u64, limit: usize, max_bytes: usize, consistency: Consistency) -> Result<Page, Refused> {
        let shard = self.shard(session)?;
        let archive = self.archive.get();
        let wait_ms = match consistency {
            Consistency::Linearizable => {
                shard.linearize(self.timeout()).await?;
                return Ok(shard.read(session, after, limit, max_bytes, archive).await?);
            }
            Consistency::Committed { wait_ms } => wait_ms,
        };
        // A session this replica has not applied yet reads as empty (its creation was
        // checked through the leader before any tail started).
        let empty = || Page { events: Vec::new(), last_seq: after };
        let page = match shard.read(session, after, limit, max_bytes, archive).await {
            Err(e) if e.code == crate::session::ErrorCode::SessionNotFound => empty(),
            other => other?,
        };
        if !page.events.is_empty() || wait_ms == 0 {
            return Ok(page);
        }
        // Long poll: wait for a commit past the cursor on this replica, then read again.
        let signal = Rc::new(TailSignal::default());
        self.watch.add_local(session, &signal);
        self.watch.set_remote(session, self.id, true);
        let _ = GlommioRuntime::timeout(Duration::from_millis(wait_ms as u64), signal.wait_beyond(after)).await;
        self.watch.set_remote(session, self.id, false);
        self.watch.remove_local(session, &signal);
        match shard.read(session, after, limit, max_bytes, archive).await {
            Err(e) if e.code == crate::session::ErrorCode::SessionNotFound => Ok(empty()),
            other => Ok(other?),
        }
    }

    /// A peer's RPC for one of this core's shards: Raft messages go to the shard's group
    /// (also while it is still catching up, which needs them); forwarded operations are
    /// done as if a local client asked, without forwarding them further.
    async fn answer_peer(&self, shard_id: u32, request: Request) -> Response {
        let Some(shard) = self.shards.borrow().get(&shard_id).cloned() else { return Response::NotHosted };
        match request {
            Request::AppendEntries(r) => Response::AppendEntries(shard.raft.append_entries(r).await),
            // A damaged replica (docs/ARCHITECTURE.md §3b) refuses a candidate that lacks
            // what it had acknowledged, without letting the request move its own vote; a
            // candidate at least that up to date goes through openraft's usual checks.
            Request::Vote(r) if shard.abstaining() && !shard.store.log.borrow().may_vote_for(r.last_log_id) => {
                let log = shard.store.log.borrow();
                let vote = log.vote().unwrap_or_default();
                Response::Vote(Ok(openraft::raft::VoteResponse { vote, vote_granted: false, last_log_id: log.last_log_id() }))
            }
            Request::Vote(r) => Response::Vote(shard.raft.vote(r).await),
            Request::InstallSnapshot(r) => Response::InstallSnapshot(shard.raft.install_snapshot(r).await),
            Request::Forward(Forward::Write(cmd)) => Response::Forward(Forwarded::Written(self.write(cmd).await)),
            Request::Forward(Forward::Get { session }) => Response::Forward(Forwarded::Header(self.get(&session).await)),
            Request::Forward(Forward::Read { session, after, limit, max_bytes, consistency }) => {
                let page = self.read(&session, after, limit as usize, max_bytes as usize, consistency).await;
                Response::Forward(Forwarded::Page(page.map(|p| (p.events.iter().map(|e| e.to_string()).collect(), p.last_seq))))
            }
            Request::Forward(Forward::GroupState) => {
                // A damaged replica that lost its whole log was still a member: never let
                // it look like a fresh group that could be bootstrapped again.
                let initialized = shard.abstaining() || shard.raft.is_initialized().await.unwrap_or(false);
                Response::Forward(Forwarded::GroupState { initialized })
            }
            Request::Forward(Forward::Campaign) => {
                if !shard.abstaining() {
                    let _ = shard.raft.trigger().elect().await;
                }
                Response::Forward(Forwarded::Campaigned)
            }
        }
    }
}
