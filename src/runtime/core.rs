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

use super::placement::{owner_core, shard_of};
use super::shard::{reply_error, Page, Shard};
use super::shutdown::Latch;
use super::watch::WatchRegistry;
use crate::config::{Config, PayloadPlane};
use crate::log::LogEngine;
use crate::metrics::{CoreMetrics, CoreStats, ShardStats};
use crate::raft::Reply;
use crate::session::{now_micros, ApiError, AppendRequest, CreateRequest};

/// Where an operation's answer goes: each request carries its own typed reply channel.
pub type ReplyTo<T> = oneshot::Sender<T>;

/// Work for the core that owns a shard, each with the channel its typed answer goes to.
pub enum Op {
    // Request bodies are boxed: they are large next to the other variants.
    Create(Box<CreateRequest>, ReplyTo<Result<String, ApiError>>),
    Get(String, ReplyTo<Result<String, ApiError>>),
    Append(String, Box<AppendRequest>, ReplyTo<Result<AppendOk, ApiError>>),
    Read {
        session: String,
        after: u64,
        limit: usize,
        max_bytes: usize,
        reply: ReplyTo<Result<Page, ApiError>>,
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
}

/// Why a node cannot serve writes (`/health/ready` is 503 with [`NotReady::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("core {core}: recovery in progress")]
    Recovering { core: usize },
    #[error("shard {shard} has no leader")]
    NoLeader { shard: u32 },
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
            NotReady::Recovering { .. } | NotReady::NoLeader { .. } | NotReady::Applying { .. } => ("starting", "raft_sync"),
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
    senders: Senders<CoreMsg>,
    pub shards: RefCell<HashMap<u32, Rc<Shard>>>,
    pub engine: RefCell<Option<Rc<LogEngine>>>,
    pub metrics: CoreMetrics,
    pub watch: WatchRegistry,
    /// Recovery finished and every local shard is open.
    pub started: Cell<bool>,
    /// Set once a graceful shutdown began: listeners stop accepting, connections finish
    /// what they are in, tails end (runtime/shutdown.rs).
    pub draining: Latch,
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
    pub fn new(id: usize, config: Arc<Config>, node_id: u64, senders: Senders<CoreMsg>) -> Core {
        let watch = WatchRegistry::default();
        watch.set_mirror_keep(config.tail_keep);
        Core {
            id,
            cores: config.cores,
            config,
            node_id,
            senders,
            shards: RefCell::new(HashMap::new()),
            engine: RefCell::new(None),
            metrics: CoreMetrics::default(),
            watch,
            started: Cell::new(false),
            draining: Latch::default(),
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
            Some(read) if read.cold.is_empty() && read.hot.len() as u64 == last - first + 1 => read.hot,
            _ => Vec::new(),
        }
    }

    fn shard(&self, session: &str) -> Result<Rc<Shard>, ApiError> {
        if !self.started.get() {
            return Err(ApiError::raft_unavailable("node is starting (recovery in progress)"));
        }
        let (shard, owner) = self.owner_of(session);
        assert_eq!(owner, self.id, "operations run on the owner core");
        let found = self.shards.borrow().get(&shard).cloned();
        match found {
            None => Err(ApiError::raft_unavailable(format!("shard {shard} is not open on this node"))),
            Some(s) if !s.is_caught_up() => {
                Err(ApiError::raft_unavailable(format!("shard {shard} is still applying its log after restart")))
            }
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
            let machine = shard.machine.borrow();
            s.counters.sessions += machine.state.session_count() as u64;
            s.counters.hot_tail_events += machine.state.hot_event_count() as u64;
        }
        s
    }

    fn ready(&self) -> Result<(), NotReady> {
        if self.draining.is_set() {
            return Err(NotReady::ShuttingDown);
        }
        if let Some(reason) = self.engine.borrow().as_ref().and_then(|e| e.poisoned()) {
            return Err(NotReady::LogStopped { core: self.id, reason });
        }
        if !self.started.get() {
            return Err(NotReady::Recovering { core: self.id });
        }
        for shard in self.shards.borrow().values() {
            if shard.raft.metrics().borrow().current_leader.is_none() {
                return Err(NotReady::NoLeader { shard: shard.id });
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
pub async fn handle(op: Op) {
    let core = current();
    match op {
        Op::Create(req, reply) => {
            let cmd = (*req).into_command(now_micros());
            let result = match core.shard(cmd.session_id()) {
                Err(e) => Err(e),
                Ok(shard) => match Shard::write(&shard, cmd, core.timeout()).await {
                    Ok(Reply::Created { header_json }) => Ok(header_json),
                    Ok(other) => Err(reply_error(other)),
                    Err(e) => Err(e),
                },
            };
            let _ = reply.send(result);
        }
        Op::Get(session, reply) => {
            let _ = reply.send(core.shard(&session).and_then(|s| s.header_json(&session)));
        }
        Op::Append(session, req, reply) => {
            let cmd = (*req).into_command(session.clone(), now_micros());
            let payload_bytes = match &cmd {
                crate::session::Command::Append { event, .. } => event.payload_json.len(),
                _ => 0,
            };
            let started = std::time::Instant::now();
            let result = match core.shard(&session) {
                Err(e) => Err(e),
                Ok(shard) => match Shard::write(&shard, cmd, core.timeout()).await {
                    Ok(Reply::Appended { seq, last_seq, deduped }) => {
                        core.metrics.append_micros.borrow_mut().observe(started.elapsed().as_micros() as f64);
                        if deduped {
                            core.metrics.counters.deduped.inc();
                        } else {
                            core.metrics.counters.events_appended.inc();
                            core.metrics.counters.payload_bytes.add(payload_bytes as u64);
                        }
                        Ok(AppendOk { seq, last_seq, deduped })
                    }
                    Ok(other) => Err(reply_error(other)),
                    Err(e) => Err(e),
                },
            };
            let _ = reply.send(result);
        }
        Op::Read { session, after, limit, max_bytes, reply } => {
            let result = match core.shard(&session) {
                Err(e) => Err(e),
                Ok(shard) => shard.read(&session, after, limit, max_bytes).await,
            };
            let _ = reply.send(result);
        }
        Op::Watch { session, core: watcher, on, reply } => {
            core.watch.set_remote(&session, watcher, on);
            let _ = reply.send(());
        }
        Op::Stats(reply) => {
            let _ = reply.send(Box::new(core.stats()));
        }
        Op::Ready(reply) => {
            let _ = reply.send(core.ready());
        }
    }
}
