//! Graceful shutdown of the real binary: SIGTERM stops accepting, answers what is in
//! flight, ends tails (WebSocket close 1001, SSE stream end), flushes the log and exits 0
//! within SHUTDOWN_GRACE_MS; an append is either answered 201 and present after the
//! restart, or never answered — never answered and lost. A second signal exits at once.

mod common;
use std::io::{BufRead, Read};
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use common::*;
use starcite::limits::SHUTDOWN_GRACE_MS;

/// Time a drain may take in these tests: the grace plus process start/stop slack.
fn drain_bound() -> Duration {
    Duration::from_millis(SHUTDOWN_GRACE_MS) + Duration::from_secs(5)
}

#[test]
fn sigterm_under_load_acknowledges_nothing_it_then_loses_and_exits_zero() {
    let mut s = Server::start();
    let sessions: Vec<String> = (0..16).map(|i| format!("term-{i}")).collect();
    for id in &sessions {
        s.create(id);
    }
    // Tails that must be ended cleanly by the shutdown.
    let mut ws = ws_connect(s.port, "/v1/sessions/term-0/tail").unwrap();
    let mut sse = sse_open(s.port, "/v1/sessions/term-1/tail", &[]);

    let body = |t: usize, n: usize| json!({"type": "t", "payload": {"t": t, "n": n}, "actor": "w", "idempotency_key": format!("{t}-{n}")});
    let (writers, acked) = spawn_writers(s.port, &sessions, 8, 1_000_000, body);
    std::thread::sleep(Duration::from_millis(1000));
    let status = s.signal_and_wait(libc::SIGTERM, drain_bound());
    assert!(status.success(), "exit status {status:?}; stderr:\n{}", s.stderr());
    for w in writers {
        w.join().unwrap();
    }
    // The WebSocket tail got "going away"; the SSE stream ended with its last chunk.
    let close = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("WebSocket ended without a close frame: {e}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
    let mut rest = Vec::new();
    let _ = sse.reader().read_to_end(&mut rest);
    assert!(
        String::from_utf8_lossy(&rest).ends_with("0\r\n\r\n"),
        "SSE did not end with the last chunk: {:?}",
        String::from_utf8_lossy(&rest)
    );

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} appends acknowledged before SIGTERM", acked.len());
    s.restart();
    assert_acked_present(&s, &acked);
}

#[test]
fn a_drain_is_bounded_and_a_second_signal_exits_at_once() {
    // A client stuck in the middle of a request head keeps its connection busy.
    let mut s = Server::start();
    let mut stuck = s.conn();
    stuck.send_raw(b"POST /v1/sessions HTTP/1.1\r\nhost: x\r\n");
    std::thread::sleep(Duration::from_millis(100));
    s.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listeners closed.
    assert!(try_request(s.port, "GET", "/health/live", &[], b"").is_err(), "still accepting during the drain");
    let started = std::time::Instant::now();
    let status = s.signal_and_wait(libc::SIGTERM, Duration::from_secs(3));
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(s.stderr().contains("second signal"), "{}", s.stderr());

    // One signal alone: the stuck request cannot hold the node past the grace period.
    s.restart();
    let mut stuck = s.conn();
    stuck.send_raw(b"POST /v1/sessions HTTP/1.1\r\nhost: x\r\n");
    let status = s.signal_and_wait(libc::SIGTERM, drain_bound());
    assert!(status.success(), "{status:?}");
    let mut line = String::new();
    let _ = stuck.reader().read_line(&mut line);
}
