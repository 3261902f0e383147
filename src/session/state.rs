//! The deterministic per-shard state machine: session headers, idempotency
//! memory, the seq → event position map (a position is the Raft log index of the entry carrying the event and the event's slot in that entry, `crate::raft::position`), and a small in-memory tail of rendered
//! events per session. Pure: no clocks or randomness, and no I/O but reading back its own spilled index pages (below).
//!
//! Invariants (per session):
//! - `last_seq` equals the number of appended events; seqs are 1, 2, 3, … with
//!   no gaps, and `positions[seq - trimmed - 1]` is the position of event `seq`;
//!   `trimmed <= archived_seq <= last_seq` (events `1..=trimmed` are served by the
//!   Postgres archive only, SPEC §5).
//! - `tail` holds the rendered events `last_seq - tail.len() + 1 ..= last_seq`
//!   (at most `tail_keep` of them), as `Arc<str>` so readers on other threads
//!   can take them without copying.
//! - `carried` holds the rendered events `trimmed + 1 ..= trimmed + carried.len()` that
//!   came with a snapshot (their log entries may be purged on this replica, ARCHITECTURE
//!   §15b); they leave only by trimming, never by appends.
//! - `keys` and `key_order` hold the same idempotency keys (as 128-bit hashes); `key_order` is in
//!   ascending seq order and only keys with `seq > last_seq - IDEMPOTENCY_KEYS_REMEMBERED_MIN`
//!   are kept, which bounds memory per session.
//! - Applying the same command sequence (same positions) yields the same state,
//!   the same outcomes and byte-identical snapshots on every replica with the same
//!   `tail_keep` (trimming keeps that many events local): apply reads only the
//!   command and the state, and snapshots sort sessions by id.
//!
//! The caller must apply each committed entry exactly once, in log order.
//! Memory: tails and idempotency keys are bounded per session; `positions` (8 bytes
//! per event not yet trimmed: with the archive on, the unarchived events plus
//! `tail_keep`; without it, the session's whole history) is what lets readers find
//! events that have left the tail, and keeps only its newest page in memory (full
//! pages spill to the core's scratch file, `crate::log::spill`) when the state was
//! built [`ShardState::with_spill`]. Reading a spilled page is the state's only I/O: a
//! `pread` of a scratch file, never state (the file is rebuilt with the state). Snapshot encoding lives in
//! `snapshot.rs` (a sibling module with access to these private fields).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::command::{format_timestamp, push_timestamp, Command, EventBody};
use super::error::ApiError;
use super::json::push_json_string;
use crate::log::spill::{PagedSeq, Spill, SpillError};

/// The public, mutable-by-append part of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    pub id: String,
    pub title: Option<String>,
    /// Compact JSON text of an object.
    pub metadata_json: String,
    pub last_seq: u64,
    pub created_micros: i64,
    pub updated_micros: i64,
}

impl SessionHeader {
    /// `{"id","title","metadata","last_seq","created_at","updated_at"}`; title is
    /// null when absent and metadata is spliced from its stored JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.id.len() + self.metadata_json.len());
        out.push_str("{\"id\":");
        push_json_string(&mut out, &self.id);
        out.push_str(",\"title\":");
        push_opt_string(&mut out, self.title.as_deref());
        out.push_str(",\"metadata\":");
        out.push_str(&self.metadata_json);
        out.push_str(",\"last_seq\":");
        out.push_str(&self.last_seq.to_string());
        out.push_str(",\"created_at\":");
        push_json_string(&mut out, &format_timestamp(self.created_micros));
        out.push_str(",\"updated_at\":");
        push_json_string(&mut out, &format_timestamp(self.updated_micros));
        out.push('}');
        out
    }
}

fn push_opt_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_json_string(out, s),
        None => out.push_str("null"),
    }
}

/// Result of applying (or pre-checking) one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Created(SessionHeader),
    /// `deduped`: the idempotency key matched an earlier identical event, whose
    /// `seq` is returned; nothing was appended. `last_seq` is the session's
    /// current last seq either way.
    Appended {
        seq: u64,
        last_seq: u64,
        deduped: bool,
    },
    /// `session_exists` 409, `session_not_found` 404, `idempotency_conflict` 409,
    /// `expected_seq_conflict` 409.
    Rejected(ApiError),
    /// The session's archive watermark after a [`Command::MarkArchived`].
    Marked {
        archived_seq: u64,
    },
}

/// An event of a page that is no longer in memory: read log entry `position`
/// from disk and render it with `render_event(seq, …)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdEvent {
    pub seq: u64,
    pub position: u64,
}

/// One page of a session's events with `seq > after`, at most `max` of them,
/// contiguous. Events trimmed after archiving come first, then those a snapshot carried
/// into memory, then the log's, then the memory tail's (each tier is a suffix of the one
/// before): seqs `after+1 ..= after+archived` are in the archive only, the next
/// `carried.len()` in memory, the next `cold.len()` on disk, then
/// `first_hot_seq() ..= next_cursor()` in memory. Serve them in that order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HotRead {
    /// The cursor the page was read after.
    pub after: u64,
    /// The session's last seq when the page was taken; the page never passes it.
    pub last_seq: u64,
    /// Events `after+1 ..= after+archived` were trimmed from this replica after the
    /// archive confirmed them: read them from Postgres.
    pub archived: u64,
    /// Rendered events right after the archived ones, restored from a snapshot.
    pub carried: Vec<Arc<str>>,
    /// Events to read from disk, ascending and gap-free, right after the carried ones.
    pub cold: Vec<ColdEvent>,
    /// Rendered events that directly follow `cold`, ascending and gap-free.
    pub hot: Vec<Arc<str>>,
}

impl HotRead {
    /// Number of events in the page.
    pub fn len(&self) -> usize {
        self.archived as usize + self.carried.len() + self.cold.len() + self.hot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Seq of `hot[0]`, i.e. the first seq of the tail's part of the page.
    pub fn first_hot_seq(&self) -> u64 {
        let before = self.archived.saturating_add(self.carried.len() as u64).saturating_add(self.cold.len() as u64);
        self.after.saturating_add(1).saturating_add(before)
    }

    /// Cursor for the next page: the seq of the page's last event, or `after`
    /// when the page is empty.
    pub fn next_cursor(&self) -> u64 {
        self.after.saturating_add(self.len() as u64)
    }
}

/// Borrowed fields of a stored event, from an owned [`EventBody`] or straight from an
/// archived log record (replay renders from the read buffer without decoding a copy).
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    pub event_type: &'a str,
    pub payload_json: &'a str,
    pub actor: &'a str,
    pub source: Option<&'a str>,
    pub metadata_json: &'a str,
    pub refs_json: &'a str,
}

impl<'a> From<&'a EventBody> for EventParts<'a> {
    fn from(e: &'a EventBody) -> Self {
        EventParts {
            event_type: &e.event_type,
            payload_json: &e.payload_json,
            actor: &e.actor,
            source: e.source.as_deref(),
            metadata_json: &e.metadata_json,
            refs_json: &e.refs_json,
        }
    }
}

/// Render one event as the public JSON object
/// `{"seq","type","payload","actor","source","metadata","refs","idempotency_key","inserted_at"}`.
/// payload/metadata/refs are spliced from their stored JSON text; source and
/// idempotency_key are null when absent.
pub fn render_event(seq: u64, event: &EventBody, idempotency_key: Option<&str>, inserted_micros: i64) -> String {
    render_event_parts(seq, event.into(), idempotency_key, inserted_micros)
}

/// [`render_event`] straight into shared memory: rendered in a per-thread scratch buffer,
/// then copied once into the `Arc` (one allocation per event instead of two).
pub fn render_event_shared(seq: u64, event: &EventBody, idempotency_key: Option<&str>, inserted_micros: i64) -> Arc<str> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write_event(out, seq, event.into(), idempotency_key, inserted_micros);
        let shared = Arc::from(out.as_str());
        // A rare huge event must not pin its size in the scratch buffer.
        if out.capacity() > crate::limits::RENDER_SCRATCH_KEEP_BYTES {
            *out = String::new();
        }
        shared
    })
}

/// [`render_event`] over borrowed parts.
pub fn render_event_parts(seq: u64, event: EventParts<'_>, idempotency_key: Option<&str>, inserted_micros: i64) -> String {
    let mut out = String::with_capacity(192 + event.payload_json.len() + event.metadata_json.len() + event.refs_json.len());
    write_event(&mut out, seq, event, idempotency_key, inserted_micros);
    out
}

fn write_event(out: &mut String, seq: u64, event: EventParts<'_>, idempotency_key: Option<&str>, inserted_micros: i64) {
    out.reserve(192 + event.payload_json.len() + event.metadata_json.len() + event.refs_json.len());
    out.push_str("{\"seq\":");
    out.push_str(itoa::Buffer::new().format(seq));
    out.push_str(",\"type\":");
    push_json_string(out, event.event_type);
    out.push_str(",\"payload\":");
    out.push_str(event.payload_json);
    out.push_str(",\"actor\":");
    push_json_string(out, event.actor);
    out.push_str(",\"source\":");
    push_opt_string(out, event.source);
    out.push_str(",\"metadata\":");
    out.push_str(event.metadata_json);
    out.push_str(",\"refs\":");
    out.push_str(event.refs_json);
    out.push_str(",\"idempotency_key\":");
    push_opt_string(out, idempotency_key);
    out.push_str(",\"inserted_at\":\"");
    // An RFC 3339 timestamp has nothing to escape.
    push_timestamp(out, inserted_micros);
    out.push_str("\"}");
}

/// What an idempotency key is remembered by (128 bits: collisions are not a practical
/// concern, and a key of any length costs the same memory).
pub(super) fn key_hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RememberedKey {
    pub(super) seq: u64,
    pub(super) fingerprint: u128,
}

/// How strictly `expected_seq` is judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Committed order: any mismatch is a conflict.
    Apply,
    /// Before proposing: appends still in flight may raise `last_seq`, so only
    /// `expected_seq < last_seq` is certain to fail (last_seq never decreases).
    Precheck,
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) header: SessionHeader,
    /// Events `1..=archived_seq` are confirmed in Postgres (SPEC §5); `<= last_seq`, never
    /// decreases.
    pub(super) archived_seq: u64,
    /// Events `1..=trimmed` left this replica's hot tier after the archive confirmed them
    /// (`trimmed <= archived_seq`, never decreases): only Postgres serves them.
    pub(super) trimmed: u64,
    /// Log position of each event `trimmed+1 ..= last_seq`, in order; full pages spill
    /// to the core's scratch file (log/spill.rs), so memory does not grow with history.
    pub(super) positions: PagedSeq<u64>,
    pub(super) tail: VecDeque<Arc<str>>,
    /// Rendered events `trimmed+1 ..= trimmed+carried.len()` restored from a snapshot (the
    /// snapshot carries every untrimmed event, so the log below it can be purged); shares
    /// its `Arc`s with `tail` where they overlap. Empty unless restored.
    pub(super) carried: VecDeque<Arc<str>>,
    /// Idempotency keys by their xxh3-128 hash: memory per remembered key is fixed,
    /// however long the client's keys are.
    pub(super) keys: HashMap<u128, RememberedKey>,
    pub(super) key_order: VecDeque<(u64, u128)>,
}

impl Session {
    pub(super) fn new(header: SessionHeader) -> Self {
        Session {
            header,
            archived_seq: 0,
            trimmed: 0,
            positions: PagedSeq::new(),
            tail: VecDeque::new(),
            carried: VecDeque::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
        }
    }

    /// The SPEC's order: idempotency first (so a retry with a now-stale
    /// expected_seq still gets its original answer), then expected_seq.
    fn check_append(&self, key: Option<&str>, fingerprint: u128, expected_seq: Option<u64>, mode: Mode) -> Option<Outcome> {
        let last_seq = self.header.last_seq;
        if let Some(k) = key {
            if let Some(seen) = self.keys.get(&key_hash(k)) {
                return Some(if seen.fingerprint == fingerprint {
                    Outcome::Appended { seq: seen.seq, last_seq, deduped: true }
                } else {
                    Outcome::Rejected(ApiError::idempotency_conflict())
                });
            }
        }
        let conflict = match (expected_seq, mode) {
            (Some(e), Mode::Apply) => e != last_seq,
            (Some(e), Mode::Precheck) => e < last_seq,
            (None, _) => false,
        };
        match expected_seq {
            Some(e) if conflict => Some(Outcome::Rejected(ApiError::expected_seq_conflict(e, last_seq))),
            _ => None,
        }
    }

    /// Full pages of positions go to `spill`.
    fn append(&mut self, position: u64, event: &EventBody, key: Option<&str>, now_micros: i64, tail_keep: usize, spill: &Spill) -> Outcome {
        let Some(seq) = self.header.last_seq.checked_add(1) else {
            return Outcome::Rejected(ApiError::internal("session seq space exhausted"));
        };
        // Contiguity: one position per local seq, so event `seq` lands at
        // positions[seq - trimmed - 1].
        debug_assert_eq!(self.positions.len() as u64 + self.trimmed, self.header.last_seq);
        if tail_keep > 0 {
            // Rendered once here so every read of a hot event is a cheap Arc clone.
            self.tail.push_back(render_event_shared(seq, event, key, now_micros));
            while self.tail.len() > tail_keep {
                self.tail.pop_front();
            }
        }
        self.positions.push(position, spill);
        self.header.last_seq = seq;
        self.header.updated_micros = now_micros;
        if let Some(k) = key {
            let k = key_hash(k);
            self.keys.insert(k, RememberedKey { seq, fingerprint: event.fingerprint });
            self.key_order.push_back((seq, k));
        }
        self.evict_keys();
        Outcome::Appended { seq, last_seq: seq, deduped: false }
    }

    /// Forget keys whose seq <= last_seq - IDEMPOTENCY_KEYS_REMEMBERED_MIN.
    pub(super) fn evict_keys(&mut self) {
        let window = crate::limits::IDEMPOTENCY_KEYS_REMEMBERED_MIN;
        while let Some(&(seq, _)) = self.key_order.front() {
            if seq.saturating_add(window) > self.header.last_seq {
                break;
            }
            if let Some((seq, key)) = self.key_order.pop_front() {
                if self.keys.get(&key).is_some_and(|r| r.seq == seq) {
                    self.keys.remove(&key);
                }
            }
        }
    }

    /// Drop from the hot tier what the archive confirmed, keeping the last `tail_keep`
    /// events (SPEC §5): the positions of events `trimmed+1 ..= min(archived_seq,
    /// last_seq - tail_keep)`. Returns how many events were trimmed now.
    fn trim(&mut self, tail_keep: usize) -> u64 {
        let to = self.archived_seq.min(self.header.last_seq.saturating_sub(tail_keep as u64));
        if to <= self.trimmed {
            return 0;
        }
        let n = to - self.trimmed;
        self.positions.drop_front(n as usize);
        let carried = (n as usize).min(self.carried.len());
        self.carried.drain(..carried);
        self.trimmed = to;
        n
    }

    /// The seqs served from the log only: after the trimmed and carried events and
    /// before the tail (`first > last` when there are none).
    fn log_only_range(&self) -> (u64, u64) {
        let first = self.carried_end() + 1;
        let last = self.tail_first_seq().max(first) - 1;
        (first, last)
    }

    /// Seq of the last event of `carried` (`trimmed` when it is empty).
    pub(super) fn carried_end(&self) -> u64 {
        self.trimmed + self.carried.len() as u64
    }

    /// Seq of `tail[0]` (or `last_seq + 1` when the tail is empty).
    pub(super) fn tail_first_seq(&self) -> u64 {
        // tail.len() <= last_seq by construction; saturating keeps this total anyway.
        self.header.last_seq.saturating_sub(self.tail.len() as u64).saturating_add(1)
    }
}

/// All sessions of one shard.
#[derive(Debug, Clone)]
pub struct ShardState {
    pub(super) sessions: HashMap<String, Session>,
    pub(super) tail_keep: usize,
    pub(super) last_applied: u64,
    /// Events trimmed from the hot tier since this state was built (a metrics counter;
    /// not in snapshots).
    pub(super) trimmed_total: u64,
    /// Where the sessions' position maps spill their full pages (not in snapshots).
    pub(super) spill: Spill,
}

impl ShardState {
    /// `tail_keep`: rendered events kept in memory per session (0 = none); every position
    /// map stays in memory (tests, tools).
    pub fn new(tail_keep: usize) -> Self {
        Self::with_spill(tail_keep, None)
    }

    /// As [`Self::new`], with the sessions' position maps spilling full pages to `spill`
    /// (the core's scratch file): memory per session stays bounded whatever its history.
    pub fn with_spill(tail_keep: usize, spill: Spill) -> Self {
        ShardState { sessions: HashMap::new(), tail_keep, last_applied: 0, trimmed_total: 0, spill }
    }

    /// Apply one committed command found at event position `position` (strictly increasing).
    /// Deterministic: same command sequence → same state and outcomes on every replica.
    pub fn apply(&mut self, position: u64, cmd: &Command) -> Outcome {
        self.last_applied = self.last_applied.max(position);
        match cmd {
            Command::CreateSession { id, title, metadata_json, now_micros } => {
                if self.sessions.contains_key(id.as_str()) {
                    return Outcome::Rejected(ApiError::session_exists(id));
                }
                let header = SessionHeader {
                    id: id.clone(),
                    title: title.clone(),
                    metadata_json: metadata_json.clone(),
                    last_seq: 0,
                    created_micros: *now_micros,
                    updated_micros: *now_micros,
                };
                self.sessions.insert(id.clone(), Session::new(header.clone()));
                Outcome::Created(header)
            }
            Command::Append { session_id, event, idempotency_key, expected_seq, now_micros } => {
                let tail_keep = self.tail_keep;
                let Some(s) = self.sessions.get_mut(session_id.as_str()) else {
                    return Outcome::Rejected(ApiError::session_not_found(session_id));
                };
                let key = idempotency_key.as_deref();
                if let Some(o) = s.check_append(key, event.fingerprint, *expected_seq, Mode::Apply) {
                    return o;
                }
                let outcome = s.append(position, event, key, *now_micros, tail_keep, &self.spill);
                self.trimmed_total += s.trim(tail_keep);
                outcome
            }
            Command::MarkArchived { session_id, archived_seq } => {
                let Some(s) = self.sessions.get_mut(session_id.as_str()) else {
                    return Outcome::Rejected(ApiError::session_not_found(session_id));
                };
                // Monotonic and bounded: a late or repeated mark (an old leader's, a retry)
                // never moves the watermark back, and never past what exists.
                s.archived_seq = s.archived_seq.max((*archived_seq).min(s.header.last_seq));
                let archived_seq = s.archived_seq;
                self.trimmed_total += s.trim(self.tail_keep);
                Outcome::Marked { archived_seq }
            }
        }
    }

    /// Advisory pre-check a leader may run before proposing (same rules, no
    /// mutation): returns Some(outcome) when the command would certainly be
    /// rejected or deduped. Sound only when this state has applied everything
    /// that was acknowledged to clients (e.g. a leader that applied its term's
    /// first entry); a lagging follower could wrongly report `session_not_found`.
    /// `expected_seq` greater than the current last seq passes, since appends
    /// still in flight may reach it. Apply stays the authority either way.
    pub fn precheck(&self, cmd: &Command) -> Option<Outcome> {
        match cmd {
            Command::CreateSession { id, .. } => {
                self.sessions.contains_key(id.as_str()).then(|| Outcome::Rejected(ApiError::session_exists(id)))
            }
            Command::Append { session_id, event, idempotency_key, expected_seq, .. } => match self.sessions.get(session_id.as_str()) {
                None => Some(Outcome::Rejected(ApiError::session_not_found(session_id))),
                Some(s) => s.check_append(idempotency_key.as_deref(), event.fingerprint, *expected_seq, Mode::Precheck),
            },
            Command::MarkArchived { .. } => None,
        }
    }

    /// The archive watermark of `session` (0 when nothing is archived or it is unknown).
    pub fn archived_seq(&self, session: &str) -> u64 {
        self.sessions.get(session).map_or(0, |s| s.archived_seq)
    }

    /// Sessions with committed events not yet archived: `(session, archived_seq, last_seq)`
    /// with `archived_seq < last_seq`, in no particular order. O(sessions of the shard).
    pub fn unarchived(&self) -> impl Iterator<Item = (&str, u64, u64)> + '_ {
        self.sessions
            .iter()
            .filter(|(_, s)| s.archived_seq < s.header.last_seq)
            .map(|(id, s)| (id.as_str(), s.archived_seq, s.header.last_seq))
    }

    /// Per session, the events this replica holds only in its log (neither trimmed nor in
    /// memory): what a snapshot must read from the log to carry every untrimmed event.
    /// Sessions without such events are left out. O(sessions + those events).
    /// Errors when a spilled page of positions cannot be read back.
    pub fn log_only_events(&self) -> Result<Vec<(String, Vec<ColdEvent>)>, SpillError> {
        let mut out = Vec::new();
        for (id, s) in &self.sessions {
            let (first, last) = s.log_only_range();
            if first <= last {
                let lo = (first - s.trimmed - 1) as usize;
                let positions = s.positions.range(lo, lo + (last - first + 1) as usize)?;
                let cold = (first..=last).zip(positions).map(|(seq, position)| ColdEvent { seq, position }).collect();
                out.push((id.clone(), cold));
            }
        }
        Ok(out)
    }

    /// How many events this replica holds only in its log (see [`Self::log_only_events`]).
    pub fn log_only_event_count(&self) -> u64 {
        self.sessions
            .values()
            .map(|s| {
                let (first, last) = s.log_only_range();
                (last + 1).saturating_sub(first)
            })
            .sum()
    }

    /// The lowest position whose log entry holds an untrimmed event that is not carried
    /// (the tail does not count: its events leave it on later appends, archived or not);
    /// None when every untrimmed event is carried. The log may be purged below it once a
    /// snapshot covers the purge — after a snapshot is built its events are adopted as
    /// carried ([`Self::adopt_carried`]), so this is then above the snapshot's index.
    /// Errors when a spilled page of positions cannot be read back.
    pub fn lowest_uncarried_position(&self) -> Result<Option<u64>, SpillError> {
        let mut lowest = None;
        for s in self.sessions.values() {
            if let Some(p) = s.positions.get(s.carried.len())? {
                lowest = Some(lowest.map_or(p, |l: u64| l.min(p)));
            }
        }
        Ok(lowest)
    }

    /// Every untrimmed event of `session`, rendered, in seq order from `trimmed + 1`: from
    /// memory (carried, tail) or `log_only` (what [`Self::log_only_events`] listed for it,
    /// read from the log). None when the session is unknown or `log_only` does not fit.
    pub fn untrimmed_texts(&self, session: &str, log_only: &[Arc<str>]) -> Option<(u64, Vec<Arc<str>>)> {
        let s = self.sessions.get(session)?;
        let (first, last) = s.log_only_range();
        if log_only.len() as u64 != (last + 1).saturating_sub(first) {
            return None;
        }
        let (carried_end, tail_start) = (s.carried_end(), s.tail_first_seq());
        let texts = (s.trimmed + 1..=s.header.last_seq)
            .map(|seq| {
                if seq <= carried_end {
                    s.carried[(seq - s.trimmed - 1) as usize].clone()
                } else if seq >= tail_start {
                    s.tail[(seq - tail_start) as usize].clone()
                } else {
                    log_only[(seq - carried_end - 1) as usize].clone()
                }
            })
            .collect();
        Some((s.trimmed + 1, texts))
    }

    /// Keep `texts` (events `first_seq ..`, rendered; a snapshot's) in memory as carried
    /// events of `session`, from its current `trimmed + 1` on: after a snapshot is built,
    /// the log below it can be purged although this replica's tail will later evict them.
    /// Never shortens what is carried; ignores texts that do not reach `trimmed + 1`.
    pub fn adopt_carried(&mut self, session: &str, first_seq: u64, texts: &[Arc<str>]) {
        let Some(s) = self.sessions.get_mut(session) else { return };
        let Some(skip) = (s.trimmed + 1).checked_sub(first_seq) else { return };
        let Some(keep) = texts.get(skip as usize..) else { return };
        let keep = &keep[..keep.len().min((s.header.last_seq - s.trimmed) as usize)];
        if keep.len() > s.carried.len() {
            s.carried = keep.iter().cloned().collect();
        }
    }

    pub fn header(&self, id: &str) -> Option<&SessionHeader> {
        self.sessions.get(id).map(|s| &s.header)
    }

    /// Position (log index and slot) of the entry that carries event `seq` of `session` (for
    /// reads from disk). None if the session or seq is unknown.
    pub fn position_of(&self, session: &str, seq: u64) -> Result<Option<u64>, SpillError> {
        let Some(s) = self.sessions.get(session) else { return Ok(None) };
        let Some(i) = seq.checked_sub(s.trimmed + 1).and_then(|i| usize::try_from(i).ok()) else { return Ok(None) };
        s.positions.get(i)
    }

    /// The page of events with `seq > after`, at most `max`, contiguous, split
    /// into a cold prefix (positions to read from disk) and a hot suffix
    /// (rendered JSON from memory). `None` when the session does not exist.
    /// Callers should bound `max` (e.g. by PAGE_LIMIT_MAX): the cold part
    /// allocates one entry per event. Errors when a spilled page of positions cannot be
    /// read back.
    pub fn hot_events(&self, session: &str, after: u64, max: usize) -> Result<Option<HotRead>, SpillError> {
        let Some(s) = self.sessions.get(session) else { return Ok(None) };
        let last_seq = s.header.last_seq;
        let mut read = HotRead { after, last_seq, ..HotRead::default() };
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        let end = after.saturating_add(max).min(last_seq);
        if end <= after {
            return Ok(Some(read));
        }
        let first = after + 1; // after < end <= last_seq, so no overflow
        let archived_end = end.min(s.trimmed);
        if first <= archived_end {
            read.archived = archived_end - first + 1;
        }
        let local_first = first.max(s.trimmed + 1);
        let carried_end = end.min(s.carried_end());
        if local_first <= carried_end {
            // carried[seq - trimmed - 1] is event seq.
            let skip = usize::try_from(local_first - s.trimmed - 1).unwrap_or(usize::MAX);
            let take = usize::try_from(carried_end - local_first + 1).unwrap_or(usize::MAX);
            read.carried.extend(s.carried.iter().skip(skip).take(take).cloned());
        }
        let cold_first = local_first.max(s.carried_end() + 1);
        // tail[0] is event `tail_start`; the tail never reaches into the trimmed events
        // (trim stops `tail_keep` short of last_seq), the max only keeps this total.
        let tail_start = s.tail_first_seq();
        let tail_first = tail_start.max(cold_first);
        let cold_end = end.min(tail_first - 1);
        if cold_first <= cold_end {
            // positions[seq - trimmed - 1] belongs to event seq: this slice is
            // cold_first..=cold_end.
            let bounds = usize::try_from(cold_first - s.trimmed - 1).ok().zip(usize::try_from(cold_end - s.trimmed).ok());
            match bounds.filter(|(lo, hi)| lo <= hi && *hi <= s.positions.len()) {
                Some((lo, hi)) => {
                    read.cold = (cold_first..).zip(s.positions.range(lo, hi)?).map(|(seq, position)| ColdEvent { seq, position }).collect();
                }
                None => {
                    // One position per local seq is an invariant; were it broken, end the
                    // page here rather than let the hot events follow with a gap.
                    debug_assert!(false, "positions of {session} do not cover seqs {cold_first}..={cold_end}");
                    return Ok(Some(read));
                }
            }
        }
        if tail_first <= end {
            let skip = usize::try_from(tail_first - tail_start).unwrap_or(usize::MAX);
            let take = usize::try_from(end - tail_first + 1).unwrap_or(usize::MAX);
            read.hot.extend(s.tail.iter().skip(skip).take(take).cloned());
        }
        Ok(Some(read))
    }

    /// Events trimmed from the hot tier after archiving since this state was built (a
    /// metrics counter).
    pub fn trimmed_total(&self) -> u64 {
        self.trimmed_total
    }

    /// Rendered events currently held in memory over all sessions (a metrics gauge).
    pub fn hot_event_count(&self) -> usize {
        self.sessions.values().map(|s| s.tail.len()).sum()
    }

    /// How many rendered events each session keeps in memory.
    pub fn tail_keep(&self) -> usize {
        self.tail_keep
    }

    /// Where this state's position maps spill their full pages.
    pub fn spill(&self) -> Spill {
        self.spill.clone()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Highest position applied so far (0 before any), for snapshot metadata.
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    #[cfg(test)]
    fn remembered_key_count(&self, session: &str) -> usize {
        self.sessions.get(session).map_or(0, |s| s.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::validate::parse_append;
    use serde_json::{json, Value};

    const NOW: i64 = 1_770_562_801_123_456;

    fn create_cmd(id: &str) -> Command {
        let metadata_json = r#"{"k":"v"}"#.into();
        Command::CreateSession { id: id.into(), title: None, metadata_json, now_micros: NOW }
    }

    /// An append command built through the real validation path.
    fn app(session: &str, payload: Value, key: Option<&str>, expected: Option<u64>) -> Command {
        let body = json!({"type": "t", "payload": payload, "actor": "a",
                          "idempotency_key": key, "expected_seq": expected});
        stamped(session, body, NOW)
    }

    fn stamped(session: &str, body: Value, now: i64) -> Command {
        let req = parse_append(body.to_string().as_bytes()).expect("valid body");
        req.into_command(session.into(), now)
    }

    fn event_of(cmd: &Command) -> EventBody {
        match cmd {
            Command::Append { event, .. } => event.clone(),
            _ => panic!("expected an append"),
        }
    }

    /// The error of a rejection; anything else becomes a 500 so assertions fail loudly.
    fn rejected(o: Outcome) -> ApiError {
        match o {
            Outcome::Rejected(e) => e,
            other => ApiError::internal(format!("not rejected: {other:?}")),
        }
    }

    /// Session "s" created at log index 1, then `n` appends at 2..=n+1.
    fn with_events(tail_keep: usize, n: u64) -> ShardState {
        let mut st = ShardState::new(tail_keep);
        st.apply(1, &create_cmd("s"));
        for i in 0..n {
            let body = json!({"type": "t", "payload": {"i": i + 1}, "actor": "a"});
            st.apply(i + 2, &stamped("s", body, NOW + i as i64));
        }
        st
    }

    fn appended(seq: u64, last_seq: u64, deduped: bool) -> Outcome {
        Outcome::Appended { seq, last_seq, deduped }
    }

    fn seq_of(event: &str) -> u64 {
        let v = serde_json::from_str::<Value>(event).ok();
        v.and_then(|v| v["seq"].as_u64()).unwrap_or(0)
    }

    #[test]
    fn creating_a_session_sets_seq_zero_and_both_timestamps_to_now() {
        let mut st = ShardState::new(2);
        let Outcome::Created(h) = st.apply(1, &create_cmd("s")) else {
            panic!("expected Created");
        };
        assert_eq!((h.last_seq, h.created_micros, h.updated_micros), (0, NOW, NOW));
        assert_eq!((st.header("s"), st.session_count()), (Some(&h), 1));
    }

    #[test]
    fn creating_an_existing_session_is_rejected_with_409() {
        let mut st = ShardState::new(2);
        st.apply(1, &create_cmd("s"));
        let e = rejected(st.apply(2, &create_cmd("s")));
        assert_eq!((e.status(), e.code.as_str()), (409, "session_exists"));
        assert_eq!(e.message, "Session s already exists");
    }

    #[test]
    fn header_json_has_every_field_and_null_title() {
        let st = with_events(2, 2);
        let text = st.header("s").map(SessionHeader::to_json).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).expect("json");
        let expected = json!({"id": "s", "title": null, "metadata": {"k": "v"}, "last_seq": 2,
            "created_at": "2026-02-08T15:00:01.123456Z", "updated_at": "2026-02-08T15:00:01.123457Z"});
        assert_eq!(v, expected);
    }

    #[test]
    fn appending_to_an_unknown_session_is_a_404() {
        let mut st = ShardState::new(2);
        let e = rejected(st.apply(1, &app("nope", json!({}), None, None)));
        assert_eq!((e.status(), e.code.as_str()), (404, "session_not_found"));
        assert_eq!(e.message, "Session nope not found");
    }

    #[test]
    fn appends_get_contiguous_seqs_and_remember_their_log_index() {
        let mut st = with_events(8, 0);
        let body = json!({"type": "t", "payload": {}, "actor": "a"});
        for (seq, idx) in [(1, 5), (2, 9), (3, 10)] {
            let out = st.apply(idx, &stamped("s", body.clone(), NOW + 10));
            assert_eq!(out, appended(seq, seq, false));
        }
        let header = st.header("s").map(|h| (h.last_seq, h.updated_micros));
        assert_eq!(header, Some((3, NOW + 10)));
        let indices: Vec<_> = (0..=4).map(|seq| st.position_of("s", seq).unwrap()).collect();
        assert_eq!(indices, [None, Some(5), Some(9), Some(10), None]);
        assert_eq!((st.position_of("other", 1).unwrap(), st.last_applied()), (None, 10));
    }

    #[test]
    fn a_retry_with_the_same_key_is_deduped_even_with_a_stale_expected_seq() {
        let mut st = with_events(4, 0);
        let first = app("s", json!({"x": 1}), Some("k"), Some(0));
        assert_eq!(st.apply(2, &first), appended(1, 1, false));
        st.apply(3, &app("s", json!({}), None, None));
        // Same content and key, expected_seq 0 is stale now: the original answer wins.
        assert_eq!(st.apply(4, &first), appended(1, 2, true));
        assert_eq!(st.header("s").map(|h| h.last_seq), Some(2));
    }

    #[test]
    fn reusing_a_key_for_different_content_is_an_idempotency_conflict() {
        let mut st = with_events(4, 0);
        st.apply(2, &app("s", json!({"x": 1}), Some("k"), None));
        let e = rejected(st.apply(3, &app("s", json!({"x": 2}), Some("k"), None)));
        assert_eq!((e.status(), e.code.as_str()), (409, "idempotency_conflict"));
        assert_eq!(st.header("s").map(|h| h.last_seq), Some(1));
    }

    #[test]
    fn idempotency_keys_are_scoped_to_their_session() {
        let mut st = with_events(4, 0);
        st.apply(2, &create_cmd("t"));
        st.apply(3, &app("s", json!({"x": 1}), Some("k"), None));
        let out = st.apply(4, &app("t", json!({"x": 2}), Some("k"), None));
        assert_eq!(out, appended(1, 1, false));
    }

    #[test]
    fn a_wrong_expected_seq_is_rejected_with_the_exact_message_and_keeps_no_key() {
        let mut st = with_events(4, 2);
        let e = rejected(st.apply(10, &app("s", json!({}), Some("k"), Some(1))));
        assert_eq!((e.status(), e.code.as_str()), (409, "expected_seq_conflict"));
        assert_eq!(e.message, "Expected seq 1, current seq is 2");
        // The rejected attempt did not consume the key.
        let ok = app("s", json!({}), Some("k"), Some(2));
        assert_eq!(st.apply(11, &ok), appended(3, 3, false));
    }

    #[test]
    fn the_tail_keeps_only_the_last_tail_keep_events() {
        let r = with_events(3, 5).hot_events("s", 0, 100).unwrap().expect("session");
        let cold: Vec<_> = r.cold.iter().map(|c| (c.seq, c.position)).collect();
        let hot: Vec<_> = r.hot.iter().map(|e| seq_of(e)).collect();
        assert_eq!((cold, hot), (vec![(1, 2), (2, 3)], vec![3, 4, 5]));
        assert_eq!((r.first_hot_seq(), r.next_cursor(), r.len()), (3, 5, 5));
    }

    #[test]
    fn hot_events_respects_after_max_and_last_seq_boundaries() {
        let st = with_events(3, 5);
        let page = |after, max| {
            let r = st.hot_events("s", after, max).unwrap().unwrap_or_default();
            let cold: Vec<u64> = r.cold.iter().map(|c| c.seq).collect();
            (cold, r.hot.iter().map(|e| seq_of(e)).collect::<Vec<_>>())
        };
        assert_eq!(page(0, 1), (vec![1], vec![]));
        assert_eq!(page(1, 2), (vec![2], vec![3]));
        assert_eq!(page(2, 2), (vec![], vec![3, 4]));
        assert_eq!(page(3, 100), (vec![], vec![4, 5]));
        assert_eq!(page(4, 1), (vec![], vec![5]));
        for (after, max) in [(5, 10), (99, 10), (0, 0), (u64::MAX, usize::MAX)] {
            assert_eq!(page(after, max), (vec![], vec![]), "after {after} max {max}");
        }
        assert_eq!(page(0, usize::MAX), (vec![1, 2], vec![3, 4, 5]));
        assert!(st.hot_events("missing", 0, 10).unwrap().is_none());
        let empty = st.hot_events("s", 5, 10).unwrap().unwrap_or_default();
        assert_eq!((empty.is_empty(), empty.next_cursor(), empty.last_seq), (true, 5, 5));
    }

    #[test]
    fn with_no_tail_every_event_is_cold() {
        let r = with_events(0, 3).hot_events("s", 1, 10).unwrap().expect("session");
        let cold: Vec<_> = r.cold.iter().map(|c| (c.seq, c.position)).collect();
        assert_eq!((cold, r.hot.len()), (vec![(2, 3), (3, 4)], 0));
    }

    #[test]
    fn hot_events_are_the_rendered_event_text() {
        let mut st = with_events(2, 0);
        let cmd = app("s", json!({"b": 1, "a": 2}), Some("k"), None);
        st.apply(2, &cmd);
        let r = st.hot_events("s", 0, 1).unwrap().expect("session");
        let expected = render_event(1, &event_of(&cmd), Some("k"), NOW);
        assert_eq!(r.hot.iter().map(|e| e.as_ref()).collect::<Vec<_>>(), [expected]);
    }

    #[test]
    fn rendered_events_have_every_public_field() {
        let body = json!({"type": "msg", "payload": {"z": 1, "a": "\"q\""}, "actor": "u",
                          "source": "web", "metadata": {"m": [1]}, "refs": {"step": 2}});
        let event = event_of(&stamped("s", body, NOW));
        let text = render_event(7, &event, Some("key-1"), NOW);
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        let keys: Vec<&str> = v.as_object().into_iter().flat_map(|o| o.keys()).map(String::as_str).collect();
        let want = ["seq", "type", "payload", "actor", "source", "metadata", "refs", "idempotency_key", "inserted_at"];
        assert_eq!(keys, want);
        assert_eq!((&v["seq"], &v["type"], &v["actor"]), (&json!(7), &json!("msg"), &json!("u")));
        assert_eq!(v["payload"], json!({"z": 1, "a": "\"q\""}));
        assert!(text.contains(r#""payload":{"z":1,"a""#), "client key order kept: {text}");
        assert_eq!((&v["source"], &v["idempotency_key"]), (&json!("web"), &json!("key-1")));
        assert_eq!((&v["metadata"], &v["refs"]), (&json!({"m": [1]}), &json!({"step": 2})));
        assert_eq!(v["inserted_at"], "2026-02-08T15:00:01.123456Z");
        let bare = render_event(1, &EventBody { source: None, ..event }, None, 0);
        let v: Value = serde_json::from_str(&bare).expect("valid JSON");
        assert!(v["source"].is_null() && v["idempotency_key"].is_null());
    }

    #[test]
    fn keys_older_than_the_window_are_forgotten_and_memory_stays_bounded() {
        let window = crate::limits::IDEMPOTENCY_KEYS_REMEMBERED_MIN;
        let n = window + 5;
        let mut st = ShardState::new(1);
        st.apply(1, &create_cmd("s"));
        let cmd = |i: u64| app("s", json!({"i": i}), Some(&format!("k{i}")), None);
        for i in 1..=n {
            assert_eq!(st.apply(i + 1, &cmd(i)), appended(i, i, false));
        }
        assert_eq!(st.remembered_key_count("s"), window as usize);
        // seq 6 > last_seq - window: still remembered.
        assert_eq!(st.apply(n + 2, &cmd(6)), appended(6, n, true));
        // seq 5 <= last_seq - window: forgotten, so the retry appends anew.
        assert_eq!(st.apply(n + 3, &cmd(5)), appended(n + 1, n + 1, false));
        assert_eq!(st.remembered_key_count("s"), window as usize);
    }

    #[test]
    fn idempotency_answers_survive_a_snapshot_round_trip() {
        let mut st = with_events(4, 0);
        let keyed = app("s", json!({"x": 1}), Some("k"), None);
        st.apply(2, &keyed);
        st.apply(3, &app("s", json!({}), None, None));
        let mut back = ShardState::from_snapshot_bytes(&st.snapshot_bytes(), 4, None).expect("decode");
        let other = app("s", json!({"x": 2}), Some("k"), None);
        for state in [&mut st, &mut back] {
            assert_eq!(state.apply(4, &keyed), appended(1, 2, true));
            assert_eq!(rejected(state.apply(5, &other)).code.as_str(), "idempotency_conflict");
            let fresh = app("s", json!({}), None, None);
            assert_eq!(state.apply(6, &fresh), appended(3, 3, false));
        }
        let r = back.hot_events("s", 0, 10).unwrap().expect("session");
        assert_eq!((r.carried.len(), r.cold.len(), r.hot.len()), (2, 0, 1), "restored events come back in memory");
    }

    #[test]
    fn the_archive_watermark_only_rises_and_never_passes_last_seq() {
        let mut st = with_events(2, 5);
        st.apply(10, &create_cmd("empty"));
        let mark = |seq| Command::MarkArchived { session_id: "s".into(), archived_seq: seq };
        assert_eq!(st.archived_seq("s"), 0);
        assert_eq!(st.unarchived().collect::<Vec<_>>(), vec![("s", 0, 5)], "the empty session waits for nothing");
        assert_eq!(st.apply(11, &mark(3)), Outcome::Marked { archived_seq: 3 });
        // A late mark of an older leader never moves it back; one past the end is clamped.
        assert_eq!(st.apply(12, &mark(2)), Outcome::Marked { archived_seq: 3 });
        assert_eq!(st.apply(13, &mark(99)), Outcome::Marked { archived_seq: 5 });
        assert_eq!((st.archived_seq("s"), st.archived_seq("empty")), (5, 0));
        assert_eq!(st.unarchived().count(), 0, "a session archived up to its last seq waits for nothing");
        let unknown = Command::MarkArchived { session_id: "nope".into(), archived_seq: 1 };
        assert_eq!(rejected(st.apply(14, &unknown)).code.as_str(), "session_not_found");
        assert_eq!(st.precheck(&mark(1)), None);
    }

    /// A session whose positions spill (thousands of events, a tiny tail) reads, trims
    /// and snapshots exactly like one kept in memory; trimmed pages leave the file.
    #[test]
    fn spilled_positions_read_trim_and_snapshot_like_positions_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = crate::log::spill::SpillFile::create(&dir.path().join("index.spill")).unwrap();
        let (mut spilled, mut plain) = (ShardState::with_spill(2, Some(file.clone())), ShardState::new(2));
        for st in [&mut spilled, &mut plain] {
            st.apply(1, &create_cmd("s"));
            for i in 0..3000u64 {
                st.apply(((i + 2) << 16) | (i % 3), &stamped("s", json!({"type": "t", "payload": {"i": i}, "actor": "a"}), NOW));
            }
        }
        assert!(file.pages() >= 20, "full pages of positions went to the file: {}", file.pages());
        for (after, max) in [(0, 5000), (1, 127), (127, 2), (1000, 1000), (2990, 100)] {
            assert_eq!(spilled.hot_events("s", after, max).unwrap(), plain.hot_events("s", after, max).unwrap(), "page after {after}");
        }
        assert_eq!(spilled.snapshot_bytes(), plain.snapshot_bytes(), "the same snapshot, byte for byte");
        let back = ShardState::from_snapshot_bytes(&spilled.snapshot_bytes(), 2, Some(file.clone())).unwrap();
        assert_eq!(back.position_of("s", 2999).unwrap(), plain.position_of("s", 2999).unwrap());
        drop(back);
        let before = file.pages();
        let mark = Command::MarkArchived { session_id: "s".into(), archived_seq: 2500 };
        for st in [&mut spilled, &mut plain] {
            st.apply(9000 << 16, &mark);
        }
        assert!(file.pages() < before, "trimmed pages leave the file ({} -> {})", before, file.pages());
        assert_eq!(spilled.hot_events("s", 0, 5000).unwrap(), plain.hot_events("s", 0, 5000).unwrap());
        assert_eq!(spilled.lowest_uncarried_position().unwrap(), plain.lowest_uncarried_position().unwrap());
        assert_eq!(spilled.log_only_events().unwrap(), plain.log_only_events().unwrap());
    }

    #[test]
    fn archived_events_leave_the_hot_tier_except_the_last_tail_keep() {
        // Events 1..=10 at positions 2..=11; two kept in memory.
        let mut st = with_events(2, 10);
        let mark = |seq| Command::MarkArchived { session_id: "s".into(), archived_seq: seq };
        st.apply(20, &mark(4));
        assert_eq!(st.trimmed_total(), 4, "trimmed up to the watermark");
        let r = st.hot_events("s", 0, 100).unwrap().unwrap();
        assert_eq!((r.archived, r.cold.len(), r.hot.len()), (4, 4, 2));
        assert_eq!((r.cold[0].seq, r.cold[0].position, r.first_hot_seq(), r.next_cursor()), (5, 6, 9, 10));
        assert_eq!((st.position_of("s", 4).unwrap(), st.position_of("s", 5).unwrap()), (None, Some(6)));
        // A page starting inside the trimmed range, and one bounded by `max` inside it.
        let r = st.hot_events("s", 2, 3).unwrap().unwrap();
        assert_eq!((r.archived, r.cold.len(), r.hot.len()), (2, 1, 0));
        let r = st.hot_events("s", 0, 3).unwrap().unwrap();
        assert_eq!((r.archived, r.cold.len(), r.hot.len(), r.next_cursor()), (3, 0, 0, 3));
        // The watermark past last_seq - tail_keep: the last two stay local.
        st.apply(21, &mark(10));
        assert_eq!(st.trimmed_total(), 8);
        let r = st.hot_events("s", 6, 100).unwrap().unwrap();
        assert_eq!((r.archived, r.cold.len(), r.hot.len()), (2, 0, 2));
        // Appends move the trim point along (the watermark already covers seq 9).
        st.apply(22, &stamped("s", json!({"type": "t", "payload": {"i": 11}, "actor": "a"}), NOW));
        assert_eq!(st.trimmed_total(), 9);
        // Snapshots carry it, and the untrimmed events themselves.
        let back = ShardState::from_snapshot_bytes(&st.snapshot_bytes(), 2, None).unwrap();
        assert_eq!((back.position_of("s", 9).unwrap(), back.position_of("s", 10).unwrap()), (None, st.position_of("s", 10).unwrap()));
        let r = back.hot_events("s", 0, 100).unwrap().unwrap();
        assert_eq!((r.archived, r.carried.len(), r.cold.len(), r.hot.len()), (9, 2, 0, 0));
        // Without a watermark nothing is trimmed, however long the session.
        assert_eq!(with_events(2, 50).trimmed_total(), 0);
    }

    #[test]
    fn precheck_predicts_certain_outcomes_without_mutating() {
        let mut st = with_events(4, 2);
        st.apply(10, &app("s", json!({}), Some("k"), None));
        let before = st.snapshot_bytes();
        let cases = [
            (create_cmd("s"), "session_exists"),
            (create_cmd("new"), "pass"),
            (app("x", json!({}), None, None), "session_not_found"),
            (app("s", json!({}), Some("k"), Some(0)), "deduped"),
            (app("s", json!({"d": 1}), Some("k"), None), "idempotency_conflict"),
            (app("s", json!({}), None, Some(2)), "expected_seq_conflict"),
            // Appends still in flight may raise last_seq to a larger expected_seq.
            (app("s", json!({}), None, Some(3)), "pass"),
            (app("s", json!({}), None, Some(9)), "pass"),
        ];
        for (cmd, want) in cases {
            let got = match st.precheck(&cmd) {
                Some(Outcome::Rejected(e)) => e.code.as_str(),
                Some(Outcome::Appended { deduped: true, .. }) => "deduped",
                Some(_) => "other",
                None => "pass",
            };
            assert_eq!(got, want, "{cmd:?}");
        }
        assert_eq!(st.snapshot_bytes(), before);
    }

    #[test]
    fn replicas_applying_the_same_commands_agree_on_outcomes_and_state() {
        let cmds: Vec<Command> = (0..50u64)
            .map(|i| match i % 5 {
                0 => create_cmd(&format!("s{}", i % 3)),
                1 => app("s0", json!({"i": i % 4}), Some(&format!("k{}", i % 7)), None),
                2 => app("s1", json!({}), None, Some(i % 3)),
                _ => app("s2", json!({"i": i}), None, None),
            })
            .collect();
        let (mut a, mut b) = (ShardState::new(3), ShardState::new(3));
        for (i, c) in cmds.iter().enumerate() {
            assert_eq!(a.apply(i as u64 + 1, c), b.apply(i as u64 + 1, c));
        }
        assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
        assert_eq!(a.hot_events("s2", 0, 100).unwrap(), b.hot_events("s2", 0, 100).unwrap());
    }
}
