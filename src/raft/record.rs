//! The rkyv schema of the records the Raft glue writes into a core's log engine.
//!
//! Every record names the shard (Raft group) it belongs to, so the groups of a core share
//! one log and one group commit. Entries carry the openraft log id and the payload; the
//! other kinds make the rest of openraft's storage state durable in the same ordered log:
//! the vote, the committed index, truncation of conflicting entries, and purges.
//! A later record overrides an earlier one of the same kind and shard, so recovery is a
//! single forward scan. Layout on disk: see `docs/FORMAT.md`.

use rkyv::rancor;

use crate::session::Command;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum RecordPayload {
    Blank,
    /// The commands of one proposal, applied in order.
    Normal(Vec<Command>),
    /// openraft `Membership` as JSON (rare, small; keeps the schema independent of it).
    Membership(String),
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum LogRecord {
    Entry {
        shard: u32,
        term: u64,
        node: u64,
        index: u64,
        payload: RecordPayload,
    },
    Vote {
        shard: u32,
        term: u64,
        node: u64,
        committed: bool,
    },
    Committed {
        shard: u32,
        term: u64,
        node: u64,
        index: u64,
    },
    /// Entries with index >= `since` are gone.
    Truncate {
        shard: u32,
        since: u64,
    },
    /// Entries up to and including `index` are purged.
    Purge {
        shard: u32,
        term: u64,
        node: u64,
        index: u64,
    },
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rancor::Error>(self).expect("log records always serialize").into_vec()
    }
}

/// Validate `bytes` as a record and access it in place (no copy).
pub fn access(bytes: &[u8]) -> Result<&ArchivedLogRecord, String> {
    rkyv::access::<ArchivedLogRecord, rancor::Error>(bytes).map_err(|e| format!("invalid log record: {e}"))
}

/// Validate and decode into owned values.
pub fn decode(bytes: &[u8]) -> Result<LogRecord, String> {
    let archived = access(bytes)?;
    rkyv::deserialize::<LogRecord, rancor::Error>(archived).map_err(|e| format!("undecodable log record: {e}"))
}

impl ArchivedLogRecord {
    pub fn shard(&self) -> u32 {
        match self {
            ArchivedLogRecord::Entry { shard, .. }
            | ArchivedLogRecord::Vote { shard, .. }
            | ArchivedLogRecord::Committed { shard, .. }
            | ArchivedLogRecord::Truncate { shard, .. }
            | ArchivedLogRecord::Purge { shard, .. } => shard.to_native(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Command, EventBody};

    #[test]
    fn an_entry_round_trips_through_rkyv_and_is_accessible_in_place() {
        let rec = LogRecord::Entry {
            shard: 7,
            term: 3,
            node: 1,
            index: 42,
            payload: RecordPayload::Normal(vec![Command::Append {
                session_id: "s1".into(),
                event: EventBody {
                    event_type: "t".into(),
                    payload_json: "{\"a\":1}".into(),
                    actor: "me".into(),
                    source: None,
                    metadata_json: "{}".into(),
                    refs_json: "{}".into(),
                    fingerprint: 99,
                },
                idempotency_key: Some("k".into()),
                expected_seq: None,
                now_micros: 5,
            }]),
        };
        let bytes = rec.encode();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        assert_eq!(access(&aligned).unwrap().shard(), 7);
        assert_eq!(decode(&aligned).unwrap(), rec);
        let mut bad = aligned.clone();
        let n = bad.len();
        bad[n - 3] ^= 0xff;
        // Damaged bytes never decode into a different valid record silently… or fail.
        if let Ok(other) = decode(&bad) {
            assert_ne!(other, rec);
        }
    }
}
