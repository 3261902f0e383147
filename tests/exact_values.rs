//! Events come back exactly as sent (SPEC §2 "Values are stored exactly"), through every
//! read path of the real binary (events page, WebSocket, SSE); idempotency compares JSON
//! values exactly; and the HTTP/WebSocket conformance rules of the same issue.
//!
//! Responses are checked as *text* (or parsed with Starcite's own number-preserving
//! parser), never through serde_json's f64 numbers, which would hide the very rounding
//! these tests exist to catch.

mod common;
use std::io::Write;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::Message;
use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use starcite::session::json::{self, Json};

/// Append `body` (raw text) to `session`; returns the response.
fn append_raw(s: &Server, session: &str, body: &str) -> Resp {
    s.req("POST", &format!("/v1/sessions/{session}/append"), body)
}

/// The `payload` of every event of a session, as compact text, from each read path.
fn payloads_by_path(s: &Server, session: &str, n: usize) -> [Vec<String>; 3] {
    let payload_of = |event_text: &str| -> String {
        let event = json::parse(event_text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {event_text}"));
        let members = event.as_object().expect("event object");
        let payload = &members.iter().find(|(k, _)| k == "payload").expect("payload").1;
        json::compact(payload)
    };
    // Events page.
    let page = s.req("GET", &format!("/v1/sessions/{session}/events?limit=1000"), "");
    assert_eq!(page.status, 200);
    let page = json::parse(&page.body).expect("page JSON");
    let events = match &page.as_object().unwrap().iter().find(|(k, _)| k == "events").unwrap().1 {
        Json::Array(items) => items.clone(),
        other => panic!("events is {other:?}"),
    };
    assert_eq!(events.len(), n);
    let from_page: Vec<String> = events.iter().map(|e| payload_of(&json::compact(e))).collect();
    // WebSocket, one event per frame.
    let mut ws = ws_connect(s.port, &format!("/v1/sessions/{session}/tail")).unwrap();
    let from_ws: Vec<String> = ws_frames(&mut ws, n).iter().map(|t| payload_of(t)).collect();
    // SSE.
    let mut sse = sse_open(s.port, &format!("/v1/sessions/{session}/tail"), &[]);
    let from_sse: Vec<String> = sse_data(&mut sse, n).iter().map(|t| payload_of(t)).collect();
    [from_page, from_ws, from_sse]
}

#[test]
fn numbers_come_back_with_their_exact_text_on_every_read_path() {
    let s = Server::start();
    s.create("num");
    let numbers = [
        "0.9574343289165503",
        "123456789012345678901234567890",
        "18446744073709551617",
        "-0",
        "1.0",
        "1E+400",
        "-2.5e-400",
        "0.1000000000000000055511151231257827",
        "9007199254740993",
    ];
    for n in numbers {
        let r = append_raw(
            &s,
            "num",
            &format!(r#"{{"type":"t","actor":"a","payload":{{"x":{n}}},"metadata":{{"m":{n}}},"refs":{{"r":[{n}]}}}}"#),
        );
        assert_eq!(r.status, 201, "{n}: {}", r.text());
    }
    // The raw page text carries every number verbatim, in payload, metadata and refs.
    let page = s.req("GET", "/v1/sessions/num/events", "").text();
    for n in numbers {
        assert!(page.contains(&format!(r#""payload":{{"x":{n}}}"#)), "{n} altered in {page}");
        assert!(page.contains(&format!(r#""metadata":{{"m":{n}}}"#)), "{n} altered in {page}");
        assert!(page.contains(&format!(r#""refs":{{"r":[{n}]}}"#)), "{n} altered in {page}");
    }
    let expected: Vec<String> = numbers.iter().map(|n| format!(r#"{{"x":{n}}}"#)).collect();
    for (path, got) in ["page", "ws", "sse"].iter().zip(payloads_by_path(&s, "num", numbers.len())) {
        assert_eq!(got, expected, "read path {path}");
    }
}

#[test]
fn idempotency_tells_numbers_apart_by_exact_value() {
    let s = Server::start();
    s.create("idem");
    let body = |x: &str, key: &str| format!(r#"{{"type":"t","actor":"a","payload":{{"x":{x}}},"idempotency_key":"{key}"}}"#);
    assert_eq!(append_raw(&s, "idem", &body("18446744073709551616", "big")).status, 201);
    append_raw(&s, "idem", &body("18446744073709551617", "big")).assert_error(409, "idempotency_conflict");
    // Equal decimal values are the same event, however they are spelled.
    assert_eq!(append_raw(&s, "idem", &body("1", "one")).json()["seq"], 2);
    for spelling in ["1.0", "1e0", "10E-1", "0.1e1"] {
        let r = append_raw(&s, "idem", &body(spelling, "one"));
        assert_eq!(r.status, 201, "{spelling}: {}", r.text());
        assert_eq!((r.json()["seq"].as_u64(), r.json()["deduped"].as_bool()), (Some(2), Some(true)), "{spelling}");
    }
    // Key order does not matter either; a different value does.
    let r = append_raw(&s, "idem", r#"{"actor":"a","payload":{"x":1.00},"type":"t","idempotency_key":"one"}"#);
    assert_eq!(r.json()["deduped"], true);
    append_raw(&s, "idem", &body("1.0000000000000000000001", "one")).assert_error(409, "idempotency_conflict");
    // The stored event keeps the first spelling.
    assert!(s.req("GET", "/v1/sessions/idem/events", "").text().contains(r#""payload":{"x":1}"#));
}

#[test]
fn duplicate_keys_and_lone_surrogates_are_invalid_json_and_change_nothing() {
    let s = Server::start();
    s.create("bad");
    for body in [
        r#"{"type":"t","actor":"a","payload":{"x":1,"x":2}}"#,
        r#"{"type":"t","actor":"a","payload":{"x":1},"payload":{"x":2}}"#,
        r#"{"type":"t","actor":"a","payload":{"o":{"k":1,"\u006b":2}}}"#,
        r#"{"type":"t","actor":"a","payload":{"s":"\ud800"}}"#,
        r#"{"type":"t","actor":"a","payload":{"s":"\udc00\ud800"}}"#,
    ] {
        let r = append_raw(&s, "bad", body);
        r.assert_error(400, "invalid_json");
    }
    s.req("POST", "/v1/sessions", r#"{"id":"x","id":"y"}"#).assert_error(400, "invalid_json");
    assert_eq!(s.req("GET", "/v1/sessions/bad", "").json()["last_seq"], 0);
    assert_eq!(s.req("GET", "/v1/sessions/x", "").status, 404);
}

#[test]
fn nesting_beyond_the_limit_is_invalid_event_naming_the_limit() {
    let s = Server::start();
    s.create("deep");
    let max = starcite::limits::JSON_NESTING_DEPTH_MAX;
    // The body object is level 1 and payload level 2: it may hold max - 2 more levels.
    let nested = |levels: usize| format!(r#"{{"type":"t","actor":"a","payload":{{"d":{}1{}}}}}"#, "[".repeat(levels), "]".repeat(levels));
    assert_eq!(append_raw(&s, "deep", &nested(max - 2)).status, 201);
    let r = append_raw(&s, "deep", &nested(max - 1));
    r.assert_error(400, "invalid_event");
    assert!(r.json()["message"].as_str().unwrap().contains(&max.to_string()), "{}", r.text());
    // Deep *and* malformed stays invalid_json.
    append_raw(&s, "deep", &format!(r#"{{"payload":{}"#, "[".repeat(10_000))).assert_error(400, "invalid_json");
    assert_eq!(s.req("GET", "/v1/sessions/deep", "").json()["last_seq"], 1);
}

#[test]
fn http11_requests_need_exactly_one_valid_host() {
    let s = Server::start();
    let status_of = |raw: &str| {
        let mut c = s.conn();
        c.send_raw(raw.as_bytes());
        c.read_response().unwrap()
    };
    for raw in [
        "GET /health/live HTTP/1.1\r\n\r\n",
        "GET /health/live HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n",
        "GET /health/live HTTP/1.1\r\nhost: a b\r\n\r\n",
        "GET /health/live HTTP/1.1\r\nhost: a/b\r\n\r\n",
    ] {
        let r = status_of(raw);
        assert_eq!(r.status, 400, "{raw:?}: {}", r.text());
        assert!(r.json()["message"].as_str().unwrap().to_lowercase().contains("host"), "{}", r.text());
    }
    assert_eq!(status_of("GET /health/live HTTP/1.1\r\nhost: localhost:4000\r\n\r\n").status, 200);
    assert_eq!(status_of("GET /health/live HTTP/1.0\r\n\r\n").status, 200);
}

#[test]
fn two_last_event_id_headers_are_an_invalid_cursor() {
    let s = Server::start();
    s.create("lei");
    let r = request(
        s.port,
        "GET",
        "/v1/sessions/lei/tail",
        &[("accept", "text/event-stream"), ("last-event-id", "1"), ("last-event-id", "2")],
        b"",
    );
    r.assert_error(400, "invalid_cursor");
}

/// Send raw bytes on an open WebSocket tail, then expect a close frame with `code`.
fn expect_close_after(s: &Server, raw: &[u8], code: CloseCode) {
    let mut ws = ws_connect(s.port, "/v1/sessions/wsv/tail").unwrap();
    ws.get_mut().write_all(raw).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code, code, "{frame:?}");
                return;
            }
            Ok(Message::Close(None)) => panic!("close frame without a code"),
            Ok(_) => {}
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
}

#[test]
fn websocket_protocol_violations_get_a_close_frame_with_their_code() {
    let s = Server::start();
    s.create("wsv");
    // An unmasked client frame (RFC 6455 §5.1): protocol error, 1002.
    expect_close_after(&s, &[0x81, 0x02, b'h', b'i'], CloseCode::Protocol);
    // A reserved opcode: 1002.
    expect_close_after(&s, &[0x83, 0x80, 0, 0, 0, 0], CloseCode::Protocol);
    // A text frame that is not UTF-8 (masked with a zero key): 1007.
    expect_close_after(&s, &[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe], CloseCode::Invalid);
    // The node keeps serving.
    assert_eq!(s.append("wsv", event(1)).status, 201);
}

// ---- property: arbitrary payloads through the real binary -----------------------------

fn number_text() -> impl Strategy<Value = String> {
    (any::<bool>(), "(0|[1-9][0-9]{0,30})", proptest::option::of("[0-9]{1,25}"), proptest::option::of("[eE][+-]?[0-9]{1,4}")).prop_map(
        |(neg, int, frac, exp)| {
            format!("{}{int}{}{}", if neg { "-" } else { "" }, frac.map(|f| format!(".{f}")).unwrap_or_default(), exp.unwrap_or_default())
        },
    )
}

fn value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number_text().prop_map(|n| Json::Number(n.into())),
        any::<String>().prop_map(Json::String),
    ];
    leaf.prop_recursive(6, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec(("[a-z\u{e9}\"\\\\]{0,6}", inner), 0..8).prop_map(|m| {
                let mut seen = std::collections::HashSet::new();
                Json::Object(m.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
            }),
        ]
    })
}

#[test]
fn arbitrary_payloads_come_back_exactly_through_page_ws_and_sse() {
    let s = Server::start();
    s.create("prop");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 64, ..ProptestConfig::default() });
    let mut sent = Vec::new();
    let strategy = prop::collection::vec(("[a-z]{1,4}", value()), 0..6);
    for _ in 0..64 {
        let members = strategy.new_tree(&mut runner).unwrap().current();
        let mut seen = std::collections::HashSet::new();
        let payload = Json::Object(members.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect());
        let text = json::compact(&payload);
        let r = append_raw(&s, "prop", &format!(r#"{{"type":"t","actor":"a","payload":{text}}}"#));
        assert_eq!(r.status, 201, "{text}: {}", r.text());
        sent.push(text);
    }
    for (path, got) in ["page", "ws", "sse"].iter().zip(payloads_by_path(&s, "prop", sent.len())) {
        for (i, (g, want)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g, want, "event {} through {path}", i + 1);
        }
    }
}
