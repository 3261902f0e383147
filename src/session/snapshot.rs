//! Snapshot encoding of a `ShardState`: headers, idempotency memory, seq → position,
//! the last applied position, and every event not yet trimmed, rendered — so a replica
//! that installs the snapshot, or restarts from it, needs no log entry below it for any
//! event it serves (the log under it can be purged: ARCHITECTURE §15b).
//!
//! Format (all integers little-endian; strings are u64 length + UTF-8 bytes;
//! optional strings are a 0/1 tag byte then the string):
//! ```text
//! magic "STSHARD" + version byte 5
//! u64 last_applied
//! u64 session count, then per session, ascending by id:
//!   id, title?, metadata_json, u64 last_seq, i64 created, i64 updated,
//!   u64 archived_seq (<= last_seq; version 3, the archive watermark),
//!   u64 trimmed (<= archived_seq; version 4, events left only in the archive),
//!   u64 n == last_seq - trimmed, n × u64 position (of events trimmed+1 ..= last_seq),
//!   u64 k, k × (key, u64 seq, u128 fingerprint) (ascending seq)
//!   u64 c == last_seq - trimmed, c × rendered event JSON (events trimmed+1 ..= last_seq;
//!   version 5; restored as the session's carried events and its tail)
//! u64 xxh3_64 of everything above
//! ```
//! Invariants: encoding is deterministic (same state → same bytes on every
//! replica); decoding never panics or over-allocates on hostile input (every
//! count is checked against the bytes remaining), verifies the checksum, and
//! re-checks the structural invariants `apply` relies on (one position per
//! seq, idempotency keys unique and in ascending seq order within `1..=last_seq`,
//! session ids unique). It deliberately does not re-check properties that only
//! hold when callers behave (valid id charset, strictly increasing positions),
//! so any state `apply` can reach — even from hand-built commands — restores.
//! A hand-written format is used instead of rkyv so encoding cannot fail and
//! decoding needs no aligned buffer.

/// A snapshot file that cannot be decoded (truncated, damaged, inconsistent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SnapshotError(pub String);

use std::collections::{HashMap, VecDeque};

use std::sync::Arc;

use super::state::{RememberedKey, Session, SessionHeader, ShardState};
use crate::log::spill::{PagedSeq, Spill};

/// Per session: its id, the seq of its first untrimmed event, and every untrimmed event
/// rendered from there on (what a snapshot carries).
pub type Carried = Vec<(String, u64, Vec<Arc<str>>)>;

const MAGIC: &[u8; 8] = b"STSHARD\x05";
const CHECKSUM_BYTES: usize = 8;

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Bounds-checked cursor over the snapshot body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.buf.len() {
            return Err(SnapshotError(format!("snapshot truncated: need {n} bytes, have {}", self.buf.len())));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Result<u128, SnapshotError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    /// A count of items each at least `min_item_bytes` long; rejecting counts the
    /// remaining bytes cannot hold keeps allocations proportional to the input.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        let fits = usize::try_from(n).ok().filter(|&n| n.saturating_mul(min_item_bytes.max(1)) <= self.buf.len());
        fits.ok_or_else(|| SnapshotError(format!("snapshot count {n} exceeds remaining bytes")))
    }

    fn string(&mut self) -> Result<String, SnapshotError> {
        let n = self.count(1)?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SnapshotError("snapshot string is not UTF-8".to_string()))
    }

    fn opt_string(&mut self) -> Result<Option<String>, SnapshotError> {
        match self.array::<1>()?[0] {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(SnapshotError(format!("snapshot option tag {t} is not 0 or 1"))),
        }
    }
}

impl ShardState {
    /// The snapshot of this state. `log_only` holds, per session, the rendered events
    /// [`ShardState::log_only_events`] listed (read from the log by the caller), in order;
    /// every other untrimmed event is in memory. Deterministic: sessions are written in
    /// ascending id order. Errors when `log_only` does not match the state.
    ///
    /// Also returns what the snapshot carries, per session: `(first seq, rendered events)`
    /// — what its builder adopts ([`ShardState::adopt_carried`]) without rendering twice.
    pub fn snapshot_bytes_with(&self, log_only: &HashMap<String, Vec<Arc<str>>>) -> Result<(Vec<u8>, Carried), SnapshotError> {
        let mut carried = Carried::with_capacity(self.sessions.len());
        let mut out = Vec::with_capacity(64 + self.sessions.len() * 128);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, self.last_applied);
        let mut sessions: Vec<(&String, &Session)> = self.sessions.iter().collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(b.0));
        put_u64(&mut out, sessions.len() as u64);
        for (_, s) in sessions {
            let h = &s.header;
            put_str(&mut out, &h.id);
            put_opt_str(&mut out, h.title.as_deref());
            put_str(&mut out, &h.metadata_json);
            put_u64(&mut out, h.last_seq);
            out.extend_from_slice(&h.created_micros.to_le_bytes());
            out.extend_from_slice(&h.updated_micros.to_le_bytes());
            put_u64(&mut out, s.archived_seq);
            put_u64(&mut out, s.trimmed);
            put_u64(&mut out, s.positions.len() as u64);
            let positions = s.positions.range(0, s.positions.len()).map_err(|e| SnapshotError(format!("session {}: {e}", h.id)))?;
            for i in positions {
                put_u64(&mut out, i);
            }
            put_u64(&mut out, s.key_order.len() as u64);
            for (seq, key) in &s.key_order {
                let fingerprint = s.keys.get(key).map_or(0, |r| r.fingerprint);
                out.extend_from_slice(&key.to_le_bytes());
                put_u64(&mut out, *seq);
                out.extend_from_slice(&fingerprint.to_le_bytes());
            }
            let given = log_only.get(&h.id).map_or(&[][..], |v| v.as_slice());
            let (_, texts) = self
                .untrimmed_texts(&h.id, given)
                .ok_or_else(|| SnapshotError(format!("session {}: {} log-only events given, not the ones needed", h.id, given.len())))?;
            put_u64(&mut out, texts.len() as u64);
            for text in &texts {
                put_str(&mut out, text);
            }
            carried.push((h.id.clone(), s.trimmed + 1, texts));
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&out);
        put_u64(&mut out, sum);
        Ok((out, carried))
    }

    /// The snapshot with placeholder text for log-only events (tests build states
    /// without a log).
    #[cfg(test)]
    pub fn snapshot_bytes(&self) -> Vec<u8> {
        let log_only = self
            .log_only_events()
            .expect("positions in memory")
            .into_iter()
            .map(|(id, cold)| (id, cold.iter().map(|c| Arc::from(format!("log-only {}", c.seq))).collect()))
            .collect();
        self.snapshot_bytes_with(&log_only).expect("placeholders match the state").0
    }

    /// Rebuilds a state from `snapshot_bytes_with` output: every untrimmed event comes
    /// back as a carried event, the last `tail_keep` of them also as the tail.
    /// Its position maps spill their full pages to `spill` (see [`ShardState::with_spill`]).
    pub fn from_snapshot_bytes(b: &[u8], tail_keep: usize, spill: Spill) -> Result<Self, SnapshotError> {
        if b.len() < MAGIC.len() + CHECKSUM_BYTES || !b.starts_with(MAGIC) {
            return Err(SnapshotError("not a shard snapshot (bad magic or version)".to_string()));
        }
        let (content, sum) = b.split_at(b.len() - CHECKSUM_BYTES);
        let mut sum_bytes = [0u8; CHECKSUM_BYTES];
        sum_bytes.copy_from_slice(sum);
        if xxhash_rust::xxh3::xxh3_64(content) != u64::from_le_bytes(sum_bytes) {
            return Err(SnapshotError("snapshot checksum mismatch".to_string()));
        }
        let mut r = Reader { buf: &content[MAGIC.len()..] };
        let last_applied = r.u64()?;
        // Smallest possible encoded session is well above 8 bytes; 8 is a safe floor.
        let n_sessions = r.count(8)?;
        let mut sessions = HashMap::with_capacity(n_sessions);
        for _ in 0..n_sessions {
            let s = read_session(&mut r, last_applied, tail_keep, &spill)?;
            let id = s.header.id.clone();
            if sessions.insert(id.clone(), s).is_some() {
                return Err(SnapshotError(format!("snapshot has session {id} twice")));
            }
        }
        if !r.buf.is_empty() {
            return Err(SnapshotError("snapshot has trailing bytes".to_string()));
        }
        Ok(ShardState { sessions, tail_keep, last_applied, trimmed_total: 0, spill })
    }
}

fn read_session(r: &mut Reader<'_>, last_applied: u64, tail_keep: usize, spill: &Spill) -> Result<Session, SnapshotError> {
    let header = SessionHeader {
        id: r.string()?,
        title: r.opt_string()?,
        metadata_json: r.string()?,
        last_seq: r.u64()?,
        created_micros: r.i64()?,
        updated_micros: r.i64()?,
    };
    let id = &header.id;
    let archived_seq = r.u64()?;
    if archived_seq > header.last_seq {
        return Err(SnapshotError(format!("session {id}: archived_seq {archived_seq} is past last_seq {}", header.last_seq)));
    }
    let trimmed = r.u64()?;
    if trimmed > archived_seq {
        return Err(SnapshotError(format!("session {id}: trimmed {trimmed} is past archived_seq {archived_seq}")));
    }
    let n = r.count(8)?;
    if n as u64 != header.last_seq - trimmed {
        return Err(SnapshotError(format!("session {id}: {n} positions for last_seq {} with {trimmed} trimmed", header.last_seq)));
    }
    let mut positions = PagedSeq::new();
    for _ in 0..n {
        let i = r.u64()?;
        // last_applied is the max index ever applied, so nothing can exceed it.
        if i > last_applied {
            return Err(SnapshotError(format!("session {id}: position {i} is past last_applied")));
        }
        positions.push(i, spill);
    }
    let k = r.count(16 + 8 + 16)?;
    let mut keys = HashMap::with_capacity(k);
    let mut key_order = VecDeque::with_capacity(k);
    let mut prev_seq = 0;
    for _ in 0..k {
        let key = r.u128()?;
        let seq = r.u64()?;
        let fingerprint = r.u128()?;
        if seq <= prev_seq || seq > header.last_seq {
            return Err(SnapshotError(format!("session {id}: idempotency keys out of order or out of range")));
        }
        prev_seq = seq;
        if keys.insert(key, RememberedKey { seq, fingerprint }).is_some() {
            return Err(SnapshotError(format!("session {id}: idempotency key repeated")));
        }
        key_order.push_back((seq, key));
    }
    let c = r.count(8)?;
    if c as u64 != header.last_seq - trimmed {
        return Err(SnapshotError(format!("session {id}: {c} carried events for last_seq {} with {trimmed} trimmed", header.last_seq)));
    }
    let mut carried = VecDeque::with_capacity(c);
    for _ in 0..c {
        carried.push_back(Arc::<str>::from(r.string()?));
    }
    let tail = carried.iter().skip(c.saturating_sub(tail_keep)).cloned().collect();
    let mut s = Session { header, archived_seq, trimmed, positions, tail, carried, keys, key_order };
    // A snapshot written with a wider window is trimmed to this build's window.
    s.evict_keys();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::command::Command;
    use crate::session::state::Outcome;
    use crate::session::validate::parse_append;

    fn append(st: &mut ShardState, idx: u64, session: &str, key: &str, payload: &str) -> Outcome {
        let body = format!(r#"{{"type":"t","payload":{payload},"actor":"a","idempotency_key":"{key}"}}"#);
        let cmd = parse_append(body.as_bytes()).expect("valid").into_command(session.into(), 7);
        st.apply(idx, &cmd)
    }

    fn sample() -> ShardState {
        let mut st = ShardState::new(4);
        for (i, id) in ["b", "a"].iter().enumerate() {
            let cmd = Command::CreateSession {
                id: (*id).into(),
                title: (i == 0).then(|| "T".to_string()),
                metadata_json: r#"{"m":1}"#.into(),
                now_micros: 3,
            };
            st.apply(i as u64 + 1, &cmd);
        }
        for i in 0..6u64 {
            append(&mut st, 10 + i, if i % 2 == 0 { "a" } else { "b" }, &format!("k{i}"), "{}");
        }
        st.apply(20, &Command::MarkArchived { session_id: "a".into(), archived_seq: 2 });
        st
    }

    #[test]
    fn round_trip_preserves_headers_log_indices_and_keys() {
        let st = sample();
        let back = ShardState::from_snapshot_bytes(&st.snapshot_bytes(), 4, None).expect("decode");
        assert_eq!(back.session_count(), 2);
        assert_eq!(back.last_applied(), st.last_applied());
        for id in ["a", "b"] {
            assert_eq!(back.header(id), st.header(id));
            assert_eq!(back.archived_seq(id), st.archived_seq(id));
            for seq in 0..=4 {
                assert_eq!(back.position_of(id, seq).unwrap(), st.position_of(id, seq).unwrap());
            }
            assert_eq!(back.sessions[id].key_order, st.sessions[id].key_order);
            assert_eq!(back.sessions[id].keys, st.sessions[id].keys);
        }
    }

    #[test]
    fn every_untrimmed_event_comes_back_in_memory_and_the_last_tail_keep_as_the_tail() {
        // A tail of 1: of session "b"'s 3 events, 1 and 2 are only in the log (given as
        // placeholders by snapshot_bytes), 3 is in memory.
        let mut st = ShardState::new(1);
        st.apply(1, &Command::CreateSession { id: "b".into(), title: None, metadata_json: "{}".into(), now_micros: 3 });
        for i in 0..3 {
            append(&mut st, 10 + i, "b", &format!("k{i}"), "{}");
        }
        assert_eq!(st.lowest_uncarried_position().unwrap(), Some(10));
        let back = ShardState::from_snapshot_bytes(&st.snapshot_bytes(), 1, None).expect("decode");
        assert_eq!(back.log_only_event_count(), 0, "nothing is left to read from the log");
        assert_eq!(back.lowest_uncarried_position().unwrap(), None);
        let page = back.hot_events("b", 0, 10).unwrap().unwrap();
        assert_eq!(page.carried.len(), 3);
        assert_eq!(&*page.carried[0], "log-only 1");
        assert!(page.cold.is_empty() && page.hot.is_empty());
        assert_eq!(back.sessions["b"].tail.len(), 1);
        assert!(Arc::ptr_eq(&back.sessions["b"].tail[0], &back.sessions["b"].carried[2]), "the tail shares the carried text");
        // Appends after the restore: the carried events stay until trimmed, new ones
        // leave the tail for the log.
        let mut after = back.clone();
        append(&mut after, 30, "b", "k9", "{}");
        append(&mut after, 31, "b", "k10", "{}");
        let page = after.hot_events("b", 0, 10).unwrap().unwrap();
        assert_eq!((page.carried.len(), page.cold.len(), page.hot.len()), (3, 1, 1));
        assert_eq!(page.cold[0].seq, 4);
        assert_eq!(after.lowest_uncarried_position().unwrap(), Some(30));
        after.apply(32, &Command::MarkArchived { session_id: "b".into(), archived_seq: 5 });
        let page = after.hot_events("b", 0, 10).unwrap().unwrap();
        assert_eq!((page.archived, page.carried.len(), page.cold.len(), page.hot.len()), (4, 0, 0, 1));
        assert!(after.sessions["b"].carried.is_empty(), "trimming drops carried events");
    }

    /// The builder of a snapshot keeps what it carries: its tail would otherwise evict
    /// unarchived events whose log entries the purge then removes (found by CI: a read of
    /// an evicted tail event after a purge answered 500 "no longer in the log").
    #[test]
    fn a_built_snapshot_is_adopted_so_evicted_tail_events_stay_readable() {
        let mut st = ShardState::new(2);
        st.apply(1, &Command::CreateSession { id: "b".into(), title: None, metadata_json: "{}".into(), now_micros: 3 });
        for i in 0..2 {
            append(&mut st, 10 + i, "b", &format!("k{i}"), "{}");
        }
        assert_eq!(st.lowest_uncarried_position().unwrap(), Some(10), "tail events count: the tail evicts them later");
        let (first, texts) = st.untrimmed_texts("b", &[]).unwrap();
        st.adopt_carried("b", first, &texts);
        assert_eq!(st.lowest_uncarried_position().unwrap(), None, "the log below the snapshot may go");
        for i in 2..5 {
            append(&mut st, 20 + i, "b", &format!("k{i}"), "{}");
        }
        let page = st.hot_events("b", 0, 10).unwrap().unwrap();
        assert_eq!((page.carried.len(), page.cold.len(), page.hot.len()), (2, 1, 2), "seqs 1-2 carried, 3 in the log, 4-5 in the tail");
        assert_eq!(st.lowest_uncarried_position().unwrap(), Some(22));
        // Adopting an older, shorter snapshot never shortens what is carried.
        st.adopt_carried("b", 1, &texts[..1]);
        assert_eq!(st.hot_events("b", 0, 10).unwrap().unwrap().carried.len(), 2);
    }

    #[test]
    fn snapshot_bytes_are_deterministic_across_replicas_and_reencoding() {
        let (a, b) = (sample(), sample());
        assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
        let back = ShardState::from_snapshot_bytes(&a.snapshot_bytes(), 1, None).expect("decode");
        assert_eq!(back.snapshot_bytes(), a.snapshot_bytes());
    }

    #[test]
    fn empty_state_round_trips() {
        let st = ShardState::new(0);
        let back = ShardState::from_snapshot_bytes(&st.snapshot_bytes(), 0, None).expect("decode");
        assert_eq!(back.session_count(), 0);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_not_a_panic() {
        let bytes = sample().snapshot_bytes();
        for len in 0..bytes.len() {
            assert!(ShardState::from_snapshot_bytes(&bytes[..len], 1, None).is_err(), "len {len}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(ShardState::from_snapshot_bytes(&b, 1, None).is_err(), "flip at {i}");
        }
    }

    /// Re-seals a hand-built body with a valid checksum, to reach the structural checks.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(body);
        let sum = xxhash_rust::xxh3::xxh3_64(&out);
        put_u64(&mut out, sum);
        out
    }

    #[test]
    fn hostile_counts_are_rejected_without_allocating() {
        let mut body = Vec::new();
        put_u64(&mut body, 0);
        put_u64(&mut body, u64::MAX);
        assert!(ShardState::from_snapshot_bytes(&sealed(&body), 1, None).is_err());
    }

    #[test]
    fn structurally_inconsistent_sessions_are_rejected() {
        let trimmed_session = |id: &str, last_seq: u64, indices: &[u64], archived: u64, trimmed: u64| {
            let mut b = Vec::new();
            put_str(&mut b, id);
            put_opt_str(&mut b, None);
            put_str(&mut b, "{}");
            put_u64(&mut b, last_seq);
            b.extend_from_slice(&0i64.to_le_bytes());
            b.extend_from_slice(&0i64.to_le_bytes());
            put_u64(&mut b, archived);
            put_u64(&mut b, trimmed);
            put_u64(&mut b, indices.len() as u64);
            indices.iter().for_each(|&i| put_u64(&mut b, i));
            put_u64(&mut b, 0);
            put_u64(&mut b, indices.len() as u64);
            indices.iter().for_each(|i| put_str(&mut b, &format!("e{i}")));
            b
        };
        let session = |id: &str, last_seq: u64, indices: &[u64], archived: u64| trimmed_session(id, last_seq, indices, archived, 0);
        let doc = |sessions: &[Vec<u8>]| {
            let mut b = Vec::new();
            put_u64(&mut b, 100);
            put_u64(&mut b, sessions.len() as u64);
            sessions.iter().for_each(|s| b.extend_from_slice(s));
            sealed(&b)
        };
        assert!(ShardState::from_snapshot_bytes(&doc(&[session("ok", 2, &[3, 9], 2)]), 1, None).is_ok());
        assert!(ShardState::from_snapshot_bytes(&doc(&[trimmed_session("ok", 3, &[9], 2, 2)]), 1, None).is_ok());
        let bad = [
            doc(&[session("ok", 3, &[3, 9], 0)]),                     // count != last_seq
            doc(&[session("ok", 1, &[101], 0)]),                      // past last_applied
            doc(&[session("x", 0, &[], 0), session("x", 0, &[], 0)]), // duplicate
            doc(&[session("ok", 2, &[3, 9], 3)]),                     // archived past last_seq
            doc(&[trimmed_session("ok", 3, &[9], 1, 2)]),             // trimmed past archived
            doc(&[trimmed_session("ok", 3, &[3, 9], 2, 2)]),          // count != last_seq - trimmed
        ];
        for (i, b) in bad.iter().enumerate() {
            assert!(ShardState::from_snapshot_bytes(b, 1, None).is_err(), "case {i}");
        }
    }
}
