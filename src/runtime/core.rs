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
use super::shard::{outcome_error, raft_unavailable, Page, Shard};
use super::watch::WatchRegistry;
use crate::config::{Config, PayloadPlane};
use crate::log::LogEngine;
use crate::metrics::{CoreMetrics, CoreStats, ShardStats};
use crate::raft::Reply;
use crate::session::{now_micros, ApiError, AppendRequest, CreateRequest};

/// Work for the core that owns a shard.
pub enum Op {
    // Request bodies are boxed: they are large next to the other variants.
    Create(Box<CreateRequest>),
    Get(String),
    Append(String, Box<AppendRequest>),
    Read {
        session: String,
        after: u64,
        limit: usize,
        max_bytes: usize,
    },
    /// A tail of `session` opened (`on`) or closed on `core`.
    Watch {
        session: String,
        core: usize,
        on: bool,
    },
    Stats,
    Ready,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOk {
    pub seq: u64,
    pub last_seq: u64,
    pub deduped: bool,
}

pub enum OpReply {
    Json(Result<String, ApiError>),
    Appended(Result<AppendOk, ApiError>),
    Page(Result<Page, ApiError>),
    Done,
    Stats(Box<CoreStats>),
    Ready(Result<(), String>),
}

#[allow(clippy::large_enum_variant)] // Notify is the hot, common message; boxing it would add an allocation per commit.
pub enum CoreMsg {
    Request(Op, oneshot::Sender<OpReply>),
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
        }
    }

    pub fn owner_of(&self, session: &str) -> (u32, usize) {
        let shard = shard_of(session, self.config.shards);
        (shard, owner_core(shard, self.cores))
    }

    /// Run `op` on `owner` (here, or over the mesh) and wait for the answer.
    pub async fn call(&self, owner: usize, op: Op) -> OpReply {
        if owner == self.id {
            return handle(op).await;
        }
        let (tx, rx) = oneshot::channel();
        if self.senders.send_to(owner, CoreMsg::Request(op, tx)).await.is_err() {
            return OpReply::Ready(Err(format!("core {owner} is gone")));
        }
        rx.await.unwrap_or_else(|_| OpReply::Ready(Err(format!("core {owner} dropped the request"))))
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
            return Err(raft_unavailable("node is starting (recovery in progress)"));
        }
        let (shard, owner) = self.owner_of(session);
        assert_eq!(owner, self.id, "operations run on the owner core");
        let found = self.shards.borrow().get(&shard).cloned();
        match found {
            None => Err(raft_unavailable(format!("shard {shard} is not open on this node"))),
            Some(s) if !s.is_caught_up() => Err(raft_unavailable(format!("shard {shard} is still applying its log after restart"))),
            Some(s) => Ok(s),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    fn stats(&self) -> CoreStats {
        let m = &self.metrics;
        let mut s = CoreStats::empty(self.id);
        s.events_appended = m.events_appended.get();
        s.payload_bytes = m.payload_bytes.get();
        s.deduped = m.deduped.get();
        s.append_micros = m.append_micros.borrow().clone();
        s.http_requests = m.http_requests.borrow().clone();
        s.open_connections = m.open_connections.get();
        s.refused_connections = m.refused_connections.get();
        s.open_tails = m.open_tails.get();
        s.tail_events_sent = m.tail_events_sent.get();
        s.tail_mirror_reads = m.tail_mirror_reads.get();
        if let Some(engine) = self.engine.borrow().as_ref() {
            let l = &engine.stats;
            s.log_records = l.records.get();
            s.log_bytes_written = l.bytes_written.get();
            s.log_batches = l.batches.get();
            s.log_fsyncs = l.fsyncs.get();
            s.fsync_micros = l.fsync_micros.borrow().clone();
            s.batch_records = l.batch_records.borrow().clone();
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
            s.sessions += machine.state.session_count() as u64;
            s.hot_tail_events += machine.state.hot_event_count() as u64;
        }
        s
    }

    fn ready(&self) -> Result<(), String> {
        if !self.started.get() {
            return Err("recovery in progress".into());
        }
        if let Some(e) = self.engine.borrow().as_ref().and_then(|e| e.poisoned()) {
            return Err(format!("log engine stopped: {e}"));
        }
        for shard in self.shards.borrow().values() {
            if shard.raft.metrics().borrow().current_leader.is_none() {
                return Err(format!("shard {} has no leader", shard.id));
            }
            if !shard.is_caught_up() {
                return Err(format!("shard {} is still applying its log", shard.id));
            }
        }
        Ok(())
    }
}

/// Execute an operation on this (the owner) core.
pub async fn handle(op: Op) -> OpReply {
    let core = current();
    match op {
        Op::Create(req) => {
            let cmd = (*req).into_command(now_micros());
            let result = match core.shard(cmd.session_id()) {
                Err(e) => Err(e),
                Ok(shard) => match Shard::write(&shard, cmd, core.timeout()).await {
                    Ok(Reply::Created { header_json }) => Ok(header_json),
                    Ok(other) => Err(outcome_error(other)),
                    Err(e) => Err(e),
                },
            };
            OpReply::Json(result)
        }
        Op::Get(session) => OpReply::Json(core.shard(&session).and_then(|s| s.header_json(&session))),
        Op::Append(session, req) => {
            let cmd = (*req).into_command(session.clone(), now_micros());
            let payload_bytes = match &cmd {
                crate::session::Command::Append { event, .. } => event.payload_json.len(),
                _ => 0,
            };
            let result = match core.shard(&session) {
                Err(e) => Err(e),
                Ok(shard) => match Shard::write(&shard, cmd, core.timeout()).await {
                    Ok(Reply::Appended { seq, last_seq, deduped }) => {
                        if deduped {
                            core.metrics.deduped.set(core.metrics.deduped.get() + 1);
                        } else {
                            core.metrics.events_appended.set(core.metrics.events_appended.get() + 1);
                            core.metrics.payload_bytes.set(core.metrics.payload_bytes.get() + payload_bytes as u64);
                        }
                        Ok(AppendOk { seq, last_seq, deduped })
                    }
                    Ok(other) => Err(outcome_error(other)),
                    Err(e) => Err(e),
                },
            };
            OpReply::Appended(result)
        }
        Op::Read { session, after, limit, max_bytes } => {
            let result = match core.shard(&session) {
                Err(e) => Err(e),
                Ok(shard) => shard.read(&session, after, limit, max_bytes).await,
            };
            OpReply::Page(result)
        }
        Op::Watch { session, core: watcher, on } => {
            core.watch.set_remote(&session, watcher, on);
            OpReply::Done
        }
        Op::Stats => OpReply::Stats(Box::new(core.stats())),
        Op::Ready => OpReply::Ready(core.ready()),
    }
}
