//! Starcite's HTTP API as the bench speaks it: request paths and bodies (append with a sized payload carrying `t_ns`), and typed views of its JSON answers (append result, error, events page, tail event).

use std::borrow::Cow;
use std::io::Write;

use serde::Deserialize;
use serde_json::value::RawValue;

pub fn append_path(id: &str) -> String {
    format!("/v1/sessions/{id}/append")
}

pub fn events_path(id: &str, cursor: u64, limit: usize) -> String {
    format!("/v1/sessions/{id}/events?cursor={cursor}&limit={limit}")
}

pub fn tail_path(id: &str, cursor: u64, batch_size: usize) -> String {
    format!("/v1/sessions/{id}/tail?cursor={cursor}&batch_size={batch_size}")
}

pub fn create_body(id: &str) -> Vec<u8> {
    format!("{{\"id\":\"{id}\"}}").into_bytes()
}

/// Bytes of the `payload` object around the padding: `{"t_ns":<19 digits>,"pad":""}`.
const PAYLOAD_OVERHEAD: usize = 37;
/// The smallest `--payload-bytes` accepted: the payload object without padding.
pub const PAYLOAD_BYTES_MIN: usize = PAYLOAD_OVERHEAD;

/// A reusable padding string.
pub fn padding(payload_bytes: usize) -> String {
    "x".repeat(payload_bytes.saturating_sub(PAYLOAD_OVERHEAD))
}

/// Write an append body. The `payload` object is `{"t_ns":..,"pad":".."}`, sized to
/// `payload_bytes` when that is at least 37 (t_ns has 19 digits until 2286).
pub fn write_append_body(out: &mut Vec<u8>, pad: &str, t_ns: u64, key: Option<&str>, expected_seq: Option<u64>) {
    let _ = write!(out, "{{\"type\":\"bench\",\"payload\":{{\"t_ns\":{t_ns},\"pad\":\"{pad}\"}},\"actor\":\"bench\"");
    if let Some(k) = key {
        let _ = write!(out, ",\"idempotency_key\":\"{k}\"");
    }
    if let Some(e) = expected_seq {
        let _ = write!(out, ",\"expected_seq\":{e}");
    }
    out.push(b'}');
}

/// `201` answer to an append.
#[derive(Debug, Deserialize)]
pub struct AppendOk {
    pub seq: u64,
    pub last_seq: u64,
    pub deduped: bool,
}

/// Error answer `{"error":..,"message":..}`.
#[derive(Debug, Deserialize)]
pub struct ApiError<'a> {
    #[serde(borrow)]
    pub error: Cow<'a, str>,
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
}

/// `Expected seq X, current seq is Y` → (X, Y).
pub fn parse_conflict(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("Expected seq ")?;
    let (x, rest) = rest.split_once(',')?;
    let y = rest.trim().strip_prefix("current seq is ")?;
    let y: String = y.chars().take_while(char::is_ascii_digit).collect();
    Some((x.trim().parse().ok()?, y.parse().ok()?))
}

#[derive(Debug, Deserialize)]
pub struct SeqOnly {
    pub seq: u64,
}

/// `GET /v1/sessions/<id>/events` answer (only what the bench checks).
#[derive(Debug, Deserialize)]
pub struct Page {
    pub events: Vec<SeqOnly>,
    pub next_cursor: u64,
    pub last_seq: u64,
}

/// An event as delivered on a tail.
#[derive(Debug, Deserialize)]
pub struct TailEvent<'a> {
    pub seq: u64,
    #[serde(default, borrow)]
    pub inserted_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub payload: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct BenchPayload {
    #[serde(default)]
    t_ns: Option<u64>,
}

impl TailEvent<'_> {
    /// `payload.t_ns` when the payload is the bench's.
    pub fn t_ns(&self) -> Option<u64> {
        let raw = self.payload?;
        serde_json::from_str::<BenchPayload>(raw.get()).ok()?.t_ns
    }
}

/// Parse one tail frame: an event object, or an array of them (batch_size > 1).
pub fn parse_tail_frame(text: &[u8]) -> Result<Vec<TailEvent<'_>>, String> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first == Some(b'[') {
        serde_json::from_slice::<Vec<TailEvent<'_>>>(text).map_err(|e| format!("tail frame: {e}"))
    } else {
        serde_json::from_slice::<TailEvent<'_>>(text).map(|e| vec![e]).map_err(|e| format!("tail frame: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_body_has_the_requested_payload_size() {
        let pad = padding(256);
        let mut out = Vec::new();
        write_append_body(&mut out, &pad, 1_770_562_801_123_456_789, Some("k-1"), Some(7));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["payload"].to_string().len(), 256);
        assert_eq!(v["payload"]["t_ns"], 1_770_562_801_123_456_789u64);
        assert_eq!(v["idempotency_key"], "k-1");
        assert_eq!(v["expected_seq"], 7);
        assert_eq!(v["type"], "bench");
    }

    #[test]
    fn conflict_message() {
        assert_eq!(parse_conflict("Expected seq 3, current seq is 5"), Some((3, 5)));
        assert_eq!(parse_conflict("Expected seq 3, current seq is 5."), Some((3, 5)));
        assert_eq!(parse_conflict("nope"), None);
    }

    #[test]
    fn tail_frames() {
        let one = br#"{"seq":4,"type":"bench","payload":{"t_ns":99,"pad":"x{["},"inserted_at":"2026-02-08T15:00:01.123456Z"}"#;
        let evs = parse_tail_frame(one).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!((evs[0].seq, evs[0].t_ns()), (4, Some(99)));
        assert_eq!(evs[0].inserted_at.as_deref(), Some("2026-02-08T15:00:01.123456Z"));
        let batch = br#"[{"seq":1,"payload":"text"},{"seq":2,"payload":{"other":1}}]"#;
        let evs = parse_tail_frame(batch).unwrap();
        assert_eq!(evs.iter().map(|e| (e.seq, e.t_ns())).collect::<Vec<_>>(), vec![(1, None), (2, None)]);
        assert!(parse_tail_frame(b"{\"nope\":1}").is_err());
    }

    #[test]
    fn page() {
        let p: Page = serde_json::from_str(r#"{"events":[{"seq":1,"payload":{}},{"seq":2}],"next_cursor":2,"last_seq":9}"#).unwrap();
        assert_eq!((p.events.len(), p.next_cursor, p.last_seq), (2, 2, 9));
    }
}
