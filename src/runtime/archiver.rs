//! The per-core side of the Postgres archive (SPEC §5): every flush interval, and sooner
//! when a full batch is waiting, this core reads the committed events its *led* shards have
//! not archived yet, hands them to the archive thread (archive/mod.rs) in bounded batches,
//! and, once Postgres confirmed a batch, proposes each session's new watermark
//! (`Command::MarkArchived`) through Raft.
//!
//! Invariants:
//! - Only a settled leader (one that applied an entry of its term, so its state machine
//!   holds every committed event) archives a shard: followers never write to Postgres.
//! - Rows are read from the shard (hot tail, else the log on disk) at each cycle, never
//!   queued in memory: what waits for Postgres waits on disk. A core holds at most one
//!   batch (`ARCHIVE_BATCH_ROWS` rows, `ARCHIVE_BATCH_BYTES` of JSON) at a time.
//! - The watermark moves only after Postgres confirmed the rows below it, and only up
//!   (state.rs clamps and keeps the maximum). A leader that dies between the INSERT and the
//!   mark costs a re-send by the next leader, which `ON CONFLICT DO NOTHING` absorbs: rows
//!   are exactly-once, nothing is skipped.
//! - A failed flush is retried with capped exponential backoff; appends never wait on it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::core::Core;
use super::shard::Shard;
use crate::archive::{Archive, ArchiveError, ArchiveRun};
use crate::limits::{ARCHIVE_BATCH_BYTES, ARCHIVE_BATCH_ROWS, ARCHIVE_POLL_MS, ARCHIVE_RETRY_MAX_MS, ARCHIVE_RETRY_MIN_MS};
use crate::session::{ApiError, Command};

/// Why a flush cycle stopped early (the next one starts over from the watermarks).
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("reading committed events: {0}")]
    Read(ApiError),
}

/// The events one cycle found waiting, before they are read: per led session,
/// `(shard, session, archived_seq, last_seq)`.
type Waiting = Vec<(Rc<Shard>, String, u64, u64)>;

/// Run this core's archive loop until the core drains (graceful shutdown: what is not
/// archived yet stays in the log and the next start, or the next leader, archives it).
pub async fn run(core: Rc<Core>, archive: Archive) {
    let interval = Duration::from_millis(core.config.archive_flush_interval_ms);
    let mut last = Instant::now();
    let mut more = false;
    let mut failures = 0u32;
    loop {
        // Wait for the interval, or for a full batch's worth of new commits.
        while !more && last.elapsed() < interval && core.archive_backlog.get() < ARCHIVE_BATCH_ROWS as u64 {
            if core.draining.is_set() {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(ARCHIVE_POLL_MS)).await;
        }
        if core.draining.is_set() {
            return;
        }
        last = Instant::now();
        core.archive_backlog.set(0);
        let started = Instant::now();
        let result = cycle(&core, &archive).await;
        core.metrics.archive_flush_ms.borrow_mut().observe(started.elapsed().as_secs_f64() * 1e3);
        match result {
            Ok(left_more) => {
                if failures > 0 {
                    tracing::info!(failures, "archive: flushing again");
                }
                failures = 0;
                more = left_more;
            }
            Err(e) => {
                more = false;
                failures = failures.saturating_add(1);
                let wait = ARCHIVE_RETRY_MIN_MS.saturating_mul(1 << failures.min(16)).min(ARCHIVE_RETRY_MAX_MS);
                // First failure of a streak, then every tenth: a long outage does not flood
                // the log, and the metrics show the growing lag meanwhile.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(failures, retry_in_ms = wait, "archive: flush failed: {e}; events wait in the log");
                }
                glommio::timer::sleep(Duration::from_millis(wait)).await;
            }
        }
    }
}

/// What waits for the archive in the shards this core leads.
fn waiting(core: &Core) -> Waiting {
    let shards: Vec<Rc<Shard>> = core.shards.borrow().values().filter(|s| s.is_settled_leader()).cloned().collect();
    let mut out = Vec::new();
    for shard in shards {
        let machine = shard.machine.borrow();
        for (session, archived, last) in machine.state.unarchived() {
            out.push((shard.clone(), session.to_string(), archived, last));
        }
    }
    out
}

/// One flush: every waiting session gets up to a batch's room of its events archived.
/// Returns whether some session had more than fitted (the next cycle starts at once).
async fn cycle(core: &Rc<Core>, archive: &Archive) -> Result<bool, FlushError> {
    let mut more = false;
    let mut conflicted = false;
    let mut batch = Batch::default();
    for (shard, session, archived, last) in waiting(core) {
        let want = last - archived;
        let room = ARCHIVE_BATCH_ROWS - batch.rows;
        let budget = ARCHIVE_BATCH_BYTES.saturating_sub(batch.bytes).max(1);
        let page = shard.read(&session, archived, want.min(room as u64) as usize, budget, None).await.map_err(FlushError::Read)?;
        let got = page.events.len() as u64;
        if got == 0 {
            continue;
        }
        more |= got < want;
        batch.rows += got as usize;
        batch.bytes += page.events.iter().map(|e| e.len()).sum::<usize>();
        batch.marks.push((shard, session.clone(), archived + got));
        batch.runs.push(ArchiveRun { session, first_seq: archived + 1, events: page.events });
        if batch.rows >= ARCHIVE_BATCH_ROWS || batch.bytes >= ARCHIVE_BATCH_BYTES {
            conflicted |= std::mem::take(&mut batch).flush(core, archive).await?;
        }
    }
    if !batch.runs.is_empty() {
        conflicted |= batch.flush(core, archive).await?;
    }
    // A conflicting session's watermark does not move, so it would look like "more" at
    // once, forever: wait for the interval instead.
    Ok(more && !conflicted)
}

#[derive(Default)]
struct Batch {
    runs: Vec<ArchiveRun>,
    /// Per run: the shard and the watermark to propose once Postgres has the rows.
    marks: Vec<(Rc<Shard>, String, u64)>,
    rows: usize,
    bytes: usize,
}

impl Batch {
    /// Send the batch, then propose the watermarks Postgres allows. Returns whether some
    /// session conflicted (rows of another writer in the table).
    async fn flush(self, core: &Rc<Core>, archive: &Archive) -> Result<bool, FlushError> {
        let counters = &core.metrics.counters;
        counters.archive_attempted.add(self.rows as u64);
        counters.archive_bytes_attempted.add(self.bytes as u64);
        let stored = archive.write(self.runs).await?;
        counters.archive_inserted.add(stored.rows);
        counters.archive_bytes_inserted.add(stored.bytes);
        if !stored.conflicts.is_empty() {
            let at: Vec<String> = stored.conflicts.iter().map(|(session, seq)| format!("{session}#{seq}")).collect();
            tracing::error!(
                "archive: Postgres already holds other events at {}: is another Starcite cluster writing to this table? \
                 These sessions are not archived (their events stay in the log) until the table is fixed",
                at.join(", ")
            );
        }
        // Postgres has every row: advance the watermarks (the shards' proposal queues pack
        // them into one Raft entry per shard), except for conflicting sessions.
        let timeout = Duration::from_millis(core.config.request_timeout_ms);
        let conflicting = |session: &str| stored.conflicts.iter().any(|(s, _)| s == session);
        let marks = self.marks.into_iter().filter(|(_, session, _)| !conflicting(session)).map(|(shard, session, seq)| async move {
            let cmd = Command::MarkArchived { session_id: session, archived_seq: seq };
            Shard::write(&shard, std::sync::Arc::new(cmd), timeout).await
        });
        for result in futures::future::join_all(marks).await {
            if let Err(e) = result {
                // Leadership moved (or the group is unavailable): the rows are in Postgres
                // and whoever leads next sends them again, which inserts nothing twice.
                tracing::debug!("archive: watermark not advanced: {e:?}");
            }
        }
        Ok(!stored.conflicts.is_empty())
    }
}
