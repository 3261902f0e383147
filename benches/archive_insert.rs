//! The archive's bulk path, measured (issue #11: "choose the fastest correct bulk path and
//! show the measurement"): rows/s into a real Postgres for
//!
//! - `unnest`: one `INSERT … SELECT … FROM UNNEST($1::text[], …) ON CONFLICT DO NOTHING`
//!   per batch — what the archive does (`starcite::archive::insert_batch`);
//! - `copy`: per batch, a transaction that `COPY … FROM STDIN (FORMAT binary)` into a
//!   temporary staging table, then `INSERT … SELECT … ON CONFLICT DO NOTHING` from it.
//!
//! Both are correct (idempotent); the faster one wins. Rounds alternate (unnest, copy,
//! unnest, copy, …) so a noisy machine hurts both alike; the summary is the ratio.
//!
//! Run: `STARCITE_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench
//! --bench archive_insert` (it creates and drops its own schema `starcite_bench`).
//! Without the variable it prints how to run it and exits 0.

use std::time::Instant;

use futures::pin_mut;
use starcite::archive::row::Row;
use starcite::archive::{insert_batch, schema};
use starcite::session::{render_event, EventBody};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

const ROWS_PER_ROUND: usize = 100_000;
const BATCH_ROWS: usize = starcite::limits::ARCHIVE_BATCH_ROWS;
/// Rounds per path (`STARCITE_BENCH_ROUNDS`, default 5): the median is reported.
fn rounds() -> usize {
    std::env::var("STARCITE_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

fn rows(round: usize, path: &str) -> Vec<Row> {
    (0..ROWS_PER_ROUND)
        .map(|i| {
            let body = EventBody {
                event_type: "message.delta".into(),
                payload_json: format!(
                    r#"{{"text":"token {i} of a streamed answer, about a hundred bytes of it","index":{i},"final":false}}"#
                ),
                actor: "agent:planner".into(),
                source: Some("bench".into()),
                metadata_json: r#"{"model":"m-1","trace":"abc"}"#.into(),
                refs_json: "{}".into(),
                fingerprint: 0,
            };
            let session = format!("{path}-{round}-{}", i % 100);
            let json = render_event((i / 100 + 1) as u64, &body, None, 1_764_800_000_000_000 + i as i64);
            Row::parse(&session, i, &json).expect("rendered event")
        })
        .collect()
}

async fn unnest(client: &Client, rows: &[Row]) -> u64 {
    let statement = client.prepare(schema::INSERT_BATCH).await.unwrap();
    let mut stored = 0;
    for batch in rows.chunks(BATCH_ROWS) {
        stored += insert_batch(client, &statement, batch).await.unwrap().rows;
    }
    stored
}

async fn copy(client: &mut Client, rows: &[Row]) -> u64 {
    let types = [
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
    ];
    let mut stored = 0;
    for batch in rows.chunks(BATCH_ROWS) {
        let tx = client.transaction().await.unwrap();
        tx.batch_execute(
            "CREATE TEMP TABLE staging (session_id text, seq int8, type text, payload text, actor text, source text, \
             metadata text, refs text, idempotency_key text, inserted_at text, event_json text) ON COMMIT DROP",
        )
        .await
        .unwrap();
        let sink = tx.copy_in("COPY staging FROM STDIN (FORMAT binary)").await.unwrap();
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for r in batch {
            let values: [&(dyn ToSql + Sync); 11] = [
                &r.session_id,
                &r.seq,
                &r.event_type,
                &r.payload,
                &r.actor,
                &r.source,
                &r.metadata,
                &r.refs,
                &r.idempotency_key,
                &r.inserted_at,
                &r.event_json,
            ];
            writer.as_mut().write(&values).await.unwrap();
        }
        writer.finish().await.unwrap();
        stored += tx
            .execute(
                "INSERT INTO events (session_id, seq, type, payload, actor, source, metadata, refs, idempotency_key, inserted_at, event_json) \
                 SELECT session_id, seq, type, payload::jsonb, actor, source, metadata::jsonb, refs::jsonb, idempotency_key, \
                        inserted_at::timestamptz, event_json FROM staging ON CONFLICT (session_id, seq) DO NOTHING",
                &[],
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    stored
}

fn main() {
    let Ok(url) = std::env::var("STARCITE_BENCH_DATABASE_URL") else {
        println!("archive_insert: set STARCITE_BENCH_DATABASE_URL=postgres://… to measure the archive's bulk paths (skipped)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute("DROP SCHEMA IF EXISTS starcite_bench CASCADE; CREATE SCHEMA starcite_bench; SET search_path = starcite_bench")
            .await
            .unwrap();
        for statement in schema::MIGRATION {
            client.batch_execute(statement).await.unwrap();
        }
        let rounds = rounds();
        println!("{ROWS_PER_ROUND} rows per round, batches of {BATCH_ROWS}, {rounds} rounds each, alternating");
        let (mut unnest_rate, mut copy_rate) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            for path in ["unnest", "copy"] {
                let rows = rows(round, path);
                let bytes: usize = rows.iter().map(|r| r.event_json.len()).sum();
                let started = Instant::now();
                let stored = if path == "unnest" { unnest(&client, &rows).await } else { copy(&mut client, &rows).await };
                let secs = started.elapsed().as_secs_f64();
                assert_eq!(stored as usize, rows.len(), "{path}: every row stored once");
                let rate = rows.len() as f64 / secs;
                println!("round {round} {path:>6}: {rate:>9.0} rows/s  {:>6.1} MB/s of event JSON", bytes as f64 / secs / 1e6);
                if path == "unnest" {
                    unnest_rate.push(rate)
                } else {
                    copy_rate.push(rate)
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (u, c) = (median(&mut unnest_rate), median(&mut copy_rate));
        println!("median: unnest {u:.0} rows/s, copy {c:.0} rows/s, unnest/copy = {:.2}", u / c);
        client.batch_execute("DROP SCHEMA starcite_bench CASCADE").await.unwrap();
    });
}
