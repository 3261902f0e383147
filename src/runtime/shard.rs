//! One shard on its owner core: its Raft group, its state machine, its log store, and the
//! operations the owner core runs for it (write through Raft, read committed state).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{AsyncRuntime, BasicNode, ServerState};

use futures::channel::oneshot;

use super::OpenError;
use crate::archive::Archive;
use crate::limits::{PROPOSAL_BYTES_MAX, PROPOSAL_COMMANDS_MAX};
use crate::raft::events::read_cold_events;
use crate::raft::runtime::GlommioRuntime;
use crate::raft::state_machine::ShardMachine;
use crate::raft::{LogStore, NodeId, Proposal, Raft, Refused, Reply, StateMachine};
use crate::session::{ApiError, ByteBudget, Command};

pub struct Shard {
    pub id: u32,
    pub raft: Raft,
    pub machine: Rc<RefCell<ShardMachine>>,
    pub store: LogStore,
    /// Commands waiting for the next proposal.
    queue: RefCell<VecDeque<Queued>>,
    /// A proposer task is running (it drains `queue` until empty).
    proposing: Cell<bool>,
    /// Last log index found at startup: the shard serves only once it has applied that
    /// far (entries after the last durable committed mark are re-committed by openraft
    /// after its election; until then the state machine would answer from the past).
    startup_last_index: Option<u64>,
    caught_up: Cell<bool>,
    /// Elections are switched off while the log is damaged (`ShardLog::abstaining`).
    elections_held: Cell<bool>,
}

/// Where a write's outcome goes (the caller's channel, answered by the proposer).
pub type WriteReply = oneshot::Sender<Result<Reply, Refused>>;

struct Queued {
    cmd: Arc<Command>,
    bytes: usize,
    reply: WriteReply,
}

/// What a command adds to a proposal's size, for `PROPOSAL_BYTES_MAX`: its text plus
/// room for the fields around it.
fn command_bytes(cmd: &Command) -> usize {
    cmd.text_bytes() + 128
}

/// Drain the shard's queue: each round proposes everything queued (up to the proposal
/// bounds) as one entry and answers each command with its own outcome.
async fn propose_queued(shard: Rc<Shard>, timeout: Duration) {
    loop {
        let batch: Vec<Queued> = {
            let mut queue = shard.queue.borrow_mut();
            let mut batch = Vec::new();
            let mut bytes = 0;
            while let Some(q) = queue.front() {
                if !batch.is_empty() && (batch.len() >= PROPOSAL_COMMANDS_MAX || bytes + q.bytes > PROPOSAL_BYTES_MAX) {
                    break;
                }
                bytes += q.bytes;
                batch.push(queue.pop_front().expect("front exists"));
            }
            batch
        };
        if batch.is_empty() {
            shard.proposing.set(false);
            return;
        }
        let (cmds, waiters): (Vec<Arc<Command>>, Vec<WriteReply>) = batch.into_iter().map(|q| (q.cmd, q.reply)).unzip();
        let n = cmds.len();
        let result = GlommioRuntime::timeout(timeout, shard.raft.client_write(Proposal::new(cmds))).await;
        let outcome: Result<Vec<Reply>, Refused> = match result {
            Err(_) => Err(ApiError::raft_timeout(format!("write not committed within {} ms", timeout.as_millis())).into()),
            // Never proposed, or proposed and then truncated (never to commit): the caller
            // may send it to the leader (runtime/api.rs).
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(Refused::NotLeader { leader: f.leader_node.map(|n| n.addr).filter(|a| !a.is_empty()) })
            }
            Ok(Err(e)) => Err(ApiError::raft_unavailable(format!("shard {}: {e}", shard.id)).into()),
            Ok(Ok(resp)) => Ok(resp.data),
        };
        match outcome {
            Ok(replies) => {
                assert_eq!(replies.len(), n, "one reply per proposed command");
                for (reply, waiter) in replies.into_iter().zip(waiters) {
                    let _ = waiter.send(Ok(reply));
                }
            }
            Err(e) => {
                for waiter in waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A page of committed events: contiguous seqs starting right after the cursor.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Arc<str>>,
    pub last_seq: u64,
}

impl Shard {
    /// Open the shard's Raft group. A single node (`alone`) initializes its one-member group
    /// at once; in a cluster, groups are initialized by the bootstrap (runtime/membership.rs).
    pub async fn open(
        id: u32,
        node_id: NodeId,
        raft_config: Arc<openraft::Config>,
        network: crate::cluster::network::Network,
        store: LogStore,
        sm: StateMachine,
        alone: bool,
    ) -> Result<Shard, OpenError> {
        let machine = sm.inner.clone();
        let startup_last_index = store.log.borrow().last_index();
        let abstaining = store.log.borrow().abstaining();
        let raft_config = if abstaining {
            // A damaged log must not make this node a candidate (docs/ARCHITECTURE.md §3b):
            // it could win with the votes of replicas that lack the same entries. Off from
            // the first tick; `abstaining()` switches elections on once caught up.
            Arc::new(openraft::Config { enable_elect: false, ..(*raft_config).clone() })
        } else {
            raft_config
        };
        let raft = Raft::new(node_id, raft_config, network, store.clone(), sm)
            .await
            .map_err(|e| OpenError::Raft { shard: id, reason: e.to_string() })?;
        let initialized = raft.is_initialized().await.map_err(|e| OpenError::Raft { shard: id, reason: e.to_string() })?;
        if !initialized && alone {
            let mut members = BTreeMap::new();
            members.insert(node_id, BasicNode::default());
            raft.initialize(members).await.map_err(|e| OpenError::Raft { shard: id, reason: format!("initializing: {e}") })?;
        }
        Ok(Shard {
            id,
            raft,
            machine,
            store,
            queue: RefCell::new(VecDeque::new()),
            proposing: Cell::new(false),
            startup_last_index,
            caught_up: Cell::new(false),
            elections_held: Cell::new(abstaining),
        })
    }

    /// Whether this replica abstains from votes and elections (its log is behind what it
    /// acknowledged before it was damaged). Switches elections back on once caught up.
    pub fn abstaining(&self) -> bool {
        let abstaining = self.store.log.borrow().abstaining();
        if !abstaining && self.elections_held.replace(false) {
            self.raft.runtime_config().elect(true);
        }
        abstaining
    }

    /// Whether proposals are queued or in flight (their callers still wait for answers).
    pub fn is_proposing(&self) -> bool {
        self.proposing.get()
    }

    /// Whether the state machine has applied everything the log held at startup.
    pub fn is_caught_up(&self) -> bool {
        if self.caught_up.get() {
            return true;
        }
        let applied = self.machine.borrow().last_applied.map(|l| l.index);
        let done = match self.startup_last_index {
            None => true,
            Some(last) => applied.is_some_and(|a| a >= last),
        };
        self.caught_up.set(done);
        done
    }

    /// `Ok` when this replica leads the group; else who does, as far as it knows.
    pub fn leader_check(&self) -> Result<(), Refused> {
        self.leadership().map(drop)
    }

    /// [`Self::leader_check`], and whether the leader is settled ([`Self::is_settled_leader`]),
    /// from one read of openraft's metrics (in place: a clone copies its maps).
    fn leadership(&self) -> Result<bool, Refused> {
        let watch = self.raft.metrics();
        let m = watch.borrow();
        if m.state == ServerState::Leader {
            return Ok(m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term));
        }
        let leader = m.current_leader.and_then(|id| m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()));
        Err(Refused::NotLeader { leader: leader.filter(|a| !a.is_empty()) })
    }

    /// The leader has applied an entry of its own term, hence everything committed before
    /// it: its state machine may answer for the group (prechecks, reads).
    pub fn is_settled_leader(&self) -> bool {
        self.leadership().unwrap_or(false)
    }

    /// Whether this group, when this replica leads it, lacks a full set of healthy voters:
    /// `wanted` (its replicas' current incarnations, `None` when one is unknown: not
    /// connected) differs from its voters, or the group is joint. Exposed as
    /// `starcite_raft_groups_under_replicated`: while it is above zero, losing one more
    /// replica's data can cost a group its quorum (the operator's "do not wipe now").
    pub fn under_replicated(&self, wanted: Option<BTreeSet<u64>>) -> bool {
        let watch = self.raft.metrics();
        let metrics = watch.borrow();
        if metrics.state != ServerState::Leader {
            return false;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        is_joint(membership) || wanted.is_none_or(|w| w != voters)
    }

    /// `(rows, sessions)` waiting for the archive when this replica is the settled leader
    /// (the one that archives); `(0, 0)` otherwise, so a cluster counts each row once.
    pub fn archive_pending(&self) -> (u64, u64) {
        if !self.is_settled_leader() {
            return (0, 0);
        }
        let machine = self.machine.borrow();
        machine.state.unarchived().fold((0, 0), |(rows, sessions), (_, archived, last)| (rows + (last - archived), sessions + 1))
    }

    /// Propose `cmd` and wait until it is committed and applied (or the timeout passes).
    /// Only the leader proposes; any other replica answers [`Refused::NotLeader`].
    ///
    /// Commands queue per shard; one proposer task packs everything queued into a single
    /// Raft entry while the previous entry is being committed (see [`Proposal`]).
    pub async fn write(this: &Rc<Shard>, cmd: Arc<Command>, timeout: Duration) -> Result<Reply, Refused> {
        let (tx, rx) = oneshot::channel();
        Shard::submit(this, cmd, tx, timeout);
        rx.await.unwrap_or_else(|_| Err(ApiError::raft_unavailable(format!("shard {} dropped the proposal", this.id)).into()))
    }

    /// [`Shard::write`] without waiting: `reply` gets the outcome, at once when this
    /// replica does not lead or the precheck decides, else when the command's entry is
    /// applied (or the proposal times out).
    pub fn submit(this: &Rc<Shard>, cmd: Arc<Command>, reply: WriteReply, timeout: Duration) {
        let settled = match this.leadership() {
            Ok(settled) => settled,
            Err(refused) => {
                let _ = reply.send(Err(refused));
                return;
            }
        };
        // The precheck answers certain outcomes without a round of Raft, but only from a
        // state machine that has seen every committed entry.
        if settled {
            if let Some(outcome) = this.machine.borrow().state.precheck(&cmd) {
                let _ = reply.send(Ok(Reply::from(outcome)));
                return;
            }
        }
        let bytes = command_bytes(&cmd);
        this.queue.borrow_mut().push_back(Queued { cmd, bytes, reply });
        if !this.proposing.replace(true) {
            glommio::spawn_local(propose_queued(this.clone(), timeout)).detach();
        }
    }

    /// Wait until a read served now reflects every write acknowledged before it began: this
    /// replica leads (confirmed by a quorum, openraft's read index) and has applied up to
    /// the read index.
    pub async fn linearize(&self, timeout: Duration) -> Result<(), Refused> {
        self.leader_check()?;
        match GlommioRuntime::timeout(timeout, self.raft.ensure_linearizable()).await {
            Err(_) => {
                Err(ApiError::raft_timeout(format!("shard {}: leadership not confirmed within {} ms", self.id, timeout.as_millis())).into())
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(Refused::NotLeader { leader: f.leader_node.map(|n| n.addr).filter(|a| !a.is_empty()) })
            }
            Ok(Err(e)) => Err(ApiError::raft_unavailable(format!("shard {}: {e}", self.id)).into()),
        }
    }

    /// The session record as JSON.
    pub fn header_json(&self, session: &str) -> Result<String, ApiError> {
        self.machine.borrow().state.header(session).map(|h| h.to_json()).ok_or_else(|| ApiError::session_not_found(session))
    }

    /// Committed events with seq > `after`, at most `limit`, within `max_bytes` of rendered
    /// JSON ([`ByteBudget`]: always at least one event when there is one). Events trimmed
    /// after archiving come from `archive` (their exact archived text); without one, or
    /// with Postgres unreachable, such a read is `503 archive_unavailable`.
    pub async fn read(
        &self,
        session: &str,
        after: u64,
        limit: usize,
        max_bytes: usize,
        archive: Option<&Archive>,
    ) -> Result<Page, ApiError> {
        let hot = self
            .machine
            .borrow()
            .state
            .hot_events(session, after, limit)
            .map_err(|e| ApiError::internal(format!("reading events of {session}: {e}")))?
            .ok_or_else(|| ApiError::session_not_found(session))?;
        let mut events: Vec<Arc<str>> = Vec::with_capacity(hot.len());
        let mut budget = ByteBudget::new(max_bytes);
        if hot.archived > 0 {
            let Some(archive) = archive else {
                return Err(ApiError::archive_unavailable(format!(
                    "events {}..={} of session {session} were trimmed after archiving and this node has no archive (STARCITE_ARCHIVER_ENABLED)",
                    after + 1,
                    after + hot.archived
                )));
            };
            let texts =
                archive.read(session, after, hot.archived, max_bytes).await.map_err(|e| ApiError::archive_unavailable(e.to_string()))?;
            for text in texts {
                if !budget.admit(text.len()) {
                    break;
                }
                events.push(Arc::from(text));
            }
            if (events.len() as u64) < hot.archived {
                return Ok(Page { events, last_seq: hot.last_seq });
            }
        }
        // Each tier only follows a complete run of the one before (the page stays gap-free):
        // carried (from a snapshot), then disk, then the tail.
        for json in &hot.carried {
            if !budget.admit(json.len()) {
                return Ok(Page { events, last_seq: hot.last_seq });
            }
            events.push(json.clone());
        }
        let cold_count = hot.cold.len();
        if cold_count > 0 {
            events.extend(read_cold_events(&self.store, session, &hot.cold, &mut budget).await?);
        }
        if events.len() as u64 == hot.archived + (hot.carried.len() + cold_count) as u64 {
            for json in hot.hot {
                if !budget.admit(json.len()) {
                    break;
                }
                events.push(json);
            }
        }
        Ok(Page { events, last_seq: hot.last_seq })
    }
}

/// Whether a group is between the two steps of a membership change (openraft's joint
/// config: the old and the new voter sets must both agree).
pub fn is_joint(membership: &openraft::Membership<NodeId, BasicNode>) -> bool {
    membership.get_joint_config().len() > 1
}

/// The client error of a reply that is not the success the caller expected.
pub fn reply_error(reply: Reply) -> ApiError {
    match reply {
        Reply::Rejected(e) => e,
        other => ApiError::internal(format!("unexpected reply {other:?}")),
    }
}
