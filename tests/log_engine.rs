//! The log engine against real files: group commit, reopen, rollover, torn tails, corruption.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use starcite::log::{Loc, LogEngine, LogError};

const SMALL_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

fn run<T: 'static>(fut: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(fut)
}

fn payload(i: usize, len: usize) -> Vec<u8> {
    let mut p = format!("record-{i}-").into_bytes();
    p.resize(len.max(p.len()), b'a' + (i % 26) as u8);
    p
}

/// Open `dir`, collecting every recovered record.
async fn open_collect(dir: &Path, segment_bytes: u64) -> Result<(Rc<LogEngine>, Vec<(Loc, Vec<u8>)>), LogError> {
    let mut seen = Vec::new();
    let engine = LogEngine::open(dir, segment_bytes, &mut |loc, p| {
        seen.push((loc, p.to_vec()));
        Ok(())
    })
    .await?;
    Ok((engine, seen))
}

/// Submit one record and wait until it is durable.
async fn append(engine: &LogEngine, p: &[u8]) -> Loc {
    let (tx, rx) = futures::channel::oneshot::channel();
    let locs = engine.submit(&[p], Box::new(move |r| drop(tx.send(r)))).expect("submit");
    rx.await.expect("callback ran").expect("durable");
    locs[0]
}

fn write_records(dir: &Path, n: usize, len: usize) -> Vec<Loc> {
    let dir = dir.to_path_buf();
    run(async move {
        let (engine, seen) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        assert!(seen.is_empty());
        let mut locs = Vec::new();
        for i in 0..n {
            locs.push(append(&engine, &payload(i, len)).await);
        }
        engine.shutdown();
        locs
    })
}

#[test]
fn records_written_concurrently_are_durable_readable_and_group_committed() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        let appenders = 256;
        let per_appender = 4;
        let results = Rc::new(RefCell::new(Vec::new()));
        let mut tasks = Vec::new();
        for a in 0..appenders {
            let engine = engine.clone();
            let results = results.clone();
            tasks.push(glommio::spawn_local(async move {
                for k in 0..per_appender {
                    let p = payload(a * 1000 + k, 100);
                    let loc = append(&engine, &p).await;
                    results.borrow_mut().push((loc, p));
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let records = (appenders * per_appender) as u64;
        let fsyncs = engine.stats.counters.fsyncs.get();
        assert_eq!(engine.stats.counters.records.get(), records);
        assert!(fsyncs * 8 <= records, "group commit: {fsyncs} fdatasyncs for {records} appends");
        let results = results.borrow().clone();
        for (loc, p) in &results {
            assert_eq!(engine.read(*loc).await.unwrap().payload(), &p[..]);
        }
        let mut sorted = results.clone();
        sorted.sort_by_key(|(l, _)| (l.segment, l.offset));
        let locs: Vec<Loc> = sorted.iter().map(|(l, _)| *l).collect();
        let bufs = engine.read_many(&locs).await.unwrap();
        for (buf, (_, p)) in bufs.iter().zip(&sorted) {
            assert_eq!(buf.payload(), &p[..]);
        }
        engine.shutdown();
    });
}

#[test]
fn reopening_recovers_every_record_in_order_across_segment_rollover() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // ~20 KiB records in 4 MiB segments: several rollovers.
    let locs = write_records(tmp.path(), 600, 20_000);
    let segments: std::collections::BTreeSet<u32> = locs.iter().map(|l| l.segment).collect();
    assert!(segments.len() >= 3, "rolled over into {segments:?}");
    let dir = tmp.path().to_path_buf();
    run(async move {
        let (engine, seen) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        assert_eq!(seen.len(), 600);
        for (i, (loc, p)) in seen.iter().enumerate() {
            assert_eq!(*loc, locs[i]);
            assert_eq!(p, &payload(i, 20_000));
        }
        // The log continues after the recovered end.
        let next = append(&engine, b"after reopen").await;
        assert!((next.segment, next.offset) > (locs[599].segment, locs[599].offset));
        engine.shutdown();
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn segment_file(dir: &Path, segment: u32) -> std::path::PathBuf {
    dir.join(format!("{:020}.seg", segment))
}

#[test]
fn recovery_cut_at_every_byte_of_the_last_record_keeps_all_complete_records() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let original = tmp.path().join("orig");
    let locs = write_records(&original, 20, 300);
    let last = *locs.last().unwrap();
    // Every cut inside the frame's header and payload loses exactly that record; a cut in
    // the zero padding after the payload loses nothing.
    let payload_end = last.offset as u64 + 8 + last.payload_len as u64;
    for cut in last.offset as u64..last.end() {
        let expect_kept = if cut < payload_end { 19 } else { 20 };
        for zeroed in [false, true] {
            let dir = tmp.path().join(format!("cut-{cut}-{zeroed}"));
            copy_dir(&original, &dir);
            let path = segment_file(&dir, last.segment);
            if zeroed {
                // A torn write inside pre-zeroed space: the bytes after `cut` never landed.
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[cut as usize..last.end() as usize].fill(0);
                std::fs::write(&path, bytes).unwrap();
            } else {
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
            }
            let d = dir.clone();
            let (count, reappended) = run(async move {
                let (engine, seen) = open_collect(&d, SMALL_SEGMENT_BYTES).await.unwrap();
                for (i, (_, p)) in seen.iter().enumerate() {
                    assert_eq!(p, &payload(i, 300));
                }
                let loc = append(&engine, b"appended after repair").await;
                engine.shutdown();
                (seen.len(), loc)
            });
            assert_eq!(count, expect_kept, "cut at {cut} (zeroed={zeroed})");
            if expect_kept == 19 {
                assert_eq!(reappended.offset, last.offset, "the log resumes where the torn record began");
            }
            let d = dir.clone();
            let again = run(async move { open_collect(&d, SMALL_SEGMENT_BYTES).await.unwrap().1 });
            assert_eq!(again.len(), expect_kept + 1);
            assert_eq!(again[expect_kept].1, b"appended after repair");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn recovery_refuses_a_corrupt_record_followed_by_good_ones_naming_file_and_offset() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let locs = write_records(tmp.path(), 50, 200);
    let victim = locs[25];
    let path = segment_file(tmp.path(), victim.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim.offset as usize + 8 + 100] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let dir = tmp.path().to_path_buf();
    let err = run(async move { open_collect(&dir, SMALL_SEGMENT_BYTES).await.err() }).expect("startup must refuse");
    // Typed: the file and the offset of the damaged record, not a string to search.
    assert!(matches!(&err, LogError::Corrupt { path: p, offset, .. } if *p == path && *offset == victim.offset as u64), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn recovery_refuses_a_damaged_length_field_in_the_middle() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let locs = write_records(tmp.path(), 10, 64);
    let victim = locs[3];
    let path = segment_file(tmp.path(), victim.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[victim.offset as usize + 3] = 0xff;
    std::fs::write(&path, bytes).unwrap();
    let dir = tmp.path().to_path_buf();
    let err = run(async move { open_collect(&dir, SMALL_SEGMENT_BYTES).await.err() }).expect("startup must refuse");
    assert!(matches!(&err, LogError::Corrupt { offset, .. } if *offset == victim.offset as u64), "{err}");
}

#[test]
fn a_read_of_a_damaged_record_is_an_error_not_garbage() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        let loc = append(&engine, b"to be damaged on disk").await;
        let path = segment_file(&dir, loc.segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[loc.offset as usize + 10] ^= 0x80;
        std::fs::write(&path, bytes).unwrap();
        let err = engine.read(loc).await.err().expect("corruption detected on read");
        assert!(matches!(&err, LogError::Corrupt { offset, .. } if *offset == loc.offset as u64), "{err}");
        engine.shutdown();
    });
}

#[test]
fn a_torn_tail_is_tolerated_when_an_empty_next_segment_was_already_prepared() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // 2.5 MiB of records in a 4 MiB segment: past the 50% mark, so segment 2 is pre-created.
    let locs = write_records(tmp.path(), 125, 20_000);
    let last = *locs.last().unwrap();
    assert_eq!(last.segment, 1);
    assert!(segment_file(tmp.path(), 2).exists(), "the next segment was prepared ahead of the writer");
    // Tear the last record of the active segment (bytes after the middle never landed).
    let path = segment_file(tmp.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[last.offset as usize + 10_000..last.end() as usize].fill(0);
    std::fs::write(&path, bytes).unwrap();
    let dir = tmp.path().to_path_buf();
    let (count, next) = run(async move {
        let (engine, seen) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        let next = append(&engine, b"after the torn record").await;
        engine.shutdown();
        (seen.len(), next)
    });
    assert_eq!(count, 124);
    assert_eq!((next.segment, next.offset), (1, last.offset), "writing resumes in the active segment");
    let dir = tmp.path().to_path_buf();
    let again = run(async move { open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap().1 });
    assert_eq!(again.len(), 125);
}

#[test]
fn lazy_records_ride_with_the_next_durable_write_and_never_cost_a_sync_of_their_own() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        let fsyncs_before = engine.stats.counters.fsyncs.get();
        let lazy = engine.submit_lazy(&[b"committed mark"]).unwrap()[0];
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(engine.stats.counters.fsyncs.get(), fsyncs_before, "a lazy record alone is not written");
        assert!(engine.read(lazy).await.is_err(), "and not readable as durable yet");
        let loc = append(&engine, b"an entry someone waits for").await;
        assert_eq!(engine.stats.counters.fsyncs.get(), fsyncs_before + 1, "one sync covers both");
        assert_eq!(engine.read(lazy).await.unwrap().payload(), b"committed mark");
        assert!(loc.offset > lazy.offset, "log order is submission order");
        engine.shutdown();
    });
    let dir = tmp.path().to_path_buf();
    let seen = run(async move { open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap().1 });
    let payloads: Vec<&[u8]> = seen.iter().map(|(_, p)| p.as_slice()).collect();
    assert_eq!(payloads, vec![&b"committed mark"[..], &b"an entry someone waits for"[..]]);
}

/// The vouch table (src/log/vouch.rs) round-trips its slots across a reopen — also under a
/// *relative* directory, as `STARCITE_RAFT_DATA_DIR=data` gives it. Regression: the table's
/// first version asked the file for its size through glommio, which failed with EBADF for
/// a relative path after the rename, so every cluster node with a relative data dir
/// refused to start (found by `scripts/chaos.sh`, whose default report folder is relative).
#[test]
fn the_vouch_table_round_trips_under_a_relative_directory() {
    let base = tempfile::tempdir_in("target").unwrap();
    let cwd = std::env::current_dir().unwrap();
    let relative = base.path().strip_prefix(&cwd).unwrap_or(base.path()).join("log");
    assert!(relative.is_relative(), "{}", relative.display());
    let dir = relative.clone();
    let slot: [u8; 48] = std::array::from_fn(|i| i as u8 + 1);
    run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.expect("open");
        assert!(engine.open_vouch(100).await.expect("create the table").is_empty());
        engine.vouch(70, &slot);
        append(&engine, b"a record the slot rides with").await;
        engine.shutdown();
    });
    let dir = relative.clone();
    let found = run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.expect("reopen");
        let found = engine.open_vouch(100).await.expect("reopen the table");
        engine.shutdown();
        found
    });
    assert_eq!(found.len(), 1);
    assert_eq!(found.get(&70), Some(&slot));
}

/// Regression (CI, session 23): `starcite_log_segments` said 1 while the directory held the
/// active segment and the spare prepared ahead of the writer, because the spare was counted
/// only once the writer reached it.
#[test]
fn the_segment_gauge_counts_the_spare_prepared_ahead_of_the_writer() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().to_path_buf();
    let (gauge, on_disk) = run(async move {
        let (engine, _) = open_collect(&dir, SMALL_SEGMENT_BYTES).await.unwrap();
        // 2.5 MiB of records in a 4 MiB segment: past the 50% mark, so segment 2 is prepared.
        for i in 0..125 {
            append(&engine, &payload(i, 20_000)).await;
        }
        let count_files =
            || std::fs::read_dir(&dir).unwrap().flatten().filter(|f| f.file_name().to_string_lossy().ends_with(".seg")).count();
        // The spare is created in the background: wait (bounded) until it is complete.
        let mut seen = (engine.stats.counters.segments.get(), count_files());
        for _ in 0..500 {
            if seen == (2, 2) {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            seen = (engine.stats.counters.segments.get(), count_files());
        }
        engine.shutdown();
        seen
    });
    assert_eq!(on_disk, 2, "the next segment was prepared ahead of the writer");
    assert_eq!(gauge, on_disk as u64, "the gauge counts every segment file");
}
