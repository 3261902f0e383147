//! The Postgres archive (SPEC §5): one thread outside the glommio executors, pinned to a
//! CPU no executor uses when there is one, running tokio-postgres on a current-thread tokio
//! runtime with a pool of at most `DB_POOL_SIZE` connections.
//!
//! The cores (runtime/archiver.rs) hand it batches of committed events through one bounded
//! channel ([`Archive::write`]) and await the answer on a oneshot: no executor ever blocks
//! on Postgres, and a core has at most one batch in flight, so what waits for the archive
//! waits in the Raft log on disk, never in this thread's memory.
//!
//! Invariants:
//! - A batch is answered `Ok` only after Postgres confirmed every row of it (inserted now,
//!   or already there: `ON CONFLICT DO NOTHING` makes delivery at-least-once and rows
//!   exactly-once). Only then may the caller advance the replicated watermark.
//! - A value Postgres refuses never stalls the archive: the batch is split until the
//!   refused row is alone, and that row is stored in its lossless fallback form
//!   (archive/row.rs).
//! - The schema is migrated (idempotently, under an advisory lock) before the first write
//!   of this process; an unreachable database is retried and logged, never fatal.
//!
//! Layer: imports `limits` only (and `session` in tests); `runtime` and `node` import it.

pub mod row;
pub mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::channel::oneshot;
use tokio::sync::{mpsc, OnceCell};
use tokio_postgres::NoTls;

use crate::limits::{
    ARCHIVE_CONNECT_TIMEOUT_MS, ARCHIVE_QUEUE_DEPTH, ARCHIVE_READ_TIMEOUT_MS, ARCHIVE_RETRY_MAX_MS, ARCHIVE_RETRY_MIN_MS,
    ARCHIVE_WRITE_TIMEOUT_MS,
};
use row::{JsonColumn, Row};

/// Committed events `first_seq..` of one session, contiguous, as rendered JSON.
#[derive(Debug, Clone)]
pub struct ArchiveRun {
    pub session: String,
    pub first_seq: u64,
    pub events: Vec<Arc<str>>,
}

/// What Postgres newly stored for one batch (rows already there are confirmed too, but
/// not counted here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flushed {
    pub rows: u64,
    /// Bytes of the inserted rows' event JSON.
    pub bytes: u64,
    /// Sessions of the batch whose rows Postgres already held *with other content*, each
    /// with its first such seq (`schema::DIFFERING_ROWS`): something else writes to the
    /// table. Their events are not archived — their watermarks must not move — while the
    /// batch's other sessions are.
    pub conflicts: Vec<(String, i64)>,
}

/// Why a batch was not confirmed. Every case leaves the watermark where it was: the rows
/// are sent again later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ArchiveError {
    #[error("Postgres unavailable: {0}")]
    Unavailable(String),
    #[error("Postgres refused the batch: {0}")]
    Database(String),
    #[error("no answer from Postgres within {0} ms")]
    Timeout(u64),
    #[error(transparent)]
    Malformed(Arc<row::MalformedEvent>),
    #[error("the archive thread stopped")]
    Stopped,
    /// The archive lacks an event the watermark says it has (a table changed by hand).
    #[error("the archive has no event {seq} of session {session}")]
    Missing { session: String, seq: u64 },
}

impl From<tokio_postgres::Error> for ArchiveError {
    fn from(e: tokio_postgres::Error) -> ArchiveError {
        match e.as_db_error() {
            // A statement Postgres answered with an error (the connection is fine).
            Some(db) => ArchiveError::Database(format!("{} ({})", db.message(), db.code().code())),
            None => ArchiveError::Unavailable(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ArchiveError {
    fn from(e: deadpool_postgres::PoolError) -> ArchiveError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => ArchiveError::Unavailable(other.to_string()),
        }
    }
}

enum Job {
    Write { runs: Vec<ArchiveRun>, reply: oneshot::Sender<Result<Flushed, ArchiveError>> },
    Read { session: String, after: u64, count: u64, max_bytes: usize, reply: oneshot::Sender<Result<Vec<String>, ArchiveError>> },
}

/// The cores' handle on the archive thread (cheap to clone, `Send`).
#[derive(Clone)]
pub struct Archive {
    jobs: mpsc::Sender<Job>,
}

impl Archive {
    /// Store `runs` in Postgres; `Ok` once every row is confirmed. Waits (asynchronously,
    /// from any executor) while the thread's queue is full.
    pub async fn write(&self, runs: Vec<ArchiveRun>) -> Result<Flushed, ArchiveError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Write { runs, reply }).await.map_err(|_| ArchiveError::Stopped)?;
        answer.await.unwrap_or(Err(ArchiveError::Stopped))
    }

    /// Events from `after+1`, at most `count`, each its exact JSON text as archived, in
    /// order, gap-free, stopping once their text passes `max_bytes` (the first is always
    /// there: Postgres applies the cut, so a page of huge events never crosses the
    /// wire whole). Errors: Postgres unreachable or slow (`ARCHIVE_READ_TIMEOUT_MS`), or
    /// [`ArchiveError::Missing`] when the archive lacks the next event.
    pub async fn read(&self, session: &str, after: u64, count: u64, max_bytes: usize) -> Result<Vec<String>, ArchiveError> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Read { session: session.to_string(), after, count, max_bytes, reply };
        self.jobs.send(job).await.map_err(|_| ArchiveError::Stopped)?;
        answer.await.unwrap_or(Err(ArchiveError::Stopped))
    }
}

/// The archive thread before it runs: made first, so the cores get their [`Archive`]
/// handles, and spawned once they are pinned (to choose a CPU none of them uses).
pub struct ArchiveWorker {
    jobs: mpsc::Receiver<Job>,
    pg: tokio_postgres::Config,
    pool_size: usize,
}

/// A Postgres URL as tokio-postgres reads it (`postgres://user:pass@host:port/db?…`).
/// Errors: the parser's message (the URL itself is not repeated: it may hold a password).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    let mut pg = tokio_postgres::Config::from_str(url).map_err(|e| e.to_string())?;
    if pg.get_hosts().is_empty() {
        return Err("no host in the URL".into());
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_millis(ARCHIVE_CONNECT_TIMEOUT_MS));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("starcite-archive");
    }
    Ok(pg)
}

/// The handle and the thread-to-be for `url` (checked by [`parse_url`]) with at most
/// `pool_size` connections.
pub fn channel(url: &str, pool_size: u32) -> Result<(Archive, ArchiveWorker), String> {
    let pg = parse_url(url)?;
    let (tx, rx) = mpsc::channel(ARCHIVE_QUEUE_DEPTH);
    Ok((Archive { jobs: tx }, ArchiveWorker { jobs: rx, pg, pool_size: pool_size.max(1) as usize }))
}

impl ArchiveWorker {
    /// Start the thread, pinned to `cpu` when given. It runs until every [`Archive`]
    /// handle is dropped.
    pub fn spawn(self, cpu: Option<usize>) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new().name("starcite-archive".into()).spawn(move || {
            if let Some(cpu) = cpu {
                pin_to(cpu);
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(rt) => rt.block_on(self.run()),
                Err(e) => tracing::error!("archive thread: no tokio runtime: {e}; nothing is archived (events stay in the log)"),
            }
        })
    }

    async fn run(mut self) {
        let manager = Manager::from_config(self.pg.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let timeout = Some(Duration::from_millis(ARCHIVE_CONNECT_TIMEOUT_MS));
        let pool = match Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(timeout)
            .wait_timeout(Some(Duration::from_millis(ARCHIVE_WRITE_TIMEOUT_MS)))
            .build()
        {
            Ok(pool) => pool,
            Err(e) => {
                tracing::error!("archive thread: no connection pool: {e}; nothing is archived (events stay in the log)");
                return;
            }
        };
        let schema = Arc::new(OnceCell::new());
        tokio::spawn(connect_at_startup(pool.clone(), schema.clone()));
        while let Some(job) = self.jobs.recv().await {
            let (pool, schema) = (pool.clone(), schema.clone());
            tokio::spawn(async move {
                match job {
                    Job::Write { runs, reply } => {
                        let limit = Duration::from_millis(ARCHIVE_WRITE_TIMEOUT_MS);
                        let result = tokio::time::timeout(limit, write(&pool, &schema, runs))
                            .await
                            .unwrap_or(Err(ArchiveError::Timeout(ARCHIVE_WRITE_TIMEOUT_MS)));
                        let _ = reply.send(result);
                    }
                    Job::Read { session, after, count, max_bytes, reply } => {
                        let limit = Duration::from_millis(ARCHIVE_READ_TIMEOUT_MS);
                        let result = tokio::time::timeout(limit, read(&pool, &schema, &session, after, count, max_bytes))
                            .await
                            .unwrap_or(Err(ArchiveError::Timeout(ARCHIVE_READ_TIMEOUT_MS)));
                        let _ = reply.send(result);
                    }
                }
            });
        }
    }
}

/// Pin the calling thread to `cpu` (best effort: a failure leaves it where the OS puts it).
fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, of the size passed.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        tracing::warn!(cpu, "archive thread: could not pin to its CPU: {}", std::io::Error::last_os_error());
    }
}

/// Connect and migrate at startup, retrying with capped backoff: the operator sees at once
/// whether the archive works, and a database that is down is waited for, not fatal.
async fn connect_at_startup(pool: Pool, schema: Arc<OnceCell<()>>) {
    let mut wait = ARCHIVE_RETRY_MIN_MS;
    loop {
        match migrated_client(&pool, &schema).await {
            Ok(_) => {
                tracing::info!("archive: connected to Postgres, schema ready");
                return;
            }
            Err(e) => {
                tracing::warn!(retry_in_ms = wait, "archive: {e}; appends go on, events wait in the log");
                tokio::time::sleep(Duration::from_millis(wait)).await;
                wait = (wait * 2).min(ARCHIVE_RETRY_MAX_MS);
            }
        }
    }
}

/// A pooled connection, once the schema is migrated (the first caller migrates).
async fn migrated_client(pool: &Pool, schema: &OnceCell<()>) -> Result<deadpool_postgres::Object, ArchiveError> {
    let mut client = pool.get().await?;
    schema
        .get_or_try_init(|| async {
            let tx = client.transaction().await?;
            for statement in schema::MIGRATION {
                tx.batch_execute(statement).await?;
            }
            tx.commit().await?;
            Ok::<(), ArchiveError>(())
        })
        .await?;
    Ok(client)
}

/// Store every event of `runs`; see the module invariants.
async fn write(pool: &Pool, schema: &OnceCell<()>, runs: Vec<ArchiveRun>) -> Result<Flushed, ArchiveError> {
    let mut rows = Vec::with_capacity(runs.iter().map(|r| r.events.len()).sum());
    for run in &runs {
        for (index, event) in run.events.iter().enumerate() {
            let row = Row::parse(&run.session, index, event).map_err(|e| ArchiveError::Malformed(Arc::new(e)))?;
            // The watermark will say "archived up to the run's end": the run must be
            // exactly the seqs it claims, or that mark would cover rows never sent.
            let want = run.first_seq + index as u64;
            if row.seq as u64 != want {
                let reason = format!("seq {} where {want} was expected", row.seq);
                return Err(ArchiveError::Malformed(Arc::new(row::MalformedEvent { session: run.session.clone(), index, reason })));
            }
            rows.push(row);
        }
    }
    let client = migrated_client(pool, schema).await?;
    let mut stored = insert_all(&client, &mut rows).await?;
    if stored.rows < rows.len() as u64 {
        // Rows skipped as already there must be these very events (a re-send).
        let sessions: Vec<&str> = rows.iter().map(|r| r.session_id.as_str()).collect();
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let texts: Vec<&str> = rows.iter().map(|r| r.event_json.as_str()).collect();
        let differing = client.query(schema::DIFFERING_ROWS, &[&sessions, &seqs, &texts]).await?;
        stored.conflicts = differing.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
    }
    Ok(stored)
}

/// Events of `session` from `after+1` (at most `count`, within `max_bytes`), checked gap-free.
async fn read(
    pool: &Pool,
    schema: &OnceCell<()>,
    session: &str,
    after: u64,
    count: u64,
    max_bytes: usize,
) -> Result<Vec<String>, ArchiveError> {
    let client = migrated_client(pool, schema).await?;
    let statement = client.prepare_cached(schema::READ_EVENTS).await?;
    let (from, limit) = (i64::try_from(after).unwrap_or(i64::MAX), i64::try_from(count).unwrap_or(i64::MAX));
    let budget = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let rows = client.query(&statement, &[&session, &from, &limit, &budget]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let want = after + 1 + i as u64;
        let (seq, text): (i64, Option<String>) = (row.get(0), row.get(1));
        match text {
            Some(text) if seq as u64 == want => out.push(text),
            _ => return Err(ArchiveError::Missing { session: session.to_string(), seq: want }),
        }
    }
    if out.is_empty() && count > 0 {
        return Err(ArchiveError::Missing { session: session.to_string(), seq: after + 1 });
    }
    Ok(out)
}

/// Whether Postgres refused a value (SQLSTATE class 22, "data exception": `\u0000` in
/// jsonb, a number beyond numeric's range), as opposed to any other failure.
fn is_refused_value(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("22"))
}

/// Insert `rows`, splitting the batch around rows Postgres refuses until each stands
/// alone, then storing those in their fallback form (archive/row.rs). Inserts are
/// idempotent, so a range inserted twice is harmless.
async fn insert_all(client: &deadpool_postgres::Object, rows: &mut [Row]) -> Result<Flushed, ArchiveError> {
    let mut total = Flushed::default();
    let mut ranges = vec![(0, rows.len())];
    while let Some((lo, hi)) = ranges.pop() {
        if lo == hi {
            continue;
        }
        match insert(client, &rows[lo..hi]).await {
            Ok(done) => {
                total.rows += done.rows;
                total.bytes += done.bytes;
            }
            Err(e) if is_refused_value(&e) && hi - lo > 1 => {
                let mid = lo + (hi - lo) / 2;
                ranges.push((mid, hi));
                ranges.push((lo, mid));
            }
            Err(e) if is_refused_value(&e) => {
                for column in JsonColumn::ALL {
                    let probe = client.query_one(schema::PROBE_JSONB, &[&rows[lo].json(column)]).await;
                    match probe {
                        Err(e) if is_refused_value(&e) => rows[lo].store_as_text(column),
                        Err(e) => return Err(e.into()),
                        Ok(_) => {}
                    }
                }
                let row = &rows[lo];
                tracing::info!(session = %row.session_id, seq = row.seq, "archive: Postgres refused a value as it is; stored in its lossless fallback form");
                let done = insert(client, &rows[lo..hi]).await?;
                total.rows += done.rows;
                total.bytes += done.bytes;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(total)
}

/// One INSERT of `rows` (schema::INSERT_BATCH, prepared once per pooled connection).
async fn insert(client: &deadpool_postgres::Object, rows: &[Row]) -> Result<Flushed, tokio_postgres::Error> {
    let statement = client.prepare_cached(schema::INSERT_BATCH).await?;
    insert_batch(client, &statement, rows).await
}

/// One INSERT of `rows` as eleven parallel arrays through `statement` (schema::INSERT_BATCH
/// prepared): the archive's bulk path, public for the bulk-path benchmark
/// (`benches/archive_insert.rs`). Rows already stored are skipped and not counted.
pub async fn insert_batch(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    rows: &[Row],
) -> Result<Flushed, tokio_postgres::Error> {
    let sessions: Vec<&str> = rows.iter().map(|r| r.session_id.as_str()).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
    let actors: Vec<&str> = rows.iter().map(|r| r.actor.as_str()).collect();
    let sources: Vec<Option<&str>> = rows.iter().map(|r| r.source.as_deref()).collect();
    let metadata: Vec<&str> = rows.iter().map(|r| r.metadata.as_str()).collect();
    let refs: Vec<&str> = rows.iter().map(|r| r.refs.as_str()).collect();
    let keys: Vec<Option<&str>> = rows.iter().map(|r| r.idempotency_key.as_deref()).collect();
    let times: Vec<&str> = rows.iter().map(|r| r.inserted_at.as_str()).collect();
    let texts: Vec<&str> = rows.iter().map(|r| r.event_json.as_str()).collect();
    let answer = client
        .query_one(statement, &[&sessions, &seqs, &types, &payloads, &actors, &sources, &metadata, &refs, &keys, &times, &texts])
        .await?;
    let (count, bytes): (i64, i64) = (answer.get(0), answer.get(1));
    Ok(Flushed { rows: count.max(0) as u64, bytes: bytes.max(0) as u64, conflicts: Vec::new() })
}
