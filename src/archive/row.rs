//! One archived event as the columns of SPEC §5's `events` table, taken apart from the
//! event's rendered JSON (`session::render_event`'s shape, the exact text clients read).
//!
//! Invariants:
//! - `event_json` is the event's exact rendered text: reads back from the archive are
//!   byte-identical to reads from the hot tier (field order, number spelling, `inserted_at`
//!   with microseconds and `Z`). jsonb reorders keys and respells numbers, so the jsonb
//!   columns are the *queryable* copy and `event_json` the authoritative one.
//! - Postgres refuses some values the API accepts (docs/ARCHITECTURE.md, "What Postgres
//!   refuses"): NUL in text (`text` cannot hold U+0000, jsonb cannot hold `\u0000`) and
//!   numbers beyond `numeric`'s range (`1e1000000`). Such values are stored losslessly
//!   and unambiguously: a NUL in a text column is spelled as the six characters `\u0000`,
//!   and a payload/metadata/refs object that jsonb refuses is stored as a jsonb *string*
//!   holding the object's exact JSON text (the API only accepts objects there, so a string
//!   never means anything else). `event_json` holds the exact event either way.

use serde::Deserialize;
use serde_json::value::RawValue;

/// The columns of one row, as text parameters (cast to jsonb/timestamptz by the INSERT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub session_id: String,
    pub seq: i64,
    pub event_type: String,
    pub payload: String,
    pub actor: String,
    pub source: Option<String>,
    pub metadata: String,
    pub refs: String,
    pub idempotency_key: Option<String>,
    /// RFC 3339 with microseconds and `Z`, as rendered.
    pub inserted_at: String,
    pub event_json: String,
}

/// Which jsonb column of a row (for the refused-value fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonColumn {
    Payload,
    Metadata,
    Refs,
}

impl JsonColumn {
    pub const ALL: [JsonColumn; 3] = [JsonColumn::Payload, JsonColumn::Metadata, JsonColumn::Refs];
}

/// The rendered event, borrowed where it can be.
#[derive(Deserialize)]
struct Rendered<'a> {
    seq: u64,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(borrow)]
    payload: &'a RawValue,
    actor: String,
    source: Option<String>,
    #[serde(borrow)]
    metadata: &'a RawValue,
    #[serde(borrow)]
    refs: &'a RawValue,
    idempotency_key: Option<String>,
    inserted_at: String,
}

/// A rendered event that is not the shape `render_event` writes (never expected: it would
/// be a defect in this process, reported rather than archived wrongly).
#[derive(Debug, thiserror::Error)]
#[error("event {index} of session {session:?} is not a rendered event: {reason}")]
pub struct MalformedEvent {
    pub session: String,
    pub index: usize,
    pub reason: String,
}

/// Whether JSON text holds the escape `\u0000` (jsonb refuses it). Escapes are read pairwise,
/// so an escaped backslash followed by `u0000` is not one.
fn has_nul_escape(json: &str) -> bool {
    let b = json.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\\' {
            if b[i + 1] == b'u' && b.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// NUL cannot be stored in a Postgres text value: spell it `\u0000` (see the module doc).
fn text_column(s: String) -> String {
    if s.contains('\0') {
        s.replace('\0', "\\u0000")
    } else {
        s
    }
}

impl Row {
    /// The row of `event_json`, one rendered event of `session_id`.
    pub fn parse(session_id: &str, index: usize, event_json: &str) -> Result<Row, MalformedEvent> {
        let malformed = |reason: String| MalformedEvent { session: session_id.to_string(), index, reason };
        let r: Rendered<'_> = serde_json::from_str(event_json).map_err(|e| malformed(e.to_string()))?;
        let seq = i64::try_from(r.seq).map_err(|_| malformed(format!("seq {} exceeds bigint", r.seq)))?;
        let mut row = Row {
            session_id: text_column(session_id.to_string()),
            seq,
            event_type: text_column(r.event_type),
            payload: r.payload.get().to_string(),
            actor: text_column(r.actor),
            source: r.source.map(text_column),
            metadata: r.metadata.get().to_string(),
            refs: r.refs.get().to_string(),
            idempotency_key: r.idempotency_key.map(text_column),
            inserted_at: r.inserted_at,
            event_json: event_json.to_string(),
        };
        // Known refusals take the fallback at once: a batch of them would otherwise cost
        // a bisection down to every row (other refusals, rarer, still go that way).
        for column in JsonColumn::ALL {
            if has_nul_escape(row.json(column)) {
                row.store_as_text(column);
            }
        }
        Ok(row)
    }

    pub fn json(&self, column: JsonColumn) -> &str {
        match column {
            JsonColumn::Payload => &self.payload,
            JsonColumn::Metadata => &self.metadata,
            JsonColumn::Refs => &self.refs,
        }
    }

    /// Store `column` as a jsonb string holding its exact text (Postgres refused the
    /// object itself; see the module doc).
    pub fn store_as_text(&mut self, column: JsonColumn) {
        let text = serde_json::Value::String(self.json(column).to_string()).to_string();
        match column {
            JsonColumn::Payload => self.payload = text,
            JsonColumn::Metadata => self.metadata = text,
            JsonColumn::Refs => self.refs = text,
        }
    }

    /// The bytes this row stands for in the archive metrics (its exact event JSON).
    pub fn bytes(&self) -> u64 {
        self.event_json.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::command::EventBody;
    use crate::session::render_event;

    fn body(payload: &str) -> EventBody {
        EventBody {
            event_type: "msg".into(),
            payload_json: payload.into(),
            actor: "agent:a".into(),
            source: None,
            metadata_json: r#"{"z":1,"a":2}"#.into(),
            refs_json: "{}".into(),
            fingerprint: 0,
        }
    }

    #[test]
    fn a_rendered_event_becomes_its_columns_with_its_exact_text() {
        let json = render_event(7, &body(r#"{"b":1.50,"a":[1e3,"x"]}"#), Some("k-1"), 1_764_800_000_123_456);
        let row = Row::parse("s1", 0, &json).unwrap();
        assert_eq!(row.seq, 7);
        assert_eq!(row.session_id, "s1");
        assert_eq!(row.event_type, "msg");
        assert_eq!(row.payload, r#"{"b":1.50,"a":[1e3,"x"]}"#, "the object's text as sent, not respelled");
        assert_eq!(row.metadata, r#"{"z":1,"a":2}"#);
        assert_eq!((row.source, row.idempotency_key.as_deref()), (None, Some("k-1")));
        assert_eq!(row.inserted_at, "2025-12-03T22:13:20.123456Z");
        assert_eq!(row.event_json, json);
    }

    #[test]
    fn nul_in_text_columns_is_spelled_as_its_escape() {
        let mut b = body("{}");
        b.event_type = "a\0b".into();
        b.actor = "\0".into();
        let json = render_event(1, &b, Some("k\0"), 0);
        let row = Row::parse("s", 0, &json).unwrap();
        assert_eq!((row.event_type.as_str(), row.actor.as_str()), ("a\\u0000b", "\\u0000"));
        assert_eq!(row.idempotency_key.as_deref(), Some("k\\u0000"));
        assert!(row.event_json.contains(r#""type":"a\u0000b""#), "the exact event keeps the escape: {}", row.event_json);
    }

    #[test]
    fn a_refused_object_is_stored_as_a_string_of_its_exact_text() {
        // Postgres refuses this number (numeric's range); the archive finds out by trying.
        let json = render_event(1, &body(r#"{"a":"x","n":1e1000000}"#), None, 0);
        let mut row = Row::parse("s", 0, &json).unwrap();
        assert_eq!(row.payload, r#"{"a":"x","n":1e1000000}"#);
        row.store_as_text(JsonColumn::Payload);
        let back: String = serde_json::from_str(&row.payload).unwrap();
        assert_eq!(back, r#"{"a":"x","n":1e1000000}"#);
        assert_eq!(row.metadata, r#"{"z":1,"a":2}"#, "other columns stay objects");
    }

    #[test]
    fn a_nul_escape_takes_the_fallback_at_once_and_an_escaped_backslash_does_not() {
        let json = render_event(1, &body(r#"{"a":"x\u0000y"}"#), None, 0);
        let row = Row::parse("s", 0, &json).unwrap();
        assert_eq!(serde_json::from_str::<String>(&row.payload).unwrap(), r#"{"a":"x\u0000y"}"#);
        let json = render_event(1, &body(r#"{"a":"x\\u0000y"}"#), None, 0);
        let row = Row::parse("s", 0, &json).unwrap();
        assert_eq!(row.payload, r#"{"a":"x\\u0000y"}"#, "a backslash, then the text u0000: jsonb takes it");
    }

    #[test]
    fn text_that_is_not_a_rendered_event_is_reported() {
        let e = Row::parse("s", 3, r#"{"seq":1}"#).unwrap_err();
        assert_eq!((e.session.as_str(), e.index), ("s", 3));
    }
}
