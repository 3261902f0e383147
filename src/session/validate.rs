//! Request validation: turns untrusted bodies and query values into typed
//! requests, or into the SPEC's exact 400 error codes.
//!
//! Invariants:
//! - Nothing here panics, whatever the bytes.
//! - JSON `null` for an optional field means "absent" everywhere.
//! - Unknown body fields are ignored (forward compatibility for clients).
//! - The body is parsed once: numbers keep their text, a repeated key is `invalid_json`,
//!   nesting beyond `JSON_NESTING_DEPTH_MAX` is `invalid_event`. An append body in the
//!   common shape (valid, keys without escapes, values already compact) is only scanned
//!   (`json::scan_object`) and its values copied as written; anything else takes
//!   `json::parse`, which is the reference: the two agree on every body (property test).
//! - Fields are checked in a fixed, documented order so that a body with several
//!   problems always yields the same error:
//!   - create: `id`, `title`, `metadata`;
//!   - append: `type`, `payload`, `actor`, `source`, `metadata`, `refs`,
//!     `idempotency_key`, `expected_seq`.
//! - A value that passes validation satisfies every precondition the state
//!   machine relies on (e.g. `payload` is always an object).

use super::error::ApiError;
use super::json::{self, Json, Object, ParseError};

/// A validated create-session body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreateRequest {
    pub id: Option<String>,
    pub title: Option<String>,
    pub metadata: Object,
}

/// A validated append body, its JSON values already in the compact form the log stores
/// (`json::compact`: the client's key order, numbers exactly as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub event_type: String,
    /// Compact JSON text of an object.
    pub payload_json: String,
    pub actor: String,
    pub source: Option<String>,
    /// Compact JSON text of an object (`{}` when absent).
    pub metadata_json: String,
    /// Compact JSON text of an object (`{}` when absent).
    pub refs_json: String,
    pub idempotency_key: Option<String>,
    pub expected_seq: Option<u64>,
}

/// 1..=SESSION_ID_BYTES_MAX bytes of `[A-Za-z0-9._:-]`. The charset keeps ids
/// safe in URL paths, file names and log lines without escaping.
pub fn is_valid_session_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::limits::SESSION_ID_BYTES_MAX
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Parses a body that must be a JSON object. An empty or all-whitespace body is
/// `Ok(None)` only when `allow_empty`; `not_object` builds the error for valid
/// JSON of another type.
fn parse_object(body: &[u8], allow_empty: bool, not_object: fn(String) -> ApiError) -> Result<Option<Object>, ApiError> {
    if allow_empty && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match json::parse(body) {
        Err(e @ ParseError::TooDeep { .. }) => Err(ApiError::invalid_event(format!(
            "{e} (the limit is JSON_NESTING_DEPTH_MAX = {}, counting the body object as level 1)",
            crate::limits::JSON_NESTING_DEPTH_MAX
        ))),
        Err(e) => Err(ApiError::invalid_json(format!("request body is not valid JSON: {e}"))),
        Ok(Json::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(not_object("request body must be a JSON object".to_string())),
    }
}

/// Removes `key` (keys are unique: the parser refuses repeats), mapping JSON null to absent.
fn take(m: &mut Object, key: &str) -> Option<Json> {
    let i = m.iter().position(|(k, _)| k == key)?;
    match m.swap_remove(i).1 {
        Json::Null => None,
        v => Some(v),
    }
}

/// Returns the string when it is a non-empty JSON string.
fn non_empty_string(v: Json) -> Option<String> {
    match v {
        Json::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Parses a create-session body. Order: `id`, `title`, `metadata`.
pub fn parse_create(body: &[u8]) -> Result<CreateRequest, ApiError> {
    let Some(mut m) = parse_object(body, true, ApiError::invalid_session)? else {
        return Ok(CreateRequest::default());
    };
    let id = match take(&mut m, "id") {
        None => None,
        Some(Json::String(s)) if s.is_empty() => return Err(ApiError::invalid_session("id must be a non-empty string")),
        Some(Json::String(s)) => {
            if !is_valid_session_id(&s) {
                return Err(ApiError::invalid_session_id(format!(
                    "id must be 1-{} characters of [A-Za-z0-9._:-]",
                    crate::limits::SESSION_ID_BYTES_MAX
                )));
            }
            Some(s)
        }
        Some(_) => return Err(ApiError::invalid_session("id must be a string")),
    };
    let title = match take(&mut m, "title") {
        None => None,
        Some(Json::String(s)) => Some(s),
        Some(_) => return Err(ApiError::invalid_session("title must be a string")),
    };
    let metadata = match take(&mut m, "metadata") {
        None => Object::new(),
        Some(Json::Object(md)) => md,
        Some(_) => return Err(ApiError::invalid_metadata("metadata must be a JSON object")),
    };
    Ok(CreateRequest { id, title, metadata })
}

/// A number whose exact value is a non-negative integer that fits u64 (`3`, `3.0`, `3e0`,
/// `-0`: SPEC §2's number equality; JSON Schema's `integer`). README, Behaviour notes.
fn is_non_negative_integer(v: &Json) -> bool {
    v.as_integral_u64().is_some()
}

fn get<'a>(m: &'a Object, key: &str) -> Option<&'a Json> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Checks the well-known `refs` keys; everything else is kept untouched.
/// Null well-known keys are accepted (null = absent) and stored as given.
fn check_refs(refs: &Object) -> Result<(), ApiError> {
    for key in ["to_seq", "step"] {
        match get(refs, key) {
            None | Some(Json::Null) => {}
            Some(v) if is_non_negative_integer(v) => {}
            Some(_) => return Err(ApiError::invalid_refs(format!("refs.{key} must be a non-negative integer"))),
        }
    }
    for key in ["request_id", "sequence_id"] {
        match get(refs, key) {
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(_) => return Err(ApiError::invalid_refs(format!("refs.{key} must be a string"))),
        }
    }
    Ok(())
}

/// Non-empty ASCII decimal digits that fit u64 (no sign, no spaces).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Parses an append body. Order: `type`, `payload`, `actor`, `source`,
/// `metadata`, `refs`, `idempotency_key`, `expected_seq`.
pub fn parse_append(body: &[u8]) -> Result<AppendRequest, ApiError> {
    match json::scan_object(body).and_then(|members| append_from_spans(&members)) {
        Some(request) => Ok(request),
        None => parse_append_tree(body),
    }
}

/// The fast path: a valid request from the body's spans, without a [`Json`] tree. `None`
/// when any field is not in the plain valid shape (the tree path then decides, errors
/// included), so it accepts exactly what [`parse_append_tree`] accepts, with equal fields.
fn append_from_spans(members: &[json::RawMember<'_>]) -> Option<AppendRequest> {
    // Null is absent (module invariant); a span that is not plain gives up.
    let field = |key: &str| members.iter().find(|m| m.key == key).filter(|m| m.value != "null");
    let plain_string = |key: &str| -> Option<Option<String>> {
        match field(key) {
            None => Some(None),
            // Compact strings have no escape: the contents are the decoded value.
            Some(m) if m.compact && m.value.len() > 2 && m.value.starts_with('"') => Some(Some(m.value[1..m.value.len() - 1].to_string())),
            Some(_) => None,
        }
    };
    let object_text = |key: &str| -> Option<Option<&str>> {
        match field(key) {
            None => Some(None),
            Some(m) if m.compact && m.value.starts_with('{') => Some(Some(m.value)),
            Some(_) => None,
        }
    };
    let event_type = plain_string("type")??;
    let payload_json = object_text("payload")??.to_string();
    let actor = plain_string("actor")??;
    let source = plain_string("source")?;
    let metadata_json = object_text("metadata")?.unwrap_or("{}").to_string();
    let refs_json = match object_text("refs")? {
        None => "{}".to_string(),
        Some(text) if refs_need_no_check(text) => text.to_string(),
        Some(_) => return None,
    };
    let idempotency_key = plain_string("idempotency_key")?;
    let expected_seq = match field("expected_seq") {
        None => None,
        Some(m) if m.value.bytes().all(|b| b.is_ascii_digit()) => Some(m.value.parse::<u64>().ok()?),
        Some(_) => return None,
    };
    Some(AppendRequest { event_type, payload_json, actor, source, metadata_json, refs_json, idempotency_key, expected_seq })
}

/// Whether `refs` (compact object text) names none of the keys [`check_refs`] checks, so
/// it needs no tree (a conservative test: the key's quoted name appearing anywhere).
fn refs_need_no_check(text: &str) -> bool {
    ["\"to_seq\"", "\"step\"", "\"request_id\"", "\"sequence_id\""].iter().all(|k| !text.contains(k))
}

/// The reference path: the whole body as a [`Json`] tree, each field checked in order.
fn parse_append_tree(body: &[u8]) -> Result<AppendRequest, ApiError> {
    let Some(mut m) = parse_object(body, false, ApiError::invalid_event)? else {
        // Unreachable with allow_empty = false; kept total instead of panicking.
        return Err(ApiError::invalid_event("request body must be a JSON object"));
    };
    let event_type =
        take(&mut m, "type").and_then(non_empty_string).ok_or_else(|| ApiError::invalid_event("type must be a non-empty string"))?;
    let payload = match take(&mut m, "payload") {
        Some(p @ Json::Object(_)) => p,
        _ => return Err(ApiError::invalid_event("payload must be a JSON object")),
    };
    let actor =
        take(&mut m, "actor").and_then(non_empty_string).ok_or_else(|| ApiError::invalid_event("actor must be a non-empty string"))?;
    let source = match take(&mut m, "source") {
        None => None,
        Some(v) => Some(non_empty_string(v).ok_or_else(|| ApiError::invalid_event("source must be a non-empty string when present"))?),
    };
    let metadata = match take(&mut m, "metadata") {
        None => Object::new(),
        Some(Json::Object(md)) => md,
        Some(_) => return Err(ApiError::invalid_metadata("metadata must be a JSON object")),
    };
    let refs = match take(&mut m, "refs") {
        None => Object::new(),
        Some(Json::Object(r)) => {
            check_refs(&r)?;
            r
        }
        Some(_) => return Err(ApiError::invalid_refs("refs must be a JSON object")),
    };
    let idempotency_key = match take(&mut m, "idempotency_key") {
        None => None,
        Some(v) => {
            Some(non_empty_string(v).ok_or_else(|| ApiError::invalid_event("idempotency_key must be a non-empty string when present"))?)
        }
    };
    let expected_seq = match take(&mut m, "expected_seq") {
        None => None,
        Some(n @ Json::Number(_)) if n.as_integral_u64().is_some() => n.as_integral_u64(),
        Some(Json::String(s)) if parse_digits(&s).is_some() => parse_digits(&s),
        Some(_) => return Err(ApiError::invalid_event("expected_seq must be a non-negative integer or a string of decimal digits")),
    };
    Ok(AppendRequest {
        event_type,
        payload_json: json::compact(&payload),
        actor,
        source,
        metadata_json: json::compact_object(&metadata),
        refs_json: json::compact_object(&refs),
        idempotency_key,
        expected_seq,
    })
}

/// `cursor` query value: absent → 0 (start of the log). Digits-only that fit
/// u64; anything else, including an empty value, is `invalid_cursor` (a cursor
/// beyond u64 can never name a real seq, so it is rejected rather than clamped).
pub fn parse_cursor(v: Option<&str>) -> Result<u64, ApiError> {
    match v {
        None => Ok(0),
        Some(s) => parse_digits(s).ok_or_else(|| ApiError::invalid_cursor("cursor must be a non-negative integer")),
    }
}

/// `limit` query value: absent → PAGE_LIMIT_DEFAULT; 0 or non-digits →
/// `invalid_limit`; anything above PAGE_LIMIT_MAX (including digit strings too
/// large for u64) is clamped, because asking for "a lot" is a valid request.
pub fn parse_limit(v: Option<&str>) -> Result<usize, ApiError> {
    let max = crate::limits::PAGE_LIMIT_MAX;
    let Some(s) = v else {
        return Ok(crate::limits::PAGE_LIMIT_DEFAULT);
    };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_limit(format!("limit must be an integer between 1 and {max}")));
    }
    // Digits-only that fail to parse overflowed u64, so they are non-zero and huge.
    match s.parse::<u64>() {
        Ok(0) => Err(ApiError::invalid_limit(format!("limit must be an integer between 1 and {max}"))),
        Ok(n) => Ok(usize::try_from(n).map_or(max, |n| n.min(max))),
        Err(_) => Ok(max),
    }
}

/// `batch_size` query value: absent → BATCH_SIZE_DEFAULT; must be in
/// `1..=BATCH_SIZE_MAX`, otherwise `invalid_batch_size` (not clamped).
pub fn parse_batch_size(v: Option<&str>) -> Result<usize, ApiError> {
    let max = crate::limits::BATCH_SIZE_MAX;
    let Some(s) = v else {
        return Ok(crate::limits::BATCH_SIZE_DEFAULT);
    };
    match parse_digits(s).and_then(|n| usize::try_from(n).ok()) {
        Some(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_batch_size(format!("batch_size must be an integer between 1 and {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn create(body: &str) -> Result<CreateRequest, ApiError> {
        parse_create(body.as_bytes())
    }

    fn create_code(body: &str) -> &'static str {
        create(body).map(|_| "ok").unwrap_or_else(|e| e.code.as_str())
    }

    fn append(v: Value) -> Result<AppendRequest, ApiError> {
        parse_append(v.to_string().as_bytes())
    }

    /// A minimal valid append body with `field` replaced by `value`
    /// (or removed when `value` is `None`).
    fn append_with(field: &str, value: Option<Value>) -> Result<AppendRequest, ApiError> {
        let mut body = json!({"type": "t", "payload": {}, "actor": "a"});
        if let Some(obj) = body.as_object_mut() {
            match value {
                Some(v) => obj.insert(field.to_string(), v),
                None => obj.remove(field),
            };
        }
        append(body)
    }

    fn append_code(field: &str, value: Value) -> &'static str {
        append_with(field, Some(value)).map(|_| "ok").unwrap_or_else(|e| e.code.as_str())
    }

    #[test]
    fn session_ids_allow_only_the_spec_charset_and_length() {
        assert!(is_valid_session_id("a"));
        assert!(is_valid_session_id("Az09._:-"));
        assert!(is_valid_session_id(&"x".repeat(128)));
        assert!(!is_valid_session_id(""));
        assert!(!is_valid_session_id(&"x".repeat(129)));
        for bad in ["a b", "a/b", "é", "a\n", "a?", "a#"] {
            assert!(!is_valid_session_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn create_accepts_empty_whitespace_and_empty_object_bodies() {
        for body in ["", "  \n\t", "{}"] {
            assert_eq!(create(body), Ok(CreateRequest::default()), "{body:?}");
        }
    }

    #[test]
    fn create_reads_all_fields_and_ignores_unknown_ones() {
        let r = create(r#"{"id":"s-1","title":"T","metadata":{"k":1},"zzz":[]}"#).expect("ok");
        assert_eq!(r.id.as_deref(), Some("s-1"));
        assert_eq!(r.title.as_deref(), Some("T"));
        assert_eq!(json::compact_object(&r.metadata), r#"{"k":1}"#);
    }

    #[test]
    fn create_treats_null_fields_as_absent() {
        let r = create(r#"{"id":null,"title":null,"metadata":null}"#).expect("ok");
        assert_eq!(r, CreateRequest::default());
    }

    #[test]
    fn create_maps_each_violation_to_its_spec_code() {
        assert_eq!(create_code("{"), "invalid_json");
        assert_eq!(parse_create(b"{\"id\":\"\xff\"}").map_err(|e| e.code.as_str()), Err("invalid_json"));
        assert_eq!(create_code("[]"), "invalid_session");
        assert_eq!(create_code("\"s\""), "invalid_session");
        assert_eq!(create_code("null"), "invalid_session");
        assert_eq!(create_code(r#"{"id":5}"#), "invalid_session");
        assert_eq!(create_code(r#"{"id":""}"#), "invalid_session");
        assert_eq!(create_code(r#"{"id":"a b"}"#), "invalid_session_id");
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(129));
        assert_eq!(create_code(&long), "invalid_session_id");
        assert_eq!(create_code(r#"{"title":1}"#), "invalid_session");
        assert_eq!(create_code(r#"{"metadata":[]}"#), "invalid_metadata");
        assert_eq!(create_code(r#"{"metadata":"x"}"#), "invalid_metadata");
    }

    #[test]
    fn create_not_object_message_is_the_spec_text() {
        let e = create("[1]").expect_err("not an object");
        assert_eq!(e.message, "request body must be a JSON object");
    }

    #[test]
    fn create_checks_id_before_title_before_metadata() {
        assert_eq!(create_code(r#"{"metadata":1,"title":1,"id":"a b"}"#), "invalid_session_id");
        assert_eq!(create_code(r#"{"metadata":1,"title":1}"#), "invalid_session");
    }

    #[test]
    fn append_reads_a_full_body() {
        let r = append(json!({
            "type": "msg", "payload": {"b": 1, "a": 2}, "actor": "u", "source": "web",
            "metadata": {"m": true}, "refs": {"to_seq": 3, "step": 0, "request_id": "r",
            "sequence_id": "q", "other": [1]}, "idempotency_key": "k", "expected_seq": 7,
            "unknown": 1
        }))
        .expect("ok");
        assert_eq!(r.event_type, "msg");
        assert_eq!(r.payload_json, r#"{"b":1,"a":2}"#);
        assert_eq!(r.actor, "u");
        assert_eq!(r.source.as_deref(), Some("web"));
        assert_eq!(r.metadata_json, r#"{"m":true}"#);
        assert_eq!(r.refs_json, r#"{"to_seq":3,"step":0,"request_id":"r","sequence_id":"q","other":[1]}"#);
        assert_eq!(r.idempotency_key.as_deref(), Some("k"));
        assert_eq!(r.expected_seq, Some(7));
    }

    #[test]
    fn append_defaults_and_null_optional_fields_are_absent() {
        for v in [None, Some(Value::Null)] {
            let mut body = json!({"type": "t", "payload": {}, "actor": "a"});
            if let (Some(obj), Some(null)) = (body.as_object_mut(), v) {
                for f in ["source", "metadata", "refs", "idempotency_key", "expected_seq"] {
                    obj.insert(f.to_string(), null.clone());
                }
            }
            let r = append(body).expect("ok");
            assert_eq!((r.source, r.idempotency_key, r.expected_seq), (None, None, None));
            assert_eq!((r.metadata_json.as_str(), r.refs_json.as_str()), ("{}", "{}"));
        }
    }

    #[test]
    fn append_rejects_bad_json_and_non_objects() {
        assert_eq!(parse_append(b"{").map_err(|e| e.code.as_str()), Err("invalid_json"));
        assert_eq!(parse_append(b"").map_err(|e| e.code.as_str()), Err("invalid_json"));
        assert_eq!(parse_append(b"[]").map_err(|e| e.code.as_str()), Err("invalid_event"));
        assert_eq!(parse_append(b"3").map_err(|e| e.code.as_str()), Err("invalid_event"));
    }

    #[test]
    fn append_requires_type_payload_and_actor() {
        for field in ["type", "payload", "actor"] {
            let e = append_with(field, None).expect_err("missing");
            assert_eq!(e.code.as_str(), "invalid_event");
            assert!(e.message.starts_with(field), "{}", e.message);
            assert_eq!(append_code(field, Value::Null), "invalid_event");
        }
        assert_eq!(append_code("type", json!("")), "invalid_event");
        assert_eq!(append_code("type", json!(1)), "invalid_event");
        assert_eq!(append_code("actor", json!("")), "invalid_event");
        assert_eq!(append_code("actor", json!(["a"])), "invalid_event");
        assert_eq!(append_code("payload", json!([])), "invalid_event");
        assert_eq!(append_code("payload", json!("x")), "invalid_event");
    }

    #[test]
    fn append_optional_field_violations_use_their_codes() {
        assert_eq!(append_code("source", json!("")), "invalid_event");
        assert_eq!(append_code("source", json!(1)), "invalid_event");
        assert_eq!(append_code("metadata", json!([])), "invalid_metadata");
        assert_eq!(append_code("refs", json!("r")), "invalid_refs");
        assert_eq!(append_code("idempotency_key", json!("")), "invalid_event");
        assert_eq!(append_code("idempotency_key", json!(5)), "invalid_event");
    }

    #[test]
    fn refs_well_known_keys_are_type_checked() {
        for (k, v) in
            [("to_seq", json!(0)), ("step", json!(9)), ("to_seq", Value::Null), ("to_seq", json!(1.0)), ("step", json!(1628153.0))]
        {
            assert_eq!(append_code("refs", json!({ k: v })), "ok", "{k}={v}");
        }
        for (k, v) in [("request_id", json!("r")), ("sequence_id", Value::Null)] {
            assert_eq!(append_code("refs", json!({ k: v })), "ok", "{k}={v}");
        }
        for (k, v) in
            [("to_seq", json!(-1)), ("to_seq", json!(1.5)), ("step", json!("1")), ("request_id", json!(1)), ("sequence_id", json!({}))]
        {
            assert_eq!(append_code("refs", json!({ k: v })), "invalid_refs", "{k}={v}");
        }
        assert_eq!(append_code("refs", json!({"anything": {"x": -1.5}})), "ok");
    }

    #[test]
    fn expected_seq_accepts_integers_and_digit_strings() {
        let seq = |v| append_with("expected_seq", Some(v)).map(|r| r.expected_seq);
        assert_eq!(seq(json!(0)), Ok(Some(0)));
        assert_eq!(seq(json!(u64::MAX)), Ok(Some(u64::MAX)));
        assert_eq!(seq(json!("42")), Ok(Some(42)));
        assert_eq!(seq(json!("007")), Ok(Some(7)));
        assert_eq!(seq(json!(7.0)), Ok(Some(7)), "an integer by value (SPEC §2, JSON Schema)");
        for bad in [json!(-1), json!(1.5), json!(""), json!("+1"), json!(" 1"), json!("1e3"), json!("18446744073709551616"), json!(true)] {
            assert_eq!(seq(bad.clone()).map_err(|e| e.code.as_str()), Err("invalid_event"), "{bad}");
        }
    }

    #[test]
    fn append_checks_fields_in_the_documented_order() {
        let all_bad = json!({"type": 1, "payload": 1, "actor": 1, "source": 1, "metadata": 1,
                             "refs": 1, "idempotency_key": 1, "expected_seq": -1});
        let mut body = all_bad;
        let expected = [
            ("type", json!("t"), "payload"),
            ("payload", json!({}), "actor"),
            ("actor", json!("a"), "source"),
            ("source", json!("s"), "metadata"),
            ("metadata", json!({}), "refs"),
            ("refs", json!({}), "idempotency_key"),
            ("idempotency_key", json!("k"), "expected_seq"),
        ];
        for (fix, good, next_bad) in expected {
            body[fix] = good;
            let e = append(body.clone()).expect_err("still invalid");
            assert!(e.message.starts_with(next_bad), "after fixing {fix}: {}", e.message);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The fast path and the tree path give the same answer for every body: the same
        /// request, or the same error (code and message).
        #[test]
        fn the_fast_path_answers_exactly_like_the_tree_path(
            required in proptest::collection::vec((0usize..26, 0usize..4, proptest::bool::weighted(0.8)), 3),
            fields in proptest::collection::vec((0usize..10, 0usize..26, 0usize..4), 0..8),
        ) {
            const KEYS: [&str; 10] = ["type", "payload", "actor", "source", "metadata", "refs", "idempotency_key", "expected_seq", "other", "t\\u0079pe"];
            const VALUES: [&str; 26] = [
                r#""t""#, r#""""#, r#""a\"b""#, r#""\u00e9""#, "null", "1", "7.0", "0", r#""42""#, "18446744073709551616", "{}",
                r#"{"x":1}"#, r#"{ "x" : 1 }"#, r#"{"to_seq":3}"#, r#"{"to_seq":-1}"#, r#"{"step":"1"}"#, r#"{"request_id":1}"#,
                r#"{"note":"to_seq"}"#, r#"{"to_seq":null,"step":2.0}"#, "[1]", "true", r#"{"a":{"b":[1,"\u00e9",{"c":null}]}}"#,
                r#"{"k":1,"k":2}"#, "-1", r#""x\ny""#, "{\"d\":[]}",
            ];
            const SPACE: [&str; 4] = ["", " ", "\n\t", "  "];
            // Mostly valid type, payload and actor (so that the fast path is taken often),
            // then any fields in any order, repeats included.
            let valid = [0usize, 11, 0];
            let required = required.iter().enumerate().map(|(k, &(v, w, ok))| (k, if ok { valid[k] } else { v }, w));
            let members: Vec<String> = required
                .chain(fields.iter().copied())
                .map(|(k, v, w)| format!("{}\"{}\"{}:{}{}", SPACE[w], KEYS[k], SPACE[(w + 1) % 4], SPACE[w], VALUES[v]))
                .collect();
            let body = format!("{{{}}}", members.join(","));
            proptest::prop_assert_eq!(parse_append(body.as_bytes()), parse_append_tree(body.as_bytes()), "{}", body);
        }
    }

    #[test]
    fn the_plain_body_takes_the_fast_path() {
        let body = br#"{"type":"t","payload":{"x":[1,"y"]},"actor":"a","metadata":{"m":1},"refs":{"r":2},"expected_seq":5}"#;
        let spans = json::scan_object(body).expect("scanned");
        let fast = append_from_spans(&spans).expect("taken by the fast path");
        assert_eq!(Ok(fast), parse_append_tree(body));
        let with_refs = br#"{"type":"t","payload":{},"actor":"a","refs":{"to_seq":1}}"#;
        assert_eq!(append_from_spans(&json::scan_object(with_refs).expect("scanned")), None, "refs with checked keys take the tree");
    }

    #[test]
    fn cursor_parsing_follows_the_spec() {
        assert_eq!(parse_cursor(None), Ok(0));
        assert_eq!(parse_cursor(Some("0")), Ok(0));
        assert_eq!(parse_cursor(Some("12")), Ok(12));
        for bad in ["", "-1", "+1", "1.0", "x", "99999999999999999999"] {
            assert_eq!(parse_cursor(Some(bad)).map_err(|e| e.code.as_str()), Err("invalid_cursor"));
        }
    }

    #[test]
    fn limit_parsing_defaults_clamps_and_rejects_zero() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("1")), Ok(1));
        assert_eq!(parse_limit(Some("1000")), Ok(1000));
        assert_eq!(parse_limit(Some("1001")), Ok(1000));
        assert_eq!(parse_limit(Some(&"9".repeat(60))), Ok(1000));
        for bad in ["0", "000", "", "-5", "ten", "1.5"] {
            assert_eq!(parse_limit(Some(bad)).map_err(|e| e.code.as_str()), Err("invalid_limit"), "{bad}");
        }
    }

    #[test]
    fn batch_size_must_be_between_one_and_a_thousand() {
        assert_eq!(parse_batch_size(None), Ok(1));
        assert_eq!(parse_batch_size(Some("1")), Ok(1));
        assert_eq!(parse_batch_size(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "", "-1", "x", &"9".repeat(40)] {
            assert_eq!(parse_batch_size(Some(bad)).map_err(|e| e.code.as_str()), Err("invalid_batch_size"), "{bad}");
        }
    }
}
