//! One shard on its owner core: its Raft group, its state machine, its log store, and the
//! operations the owner core runs for it (write through Raft, read committed state).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{AsyncRuntime, BasicNode};

use crate::raft::record::{self, RecordPayload};
use crate::raft::runtime::GlommioRuntime;
use crate::raft::state_machine::ShardMachine;
use crate::raft::{LogStore, NodeId, Raft, Reply, StateMachine};
use crate::session::{render_event, ApiError, Command};

pub struct Shard {
    pub id: u32,
    pub raft: Raft,
    pub machine: Rc<RefCell<ShardMachine>>,
    pub store: LogStore,
}

/// A page of committed events: contiguous seqs starting right after the cursor.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Arc<str>>,
    pub last_seq: u64,
}

pub fn raft_unavailable(msg: impl Into<String>) -> ApiError {
    ApiError::new(503, "raft_unavailable", msg)
}

impl Shard {
    pub async fn open(
        id: u32,
        node_id: NodeId,
        raft_config: Arc<openraft::Config>,
        store: LogStore,
        sm: StateMachine,
    ) -> Result<Shard, String> {
        let machine = sm.inner.clone();
        let raft = Raft::new(node_id, raft_config, crate::raft::network::Network, store.clone(), sm)
            .await
            .map_err(|e| format!("starting Raft for shard {id}: {e}"))?;
        let initialized = raft.is_initialized().await.map_err(|e| format!("shard {id}: {e}"))?;
        if !initialized {
            let mut members = BTreeMap::new();
            members.insert(node_id, BasicNode::default());
            raft.initialize(members).await.map_err(|e| format!("initializing shard {id}: {e}"))?;
        }
        Ok(Shard { id, raft, machine, store })
    }

    /// Propose `cmd` and wait until it is committed and applied (or the timeout passes).
    pub async fn write(&self, cmd: Command, timeout: Duration) -> Result<Reply, ApiError> {
        if let Some(outcome) = self.machine.borrow().state.precheck(&cmd) {
            return Ok(Reply::from(outcome));
        }
        let started = Instant::now();
        let result = GlommioRuntime::timeout(timeout, self.raft.client_write(cmd)).await;
        let reply = match result {
            Err(_) => {
                return Err(ApiError::new(503, "raft_timeout", format!("write not committed within {} ms", timeout.as_millis())))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                return Err(raft_unavailable(format!("shard {} has no reachable leader (leader: {:?})", self.id, f.leader_id)))
            }
            Ok(Err(e)) => return Err(raft_unavailable(format!("shard {}: {e}", self.id))),
            Ok(Ok(resp)) => resp.data,
        };
        crate::runtime::core::with_current(|core| {
            core.metrics.append_micros.borrow_mut().observe(started.elapsed().as_micros() as f64)
        });
        Ok(reply)
    }

    /// The session record as JSON.
    pub fn header_json(&self, session: &str) -> Result<String, ApiError> {
        self.machine
            .borrow()
            .state
            .header(session)
            .map(|h| h.to_json())
            .ok_or_else(|| ApiError::session_not_found(session))
    }

    /// Committed events with seq > `after`, at most `limit`, stopping after `max_bytes`
    /// of rendered JSON (always at least one event when there is one).
    pub async fn read(&self, session: &str, after: u64, limit: usize, max_bytes: usize) -> Result<Page, ApiError> {
        let hot = self
            .machine
            .borrow()
            .state
            .hot_events(session, after, limit)
            .ok_or_else(|| ApiError::session_not_found(session))?;
        let mut events: Vec<Arc<str>> = Vec::with_capacity(hot.len());
        let mut bytes = 0usize;
        if !hot.cold.is_empty() {
            let locs = {
                let log = self.store.log.borrow();
                let mut locs = Vec::with_capacity(hot.cold.len());
                for c in &hot.cold {
                    let loc = log
                        .loc_of(c.log_index)
                        .ok_or_else(|| ApiError::internal(format!("event {} of {session} is no longer in the log", c.seq)))?;
                    locs.push(loc);
                }
                locs
            };
            let bufs = self
                .store
                .engine
                .read_many(&locs)
                .await
                .map_err(|e| ApiError::internal(format!("reading events of {session}: {e}")))?;
            for (c, buf) in hot.cold.iter().zip(bufs) {
                let rec = record::decode(buf.payload()).map_err(|e| ApiError::internal(format!("event {} of {session}: {e}", c.seq)))?;
                let crate::raft::record::LogRecord::Entry { payload: RecordPayload::Normal(Command::Append { event, idempotency_key, now_micros, .. }), .. } = rec else {
                    return Err(ApiError::internal(format!("log entry for event {} of {session} is not an append", c.seq)));
                };
                let json: Arc<str> = render_event(c.seq, &event, idempotency_key.as_deref(), now_micros).into();
                bytes += json.len();
                events.push(json);
                if bytes >= max_bytes {
                    break;
                }
            }
        }
        if bytes < max_bytes {
            for json in hot.hot {
                bytes += json.len();
                events.push(json);
                if bytes >= max_bytes {
                    break;
                }
            }
        }
        Ok(Page { events, last_seq: hot.last_seq })
    }
}

/// Map an apply outcome on the session records to the public result.
pub fn outcome_error(reply: Reply) -> ApiError {
    match reply {
        Reply::Rejected { status, code, message } => ApiError::new(status, intern_code(&code), message),
        other => ApiError::internal(format!("unexpected reply {other:?}")),
    }
}

/// Error codes are `&'static str`; replies carry them as Strings (they cross Raft).
fn intern_code(code: &str) -> &'static str {
    const CODES: &[&str] = &[
        "session_exists",
        "session_not_found",
        "idempotency_conflict",
        "expected_seq_conflict",
        "invalid_event",
        "internal_error",
    ];
    CODES.iter().find(|c| **c == code).copied().unwrap_or("internal_error")
}
