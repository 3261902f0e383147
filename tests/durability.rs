//! Crash durability: kill -9 in the middle of concurrent appends, restart, and every
//! acknowledged event is there with identical content; every acknowledged idempotency key
//! still dedupes to the same seq. Also: a restart keeps sessions, seqs and idempotency.

mod common;
use std::time::Duration;

use common::*;

#[test]
fn kill_9_mid_load_loses_no_acknowledged_event() {
    let mut s = Server::start_with(&[("STARCITE_TAIL_KEEP", "20")]);
    let sessions: Vec<String> = (0..24).map(|i| format!("crash-{i}")).collect();
    for id in &sessions {
        s.create(id);
    }
    let body = |t: usize, n: usize| json!({"type": "crash", "payload": {"t": t, "n": n, "pad": "x".repeat(n % 200)}, "actor": format!("w{t}"), "idempotency_key": format!("{t}-{n}")});
    let (writers, acked) = spawn_writers(s.port, &sessions, 8, 100_000, body);
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "only {} appends acknowledged before the kill", acked.len());
    s.restart();

    for id in &sessions {
        let events = s.all_events(id);
        assert_contiguous(&events, 1);
        let header = s.req("GET", &format!("/v1/sessions/{id}"), "").json();
        assert_eq!(header["last_seq"].as_u64(), Some(events.len() as u64));
    }
    assert_acked_present(&s, &acked);
    // Retrying every acknowledged append dedupes to the same seq (sample of all of them).
    let mut c = s.conn();
    for a in acked.iter().step_by(7) {
        let r = c.request("POST", &format!("/v1/sessions/{}/append", a.session), &[], a.body.to_string().as_bytes());
        assert_eq!(r.json()["seq"].as_u64(), Some(a.seq), "{}", r.text());
        assert_eq!(r.json()["deduped"], true);
    }
}

/// Bytes in every core's index scratch file (`<data dir>/<core>/index.spill`).
fn spilled_bytes(s: &Server) -> u64 {
    std::fs::read_dir(&s.data_dir)
        .unwrap()
        .filter_map(|core| std::fs::metadata(core.unwrap().path().join("index.spill")).ok())
        .map(|m| m.len())
        .sum()
}

/// A history longer than an index page (128 positions, 85 entry locations) with a tiny hot
/// tail: its old events are found through pages spilled to the scratch file, which a
/// restart after `kill -9` rebuilds from the log — every event reads back byte for byte.
#[test]
fn long_histories_read_back_through_spilled_index_pages_across_kill_9() {
    let mut s = Server::start_with(&[("STARCITE_TAIL_KEEP", "2"), ("STARCITE_CORES", "1")]);
    s.create("long");
    for i in 0..700 {
        assert_eq!(s.append("long", event(i)).status, 201);
    }
    let before = s.all_events("long");
    assert_contiguous(&before, 1);
    assert_eq!(before.len(), 700);
    // 700 positions fill 5 pages; 700 entries (one append each) fill 8 pages of locations.
    assert!(spilled_bytes(&s) >= 13 * 1024, "the index spilled: {} bytes", spilled_bytes(&s));
    s.kill9();
    std::fs::write(s.data_dir.join("0").join("index.spill"), b"stale scratch from before the crash").unwrap();
    s.restart();
    assert!(spilled_bytes(&s) >= 13 * 1024, "the index spilled again while the log was replayed");
    assert_eq!(s.all_events("long"), before);
    let page = s.req("GET", "/v1/sessions/long/events?cursor=300&limit=50", "").json();
    assert_eq!(page["events"].as_array().unwrap()[..], before[300..350]);
}

#[test]
fn a_restart_keeps_sessions_seqs_and_idempotency_answers() {
    let mut s = Server::start_with(&[("STARCITE_TAIL_KEEP", "3")]);
    s.json("POST", "/v1/sessions", json!({"id": "keep", "title": "T", "metadata": {"m": 1}}));
    for i in 0..10 {
        let r = s.append("keep", json!({"type": "t", "payload": {"i": i}, "actor": "a", "idempotency_key": format!("k{i}")}));
        assert_eq!(r.status, 201);
    }
    let before = s.all_events("keep");
    let header_before = s.req("GET", "/v1/sessions/keep", "").json();
    s.restart();
    assert_eq!(s.all_events("keep"), before);
    assert_eq!(s.req("GET", "/v1/sessions/keep", "").json(), header_before);
    let r = s.append("keep", json!({"type": "t", "payload": {"i": 4}, "actor": "a", "idempotency_key": "k4"}));
    assert_eq!(r.json(), json!({"seq": 5, "last_seq": 10, "deduped": true}));
    s.append("keep", json!({"type": "t", "payload": {"i": 5}, "actor": "a", "idempotency_key": "k4"}))
        .assert_error(409, "idempotency_conflict");
    let r = s.append("keep", json!({"type": "t", "payload": {}, "actor": "a"}));
    assert_eq!(r.json()["seq"], 11);
    s.json("POST", "/v1/sessions", json!({"id": "keep"})).assert_error(409, "session_exists");
}

#[test]
fn startup_refuses_a_corrupted_log_naming_the_file_and_offset() {
    let mut s = Server::start();
    s.create("c");
    for i in 0..50 {
        s.append("c", event(i));
    }
    s.kill9();
    // Flip one byte inside the first record area of every core's first segment.
    let mut damaged = Vec::new();
    for core in std::fs::read_dir(&s.data_dir).unwrap() {
        let core = core.unwrap().path();
        let seg = core.join("00000000000000000001.seg");
        if seg.exists() {
            let mut bytes = std::fs::read(&seg).unwrap();
            bytes[4096 + 20] ^= 0x5a;
            std::fs::write(&seg, bytes).unwrap();
            damaged.push(seg);
        }
    }
    assert!(!damaged.is_empty());
    let dir = s.data_dir.display().to_string();
    let (status, stderr) = run_starcite_expecting_refusal(&[("STARCITE_RAFT_DATA_DIR", &dir)]);
    assert!(!status.success());
    assert!(stderr.contains("corrupt record") && stderr.contains("offset 4096"), "{stderr}");
    assert!(damaged.iter().any(|d| stderr.contains(&d.display().to_string())), "{stderr}");
}

#[test]
fn bad_configuration_exits_with_one_line_naming_the_variable() {
    for (var, value, expect) in [
        ("STARCITE_PAYLOAD_PLANE", "turbo", "legacy, dual_write"),
        ("STARCITE_TAIL_SOURCE", "ets", "dual_write"),
        ("PORT", "http", "PORT"),
        ("STARCITE_ARCHIVER_ENABLED", "true", "DATABASE_URL"),
        ("STARCITE_SHARDS", "-3", "STARCITE_SHARDS"),
    ] {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let dir = tmp.path().display().to_string();
        let (status, stderr) = run_starcite_expecting_refusal(&[("STARCITE_RAFT_DATA_DIR", &dir), (var, value)]);
        assert!(!status.success(), "{var}={value} started");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(var) && stderr.contains(expect), "{stderr}");
    }
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_and_names_the_holder() {
    let s = Server::start();
    s.create("mine");
    let dir = s.data_dir.display().to_string();
    let (status, stderr) = run_starcite_expecting_refusal(&[("STARCITE_RAFT_DATA_DIR", &dir)]);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("STARCITE_RAFT_DATA_DIR") && stderr.contains(&format!("pid {}", s.pid())), "{stderr}");
    // The first process is untouched and keeps serving.
    assert_eq!(s.append("mine", event(1)).status, 201);
}

#[test]
fn the_data_dir_lock_is_released_when_its_holder_is_killed() {
    let mut s = Server::start();
    s.create("after");
    s.restart(); // kill -9, then a new process takes the lock at once
    assert_eq!(s.append("after", event(1)).json()["seq"], 1);
}

#[test]
fn a_second_process_on_the_same_port_is_refused() {
    let s = Server::start();
    let other = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let port = s.port.to_string();
    let dir = other.path().display().to_string();
    let (status, stderr) = run_starcite_expecting_refusal(&[("STARCITE_RAFT_DATA_DIR", &dir), ("PORT", &port)]);
    assert!(!status.success());
    assert!(stderr.contains(&format!("PORT={port}")) && stderr.contains("in use"), "{stderr}");
    // Every request still reaches the first process (nothing else shares the port).
    s.create("only-one");
    for _ in 0..20 {
        assert_eq!(s.req("GET", "/v1/sessions/only-one", "").status, 200);
    }
}

#[test]
fn a_failed_fdatasync_stops_acknowledging_turns_ready_503_and_loses_nothing_acknowledged() {
    // Debug builds honour the test-only failpoint: every fdatasync from the 300th fails.
    let mut s = Server::start_with(&[("STARCITE_CORES", "1"), ("STARCITE_SHARDS", "4"), ("STARCITE_TEST_FAIL_FDATASYNC_AFTER", "300")]);
    s.create("disk");
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut c = s.conn();
    for i in 0..2000 {
        let r = c.request("POST", "/v1/sessions/disk/append", &[], event(i).to_string().as_bytes());
        match r.status {
            201 => {
                assert_eq!(failed, 0, "an append was acknowledged after the disk failed: {}", r.text());
                acked.push((r.json()["seq"].as_u64().unwrap(), i));
            }
            503 => failed += 1,
            other => panic!("unexpected {other}: {}", r.text()),
        }
        if failed >= 5 {
            break;
        }
    }
    assert!(failed >= 5, "the failpoint never fired ({} acknowledged)", acked.len());
    let ready = s.req("GET", "/health/ready", "");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(ready.json()["reason"], "log_stopped", "{}", ready.text());
    assert!(ready.json()["message"].as_str().unwrap().contains("fdatasync"), "{}", ready.text());
    // Restarted on a healthy disk: every acknowledged event is there, at its seq.
    s.kill9();
    let dir = s.data_dir.display().to_string();
    let mut healthy = Server::start_with(&[("STARCITE_CORES", "1"), ("STARCITE_SHARDS", "4"), ("STARCITE_RAFT_DATA_DIR", &dir)]);
    let events = healthy.all_events("disk");
    for (seq, i) in &acked {
        assert_eq!(events[*seq as usize - 1]["payload"]["i"], *i as u64, "seq {seq}");
    }
    healthy.kill9();
}
