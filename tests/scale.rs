//! Many tails at once, and a tail whose client stops reading.

mod common;
use std::time::Duration;

use common::*;

#[test]
fn a_thousand_websocket_tails_each_receive_every_event_of_their_session() {
    let s = Server::start();
    let sessions = 50;
    let tails_per_session = 20;
    let events_per_session = 5;
    for i in 0..sessions {
        s.create(&format!("fan-{i}"));
    }
    let port = s.port;
    // 1,000 tails on 20 client threads (50 sockets each), all open before any append.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..tails_per_session {
        let ready_tx = ready_tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut conns: Vec<(usize, Ws)> =
                (0..sessions).map(|i| (i, ws_connect(port, &format!("/v1/sessions/fan-{i}/tail")).unwrap())).collect();
            ready_tx.send(t).unwrap();
            for (i, ws) in conns.iter_mut() {
                let events = ws_read_events(ws, events_per_session);
                assert_contiguous(&events, 1);
                assert!(events.iter().all(|e| e["payload"]["session"] == *i), "events of the tail's own session");
            }
            conns.len()
        }));
    }
    for _ in 0..tails_per_session {
        ready_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    let open = s.req("GET", "/metrics", "").text();
    assert_eq!(starcite::metrics::parse_exposition(&open).get("starcite_open_tails"), Some(&1000.0), "metrics report the open tails");
    let mut c = s.conn();
    for n in 0..events_per_session {
        for i in 0..sessions {
            let body = json!({"type": "t", "payload": {"session": i, "n": n}, "actor": "a"});
            assert_eq!(c.request("POST", &format!("/v1/sessions/fan-{i}/append"), &[], body.to_string().as_bytes()).status, 201);
        }
    }
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, sessions * tails_per_session);
}

#[test]
fn a_tail_that_stops_reading_does_not_grow_server_memory_and_catches_up_from_storage() {
    let s = Server::start_with(&[("STARCITE_TAIL_KEEP", "16")]);
    s.create("slow");
    // A WebSocket client that never reads (kernel buffers on both sides hold a few MiB;
    // a tiny receive buffer would only exercise TCP's zero-window probing).
    let stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let (mut ws, _) =
        async_tungstenite::tungstenite::client::client(format!("ws://127.0.0.1:{}/v1/sessions/slow/tail", s.port), stream).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let rss_before = s.rss_kib();
    // ~48 MiB of events while the client reads nothing.
    let pad = "p".repeat(64 * 1024);
    let mut c = s.conn();
    let n = 768;
    for i in 0..n {
        let body = json!({"type": "t", "payload": {"i": i, "pad": pad}, "actor": "a"});
        assert_eq!(c.request("POST", "/v1/sessions/slow/append", &[], body.to_string().as_bytes()).status, 201);
    }
    let grown_mib = s.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 24, "server RSS grew by {grown_mib} MiB for ~48 MiB the client did not read");
    // The client catches up: every event, in order, read back from storage.
    let events = ws_read_events(&mut ws, n);
    assert_contiguous(&events, 1);
    assert_eq!(events[n - 1]["payload"]["i"], n - 1);
}
