//! Cold event reads: event positions → the log records that carry them → rendered event
//! JSON, validated and rendered in place from the archived record (no decoded copy).
//!
//! This layer owns the record format (raft/record.rs), so reading events that left the hot
//! tail lives here and not in the shard runtime; the archive tier will plug in beside it
//! (a position below the local log's start will be read from Postgres instead).
//!
//! Invariant: the result is exactly the events asked for, in order, as far as the byte
//! budget allows (always at least one); any mismatch between a position and what the log holds there is
//! an internal error, never a silently shorter page.

use std::sync::Arc;

use rkyv::vec::ArchivedVec;

use super::record::{self, ArchivedLogRecord, ArchivedRecordPayload};
use super::{split_position, LogStore};
use crate::log::Loc;
use crate::session::command::ArchivedCommand;
use crate::session::{render_event_parts, ApiError, ByteBudget, ColdEvent, EventParts};

/// Render the events at `cold` (ascending, gap-free) of `session`, stopping before the one
/// that would overflow `budget`. One read and one validation per log entry, however
/// many of its commands are needed.
pub async fn read_cold_events(
    store: &LogStore,
    session: &str,
    cold: &[ColdEvent],
    budget: &mut ByteBudget,
) -> Result<Vec<Arc<str>>, ApiError> {
    // One index per entry (consecutive events often share one), located in one pass.
    let mut indexes: Vec<u64> = Vec::new();
    for c in cold {
        let (index, _) = split_position(c.position);
        if indexes.last() != Some(&index) {
            indexes.push(index);
        }
    }
    let located = store.log.borrow().locs_of(&indexes).map_err(|e| ApiError::internal(format!("locating events of {session}: {e}")))?;
    let mut locs: Vec<Loc> = Vec::with_capacity(located.len());
    for (index, loc) in indexes.iter().zip(located) {
        locs.push(loc.ok_or_else(|| ApiError::internal(format!("log entry {index} of {session} is no longer in the log")))?);
    }
    let bufs = store.engine.read_many(&locs).await.map_err(|e| ApiError::internal(format!("reading events of {session}: {e}")))?;
    let mut archived: Vec<(u64, &ArchivedVec<ArchivedCommand>)> = Vec::with_capacity(bufs.len());
    for ((&index, loc), buf) in indexes.iter().zip(&locs).zip(&bufs) {
        match record::access(buf.payload()) {
            // The record must be the entry its location was indexed for: a stale or
            // corrupted index fails the read instead of serving another entry's events.
            Ok(ArchivedLogRecord::Entry { shard, index: found, payload: ArchivedRecordPayload::Normal(cmds), .. })
                if shard.to_native() == store.shard && found.to_native() == index =>
            {
                archived.push((index, cmds))
            }
            Ok(ArchivedLogRecord::Entry { shard, index: found, payload: ArchivedRecordPayload::Normal(_), .. }) => {
                return Err(ApiError::internal(format!(
                    "log entry {index} of {session}: the record at {loc:?} is entry {found} of shard {shard}, expected entry {index} of shard {}",
                    store.shard
                )))
            }
            Ok(_) => return Err(ApiError::internal(format!("log entry {index} of {session} carries no commands"))),
            Err(e) => return Err(ApiError::internal(format!("log entry {index} of {session}: {e}"))),
        }
    }
    let mut events = Vec::with_capacity(cold.len());
    let mut entry = archived.iter();
    let mut current = entry.next();
    for c in cold {
        let (index, slot) = split_position(c.position);
        while current.is_some_and(|(i, _)| *i != index) {
            current = entry.next();
        }
        let Some(ArchivedCommand::Append { session_id, event, idempotency_key, now_micros, .. }) =
            current.and_then(|(_, cmds)| cmds.get(slot))
        else {
            return Err(ApiError::internal(format!("event {} of {session} is not an append at its position", c.seq)));
        };
        if session_id.as_str() != session {
            return Err(ApiError::internal(format!(
                "event {} of {session}: its position holds an append to {}",
                c.seq,
                session_id.as_str()
            )));
        }
        let parts = EventParts {
            event_type: event.event_type.as_str(),
            payload_json: event.payload_json.as_str(),
            actor: event.actor.as_str(),
            source: event.source.as_ref().map(|s| s.as_str()),
            metadata_json: event.metadata_json.as_str(),
            refs_json: event.refs_json.as_str(),
        };
        let key = idempotency_key.as_ref().map(|k| k.as_str());
        let json: Arc<str> = render_event_parts(c.seq, parts, key, now_micros.to_native()).into();
        if !budget.admit(json.len()) {
            break;
        }
        events.push(json);
    }
    Ok(events)
}
