//! The rkyv schema of the records the Raft glue writes into a core's log engine.
//!
//! Every record names the shard (Raft group) it belongs to, so the groups of a core share
//! one log and one group commit. Entries carry the openraft log id and the payload; the
//! other kinds make the rest of openraft's storage state durable in the same ordered log:
//! the vote, the committed index, truncation of conflicting entries, and purges.
//! A later record overrides an earlier one of the same kind and shard, so recovery is a
//! single forward scan. Layout on disk: see `docs/FORMAT.md`.

use std::sync::Arc;

use rkyv::rancor;
use rkyv::with::{Map, Unshare};

use crate::session::Command;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum RecordPayload {
    Blank,
    /// The commands of one proposal, applied in order. Shared in memory (the proposal,
    /// the record and the state machine hold the same commands), archived inline
    /// (`Unshare`): the bytes are those of a plain list of commands (docs/FORMAT.md).
    Normal(#[rkyv(with = Map<Unshare>)] Vec<Arc<Command>>),
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
    /// The record's bytes. Written into a buffer sized up front from the commands' text,
    /// so an entry costs one allocation, not a growing buffer and a final copy. (The bytes
    /// do not depend on the buffer's own alignment: rkyv pads by position.)
    pub fn encode(&self) -> Vec<u8> {
        let buf = Vec::with_capacity(self.encoded_bytes_estimate());
        rkyv::api::high::to_bytes_in::<_, rancor::Error>(self, buf).expect("log records always serialize")
    }

    /// Close to (and usually above) the encoded length: fixed fields plus each command's
    /// strings with room for their headers and padding.
    fn encoded_bytes_estimate(&self) -> usize {
        match self {
            LogRecord::Entry { payload: RecordPayload::Normal(commands), .. } => {
                64 + commands.iter().map(|c| c.text_bytes() + RECORD_COMMAND_OVERHEAD_BYTES).sum::<usize>()
            }
            LogRecord::Entry { payload: RecordPayload::Membership(json), .. } => 64 + json.len(),
            _ => 64,
        }
    }
}

/// Bytes a command's record takes beyond its strings' text (field headers, relative
/// pointers, padding), rounded up: the estimate only sizes a buffer.
const RECORD_COMMAND_OVERHEAD_BYTES: usize = 160;

/// A record the Raft glue cannot use: bytes that pass the frame's CRC but are not a valid
/// record of this schema, or records that contradict the ones before them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid log record: {0}")]
    Invalid(String),
    #[error("log records out of order: {0}")]
    OutOfOrder(String),
}

/// Recovery reports a record its owner rejects as corruption at the record's place.
impl From<RecordError> for crate::log::Rejected {
    fn from(e: RecordError) -> Self {
        crate::log::Rejected(e.to_string())
    }
}

/// Validate `bytes` as a record and access it in place (no copy).
pub fn access(bytes: &[u8]) -> Result<&ArchivedLogRecord, RecordError> {
    rkyv::access::<ArchivedLogRecord, rancor::Error>(bytes).map_err(|e| RecordError::Invalid(e.to_string()))
}

/// Validate and decode into owned values.
pub fn decode(bytes: &[u8]) -> Result<LogRecord, RecordError> {
    let archived = access(bytes)?;
    rkyv::deserialize::<LogRecord, rancor::Error>(archived).map_err(|e| RecordError::Invalid(e.to_string()))
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

    /// The schema as it was before commands were shared (`Vec<Command>`): what every log
    /// written so far holds.
    mod plain {
        use crate::session::Command;

        // Every variant, constructed or not: their order decides the archived tags.
        #[allow(dead_code)]
        #[derive(rkyv::Archive, rkyv::Serialize)]
        pub enum RecordPayload {
            Blank,
            Normal(Vec<Command>),
            Membership(String),
        }

        #[derive(rkyv::Archive, rkyv::Serialize)]
        pub enum LogRecord {
            Entry { shard: u32, term: u64, node: u64, index: u64, payload: RecordPayload },
        }
    }

    #[test]
    fn shared_commands_encode_to_the_bytes_of_a_plain_list() {
        let cmd = |i: u64| Command::Append {
            session_id: format!("s{i}"),
            event: EventBody {
                event_type: "t".into(),
                payload_json: format!("{{\"i\":{i}}}"),
                actor: "a".into(),
                source: i.is_multiple_of(2).then(|| "src".into()),
                metadata_json: "{}".into(),
                refs_json: "{}".into(),
                fingerprint: i as u128,
            },
            idempotency_key: i.is_multiple_of(3).then(|| format!("k{i}")),
            expected_seq: Some(i),
            now_micros: i as i64,
        };
        let shared = LogRecord::Entry {
            shard: 3,
            term: 2,
            node: 1,
            index: 9,
            payload: RecordPayload::Normal((0..5).map(|i| Arc::new(cmd(i))).collect()),
        };
        let plain = plain::LogRecord::Entry {
            shard: 3,
            term: 2,
            node: 1,
            index: 9,
            payload: plain::RecordPayload::Normal((0..5).map(cmd).collect()),
        };
        let plain_bytes = rkyv::to_bytes::<rancor::Error>(&plain).unwrap();
        assert_eq!(shared.encode(), plain_bytes.as_slice());
        assert_eq!(decode(&plain_bytes).unwrap(), shared, "old records decode into shared commands");
    }

    #[test]
    fn an_entry_round_trips_through_rkyv_and_is_accessible_in_place() {
        let rec = LogRecord::Entry {
            shard: 7,
            term: 3,
            node: 1,
            index: 42,
            payload: RecordPayload::Normal(vec![Arc::new(Command::Append {
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
            })]),
        };
        let bytes = rec.encode();
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&bytes);
        assert_eq!(access(&aligned).unwrap().shard(), 7);
        assert_eq!(decode(&aligned).unwrap(), rec);
        // rkyv validates structure, not content: a flipped byte inside a string still
        // decodes, into a *different* record. That is why every record sits in a CRC frame:
        // the frame check (log/frame.rs) is what catches content damage.
        let at = aligned.windows(7).position(|w| w == b"{\"a\":1}").expect("payload bytes in the record") + 5;
        let mut bad = aligned.clone();
        bad[at] ^= 0x01;
        let silently_different = decode(&bad).expect("structure intact");
        assert_ne!(silently_different, rec);
        let mut framed = Vec::new();
        crate::log::frame::encode_into(&mut framed, &aligned);
        let flip_at = crate::log::frame::FRAME_HEADER_BYTES + at;
        framed[flip_at] ^= 0x01;
        assert!(matches!(crate::log::frame::decode(&framed), crate::log::frame::Decoded::Corrupt { .. }));
    }
}
