//! Sequence bookkeeping and read-back checks: a bitset of acknowledged seqs per session (duplicates), per-stream order checks, contiguous delivery, and reading a whole session back through the events page.

use std::time::Instant;

use crate::api;
use crate::http::BlockingClient;
use crate::stats::Violations;

/// Seqs acknowledged for one session above a baseline, one bit each.
#[derive(Debug, Clone)]
pub struct SeqSet {
    base: u64,
    words: Vec<u64>,
    count: u64,
    max: u64,
}

/// A single session may hold at most this many acked seqs above its baseline here (2 GiB
/// of bits would be far beyond any run on this machine).
const SEQ_SPAN_MAX: u64 = 1 << 34;

#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    New,
    Duplicate,
}

impl SeqSet {
    pub fn new(base: u64) -> Self {
        SeqSet { base, words: Vec::new(), count: 0, max: base }
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    /// Distinct seqs acknowledged.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Highest seq acknowledged (the baseline when none).
    pub fn max(&self) -> u64 {
        self.max
    }

    #[cfg(test)]
    pub fn contains(&self, seq: u64) -> bool {
        if seq <= self.base {
            return false;
        }
        let idx = seq - self.base - 1;
        self.words.get((idx / 64) as usize).is_some_and(|w| w & (1 << (idx % 64)) != 0)
    }

    pub fn insert(&mut self, seq: u64) -> Result<Insert, String> {
        if seq <= self.base {
            return Err(format!("seq {seq} is not above the session's starting last_seq {}", self.base));
        }
        let idx = seq - self.base - 1;
        if idx >= SEQ_SPAN_MAX {
            return Err(format!("seq {seq} is implausibly far above the baseline {}", self.base));
        }
        let w = (idx / 64) as usize;
        if w >= self.words.len() {
            self.words.resize((w + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (idx % 64);
        if self.words[w] & bit != 0 {
            return Ok(Insert::Duplicate);
        }
        self.words[w] |= bit;
        self.count += 1;
        self.max = self.max.max(seq);
        Ok(Insert::New)
    }
}

/// Result of reading one session back.
#[derive(Debug, Clone, Copy)]
pub struct ReadBack {
    pub last_seq: u64,
    /// Events read from the starting cursor to `last_seq`.
    pub events: u64,
}

/// Read session `id` from `cursor` to its current `last_seq` through the events page
/// (`limit` ≤ 1000), checking that seqs are contiguous and `next_cursor` is consistent.
pub fn read_back(
    client: &mut BlockingClient,
    id: &str,
    cursor: u64,
    limit: usize,
    deadline: Instant,
    v: &mut Violations,
) -> Result<ReadBack, String> {
    let mut c = cursor;
    let mut target: Option<u64> = None;
    let mut events = 0u64;
    loop {
        if Instant::now() > deadline {
            return Err(format!("session {id}: read-back did not finish in time (at cursor {c})"));
        }
        let resp = client.request("GET", &api::events_path(id, c, limit), None)?;
        if resp.status != 200 {
            return Err(format!("session {id}: events page at cursor {c}: HTTP {} {}", resp.status, resp.body_str()));
        }
        let page: api::Page = serde_json::from_slice(&resp.body).map_err(|e| format!("session {id}: events page: {e}"))?;
        let t = *target.get_or_insert(page.last_seq);
        if page.last_seq < t {
            v.add("last_seq_decreased", || format!("session {id}: last_seq went from {t} to {}", page.last_seq));
        }
        for (i, e) in page.events.iter().enumerate() {
            let want = c + 1 + i as u64;
            if e.seq != want {
                v.add("page_gap_or_duplicate", || {
                    format!("session {id}: page from cursor {c} has seq {} at position {i}, expected {want}", e.seq)
                });
                return Ok(ReadBack { last_seq: t, events: events + i as u64 });
            }
        }
        let n = page.events.len() as u64;
        if page.next_cursor != c + n {
            v.add("page_next_cursor", || format!("session {id}: cursor {c} + {n} events but next_cursor {}", page.next_cursor));
        }
        events += n;
        c += n;
        if c >= t {
            if c > t {
                v.add("page_beyond_last_seq", || format!("session {id}: read up to seq {c} but last_seq said {t}"));
            }
            return Ok(ReadBack { last_seq: t, events });
        }
        if n == 0 {
            v.add("page_short", || format!("session {id}: empty page at cursor {c} below last_seq {t}"));
            return Ok(ReadBack { last_seq: t, events });
        }
    }
}

/// The current last_seq of a session (one page of one event).
pub fn last_seq(client: &mut BlockingClient, id: &str) -> Result<u64, String> {
    let resp = client.request("GET", &api::events_path(id, 0, 1), None)?;
    if resp.status != 200 {
        return Err(format!("session {id}: events page: HTTP {} {}", resp.status, resp.body_str()));
    }
    let page: api::Page = serde_json::from_slice(&resp.body).map_err(|e| format!("session {id}: events page: {e}"))?;
    Ok(page.last_seq)
}

/// Compare what a session holds after a run with what was acknowledged: every acked seq is
/// stored, and the stored count is the acked count plus at most the requests whose outcome
/// is unknown (failed with 5xx, lost connection, unanswered).
pub fn check_counts(id: &str, acked: &SeqSet, unknown: u64, back: &ReadBack, v: &mut Violations) {
    let stored = back.last_seq.saturating_sub(acked.base());
    if acked.max() > back.last_seq {
        v.add("acked_seq_missing", || format!("session {id}: seq {} was acknowledged but last_seq is {}", acked.max(), back.last_seq));
    }
    if stored < acked.count() {
        v.add("stored_fewer_than_acked", || {
            format!("session {id}: {} acked but {stored} stored above the baseline {}", acked.count(), acked.base())
        });
    } else if stored > acked.count() + unknown {
        v.add("stored_more_than_acked", || {
            format!(
                "session {id}: {} acked (+{unknown} unknown outcomes) but {stored} stored above the baseline {}",
                acked.count(),
                acked.base()
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqset() {
        let mut s = SeqSet::new(10);
        assert!(s.insert(10).is_err());
        assert_eq!(s.insert(11).unwrap(), Insert::New);
        assert_eq!(s.insert(200).unwrap(), Insert::New);
        assert_eq!(s.insert(11).unwrap(), Insert::Duplicate);
        assert_eq!((s.count(), s.max()), (2, 200));
        assert!(s.contains(200) && !s.contains(12) && !s.contains(5));
    }

    #[test]
    fn counts() {
        let mut s = SeqSet::new(0);
        for q in 1..=5 {
            s.insert(q).unwrap();
        }
        let mut v = Violations::default();
        check_counts("a", &s, 0, &ReadBack { last_seq: 5, events: 5 }, &mut v);
        assert_eq!(v.total(), 0);
        check_counts("a", &s, 1, &ReadBack { last_seq: 6, events: 6 }, &mut v);
        assert_eq!(v.total(), 0);
        check_counts("a", &s, 0, &ReadBack { last_seq: 6, events: 6 }, &mut v);
        check_counts("a", &s, 0, &ReadBack { last_seq: 4, events: 4 }, &mut v);
        assert_eq!(v.counts.len(), 3, "{v:?}");
    }
}
