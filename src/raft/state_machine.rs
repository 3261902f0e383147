//! openraft's `RaftStateMachine` for one shard: applies committed commands to the pure
//! session state machine ([`crate::session::ShardState`]) and handles snapshots.
//!
//! Applied state is not written on its own: the Raft log is the source of truth and
//! openraft re-applies committed entries at startup. Snapshots (session headers,
//! idempotency memory, seq → log index, membership, and every event not yet trimmed,
//! rendered: session/snapshot.rs) are written to `<core dir>/snapshots/<shard>.snap`
//! atomically when built or installed, and loaded at start, so a purged log prefix is
//! always covered by a durable snapshot, and a replica that installs one needs no entry
//! below it to serve any event (ARCHITECTURE §15b). The snapshot is not kept in memory:
//! openraft's requests for it read the file.

use std::cell::RefCell;
use std::io::{self, Cursor};
use std::path::PathBuf;
use std::rc::Rc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::events::read_cold_events;
use super::log_store::{storage_error, LogStore, NodeId};
use super::position;
use super::TypeConfig;
use crate::session::{ApiError, ByteBudget, Command, Outcome, ShardState, SnapshotError};

/// What applying one entry answers to the client that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Blank and membership entries.
    None,
    Created {
        header_json: String,
    },
    Appended {
        seq: u64,
        last_seq: u64,
        deduped: bool,
    },
    /// The state machine refused the command (session exists, conflicts, …): the typed
    /// client error, as it was decided on apply.
    Rejected(ApiError),
    /// The session's archive watermark after a `MarkArchived`.
    Marked {
        archived_seq: u64,
    },
}

impl From<Outcome> for Reply {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Created(h) => Reply::Created { header_json: h.to_json() },
            Outcome::Appended { seq, last_seq, deduped } => Reply::Appended { seq, last_seq, deduped },
            Outcome::Rejected(e) => Reply::Rejected(e),
            Outcome::Marked { archived_seq } => Reply::Marked { archived_seq },
        }
    }
}

/// Called after each applied batch with the sessions that got new events (first and last
/// new seq of each run) and the payload bytes appended: the runtime wakes tails.
pub type ApplyListener = Rc<dyn Fn(u32, &[(String, u64, u64)], u64)>;

/// Apply one committed entry: every command of a proposal in order, each at its own
/// position; membership entries update the stored membership. `on_append` hears every
/// new (not deduped) event: session, its seq, payload bytes. Shared by the live apply
/// path and the startup replay ([`super::replay`]) so both build the same state.
pub(crate) fn apply_entry(
    state: &mut ShardState,
    membership: &mut StoredMembership<NodeId, BasicNode>,
    last_applied: &mut Option<LogId<NodeId>>,
    entry: &Entry<TypeConfig>,
    mut on_append: impl FnMut(&str, u64, usize),
) -> Vec<Reply> {
    if let Some(prev) = last_applied {
        assert!(entry.log_id.index > prev.index, "entries apply in log order, once");
    }
    let replies = match &entry.payload {
        EntryPayload::Blank => Vec::new(),
        EntryPayload::Normal(proposal) => {
            let mut outcomes = Vec::with_capacity(proposal.0.len());
            for (slot, cmd) in proposal.0.iter().map(|c| &**c).enumerate() {
                let outcome = state.apply(position(entry.log_id.index, slot), cmd);
                if let (Outcome::Appended { last_seq, deduped: false, .. }, Command::Append { session_id, event, .. }) = (&outcome, cmd) {
                    on_append(session_id, *last_seq, event.payload_json.len());
                }
                outcomes.push(outcome.into());
            }
            outcomes
        }
        EntryPayload::Membership(mem) => {
            *membership = StoredMembership::new(Some(entry.log_id), mem.clone());
            Vec::new()
        }
    };
    *last_applied = Some(entry.log_id);
    replies
}

#[derive(Serialize, Deserialize)]
struct SnapshotMetaFile {
    meta: SnapshotMeta<NodeId, BasicNode>,
}

pub struct ShardMachine {
    pub shard: u32,
    pub state: ShardState,
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub listener: Option<ApplyListener>,
}

#[derive(Clone)]
pub struct StateMachine {
    pub inner: Rc<RefCell<ShardMachine>>,
    store: LogStore,
    snapshot_path: PathBuf,
}

fn encode_snapshot(meta: &SnapshotMeta<NodeId, BasicNode>, state: &[u8]) -> Vec<u8> {
    let meta_json = serde_json::to_vec(&SnapshotMetaFile { meta: meta.clone() }).expect("meta serializes");
    let mut out = Vec::with_capacity(8 + meta_json.len() + state.len());
    out.extend_from_slice(&(meta_json.len() as u64).to_le_bytes());
    out.extend_from_slice(&meta_json);
    out.extend_from_slice(state);
    out
}

/// A shard's snapshot file that cannot be read or decoded (startup refuses, naming it).
#[derive(Debug, thiserror::Error)]
#[error("snapshot {}: {reason}", path.display())]
pub struct SnapshotFileError {
    pub path: PathBuf,
    pub reason: String,
}

fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotMeta<NodeId, BasicNode>, &[u8]), SnapshotError> {
    let len = bytes.get(..8).ok_or_else(|| SnapshotError("snapshot too short".into()))?;
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    let meta = bytes.get(8..8usize.saturating_add(len)).ok_or_else(|| SnapshotError("snapshot meta truncated".into()))?;
    let meta: SnapshotMetaFile = serde_json::from_slice(meta).map_err(|e| SnapshotError(format!("snapshot meta: {e}")))?;
    Ok((meta.meta, &bytes[8 + len..]))
}

impl StateMachine {
    /// A state machine for `shard`, starting from its snapshot file when there is one.
    pub fn open(shard: u32, tail_keep: usize, snapshot_dir: PathBuf, store: LogStore) -> Result<Self, SnapshotFileError> {
        let snapshot_path = snapshot_dir.join(format!("{shard}.snap"));
        let spill = store.log.borrow().spill();
        let mut machine = ShardMachine {
            shard,
            state: ShardState::with_spill(tail_keep, spill.clone()),
            last_applied: None,
            membership: StoredMembership::default(),
            listener: None,
        };
        match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let bad = |e: SnapshotError| SnapshotFileError { path: snapshot_path.clone(), reason: e.0 };
                let (meta, state) = decode_snapshot(&bytes).map_err(bad)?;
                machine.state = ShardState::from_snapshot_bytes(state, tail_keep, spill).map_err(bad)?;
                machine.last_applied = meta.last_log_id;
                machine.membership = meta.last_membership;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SnapshotFileError { path: snapshot_path, reason: e.to_string() }),
        }
        Ok(StateMachine { inner: Rc::new(RefCell::new(machine)), store, snapshot_path })
    }

    /// A state machine whose state was rebuilt elsewhere (the startup scan of the log,
    /// raft/replay.rs: no snapshot file).
    pub fn rebuilt(
        shard: u32,
        state: ShardState,
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, BasicNode>,
        snapshot_dir: PathBuf,
        store: LogStore,
    ) -> Self {
        let snapshot_path = snapshot_dir.join(format!("{shard}.snap"));
        let machine = ShardMachine { shard, state, last_applied, membership, listener: None };
        StateMachine { inner: Rc::new(RefCell::new(machine)), store, snapshot_path }
    }

    fn persist_snapshot(&self, bytes: &[u8]) -> io::Result<()> {
        let dir = self.snapshot_path.parent().expect("snapshot dir");
        std::fs::create_dir_all(dir)?;
        let tmp = self.snapshot_path.with_extension("snap.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.snapshot_path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// The state as of `last_applied` (a copy taken at once: applies go on meanwhile),
    /// with the events it holds only in the log read back and rendered into it.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, state) = {
            let m = self.inner.borrow();
            let meta = SnapshotMeta {
                last_log_id: m.last_applied,
                last_membership: m.membership.clone(),
                snapshot_id: format!("{}-{}", m.shard, m.last_applied.map(|l| l.index + 1).unwrap_or(0)),
            };
            (meta, m.state.clone())
        };
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let mut log_only = std::collections::HashMap::new();
        for (session, cold) in state.log_only_events().map_err(|e| storage_error(subject(), ErrorVerb::Read, e))? {
            // These entries are above any purge (the compactor purges below the lowest
            // uncarried event, and log-only events are uncarried: runtime/compactor.rs),
            // and never truncated (they are applied).
            let events = read_cold_events(&self.store, &session, &cold, &mut ByteBudget::new(usize::MAX))
                .await
                .map_err(|e| storage_error(subject(), ErrorVerb::Read, e.message))?;
            log_only.insert(session, events);
        }
        let (state_bytes, carried) = state.snapshot_bytes_with(&log_only).map_err(|e| storage_error(subject(), ErrorVerb::Read, e))?;
        let bytes = encode_snapshot(&meta, &state_bytes);
        self.persist_snapshot(&bytes).map_err(|e| storage_error(subject(), ErrorVerb::Write, e))?;
        // Keep in memory what the snapshot carries, as a restart from it would: the log
        // below it may be purged now, and the tail evicts events whatever the archive says.
        let mut live = self.inner.borrow_mut();
        for (id, first, texts) in &carried {
            live.state.adopt_carried(id, *first, texts);
        }
        drop(live);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let m = self.inner.borrow();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Reply>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut appended: Vec<(String, u64, u64)> = Vec::new();
        let mut payload_bytes = 0u64;
        let (listener, shard, last) = {
            let mut m = self.inner.borrow_mut();
            for entry in entries {
                let m = &mut *m;
                let reply = apply_entry(&mut m.state, &mut m.membership, &mut m.last_applied, &entry, |session, last_seq, bytes| {
                    payload_bytes += bytes as u64;
                    match appended.last_mut() {
                        Some((s, _, last)) if s == session => *last = last_seq,
                        _ => appended.push((session.to_string(), last_seq, last_seq)),
                    }
                });
                replies.push(reply);
            }
            (m.listener.clone(), m.shard, m.last_applied)
        };
        if let Some(last) = last {
            self.store.log.borrow_mut().evict_cache_upto(last.index);
        }
        if let Some(listener) = listener {
            if !appended.is_empty() {
                listener(shard, &appended, payload_bytes);
            }
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let subject = || ErrorSubject::Snapshot(Some(meta.signature()));
        let (_, state_bytes) = decode_snapshot(&bytes).map_err(|e| storage_error(subject(), ErrorVerb::Read, e))?;
        let (tail_keep, spill) = {
            let m = self.inner.borrow();
            (m.state.tail_keep(), m.state.spill())
        };
        let state =
            ShardState::from_snapshot_bytes(state_bytes, tail_keep, spill).map_err(|e| storage_error(subject(), ErrorVerb::Read, e))?;
        // Store the snapshot under the meta we were given.
        let bytes = encode_snapshot(meta, state_bytes);
        self.persist_snapshot(&bytes).map_err(|e| storage_error(subject(), ErrorVerb::Write, e))?;
        let mut m = self.inner.borrow_mut();
        m.state = state;
        m.last_applied = meta.last_log_id;
        m.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e)),
        };
        let (meta, _) = decode_snapshot(&bytes).map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
