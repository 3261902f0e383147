//! WebSocket and SSE tails against the real binary: replay then live, no gap, no
//! duplicate (also while appends race the replay), batching, errors before upgrade,
//! ping/pong and close, under both payload-plane/tail-source modes.

mod common;
use std::io::BufRead;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use common::*;

const MODES: &[&[(&str, &str)]] = &[&[], &[("STARCITE_PAYLOAD_PLANE", "dual_write"), ("STARCITE_TAIL_SOURCE", "ets")]];

fn fill(s: &Server, id: &str, n: usize) {
    let mut c = s.conn();
    for i in 0..n {
        let r = c.request("POST", &format!("/v1/sessions/{id}/append"), &[], event(i).to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

#[test]
fn websocket_tail_replays_then_goes_live_in_both_modes() {
    for mode in MODES {
        let s = Server::start_with(mode);
        s.create("w");
        fill(&s, "w", 20);
        let mut ws = ws_connect(s.port, "/v1/sessions/w/tail?cursor=5").unwrap();
        let replay = ws_read_events(&mut ws, 15);
        assert_contiguous(&replay, 6);
        assert_eq!(replay[0]["payload"], json!({"i": 5}));
        // The replayed events are exactly what the events page returns.
        let page = s.all_events("w");
        assert_eq!(replay[..], page[5..]);
        fill(&s, "w", 5);
        let live = ws_read_events(&mut ws, 5);
        assert_contiguous(&live, 21);
        // Live events come from the local mirror exactly when the tail source is ets.
        let metrics = s.req("GET", "/metrics", "").text();
        let mirror_reads = starcite::metrics::parse_exposition(&metrics)["starcite_tail_mirror_reads_total"];
        assert_eq!(mirror_reads > 0.0, !mode.is_empty(), "mirror reads {mirror_reads} in mode {mode:?}");
        // Pings get pongs; inbound data frames are ignored; close is answered.
        ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
        ws.send(Message::text("ignored")).unwrap();
        match ws.read().unwrap() {
            Message::Pong(p) => assert_eq!(&p[..], b"hi"),
            other => panic!("expected a pong, got {other:?}"),
        }
        ws.close(None).unwrap();
        // The server answers the close handshake with its own close frame.
        loop {
            match ws.read() {
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => panic!("no close frame in answer: {e}"),
            }
        }
    }
}

#[test]
fn tails_see_every_event_exactly_once_while_appends_race_the_replay() {
    for mode in MODES {
        let s = Server::start_with(&[&[("STARCITE_TAIL_KEEP", "50")][..], mode].concat());
        s.create("race");
        fill(&s, "race", 300);
        let port = s.port;
        let writer = std::thread::spawn(move || {
            let mut c = Conn::open(port);
            for i in 300..900 {
                let r = c.request("POST", "/v1/sessions/race/append", &[], event(i).to_string().as_bytes());
                assert_eq!(r.status, 201);
            }
        });
        let mut tails: Vec<Ws> = (0..4).map(|k| ws_connect(port, &format!("/v1/sessions/race/tail?cursor={}", k * 100)).unwrap()).collect();
        for (k, ws) in tails.iter_mut().enumerate() {
            let from = k as u64 * 100 + 1;
            let events = ws_read_events(ws, 900 - k * 100);
            assert_contiguous(&events, from);
            for e in &events {
                let seq = e["seq"].as_u64().unwrap();
                assert_eq!(e["payload"]["i"], seq - 1, "content matches seq");
            }
        }
        writer.join().unwrap();
    }
}

#[test]
fn batched_websocket_frames_carry_arrays_of_up_to_batch_size() {
    let s = Server::start();
    s.create("b");
    fill(&s, "b", 25);
    let mut ws = ws_connect(s.port, "/v1/sessions/b/tail?batch_size=10").unwrap();
    let mut seen = Vec::new();
    while seen.len() < 25 {
        match ws.read().unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let arr = v.as_array().expect("batched frames are arrays").clone();
                assert!(!arr.is_empty() && arr.len() <= 10);
                seen.extend(arr);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_contiguous(&seen, 1);
}

#[test]
fn tail_errors_come_before_any_upgrade() {
    let s = Server::start();
    s.create("e");
    let ws_err = |path: &str| match ws_connect(s.port, path) {
        Err(async_tungstenite::tungstenite::Error::Http(resp)) => {
            let body: Value = serde_json::from_slice(resp.body().as_ref().unwrap()).unwrap();
            (resp.status().as_u16(), body["error"].as_str().unwrap().to_string())
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("{path} upgraded"),
    };
    assert_eq!(ws_err("/v1/sessions/missing/tail"), (404, "session_not_found".into()));
    assert_eq!(ws_err("/v1/sessions/e/tail?cursor=-1"), (400, "invalid_cursor".into()));
    assert_eq!(ws_err("/v1/sessions/e/tail?cursor=abc"), (400, "invalid_cursor".into()));
    assert_eq!(ws_err("/v1/sessions/e/tail?batch_size=0"), (400, "invalid_batch_size".into()));
    assert_eq!(ws_err("/v1/sessions/e/tail?batch_size=1001"), (400, "invalid_batch_size".into()));
    // A plain GET (curl's Accept: */*) is not an upgrade.
    request(s.port, "GET", "/v1/sessions/e/tail", &[("accept", "*/*")], b"").assert_error(400, "invalid_websocket_upgrade");
}

fn sse_events(c: &mut Conn, n: usize) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    let mut kind = None;
    while out.len() < n {
        let mut line = String::new();
        c.reader().read_line(&mut line).unwrap();
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            assert_eq!(kind.as_deref(), Some("event"));
            let value: Value = serde_json::from_str(v).unwrap();
            assert_eq!(value["seq"].as_u64(), id);
            out.push((id.unwrap(), value));
        }
        // chunk-size lines, blank lines and comments are skipped
    }
    out
}

#[test]
fn sse_tail_replays_then_goes_live_and_last_event_id_wins() {
    for mode in MODES {
        let s = Server::start_with(mode);
        s.create("sse");
        fill(&s, "sse", 10);
        let mut c = sse_open(s.port, "/v1/sessions/sse/tail?cursor=2", &[("last-event-id", "7")]);
        let events = sse_events(&mut c, 3);
        assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), vec![8, 9, 10]);
        fill(&s, "sse", 2);
        let live = sse_events(&mut c, 2);
        assert_eq!(live.iter().map(|e| e.0).collect::<Vec<_>>(), vec![11, 12]);
        let mut c = sse_open(s.port, "/v1/sessions/sse/tail?cursor=10", &[]);
        assert_eq!(sse_events(&mut c, 2)[0].0, 11);
        request(s.port, "GET", "/v1/sessions/none/tail", &[("accept", "text/event-stream")], b"").assert_error(404, "session_not_found");
        request(s.port, "GET", "/v1/sessions/sse/tail", &[("accept", "text/event-stream"), ("last-event-id", "x")], b"")
            .assert_error(400, "invalid_cursor");
    }
}

#[test]
fn a_tail_on_a_session_owned_by_the_other_core_is_woken_across_cores() {
    // With 2 cores and 256 shards, some of these sessions are owned by each core while
    // the tail connection lands on either: both directions of the cross-core wake-up run.
    let s = Server::start();
    let ids: Vec<String> = (0..8).map(|i| format!("x{i}")).collect();
    let mut tails = Vec::new();
    for id in &ids {
        s.create(id);
        tails.push(ws_connect(s.port, &format!("/v1/sessions/{id}/tail")).unwrap());
    }
    std::thread::sleep(Duration::from_millis(50));
    for id in &ids {
        fill(&s, id, 3);
    }
    for ws in tails.iter_mut() {
        assert_contiguous(&ws_read_events(ws, 3), 1);
    }
}

#[test]
fn a_silent_tail_client_is_not_cut_off_by_the_request_timeouts() {
    use std::io::{Read, Write};
    let s = Server::start();
    s.create("quiet");
    // Send the upgrade head in two pieces so the request loop's last read used the
    // (10 s) head deadline, then stay silent past it.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream.write_all(b"GET /v1/sessions/quiet/tail HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.write_all(b"connection: Upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let mut ws =
        async_tungstenite::tungstenite::WebSocket::from_raw_socket(stream, async_tungstenite::tungstenite::protocol::Role::Client, None);
    std::thread::sleep(Duration::from_secs(12));
    fill(&s, "quiet", 2);
    assert_contiguous(&ws_read_events(&mut ws, 2), 1);
}

#[test]
fn tails_are_counted_by_their_real_status_101_for_websocket_200_for_sse() {
    let s = Server::start();
    s.create("m");
    let ws = ws_connect(s.port, "/v1/sessions/m/tail").unwrap();
    let sse = sse_open(s.port, "/v1/sessions/m/tail", &[]);
    let samples = starcite::metrics::parse_exposition(&s.req("GET", "/metrics", "").text());
    assert_eq!(samples.get("starcite_http_requests_total{route=\"tail\",status=\"1xx\"}"), Some(&1.0), "{samples:?}");
    assert_eq!(samples.get("starcite_http_requests_total{route=\"tail\",status=\"2xx\"}"), Some(&1.0), "{samples:?}");
    drop((ws, sse));
}
