//! Log engine micro-benchmark: N concurrent appenders on one core, each appending one
//! record at a time and waiting for its fdatasync'd ack. Reports events/s, fdatasyncs/s,
//! records per group commit, and p50/p99 ack latency.
//!
//! Run: `cargo bench --bench log_append` (data under target/bench-log, on the real disk:
//! O_DIRECT does not work on tmpfs).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use starcite::log::LogEngine;

const RUN: Duration = Duration::from_secs(3);
const RECORD_BYTES: usize = 256;

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-log");
    println!("{:>10} {:>12} {:>12} {:>12} {:>10} {:>10}", "appenders", "events/s", "fsyncs/s", "rec/commit", "p50_us", "p99_us");
    for appenders in [1usize, 16, 256] {
        let dir = base.join(format!("a{appenders}"));
        let _ = std::fs::remove_dir_all(&dir);
        let ex = glommio::LocalExecutorBuilder::default().make().expect("executor");
        ex.run(async move {
            let engine = LogEngine::open(&dir, 64 * 1024 * 1024, &mut |_, _| Ok(())).await.unwrap();
            let latencies = Rc::new(RefCell::new(Vec::new()));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..appenders {
                let engine = engine.clone();
                let latencies = latencies.clone();
                tasks.push(glommio::spawn_local(async move {
                    let payload = vec![7u8; RECORD_BYTES];
                    while started.elapsed() < RUN {
                        let t = Instant::now();
                        let (tx, rx) = futures::channel::oneshot::channel();
                        engine.submit(&[&payload], Box::new(move |r| drop(tx.send(r)))).unwrap();
                        rx.await.unwrap().unwrap();
                        latencies.borrow_mut().push(t.elapsed().as_micros() as u64);
                    }
                }));
            }
            for t in tasks {
                t.await;
            }
            let secs = started.elapsed().as_secs_f64();
            let mut l = latencies.borrow().clone();
            l.sort_unstable();
            let events = l.len() as f64;
            let fsyncs = engine.stats.counters.fsyncs.get() as f64;
            println!(
                "{appenders:>10} {:>12.0} {:>12.0} {:>12.1} {:>10} {:>10}",
                events / secs,
                fsyncs / secs,
                events / fsyncs.max(1.0),
                percentile(&l, 0.5),
                percentile(&l, 0.99)
            );
            engine.shutdown();
        });
    }
}
