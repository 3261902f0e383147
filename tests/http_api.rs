//! SPEC §2–§3 driven from outside: the real binary over real sockets.

mod common;
use common::*;

#[test]
fn health_and_unknown_routes() {
    let s = Server::start();
    let r = s.req("GET", "/health/live", "");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = s.req("GET", "/health/ready", "");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    s.req("GET", "/nope", "").assert_error(404, "not_found");
    s.req("GET", "/v1/sessions/abc/nope", "").assert_error(404, "not_found");
    let r = s.req("DELETE", "/v1/sessions", "");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = s.req("POST", "/v1/sessions/abc", "");
    r.assert_error(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET"));
    s.req("GET", "/v1/sessions/bad%20id", "").assert_error(400, "invalid_session_id");
    s.req("GET", &format!("/v1/sessions/{}", "a".repeat(129)), "").assert_error(400, "invalid_session_id");
}

#[test]
fn create_session_rules() {
    let s = Server::start();
    let r = s.json("POST", "/v1/sessions", json!({"id": "chat-1", "title": "Hello", "metadata": {"k": [1, 2]}}));
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], "chat-1");
    assert_eq!(v["title"], "Hello");
    assert_eq!(v["metadata"], json!({"k": [1, 2]}));
    assert_eq!(v["last_seq"], 0);
    let created = v["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == "2026-02-08T15:00:01.123456Z".len(), "{created}");
    assert_eq!(v["updated_at"], v["created_at"]);

    s.json("POST", "/v1/sessions", json!({"id": "chat-1"})).assert_error(409, "session_exists");

    // Generated ids, empty bodies, nulls as absent.
    for body in ["", "{}", r#"{"id":null,"title":null,"metadata":null}"#] {
        let r = s.req("POST", "/v1/sessions", body);
        assert_eq!(r.status, 201, "{body}: {}", r.text());
        let v = r.json();
        assert!(v["id"].as_str().unwrap().starts_with("ses_"), "{v}");
        assert_eq!(v["title"], Value::Null);
        assert_eq!(v["metadata"], json!({}));
    }

    s.req("POST", "/v1/sessions", "{").assert_error(400, "invalid_json");
    s.json("POST", "/v1/sessions", json!({"id": 5})).assert_error(400, "invalid_session");
    s.json("POST", "/v1/sessions", json!({"id": ""})).assert_error(400, "invalid_session");
    s.json("POST", "/v1/sessions", json!({"id": "has space"})).assert_error(400, "invalid_session_id");
    s.json("POST", "/v1/sessions", json!({"id": "x".repeat(129)})).assert_error(400, "invalid_session_id");
    s.json("POST", "/v1/sessions", json!({"id": "x".repeat(128)})).status.eq(&201).then_some(()).expect("128 bytes is valid");
    s.json("POST", "/v1/sessions", json!({"title": 7})).assert_error(400, "invalid_session");
    s.json("POST", "/v1/sessions", json!({"metadata": [1]})).assert_error(400, "invalid_metadata");

    let r = s.req("GET", "/v1/sessions/chat-1", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["title"], "Hello");
    s.req("GET", "/v1/sessions/missing", "").assert_error(404, "session_not_found");
}

#[test]
fn append_validation_comes_before_lookup_and_names_each_rule() {
    let s = Server::start();
    s.create("s");
    let base = json!({"type": "t", "payload": {}, "actor": "a"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"payload": {}, "actor": "a"}), "invalid_event"),
        (with("type", json!("")), "invalid_event"),
        (with("type", json!(3)), "invalid_event"),
        (json!({"type": "t", "actor": "a"}), "invalid_event"),
        (with("payload", json!("text")), "invalid_event"),
        (with("payload", json!([1])), "invalid_event"),
        (json!({"type": "t", "payload": {}}), "invalid_event"),
        (with("actor", json!("")), "invalid_event"),
        (with("source", json!("")), "invalid_event"),
        (with("metadata", json!("m")), "invalid_metadata"),
        (with("refs", json!([])), "invalid_refs"),
        (with("refs", json!({"to_seq": -1})), "invalid_refs"),
        (with("refs", json!({"step": "2"})), "invalid_refs"),
        (with("refs", json!({"request_id": 5})), "invalid_refs"),
        (with("idempotency_key", json!("")), "invalid_event"),
        (with("expected_seq", json!(-1)), "invalid_event"),
        (with("expected_seq", json!("1a")), "invalid_event"),
        (with("expected_seq", json!(1.5)), "invalid_event"),
    ];
    for (body, code) in &cases {
        s.append("s", body.clone()).assert_error(400, code);
        // Same bad body for an unknown session: still the 400.
        s.append("nobody", body.clone()).assert_error(400, code);
    }
    s.req("POST", "/v1/sessions/s/append", "{nope").assert_error(400, "invalid_json");
    s.append("nobody", base.clone()).assert_error(404, "session_not_found");
    // Nothing was appended by any of that.
    assert_eq!(s.req("GET", "/v1/sessions/s", "").json()["last_seq"], 0);

    // Accepted shapes: nulls as absent, refs with known keys, unknown fields ignored.
    let ok = json!({"type": "t", "payload": {"x": 1}, "actor": "a", "source": null, "metadata": null,
        "refs": {"to_seq": 0, "step": 3, "request_id": "r", "sequence_id": "q", "other": [1]}, "unknown": true});
    let r = s.append("s", ok);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json(), json!({"seq": 1, "last_seq": 1, "deduped": false}));
    let e = &s.all_events("s")[0];
    assert_eq!(e["refs"], json!({"to_seq": 0, "step": 3, "request_id": "r", "sequence_id": "q", "other": [1]}));
    assert_eq!(e["source"], Value::Null);
    assert_eq!(e["metadata"], json!({}));
}

#[test]
fn appends_are_contiguous_idempotent_and_optimistically_guarded() {
    let s = Server::start();
    s.create("s");
    for i in 1..=3u64 {
        let r = s.append("s", json!({"type": "t", "payload": {"i": i}, "actor": "a", "idempotency_key": format!("k{i}")}));
        assert_eq!(r.json(), json!({"seq": i, "last_seq": i, "deduped": false}));
    }
    // Same key, same event (key order differs, omitted metadata == {}): deduped.
    let r = s.append("s", json!({"actor": "a", "payload": {"i": 1}, "type": "t", "metadata": {}, "idempotency_key": "k1"}));
    assert_eq!((r.status, r.json()), (201, json!({"seq": 1, "last_seq": 3, "deduped": true})));
    // Same key, different event: conflict.
    s.append("s", json!({"type": "t", "payload": {"i": 99}, "actor": "a", "idempotency_key": "k1"}))
        .assert_error(409, "idempotency_conflict");
    // Dedupe is checked before expected_seq: a stale retry gets deduped, not a conflict.
    let r = s.append("s", json!({"type": "t", "payload": {"i": 2}, "actor": "a", "idempotency_key": "k2", "expected_seq": 1}));
    assert_eq!(r.json(), json!({"seq": 2, "last_seq": 3, "deduped": true}));
    // expected_seq conflicts carry the exact message.
    let r = s.append("s", json!({"type": "t", "payload": {}, "actor": "a", "expected_seq": 1}));
    r.assert_error(409, "expected_seq_conflict");
    assert_eq!(r.json()["message"], "Expected seq 1, current seq is 3");
    // expected_seq as a digit string, matching.
    let r = s.append("s", json!({"type": "t", "payload": {}, "actor": "a", "expected_seq": "3"}));
    assert_eq!(r.json(), json!({"seq": 4, "last_seq": 4, "deduped": false}));

    let events = s.all_events("s");
    assert_contiguous(&events, 1);
    assert_eq!(events.len(), 4);
    let e = &events[0];
    for field in ["seq", "type", "payload", "actor", "source", "metadata", "refs", "idempotency_key", "inserted_at"] {
        assert!(e.get(field).is_some(), "event lacks {field}: {e}");
    }
    assert_eq!(e["idempotency_key"], "k1");
    // updated_at follows the last event's inserted_at.
    let session = s.req("GET", "/v1/sessions/s", "").json();
    assert_eq!(session["last_seq"], 4);
    assert_eq!(session["updated_at"], events[3]["inserted_at"]);
}

#[test]
fn events_page_cursor_and_limit_rules() {
    let s = Server::start_with(&[("STARCITE_TAIL_KEEP", "5")]);
    s.create("p");
    for i in 0..1205 {
        assert_eq!(s.append("p", event(i)).status, 201);
    }
    let page = |q: &str| s.req("GET", &format!("/v1/sessions/p/events{q}"), "");
    let v = page("").json();
    assert_eq!(v["events"].as_array().unwrap().len(), 100);
    assert_eq!((v["next_cursor"].as_u64(), v["last_seq"].as_u64()), (Some(100), Some(1205)));
    let v = page("?cursor=1200&limit=10").json();
    assert_contiguous(v["events"].as_array().unwrap(), 1201);
    assert_eq!(v["next_cursor"], 1205);
    let v = page("?cursor=1205").json();
    assert_eq!((v["events"].as_array().unwrap().len(), v["next_cursor"].as_u64()), (0, Some(1205)));
    let v = page("?cursor=0&limit=5000").json();
    assert_eq!(v["events"].as_array().unwrap().len(), 1000, "limits above 1000 are capped");
    // Old events (out of the 5-event hot tail) come from disk with identical content.
    assert_contiguous(v["events"].as_array().unwrap(), 1);
    assert_eq!(v["events"][7]["payload"], json!({"i": 7}));
    page("?limit=0").assert_error(400, "invalid_limit");
    page("?limit=abc").assert_error(400, "invalid_limit");
    page("?cursor=-1").assert_error(400, "invalid_cursor");
    page("?cursor=x").assert_error(400, "invalid_cursor");
    s.req("GET", "/v1/sessions/none/events", "").assert_error(404, "session_not_found");
}

#[test]
fn pipelined_chunked_and_http10_requests() {
    let s = Server::start();
    s.create("pipe");
    let mut c = s.conn();
    // Three appends and a read in one write: answered in request order.
    let mut batch = Vec::new();
    for i in 0..3 {
        let body = event(i).to_string();
        batch.extend_from_slice(
            format!("POST /v1/sessions/pipe/append HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
    }
    batch.extend_from_slice(b"GET /v1/sessions/pipe HTTP/1.1\r\nhost: x\r\n\r\n");
    c.send_raw(&batch);
    let seqs: Vec<u64> = (0..3).map(|_| c.read_response().unwrap().json()["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(c.read_response().unwrap().json()["last_seq"], 3);

    // A pipelined expected_seq chain only works if appends are applied in request order.
    let mut chain = Vec::new();
    for i in 0..50u64 {
        let body = json!({"type": "t", "payload": {"i": i}, "actor": "a", "expected_seq": 3 + i}).to_string();
        chain.extend_from_slice(
            format!("POST /v1/sessions/pipe/append HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
    }
    c.send_raw(&chain);
    for i in 0..50u64 {
        let r = c.read_response().unwrap();
        assert_eq!(r.json()["seq"], 4 + i, "{}", r.text());
    }

    // More pipelined requests than may be in flight at once: all answered, in order.
    let mut many = Vec::new();
    for i in 0..200 {
        let body = event(i).to_string();
        many.extend_from_slice(
            format!("POST /v1/sessions/pipe/append HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
    }
    c.send_raw(&many);
    for i in 0..200u64 {
        assert_eq!(c.read_response().unwrap().json()["seq"], 54 + i);
    }

    // Chunked request body.
    let body = event(9).to_string();
    let (a, b) = body.split_at(7);
    c.send_raw(format!("POST /v1/sessions/pipe/append HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\n\r\n", a.len(), b.len()).as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.json()["seq"], 254, "{}", r.text());

    // HTTP/1.0: answered, then closed.
    let mut c10 = s.conn();
    c10.send_raw(b"GET /health/live HTTP/1.0\r\n\r\n");
    let raw = String::from_utf8(c10.read_to_close()).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("{\"status\":\"ok\"}"), "{raw}");
    // HTTP/1.0 keep-alive on request.
    let mut c10 = s.conn();
    c10.send_raw(b"GET /health/live HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /health/live HTTP/1.0\r\n\r\n");
    assert_eq!(c10.read_response().unwrap().status, 200);
    assert_eq!(c10.read_response().unwrap().status, 200);
}

/// Regression (session 23): a `100 Continue` for a pipelined request went out before the
/// answers to the requests ahead of it, so a client matched it to the wrong request
/// (RFC 9110 §15.2: responses, interim ones included, follow request order).
#[test]
fn an_interim_100_continue_follows_the_answers_to_earlier_pipelined_requests() {
    let s = Server::start();
    s.create("cont");
    let mut c = s.conn();
    let body = event(1).to_string();
    let mut raw = format!("POST /v1/sessions/cont/append HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    raw += &format!("POST /v1/sessions/cont/append HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n", body.len());
    c.send_raw(raw.as_bytes());
    let first = c.read_response().unwrap();
    assert_eq!((first.status, first.json()["seq"].as_u64()), (201, Some(1)), "{}", first.text());
    assert_eq!(c.read_response().unwrap().status, 100);
    c.send_raw(body.as_bytes());
    let second = c.read_response().unwrap();
    assert_eq!((second.status, second.json()["seq"].as_u64()), (201, Some(2)), "{}", second.text());
}

#[test]
fn limits_answer_with_their_own_errors() {
    let s = Server::start_with(&[("STARCITE_MAX_BODY_BYTES", "1000")]);
    s.create("big");
    let payload = "x".repeat(2000);
    let r = s.append("big", json!({"type": "t", "payload": {"p": payload}, "actor": "a"}));
    r.assert_error(413, "payload_too_large");
    let mut c = s.conn();
    let huge_header = "a".repeat(20_000);
    c.send_raw(format!("GET /health/live HTTP/1.1\r\nx-big: {huge_header}\r\n\r\n").as_bytes());
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 431);
    // Garbage closes only its own connection.
    let mut g = s.conn();
    g.send_raw(b"\x00\x01garbage\r\n\r\n");
    assert_eq!(g.read_response().unwrap().status, 400);
    assert_eq!(s.req("GET", "/health/live", "").status, 200);
    assert_eq!(s.req("GET", "/v1/sessions/big", "").json()["last_seq"], 0);
}

#[test]
fn metrics_expose_the_required_names() {
    let s = Server::start();
    s.create("m");
    s.append("m", event(1));
    let r = s.req("GET", "/metrics", "");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    // Exact series names and values, not substrings (`_total 1` would match `_total 10`).
    let samples = starcite::metrics::parse_exposition(&text);
    for name in starcite::metrics::REQUIRED_METRICS {
        assert!(starcite::metrics::has_family(&samples, name), "missing {name}");
    }
    for (series, value) in [
        ("starcite_events_append_total", 1.0),
        ("starcite_events_payload_bytes", 7.0),
        ("starcite_append_duration_seconds_count", 1.0),
        ("starcite_raft_is_leader{shard=\"0\"}", 1.0),
        ("starcite_http_requests_total{route=\"append\",status=\"2xx\"}", 1.0),
    ] {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
    }
    for family in ["starcite_log_fsync_duration_seconds", "starcite_log_commit_batch_records", "starcite_executor_stalls_total"] {
        assert!(starcite::metrics::has_family(&samples, family), "missing {family}");
    }
    assert!(!text.contains("session=\""), "no session labels");
    // The executors' allocation count (src/alloc.rs) is wired: it moves with the work.
    let allocations = |s: &Server| starcite::metrics::parse_exposition(&s.req("GET", "/metrics", "").text())["starcite_allocations_total"];
    let before = allocations(&s);
    assert!(before > 0.0, "the executors have allocated");
    for _ in 0..20 {
        s.append("m", event(1));
    }
    let after = allocations(&s);
    assert!(after >= before + 20.0, "20 appends allocate at least once each: {before} -> {after}");
}

#[test]
fn a_slow_request_head_gets_408_and_only_its_connection_closes() {
    let s = Server::start();
    let mut c = s.conn();
    c.send_raw(b"GET /health/live HTTP/1.1\r\nhost: x\r\n");
    // The head never completes: the server answers 408 after its head timeout (10 s).
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(r.json()["error"], "request_timeout");
    assert!(c.read_to_close().is_empty(), "closed after the 408");
    assert_eq!(s.req("GET", "/health/live", "").status, 200);
}

#[test]
fn connections_over_the_per_core_limit_are_refused_cleanly() {
    let s = Server::start_with(&[("STARCITE_CORES", "1"), ("STARCITE_MAX_CONNECTIONS_PER_CORE", "3")]);
    // The harness's readiness probes may still count as open for a moment after they
    // hung up: take the three slots as they free up (bounded wait).
    let mut held: Vec<Conn> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while held.len() < 3 {
        let mut c = s.conn();
        if c.request("GET", "/health/live", &[], b"").status == 200 {
            held.push(c);
        } else {
            assert!(std::time::Instant::now() < deadline, "connection slots never freed");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let refused = request(s.port, "GET", "/health/live", &[], b"");
    refused.assert_error(503, "too_many_connections");
    // Existing connections are unaffected.
    for c in held.iter_mut() {
        assert_eq!(c.request("GET", "/health/live", &[], b"").status, 200);
    }
    drop(held);
    // Capacity comes back once the server has seen the hang-ups (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.req("GET", "/health/live", "").status != 200 {
        assert!(std::time::Instant::now() < deadline, "capacity never came back");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_startup_line_names_a_port_that_already_accepts_connections() {
    for _ in 0..3 {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = Default::default();
        let env = vec![("STARCITE_RAFT_DATA_DIR".to_string(), tmp.path().join("d").display().to_string())];
        let (mut child, port) = spawn_starcite(&env, &log);
        // No retry: the line promises a listening port.
        let connected = std::net::TcpStream::connect(("127.0.0.1", port));
        let _ = child.kill();
        let _ = child.wait();
        connected.unwrap_or_else(|e| panic!("port {port} of the startup line refused a connection: {e}"));
    }
}

#[test]
fn an_events_page_stays_within_8_mib_and_continues_at_next_cursor() {
    let s = Server::start();
    s.create("big");
    let pad = "p".repeat(1_000_000);
    let mut c = s.conn();
    for i in 0..12 {
        let body = json!({"type": "t", "actor": "a", "payload": {"i": i, "pad": pad}});
        assert_eq!(c.request("POST", "/v1/sessions/big/append", &[], body.to_string().as_bytes()).status, 201);
    }
    let mut cursor = 0;
    let mut seen = 0;
    while seen < 12 {
        let r = s.req("GET", &format!("/v1/sessions/big/events?cursor={cursor}&limit=100"), "");
        assert!(r.body.len() <= starcite::limits::PAGE_BYTES_MAX, "page of {} bytes", r.body.len());
        let v = r.json();
        let n = v["events"].as_array().unwrap().len();
        assert!(n >= 1);
        assert_contiguous(v["events"].as_array().unwrap(), cursor + 1);
        cursor = v["next_cursor"].as_u64().unwrap();
        seen += n;
    }
    assert_eq!(cursor, 12);
}
