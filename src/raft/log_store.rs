//! openraft's `RaftLogStorage` for one shard, over the core's shared log engine.
//!
//! Storage contract (openraft's, restated for this store):
//! - entries are readable as soon as `append` returns (they sit in `ShardLog::cache` until
//!   they are durable and applied), and durable when the flush callback fires (the engine
//!   runs it after the group commit's fdatasync);
//! - `save_vote` returns only after the vote record is fdatasync'd;
//! - `truncate`, `purge` and `save_committed` write a record and return: the log is
//!   ordered, so any later durable record makes them durable too, and recovery replays
//!   them in order; the committed mark does not even ask for a write of its own (it rides
//!   with the next one: losing it in a crash only makes openraft re-commit a few entries);
//! - indices are contiguous from the first kept index to the last (asserted); there is no
//!   hole after truncate or purge.
//!
//! Purge discards the in-memory index; the bytes stay in their segment until every shard
//! of the core has purged past it, then the compactor deletes the segment
//! (runtime/compactor.rs) after writing a checkpoint of each shard's vote, purge point
//! and committed mark ([`ShardLog::checkpoint`]), so no deleted segment held the only
//! record of them. Recovery then starts from a later segment: a shard's first entry may
//! follow a gap that a later purge record covers (checked by [`ShardLog::check_recovered`]).
//! Whether an event stays readable is decided above this layer (the compactor never
//! purges below an event the replica can serve only from its log; with the archive
//! disabled the Raft log is never purged).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, CommittedLeaderId, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};

use super::record::{self, ArchivedLogRecord, LogRecord, RecordError, RecordPayload};
use super::TypeConfig;
use crate::log::spill::{PagedSeq, Spill, SpillError};
use crate::log::vouch::VouchPayload;
use crate::log::{Loc, LogEngine, LogError};

pub type NodeId = u64;

pub fn storage_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, msg: impl ToString) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(msg.to_string())).into()
}

/// Everything this node knows about one shard's Raft log.
#[derive(Debug, Default)]
pub struct ShardLog {
    /// Index of `locs[0]`.
    first_index: u64,
    /// Where each kept entry lives; full pages spill to the core's scratch file
    /// (log/spill.rs), so memory does not grow with the log.
    locs: PagedSeq<Loc>,
    /// Where `locs` spills its full pages (None: kept in memory).
    spill: Spill,
    /// (first index, segment) of each run of kept entries in one segment, ascending: the
    /// compactor's question "which segment does this shard still need" without a page read.
    segment_runs: VecDeque<(u64, u32)>,
    /// (first index, leader) at every leader change, ascending: the log ids of the entries.
    leaders: Vec<(u64, CommittedLeaderId<NodeId>)>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    /// The vote of the last vote record written (set when it is submitted, before it is
    /// durable): a checkpoint must never write an older vote after a newer one.
    vote_written: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    /// Recently appended entries: served without I/O until applied (and while not durable).
    cache: BTreeMap<u64, Entry<TypeConfig>>,
    /// Set when the vouch table says this node acknowledged a log up to this id and the
    /// recovered log ends before it (the log lost its tail or newest segment while the node
    /// was down). While set, the group abstains: it grants no vote and never campaigns
    /// (docs/ARCHITECTURE.md §3b); cleared once the log reaches it again.
    vouched_floor: Option<LogId<NodeId>>,
}

const VOUCH_HAS_VOTE: u64 = 1;
const VOUCH_VOTE_COMMITTED: u64 = 2;
const VOUCH_HAS_LAST: u64 = 4;

/// What a vouch slot says (log/vouch.rs): the vote and the last log id this node had made
/// durable when it last acknowledged anything for the shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vouched {
    pub vote: Option<Vote<NodeId>>,
    pub last: Option<LogId<NodeId>>,
}

impl Vouched {
    pub fn encode(&self) -> VouchPayload {
        let mut flags = 0;
        let mut words = [0u64; 6];
        if let Some(v) = self.vote {
            flags |= VOUCH_HAS_VOTE | if v.committed { VOUCH_VOTE_COMMITTED } else { 0 };
            words[0] = v.leader_id.term;
            words[1] = v.leader_id.node_id;
        }
        if let Some(l) = self.last {
            flags |= VOUCH_HAS_LAST;
            words[3] = l.leader_id.term;
            words[4] = l.leader_id.node_id;
            words[5] = l.index;
        }
        words[2] = flags;
        let mut out = [0u8; 48];
        for (i, w) in words.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    pub fn decode(p: &VouchPayload) -> Vouched {
        let w = |i: usize| u64::from_le_bytes(p[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let flags = w(2);
        let vote = (flags & VOUCH_HAS_VOTE != 0).then(|| {
            if flags & VOUCH_VOTE_COMMITTED != 0 {
                Vote::new_committed(w(0), w(1))
            } else {
                Vote::new(w(0), w(1))
            }
        });
        let last = (flags & VOUCH_HAS_LAST != 0).then(|| LogId::new(CommittedLeaderId::new(w(3), w(4)), w(5)));
        Vouched { vote, last }
    }
}

impl ShardLog {
    /// An empty log whose entry locations spill their full pages to `spill`.
    pub fn new(spill: Spill) -> Self {
        ShardLog { spill, ..ShardLog::default() }
    }

    /// Where this log's index (and its shard's state machine) spill full pages.
    pub fn spill(&self) -> Spill {
        self.spill.clone()
    }

    fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }

    fn leader_at(&self, index: u64) -> Option<CommittedLeaderId<NodeId>> {
        let pos = self.leaders.partition_point(|(first, _)| *first <= index);
        pos.checked_sub(1).map(|i| self.leaders[i].1)
    }

    pub fn last_log_id(&self) -> Option<LogId<NodeId>> {
        if self.locs.is_empty() {
            return self.last_purged;
        }
        let index = self.next_index() - 1;
        self.leader_at(index).map(|l| LogId::new(l, index))
    }

    /// Keep entry `index` at `loc`; false when a purge already covers it (nothing kept).
    /// `recovering`: the log's head segments may have been deleted, so the first entry
    /// kept may follow a gap (see `check_recovered`); a live append never may.
    fn push(&mut self, index: u64, leader: CommittedLeaderId<NodeId>, loc: Loc, recovering: bool) -> Result<bool, RecordError> {
        if self.last_purged.is_some_and(|p| index <= p.index) {
            // Already covered by the purge (and the snapshot behind it): nothing to keep.
            return Ok(false);
        }
        if self.locs.is_empty() && (self.first_index == 0 || (recovering && index > self.next_index())) {
            // The first entry kept: either the log's very first, or one after entries whose
            // segments were deleted (a purge record later in the log covers them; checked
            // by `check_recovered`).
            self.first_index = index;
        }
        if index != self.next_index() {
            return Err(RecordError::OutOfOrder(format!("log index {index} does not follow {}", self.next_index())));
        }
        if self.leaders.last().map(|(_, l)| *l) != Some(leader) {
            self.leaders.push((index, leader));
        }
        self.locs.push(loc, &self.spill);
        if self.segment_runs.back().is_none_or(|(_, segment)| *segment != loc.segment) {
            self.segment_runs.push_back((index, loc.segment));
        }
        if self.vouched_floor.is_some_and(|floor| self.last_log_id() >= Some(floor)) {
            tracing::info!(last_log_id = %LogId::new(leader, index), "the log caught up past what it had acknowledged before its damage: votes and elections resume");
            self.vouched_floor = None;
        }
        Ok(true)
    }

    /// Whether this group must abstain from votes and elections (see `vouched_floor`).
    pub fn abstaining(&self) -> bool {
        self.vouched_floor.is_some()
    }

    /// Whether a candidate whose log ends at `candidate_last` may get this damaged
    /// replica's vote: only when it is at least as up to date as what the replica had
    /// acknowledged (Raft's election restriction, applied to the log the replica vouched
    /// for instead of the shorter one it has). True when not damaged.
    pub fn may_vote_for(&self, candidate_last: Option<LogId<NodeId>>) -> bool {
        self.vouched_floor.is_none_or(|floor| candidate_last >= Some(floor))
    }

    /// What to vouch for now: the vote (or `vote`, about to be saved) and the last log id —
    /// never below a damage floor, so a second crash cannot erase the evidence.
    fn vouched(&self, vote: Option<Vote<NodeId>>) -> Vouched {
        Vouched { vote: vote.or(self.vote), last: self.last_log_id().max(self.vouched_floor) }
    }

    /// Compare the recovered log with the vouch table after recovery: a lost vote comes
    /// back from the table (it was durable and acknowledged); a log that ends before what
    /// it acknowledged sets the damage floor, and a committed vote of node `me` for itself
    /// is demoted to a plain vote (no leadership resumes on a damaged log). Returns a description of the damage found.
    pub fn check_vouched(&mut self, vouched: Vouched, me: NodeId) -> Option<String> {
        let mut found = Vec::new();
        if vouched.vote.is_some() && vouched.vote > self.vote {
            found.push(format!("vote {:?} restored from the vouch table (the log held {:?})", vouched.vote, self.vote));
            self.vote = vouched.vote;
        }
        if vouched.last > self.last_log_id() {
            found.push(format!("the log ends at {:?} but acknowledged up to {:?}", self.last_log_id(), vouched.last));
            self.vouched_floor = vouched.last;
            if let Some(v) = self.vote.filter(|v| v.committed && v.leader_id.node_id == me) {
                // openraft resumes leadership at startup from a committed vote for itself: a
                // leader that lost part of its log would then append *different* entries at
                // indexes its followers already hold in the same term, which they keep as the
                // same entries (log matching) — two histories under one term. Found by the
                // fault campaign (two appends acknowledged at one seq). Only a vote, not a
                // leadership, survives damage.
                found.push(format!("it led term {} and does not resume leadership", v.leader_id.term));
                self.vote = Some(Vote::new(v.leader_id.term, v.leader_id.node_id));
            }
        }
        (!found.is_empty()).then(|| found.join("; "))
    }

    fn truncate(&mut self, since: u64) -> Result<(), SpillError> {
        let keep = since.saturating_sub(self.first_index).min(self.locs.len() as u64) as usize;
        self.locs.truncate(keep)?;
        while self.segment_runs.back().is_some_and(|(first, _)| *first >= since) {
            self.segment_runs.pop_back();
        }
        if self.locs.is_empty() {
            // After a purge the first run may start before the first kept entry: a
            // truncation of everything kept must not leave it behind (it would name an
            // older segment than any kept entry's, and keep that segment on disk).
            self.segment_runs.clear();
        }
        self.leaders.retain(|(first, _)| *first < since);
        self.cache.retain(|i, _| *i < since);
        if self.locs.is_empty() && self.last_purged.is_none() {
            // Nothing kept and nothing purged: the next entry may start anywhere.
            self.first_index = 0;
        }
        if self.committed.is_some_and(|c| c.index >= since) {
            // Never happens in a correct Raft (committed entries are not truncated).
            panic!("truncating committed entries since {since}");
        }
        Ok(())
    }

    fn purge(&mut self, upto: LogId<NodeId>) {
        let drop_n = (upto.index + 1).saturating_sub(self.first_index).min(self.locs.len() as u64) as usize;
        self.locs.drop_front(drop_n);
        // Recovery of a log whose head segments were deleted can see kept entries before
        // an older purge record: those entries stay.
        self.first_index = if self.locs.is_empty() { upto.index + 1 } else { self.first_index.max(upto.index + 1) };
        // Keep the leader covering the new first index.
        let keep_from = self.leaders.partition_point(|(first, _)| *first <= upto.index).saturating_sub(1);
        self.leaders.drain(..keep_from);
        self.cache.retain(|i, _| *i > upto.index);
        // Keep the run holding the new first entry (runs start at their first index).
        while self.segment_runs.get(1).is_some_and(|(first, _)| *first <= self.first_index) {
            self.segment_runs.pop_front();
        }
        if self.locs.is_empty() {
            self.segment_runs.clear();
        }
        self.last_purged = Some(upto);
    }

    /// After recovery: the kept entries start right after the purge point (a gap there
    /// means a deleted segment held entries nothing purged: the log is damaged).
    pub fn check_recovered(&self) -> Result<(), String> {
        match self.last_purged {
            Some(p) if !self.locs.is_empty() && self.first_index != p.index + 1 => {
                Err(format!("entries {}..{} are missing (purged up to {})", p.index + 1, self.first_index, p.index))
            }
            _ => Ok(()),
        }
    }

    /// Segment of the first kept entry: every segment before it holds nothing this shard
    /// still needs, once [`Self::checkpoint`] has been written after them.
    pub fn first_segment(&self) -> Option<u32> {
        debug_assert_eq!(self.locs.is_empty(), self.segment_runs.is_empty(), "one run at least per kept entry");
        self.segment_runs.front().map(|(_, segment)| *segment)
    }

    /// Index of the last purged entry (0 when nothing was purged).
    pub fn purged_index(&self) -> u64 {
        self.last_purged.map_or(0, |p| p.index)
    }

    /// The records that restate this shard's vote, purge point and committed mark: written
    /// (and made durable) before older segments are deleted, so recovery finds them.
    pub fn checkpoint(&self, shard: u32) -> Vec<LogRecord> {
        let mut out = Vec::new();
        if let Some(v) = self.vote_written.or(self.vote) {
            out.push(LogRecord::Vote { shard, term: v.leader_id.term, node: v.leader_id.node_id, committed: v.committed });
        }
        if let Some(p) = self.last_purged {
            out.push(LogRecord::Purge { shard, term: p.leader_id.term, node: p.leader_id.node_id, index: p.index });
        }
        if let Some(c) = self.committed {
            out.push(LogRecord::Committed { shard, term: c.leader_id.term, node: c.leader_id.node_id, index: c.index });
        }
        out
    }

    /// Forget cached entries up to `index` (they are applied; reads go to disk).
    pub fn evict_cache_upto(&mut self, index: u64) {
        while let Some((&first, _)) = self.cache.first_key_value() {
            if first > index {
                break;
            }
            self.cache.pop_first();
        }
    }

    /// Where entry `index` lives (None when it is not kept).
    pub fn loc_of(&self, index: u64) -> Result<Option<Loc>, SpillError> {
        Ok(self.locs_of(&[index])?.pop().flatten())
    }

    /// Where the entries at `indexes` (ascending) live, None for those not kept; each
    /// spilled page is read once.
    pub fn locs_of(&self, indexes: &[u64]) -> Result<Vec<Option<Loc>>, SpillError> {
        // Indexes below the first kept one come first (they ascend) and answer None.
        let purged = indexes.partition_point(|&i| i < self.first_index);
        let slots: Vec<usize> = indexes[purged..].iter().map(|i| usize::try_from(i - self.first_index).unwrap_or(usize::MAX)).collect();
        let mut out = vec![None; purged];
        out.extend(self.locs.get_sorted(&slots)?);
        Ok(out)
    }

    /// Index of the last entry in the log (None when empty).
    pub fn last_index(&self) -> Option<u64> {
        self.last_log_id().map(|l| l.index)
    }

    pub fn vote(&self) -> Option<Vote<NodeId>> {
        self.vote
    }

    /// Replay one recovered record into this shard's state.
    pub fn recover(&mut self, loc: Loc, rec: &ArchivedLogRecord) -> Result<(), RecordError> {
        match rec {
            ArchivedLogRecord::Entry { term, node, index, .. } => {
                self.push(index.to_native(), CommittedLeaderId::new(term.to_native(), node.to_native()), loc, true)?;
            }
            ArchivedLogRecord::Vote { term, node, committed, .. } => {
                let v = if *committed {
                    Vote::new_committed(term.to_native(), node.to_native())
                } else {
                    Vote::new(term.to_native(), node.to_native())
                };
                self.vote = Some(v);
            }
            ArchivedLogRecord::Committed { term, node, index, .. } => {
                self.committed = Some(LogId::new(CommittedLeaderId::new(term.to_native(), node.to_native()), index.to_native()))
            }
            ArchivedLogRecord::Truncate { since, .. } => {
                self.truncate(since.to_native()).map_err(|e| RecordError::Invalid(format!("truncating the entry index: {e}")))?
            }
            ArchivedLogRecord::Purge { term, node, index, .. } => {
                self.purge(LogId::new(CommittedLeaderId::new(term.to_native(), node.to_native()), index.to_native()))
            }
        }
        Ok(())
    }
}

/// A shard's log store (and, cloned, its log reader).
#[derive(Clone)]
pub struct LogStore {
    pub shard: u32,
    pub engine: Rc<LogEngine>,
    pub log: Rc<RefCell<ShardLog>>,
}

pub fn entry_record(shard: u32, entry: &Entry<TypeConfig>) -> LogRecord {
    let payload = match &entry.payload {
        EntryPayload::Blank => RecordPayload::Blank,
        EntryPayload::Normal(proposal) => RecordPayload::Normal(proposal.0.to_vec()),
        EntryPayload::Membership(m) => RecordPayload::Membership(serde_json::to_string(m).expect("membership serializes")),
    };
    LogRecord::Entry { shard, term: entry.log_id.leader_id.term, node: entry.log_id.leader_id.node_id, index: entry.log_id.index, payload }
}

pub fn record_entry(rec: LogRecord) -> Result<Entry<TypeConfig>, RecordError> {
    let LogRecord::Entry { term, node, index, payload, .. } = rec else {
        return Err(RecordError::Invalid("expected an entry record".into()));
    };
    let payload = match payload {
        RecordPayload::Blank => EntryPayload::Blank,
        RecordPayload::Normal(cmds) => EntryPayload::Normal(super::Proposal::new(cmds)),
        RecordPayload::Membership(json) => {
            EntryPayload::Membership(serde_json::from_str(&json).map_err(|e| RecordError::Invalid(format!("membership record: {e}")))?)
        }
    };
    Ok(Entry { log_id: LogId::new(CommittedLeaderId::new(term, node), index), payload })
}

impl LogStore {
    pub fn new(shard: u32, engine: Rc<LogEngine>, log: Rc<RefCell<ShardLog>>) -> Self {
        LogStore { shard, engine, log }
    }

    /// Write a bookkeeping record and wait until it is durable.
    async fn write_durable(&self, rec: LogRecord, vouched: Vouched, subject: ErrorSubject<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = rec.encode();
        let (tx, rx) = futures::channel::oneshot::channel::<Result<(), LogError>>();
        self.engine
            .submit(&[&bytes], Box::new(move |r| drop(tx.send(r))))
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, e))?;
        if self.engine.vouches() {
            self.engine.vouch(self.shard, &vouched.encode());
        }
        rx.await
            .map_err(|_| storage_error(subject.clone(), ErrorVerb::Write, "log engine dropped the write"))?
            .map_err(|e| storage_error(subject, ErrorVerb::Write, e))
    }

    /// Write a bookkeeping record in log order without waiting: a later durable record
    /// makes it durable too. `lazy` records do not even ask for a write of their own.
    #[allow(clippy::result_large_err)] // openraft's StorageError, returned as the storage traits require.
    fn write_ordered(&self, rec: LogRecord, lazy: bool, subject: ErrorSubject<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = rec.encode();
        let placed = if lazy { self.engine.submit_lazy(&[&bytes]) } else { self.engine.submit(&[&bytes], Box::new(|_| {})) };
        placed.map(|_| ()).map_err(|e| storage_error(subject, ErrorVerb::Write, e))
    }

    /// Stage this shard's vouch slot as `log` stands now (nothing on a single node).
    fn vouch(&self, log: &ShardLog) {
        if self.engine.vouches() {
            self.engine.vouch(self.shard, &log.vouched(None).encode());
        }
    }

    /// Entries `[start, end)` that exist, in order, from the cache or the disk.
    pub async fn read_entries(&self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let mut disk: Vec<(u64, Loc)> = Vec::new();
        let mut slots: Vec<Option<Entry<TypeConfig>>> = Vec::new();
        {
            let log = self.log.borrow();
            let start = start.max(log.first_index);
            let end = end.min(log.next_index());
            // The usual case (entries just appended, read back to be applied): all in the
            // cache, so the answer is built directly (no slot list).
            let cached: Option<Vec<Entry<TypeConfig>>> = (start..end).map(|index| log.cache.get(&index).cloned()).collect();
            if let Some(entries) = cached {
                return Ok(entries);
            }
            let uncached: Vec<u64> = (start..end).filter(|index| !log.cache.contains_key(index)).collect();
            let locs = log.locs_of(&uncached).map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let mut locs = uncached.into_iter().zip(locs);
            for index in start..end {
                if let Some(e) = log.cache.get(&index) {
                    slots.push(Some(e.clone()));
                } else {
                    let (i, loc) = locs.next().expect("one location per uncached index");
                    debug_assert_eq!(i, index);
                    disk.push((index, loc.expect("index within the kept range")));
                    slots.push(None);
                }
            }
        }
        let mut from_disk = Vec::with_capacity(disk.len());
        if !disk.is_empty() {
            let locs: Vec<Loc> = disk.iter().map(|(_, l)| *l).collect();
            let bufs = self.engine.read_many(&locs).await.map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            for ((index, _), buf) in disk.iter().zip(bufs) {
                let entry = record::decode(buf.payload())
                    .and_then(record_entry)
                    .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                assert_eq!(entry.log_id.index, *index, "the index maps to the entry it names");
                from_disk.push(entry);
            }
        }
        let mut out = Vec::with_capacity(slots.len());
        let mut disk_iter = from_disk.into_iter();
        for slot in slots {
            match slot {
                Some(e) => out.push(e),
                None => out.push(disk_iter.next().expect("one disk entry per slot")),
            }
        }
        Ok(out)
    }
}

fn range_to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let (start, end) = range_to_bounds(&range);
        self.read_entries(start, end).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let log = self.log.borrow();
        Ok(LogState { last_purged_log_id: log.last_purged, last_log_id: log.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let rec = LogRecord::Vote { shard: self.shard, term: vote.leader_id.term, node: vote.leader_id.node_id, committed: vote.committed };
        let vouched = self.log.borrow().vouched(Some(*vote));
        self.log.borrow_mut().vote_written = Some(*vote);
        self.write_durable(rec, vouched, ErrorSubject::Vote).await?;
        self.log.borrow_mut().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.log.borrow().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        if let Some(c) = committed {
            let rec = LogRecord::Committed { shard: self.shard, term: c.leader_id.term, node: c.leader_id.node_id, index: c.index };
            // The committed mark rides along with the next write (see `submit_lazy`).
            self.write_ordered(rec, true, ErrorSubject::Store)?;
        }
        self.log.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.log.borrow().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        // The record shares the proposal's commands (reference counts, no copies).
        let encoded: Vec<Vec<u8>> = entries.iter().map(|e| entry_record(self.shard, e).encode()).collect();
        let locs = self
            .engine
            .submit(&encoded, Box::new(move |r| callback.log_io_completed(r.map_err(io::Error::other))))
            .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let mut log = self.log.borrow_mut();
        for (entry, loc) in entries.into_iter().zip(locs) {
            let kept = log
                .push(entry.log_id.index, entry.log_id.leader_id, loc, false)
                .map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            if kept {
                log.cache.insert(entry.log_id.index, entry);
            }
        }
        self.vouch(&log);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_ordered(LogRecord::Truncate { shard: self.shard, since: log_id.index }, false, ErrorSubject::Logs)?;
        let mut log = self.log.borrow_mut();
        log.truncate(log_id.index).map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        self.vouch(&log);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let rec = LogRecord::Purge { shard: self.shard, term: log_id.leader_id.term, node: log_id.leader_id.node_id, index: log_id.index };
        self.write_ordered(rec, false, ErrorSubject::Logs)?;
        self.log.borrow_mut().purge(log_id);
        Ok(())
    }
}

/// Open a core's log engine and rebuild every shard's log index from it.
pub async fn open_core_log(
    dir: &std::path::Path,
    segment_bytes: u64,
) -> Result<(Rc<LogEngine>, std::collections::HashMap<u32, Rc<RefCell<ShardLog>>>), LogError> {
    let mut shards: std::collections::HashMap<u32, Rc<RefCell<ShardLog>>> = std::collections::HashMap::new();
    let engine = LogEngine::open(dir, segment_bytes, &mut |loc, payload| {
        let rec = record::access(payload)?;
        let log = shards.entry(rec.shard()).or_default();
        Ok(log.borrow_mut().recover(loc, rec)?)
    })
    .await?;
    Ok((engine, shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(i: u64) -> Loc {
        Loc { segment: 1 + (i / 10) as u32, offset: 4096 + i as u32, payload_len: 1 }
    }

    fn id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Recovery of a log whose head segments were deleted: an old purge record, then kept
    /// entries after a gap (their predecessors were in the deleted segments), then the
    /// checkpoint's purge record that covers the gap.
    #[test]
    fn a_log_with_deleted_head_segments_recovers_from_the_checkpoint() {
        let mut log = ShardLog::default();
        log.purge(id(40));
        for i in 45..=60 {
            log.push(i, CommittedLeaderId::new(1, 1), loc(i), true).unwrap();
        }
        assert!(log.check_recovered().is_err(), "entries 41..44 are missing until a purge covers them");
        log.purge(id(50));
        assert_eq!(log.check_recovered(), Ok(()));
        assert_eq!((log.first_index, log.first_segment(), log.last_log_id()), (51, Some(6), Some(id(60))));
        assert_eq!(log.loc_of(51).unwrap(), Some(loc(51)));
        // A checkpoint purge record older than the first kept entry leaves the entries.
        let mut log = ShardLog::default();
        for i in 45..=60 {
            log.push(i, CommittedLeaderId::new(1, 1), loc(i), true).unwrap();
        }
        log.purge(id(44));
        assert_eq!((log.check_recovered(), log.first_index, log.locs.len()), (Ok(()), 45, 16));
        // A hole that no purge covers is damage, found at startup.
        log.purge(id(30));
        assert_eq!(log.first_index, 45);
        let mut holed = ShardLog::default();
        holed.purge(id(10));
        holed.push(20, CommittedLeaderId::new(1, 1), loc(20), true).unwrap();
        let mut live = ShardLog::default();
        live.purge(id(10));
        assert!(live.push(20, CommittedLeaderId::new(1, 1), loc(20), false).is_err(), "a live append never skips");
        assert!(holed.check_recovered().unwrap_err().contains("11..20"));
    }

    /// An index long enough to spill answers like one kept in memory, through appends,
    /// a truncation that cuts into a spilled page, and a purge; the compactor's segment
    /// question needs no page read.
    #[test]
    fn a_spilled_entry_index_answers_like_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::log::spill::SpillFile::create(&dir.path().join("index.spill")).unwrap();
        let (mut spilled, mut plain) = (ShardLog::new(Some(file.clone())), ShardLog::default());
        let leader = CommittedLeaderId::new(1, 1);
        for log in [&mut spilled, &mut plain] {
            for i in 1..=1000 {
                log.push(i, leader, loc(i), false).unwrap();
            }
            log.truncate(500).unwrap(); // inside a spilled page (85 locations per page)
            for i in 500..=700 {
                log.push(i, leader, loc(i + 7), false).unwrap();
            }
            log.purge(id(333));
        }
        assert!(file.pages() > 0 && spilled.locs.spilled_pages() > 0, "full pages went to the file");
        let all: Vec<u64> = (300..=710).collect();
        assert_eq!(spilled.locs_of(&all).unwrap(), plain.locs_of(&all).unwrap());
        assert_eq!(spilled.loc_of(334).unwrap(), Some(loc(334)));
        assert_eq!(spilled.loc_of(600).unwrap(), Some(loc(607)));
        assert_eq!((spilled.loc_of(333).unwrap(), spilled.loc_of(701).unwrap()), (None, None));
        assert_eq!((spilled.first_segment(), spilled.last_log_id()), (Some(loc(334).segment), Some(id(700))));
        assert_eq!(spilled.first_segment(), plain.first_segment());
        spilled.purge(id(700));
        assert_eq!((spilled.first_segment(), spilled.locs.len(), file.pages()), (None, 0, 0), "purged pages free their slots");
    }

    /// Regression (review of session 22): a purge keeps the run holding the new first
    /// entry, which may start below it; truncating everything kept after that must leave
    /// no run behind, and the next entry's segment is the first one needed.
    #[test]
    fn truncating_every_kept_entry_after_a_purge_leaves_no_segment_run() {
        let mut log = ShardLog::default();
        let leader = CommittedLeaderId::new(1, 1);
        for i in 1..=25 {
            log.push(i, leader, loc(i), false).unwrap();
        }
        log.purge(id(22));
        assert_eq!(log.first_segment(), Some(loc(23).segment));
        log.truncate(23).unwrap();
        assert_eq!((log.locs.len(), log.first_segment()), (0, None));
        log.push(23, leader, loc(53), false).unwrap();
        assert_eq!(log.first_segment(), Some(loc(53).segment));
    }

    /// The checkpoint restates the newest vote even while its record is not durable yet.
    #[test]
    fn the_checkpoint_restates_the_vote_written_last() {
        let mut log = ShardLog { vote: Some(Vote::new(3, 1)), ..ShardLog::default() };
        log.vote_written = Some(Vote::new(4, 2));
        log.purge(id(7));
        log.committed = Some(id(7));
        let records = log.checkpoint(9);
        assert!(matches!(records[0], LogRecord::Vote { shard: 9, term: 4, node: 2, committed: false }));
        assert!(matches!(records[1], LogRecord::Purge { shard: 9, index: 7, .. }));
        assert!(matches!(records[2], LogRecord::Committed { shard: 9, index: 7, .. }));
    }
}
