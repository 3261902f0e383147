//! The per-core compactor (archive on): keeps the log's disk use bounded by what is not
//! archived plus the hot tails, not by history (SPEC §5; issue #11; ARCHITECTURE §15b).
//!
//! Each pass, for every shard of the core (leader or follower: each replica compacts its
//! own log):
//! 1. If the shard's first kept entry is in the core's oldest segment, and that segment
//!    is sealed, the shard is what keeps the segment alive: it gets a snapshot (if its
//!    current one is too old), then a purge up to
//!    `min(snapshot index, entry of its lowest uncarried event − 1)`. The snapshot
//!    carries every untrimmed event (session/snapshot.rs), and its builder keeps them in
//!    memory as *carried* events, as a restart from it would (`ShardState::adopt_carried`):
//!    the tail alone would not do, it evicts events on later appends whether the archive
//!    has them or not (found by CI: an evicted, unarchived event whose entry was purged).
//!    So a replica that built, installed or restarted from the snapshot needs no entry
//!    at or below its index, and the purge stops below any event appended after it.
//! 2. Once every shard's first kept entry is past some segments, each shard's vote, purge
//!    point and committed mark are written again (one durable batch) and those segments
//!    are deleted, oldest first (log/engine.rs `delete_segments_before`).
//!
//! A snapshot is skipped while a shard holds more than `COMPACT_LOG_ONLY_EVENTS_MAX`
//! events only in its log (unarchived events that left the tail: the archive is behind):
//! it would read them all and carry them in memory. Those events pin the log instead —
//! rows wait on disk, never only in RAM. What a snapshot carries leaves memory as the
//! archive confirms it (trimming).
//! openraft delays a leader's purge while a replication stream still reads the entries;
//! a follower that needs purged entries gets the snapshot.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::shard::Shard;
use crate::limits::{COMPACT_INTERVAL_MS, COMPACT_LOG_ONLY_EVENTS_MAX, COMPACT_SNAPSHOT_WAIT_MS};
use crate::log::LogEngine;
use crate::raft::split_position;

/// Run this core's compactor until the core drains.
pub async fn run(core: Rc<Core>) {
    let Some(engine) = core.engine.borrow().clone() else { return };
    loop {
        glommio::timer::sleep(Duration::from_millis(COMPACT_INTERVAL_MS)).await;
        if core.draining.is_set() || core.stopping.get() {
            return;
        }
        let shards: Vec<Rc<Shard>> = core.shards.borrow().values().cloned().collect();
        let (oldest, writing) = engine.segment_span();
        if oldest < writing {
            for shard in &shards {
                if shard.store.log.borrow().first_segment() == Some(oldest) {
                    compact(&core, &engine, shard).await;
                }
            }
        }
        if let Err(e) = delete_purged_segments(&engine, &shards).await {
            tracing::error!("log compaction: {e}");
        }
    }
}

/// The highest index `shard`'s log may be purged to now, given a snapshot at log index
/// `snapshot` (0: none): below it, and below the entry of its lowest uncarried event.
fn purge_bound(shard: &Shard, snapshot: u64) -> u64 {
    let machine = shard.machine.borrow();
    let below_uncarried = match machine.state.lowest_uncarried_position() {
        Ok(lowest) => lowest.map_or(u64::MAX, |p| split_position(p).0 - 1),
        Err(e) => {
            // Unknown bound: purge nothing (the log stays; the next pass tries again).
            tracing::error!(shard = shard.id, "log compaction: {e}");
            0
        }
    };
    snapshot.min(below_uncarried)
}

/// Snapshot (when the current one does not reach far enough) and purge one shard below
/// its lowest uncarried event.
async fn compact(core: &Core, engine: &LogEngine, shard: &Rc<Shard>) {
    if shard.abstaining() {
        return; // a damaged log catches up first (ARCHITECTURE §3b)
    }
    let (applied, log_only) = {
        let m = shard.machine.borrow();
        (m.last_applied.map_or(0, |l| l.index), m.state.log_only_event_count())
    };
    let purged = shard.store.log.borrow().purged_index();
    if applied <= purged {
        return; // nothing applied since the last purge
    }
    let snapshot_index = || shard.raft.metrics().borrow().snapshot.map_or(0, |l| l.index);
    if purge_bound(shard, snapshot_index()) <= purged {
        if log_only > COMPACT_LOG_ONLY_EVENTS_MAX {
            tracing::debug!(shard = shard.id, log_only, "log compaction: waiting for the archive before the next snapshot");
            return;
        }
        if shard.raft.trigger().snapshot().await.is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(COMPACT_SNAPSHOT_WAIT_MS);
        while snapshot_index() < applied && Instant::now() < deadline && !core.draining.is_set() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        if snapshot_index() < applied {
            tracing::warn!(shard = shard.id, "log compaction: the snapshot was not built within {COMPACT_SNAPSHOT_WAIT_MS} ms");
            return;
        }
        engine.stats.counters.snapshots_built.inc();
    }
    let upto = purge_bound(shard, snapshot_index());
    if upto > purged && shard.raft.trigger().purge_log(upto).await.is_ok() {
        engine.stats.counters.purges.inc();
    }
}

/// Delete the segments before every shard's first kept entry, after restating each
/// shard's vote, purge point and committed mark in the log (durably) so that no deleted
/// segment held the only record of them.
async fn delete_purged_segments(engine: &LogEngine, shards: &[Rc<Shard>]) -> Result<(), crate::log::LogError> {
    let (oldest, writing) = engine.segment_span();
    let keep_from = shards.iter().filter_map(|s| s.store.log.borrow().first_segment()).min().unwrap_or(writing).min(writing);
    if keep_from <= oldest {
        return Ok(());
    }
    let records: Vec<Vec<u8>> = shards.iter().flat_map(|s| s.store.log.borrow().checkpoint(s.id)).map(|record| record.encode()).collect();
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_slice()).collect();
    let (tx, rx) = futures::channel::oneshot::channel();
    engine.submit(&refs, Box::new(move |r| drop(tx.send(r))))?;
    rx.await.map_err(|_| crate::log::LogError::Stopped { reason: "the log engine dropped the checkpoint".into() })??;
    // Entries may have been appended meanwhile, never before a shard's first kept entry.
    let deleted = engine.delete_segments_before(keep_from).await?;
    tracing::info!(deleted, first_kept = keep_from, "log compaction: deleted segments every shard had purged");
    Ok(())
}
