//! The log engine under injected file faults (src/log/file.rs, `FaultyFs`): what it
//! promises when the disk misbehaves, asserted — a failed fdatasync fails its batch and
//! everything after it and is never retried; a short or failed write never advances the
//! durable position; ENOSPC while pre-allocating a segment is a clear error; a crash at any
//! step of a segment rotation recovers every acknowledged record.

use std::path::Path;
use std::rc::Rc;

use starcite::log::file::{Fault, FaultPlan, FaultyFs, FileOp, Rule};
use starcite::log::{Loc, LogEngine, LogError};

const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

fn run<T: 'static>(fut: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(fut)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("record-{i}-").into_bytes();
    p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
    p
}

async fn open_faulty(dir: &Path, plan: &Rc<FaultPlan>) -> Result<Rc<LogEngine>, LogError> {
    LogEngine::open_with(Rc::new(FaultyFs { plan: plan.clone() }), dir, SEGMENT_BYTES, &mut |_, _| Ok(())).await
}

/// Every record recovery finds when the directory is opened again on the real file system.
fn recovered(dir: &Path) -> Result<Vec<(Loc, Vec<u8>)>, LogError> {
    let dir = dir.to_path_buf();
    run(async move {
        let mut seen = Vec::new();
        let engine = LogEngine::open(&dir, SEGMENT_BYTES, &mut |loc, p| {
            seen.push((loc, p.to_vec()));
            Ok(())
        })
        .await?;
        engine.shutdown();
        Ok(seen)
    })
}

/// Submit records and wait for each one's durability callback.
async fn append(engine: &LogEngine, p: &[u8]) -> Result<Loc, LogError> {
    let (tx, rx) = futures::channel::oneshot::channel();
    let locs = engine.submit(&[p], Box::new(move |r| drop(tx.send(r))))?;
    rx.await.expect("callback ran")?;
    Ok(locs[0])
}

type Waiter = futures::channel::oneshot::Receiver<Result<(), LogError>>;

/// Run `body` on an executor with a fresh directory and an empty fault plan it can add to;
/// returns the directory (kept alive for the caller's checks) and what `body` returned.
fn with_fresh_plan<T: 'static, F: std::future::Future<Output = T> + 'static>(
    body: impl FnOnce(std::path::PathBuf, Rc<FaultPlan>) -> F,
) -> (tempfile::TempDir, T) {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = run(body(tmp.path().to_path_buf(), FaultPlan::new(vec![])));
    (tmp, out)
}

/// Append records `range` (each `len` bytes) one after the other, each acknowledged.
async fn append_acked(engine: &LogEngine, range: std::ops::Range<usize>, len: usize) -> Vec<Loc> {
    let mut acked = Vec::new();
    for i in range {
        acked.push(append(engine, &payload(i, len)).await.unwrap());
    }
    acked
}

/// Submit records `range` in one turn of the executor (so they form one batch); returns
/// their places and their durability waiters.
fn submit_batch(engine: &LogEngine, range: std::ops::Range<usize>, len: usize) -> (Vec<Loc>, Vec<Waiter>) {
    range
        .map(|i| {
            let (tx, rx) = futures::channel::oneshot::channel();
            let loc = engine.submit(&[&payload(i, len)], Box::new(move |r| drop(tx.send(r)))).unwrap()[0];
            (loc, rx)
        })
        .unzip()
}

#[test]
fn a_failed_fdatasync_fails_its_whole_batch_and_every_later_append_and_is_never_retried() {
    let (tmp, before) = with_fresh_plan(|dir, plan| async move {
        {
            let engine = open_faulty(&dir, &plan).await.unwrap();
            let acked = append_acked(&engine, 0..5, 100).await;
            let durable_before = engine.durable_position();
            plan.fail_next(FileOp::Fdatasync, Fault::Errno(libc::EIO), false);
            // Ten records submitted in one turn: one batch, one failing fdatasync.
            let (locs, waiters) = submit_batch(&engine, 5..15, 100);
            for rx in waiters {
                let outcome = rx.await.expect("callback ran");
                assert!(matches!(outcome, Err(LogError::Stopped { .. })), "{outcome:?}");
            }
            let syncs_at_failure = plan.count(FileOp::Fdatasync);
            // Every later append fails at once; nothing is retried behind its back.
            assert!(matches!(engine.submit(&[b"later"], Box::new(|_| {})), Err(LogError::Stopped { .. })));
            glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
            assert_eq!(plan.count(FileOp::Fdatasync), syncs_at_failure, "an fdatasync was retried");
            assert!(engine.poisoned().is_some_and(|why| why.contains("fdatasync")), "{:?}", engine.poisoned());
            // The failed batch never became durable, so it is not readable.
            assert_eq!(engine.durable_position(), durable_before);
            assert!(engine.read(locs[0]).await.is_err());
            assert!(engine.read(acked[4]).await.is_ok());
            acked
        }
    });
    // On restart every acknowledged record is there.
    let found = recovered(tmp.path()).unwrap();
    for (i, loc) in before.iter().enumerate() {
        assert_eq!(found[i], (*loc, payload(i, 100)));
    }
}

#[test]
fn a_short_write_never_advances_the_durable_position_and_recovery_drops_its_bytes() {
    let (tmp, acked) = with_fresh_plan(|dir, plan| async move {
        {
            let engine = open_faulty(&dir, &plan).await.unwrap();
            let acked = append_acked(&engine, 0..3, 3000).await;
            let durable_before = engine.durable_position();
            let syncs_before = plan.count(FileOp::Fdatasync);
            plan.fail_next(FileOp::Write, Fault::ShortWrite, false);
            // Three records of 3 KB in one batch: more than one block, so the write is cut.
            let (_, waiters) = submit_batch(&engine, 3..6, 3000);
            for rx in waiters {
                let outcome = rx.await.expect("callback ran");
                assert!(matches!(&outcome, Err(LogError::Stopped { reason }) if reason.contains("short write")), "{outcome:?}");
            }
            assert_eq!(engine.durable_position(), durable_before);
            assert_eq!(plan.count(FileOp::Fdatasync), syncs_before, "no fdatasync after the failed write");
            acked
        }
    });
    let found = recovered(tmp.path()).unwrap();
    assert!(found.len() >= acked.len());
    for (i, loc) in acked.iter().enumerate() {
        assert_eq!(found[i], (*loc, payload(i, 3000)));
    }
}

#[test]
fn enospc_while_preallocating_a_segment_is_a_clear_error_not_a_panic() {
    // At startup: the first segment cannot be pre-zeroed.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    let plan = FaultPlan::new(vec![Rule { op: Some(FileOp::WriteZeros), nth: 1, fault: Fault::Errno(libc::ENOSPC), sticky: true }]);
    let err = run({
        let (dir, plan) = (dir.clone(), plan.clone());
        async move { open_faulty(&dir, &plan).await.err() }
    })
    .expect("open must fail");
    match &err {
        LogError::Io { op, segment, source, .. } => {
            assert_eq!(*op, "zero-fill");
            assert!(segment.to_string_lossy().ends_with(".seg.tmp"), "{err}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    assert!(err.to_string().contains("No space left on device"), "{err}");

    // Later: the segment prepared ahead of the writer cannot be; the writer reaches the
    // end of the active segment and stops with that error; what was acknowledged stays.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    let plan = FaultPlan::new(vec![]);
    let acked = run({
        let (dir, plan) = (dir.clone(), plan.clone());
        async move {
            let engine = open_faulty(&dir, &plan).await.unwrap();
            plan.fail_next(FileOp::WriteZeros, Fault::Errno(libc::ENOSPC), true);
            let mut acked = Vec::new();
            for i in 0..400 {
                match append(&engine, &payload(i, 20_000)).await {
                    Ok(loc) => acked.push(loc),
                    Err(e) => {
                        assert!(e.to_string().contains("No space left on device"), "{e}");
                        break;
                    }
                }
            }
            assert!(engine.poisoned().is_some(), "the writer must stop once it needs the missing segment");
            assert!(acked.iter().all(|l| l.segment == 1));
            acked
        }
    });
    assert!(acked.len() > 100);
    let found = recovered(&dir).unwrap();
    for (i, loc) in acked.iter().enumerate() {
        assert_eq!(found[i], (*loc, payload(i, 20_000)));
    }
}

/// Append records until the log has rolled over into segment 2 (or an operation fails);
/// returns the acknowledged records.
async fn roll_over(engine: &LogEngine) -> Vec<(Loc, Vec<u8>)> {
    let mut acked = Vec::new();
    for i in 0..260 {
        let p = payload(i, 20_000);
        match append(engine, &p).await {
            Ok(loc) => acked.push((loc, p)),
            Err(_) => break,
        }
    }
    acked
}

#[test]
fn a_crash_at_any_step_of_a_segment_rotation_recovers_every_acknowledged_record() {
    // A clean run, to find the rotation's steps among all file operations.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let plan = FaultPlan::new(vec![]);
    let clean = run({
        let (dir, plan) = (tmp.path().to_path_buf(), plan.clone());
        async move {
            let engine = open_faulty(&dir, &plan).await.unwrap();
            let acked = roll_over(&engine).await;
            engine.shutdown();
            acked
        }
    });
    assert!(clean.last().is_some_and(|(l, _)| l.segment == 2), "the workload must roll over");
    let calls = plan.calls.borrow().clone();
    let is_seg2 = |p: &Path| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("00000000000000000002"));
    let first = calls.iter().position(|(op, p)| *op == FileOp::Create && is_seg2(p)).expect("segment 2 created");
    // The first record write into the renamed segment 2 (not the header write of its temp file).
    let seg2_final = |p: &Path| p.file_name().is_some_and(|n| n == "00000000000000000002.seg");
    let last = calls.iter().position(|(op, p)| *op == FileOp::Write && seg2_final(p)).expect("segment 2 written");
    assert!(last > first);

    // Crash at every step of the rotation (every operation on segment 2's files up to its
    // first record write) and at the two operations on either side; reopen on the real
    // file system each time.
    let mut points: Vec<usize> = (first..=last).filter(|&i| is_seg2(&calls[i].1)).collect();
    points.extend([first.saturating_sub(2), first.saturating_sub(1), last + 1, last + 2]);
    points.sort_unstable();
    points.dedup();
    let mut checked = 0;
    for crash_at in points {
        let call = &calls[crash_at];
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let plan = FaultPlan::new(vec![Rule { op: None, nth: crash_at as u64 + 1, fault: Fault::Crash, sticky: false }]);
        let acked = run({
            let (dir, plan) = (tmp.path().to_path_buf(), plan.clone());
            async move {
                let engine = open_faulty(&dir, &plan).await.unwrap();
                roll_over(&engine).await
            }
        });
        assert!(plan.crashed(), "crash point {crash_at} was never reached");
        let found = recovered(tmp.path()).unwrap_or_else(|e| panic!("crash at operation {crash_at} ({call:?}): reopen failed: {e}"));
        assert!(found.len() >= acked.len(), "crash at {crash_at}: {} recovered < {} acknowledged", found.len(), acked.len());
        for (i, rec) in acked.iter().enumerate() {
            assert_eq!(&found[i], rec, "crash at operation {crash_at}: record {i}");
        }
        checked += 1;
    }
    // Create, header write, zero-fill writes, fdatasync, rename, first record write.
    assert!(checked >= 10, "only {checked} crash points");
}
