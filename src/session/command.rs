//! Replicated commands: what the leader proposes to the shard's Raft log.
//!
//! Invariants:
//! - A command carries every input the state machine needs, including the
//!   leader-chosen timestamp (`now_micros`) and generated session id, so applying
//!   it is deterministic on every replica; nothing is read from clocks or RNGs
//!   at apply time.
//! - JSON values travel as compact JSON text, produced by `json::compact*` from values
//!   that passed validation, so it is always well-formed, keeps the client's key order
//!   and every number's exact text (SPEC §2: values are stored exactly).
//! - `EventBody::fingerprint` is computed once by the leader from the validated request,
//!   and only when the append carries an idempotency key (it is never read otherwise;
//!   it is 0 then); replicas trust it instead of re-parsing JSON.

use super::json::{compact_object, fingerprint};
use super::validate::{AppendRequest, CreateRequest};

/// The content of one event as stored in the log.
#[derive(serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub struct EventBody {
    pub event_type: String,
    /// Compact JSON text of an object.
    pub payload_json: String,
    pub actor: String,
    pub source: Option<String>,
    /// Compact JSON text of an object (`{}` when omitted).
    pub metadata_json: String,
    /// Compact JSON text of an object (`{}` when omitted).
    pub refs_json: String,
    /// `json::fingerprint` of (type, payload, actor, source, metadata, refs) when the
    /// append has an idempotency key, else 0 (never compared then).
    pub fingerprint: u128,
}

/// One entry of a shard's replicated log.
#[derive(serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
pub enum Command {
    CreateSession {
        id: String,
        title: Option<String>,
        /// Compact JSON text of an object.
        metadata_json: String,
        /// Unix time in microseconds, chosen by the leader at propose time.
        now_micros: i64,
    },
    Append {
        session_id: String,
        event: EventBody,
        idempotency_key: Option<String>,
        expected_seq: Option<u64>,
        /// Unix time in microseconds, chosen by the leader at propose time.
        now_micros: i64,
    },
    /// Postgres confirmed events `1..=archived_seq` of the session (SPEC §5: the archive
    /// watermark is replicated, so a new leader resumes where the old one stopped). Only
    /// ever raises the session's watermark, and never past its last seq.
    MarkArchived { session_id: String, archived_seq: u64 },
}

impl Command {
    /// Bytes of text the command carries (its strings), e.g. to size an encoding buffer.
    pub fn text_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        match self {
            Command::CreateSession { id, title, metadata_json, .. } => id.len() + opt(title) + metadata_json.len(),
            Command::Append { session_id, event, idempotency_key, .. } => {
                session_id.len()
                    + event.event_type.len()
                    + event.payload_json.len()
                    + event.actor.len()
                    + opt(&event.source)
                    + event.metadata_json.len()
                    + event.refs_json.len()
                    + opt(idempotency_key)
            }
            Command::MarkArchived { session_id, .. } => session_id.len(),
        }
    }

    /// The session the command targets (used for routing and pre-checks).
    pub fn session_id(&self) -> &str {
        match self {
            Command::CreateSession { id, .. } => id,
            Command::Append { session_id, .. } => session_id,
            Command::MarkArchived { session_id, .. } => session_id,
        }
    }
}

const GENERATED_ID_PREFIX: &str = "ses_";
const GENERATED_ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `ses_` + SESSION_ID_GENERATED_RANDOM_CHARS random `[a-z0-9]`; always a valid
/// session id. Called on the leader only, before proposing.
pub fn generate_session_id() -> String {
    let n = crate::limits::SESSION_ID_GENERATED_RANDOM_CHARS;
    let mut id = String::with_capacity(GENERATED_ID_PREFIX.len() + n);
    id.push_str(GENERATED_ID_PREFIX);
    for _ in 0..n {
        let i = fastrand::usize(..GENERATED_ID_ALPHABET.len());
        id.push(char::from(GENERATED_ID_ALPHABET[i]));
    }
    id
}

impl CreateRequest {
    /// Builds the replicated command, generating an id when the client gave none.
    pub fn into_command(self, now_micros: i64) -> Command {
        Command::CreateSession {
            id: self.id.unwrap_or_else(generate_session_id),
            title: self.title,
            metadata_json: compact_object(&self.metadata),
            now_micros,
        }
    }
}

impl AppendRequest {
    /// Builds the replicated command (the JSON texts move in as they are); computes the
    /// idempotency fingerprint here, only for an append with a key, so replicas never
    /// need to parse JSON.
    pub fn into_command(self, session_id: String, now_micros: i64) -> Command {
        let fingerprint = match self.idempotency_key {
            Some(_) => {
                fingerprint(&self.event_type, &self.payload_json, &self.actor, self.source.as_deref(), &self.metadata_json, &self.refs_json)
            }
            None => 0,
        };
        Command::Append {
            session_id,
            event: EventBody {
                event_type: self.event_type,
                payload_json: self.payload_json,
                actor: self.actor,
                source: self.source,
                metadata_json: self.metadata_json,
                refs_json: self.refs_json,
                fingerprint,
            },
            idempotency_key: self.idempotency_key,
            expected_seq: self.expected_seq,
            now_micros,
        }
    }
}

/// Latest instant `format_timestamp` can print (9999-12-31T23:59:59.999999Z).
const TIMESTAMP_MICROS_MAX: i64 = 253_402_300_799_999_999;

/// RFC 3339 UTC with exactly 6 fractional digits and `Z`, e.g.
/// `2026-02-08T15:00:01.123456Z`. Inputs outside 1970..=9999 are clamped to the
/// range ends, because humantime panics before the epoch and errors after 9999
/// and this function must never fail.
pub fn format_timestamp(micros: i64) -> String {
    let mut out = String::with_capacity(27);
    push_timestamp(&mut out, micros);
    out
}

/// [`format_timestamp`] appended to `out` (no allocation of its own: rendering an event
/// writes the timestamp in place).
pub fn push_timestamp(out: &mut String, micros: i64) {
    use std::fmt::Write;
    let clamped = micros.clamp(0, TIMESTAMP_MICROS_MAX);
    // clamp guarantees 0 <= clamped, so the conversion cannot fail.
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(clamped.unsigned_abs());
    // Writing into a String cannot fail.
    let _ = write!(out, "{}", humantime::format_rfc3339_micros(t));
}

/// Current Unix time in microseconds, for the leader to stamp commands with.
/// A clock before 1970 yields 0 rather than failing.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::validate::{is_valid_session_id, parse_append, parse_create};

    fn sample_append() -> Command {
        parse_append(
            br#"{"type":"t","payload":{"z":1,"a":[true,null]},"actor":"u","source":"s",
                 "metadata":{"m":1},"refs":{"step":2},"idempotency_key":"k","expected_seq":"3"}"#,
        )
        .expect("valid")
        .into_command("sess".to_string(), 1_700_000_000_123_456)
    }

    #[test]
    fn append_command_keeps_json_text_in_client_key_order() {
        let Command::Append { session_id, event, idempotency_key, expected_seq, now_micros } = sample_append() else {
            panic!("expected an append command");
        };
        assert_eq!(session_id, "sess");
        assert_eq!(event.event_type, "t");
        assert_eq!(event.payload_json, r#"{"z":1,"a":[true,null]}"#);
        assert_eq!(event.actor, "u");
        assert_eq!(event.source.as_deref(), Some("s"));
        assert_eq!(event.metadata_json, r#"{"m":1}"#);
        assert_eq!(event.refs_json, r#"{"step":2}"#);
        assert_eq!(idempotency_key.as_deref(), Some("k"));
        assert_eq!(expected_seq, Some(3));
        assert_eq!(now_micros, 1_700_000_000_123_456);
    }

    #[test]
    fn append_command_defaults_metadata_and_refs_to_empty_objects() {
        let cmd = parse_append(br#"{"type":"t","payload":{},"actor":"u"}"#).expect("valid").into_command("s".to_string(), 0);
        let Command::Append { event, .. } = cmd else {
            panic!("expected an append command");
        };
        assert_eq!((event.metadata_json.as_str(), event.refs_json.as_str()), ("{}", "{}"));
    }

    #[test]
    fn omitted_and_explicit_default_metadata_fingerprint_equal() {
        let fp = |body: &[u8]| match parse_append(body).expect("valid").into_command("s".into(), 0) {
            Command::Append { event, .. } => event.fingerprint,
            _ => 0,
        };
        let a = fp(br#"{"type":"t","payload":{"x":1,"y":2},"actor":"u","idempotency_key":"k"}"#);
        let b = fp(br#"{"type":"t","payload":{"y":2,"x":1.0},"actor":"u","metadata":{},"refs":{},"source":null,"idempotency_key":"k"}"#);
        assert_eq!(a, b);
        // Without a key there is nothing to compare, so nothing is computed.
        assert_eq!(fp(br#"{"type":"t","payload":{"x":1},"actor":"u"}"#), 0);
    }

    #[test]
    fn create_command_generates_a_valid_prefixed_id_when_absent() {
        let cmd = parse_create(b"").expect("valid").into_command(5);
        let Command::CreateSession { id, title, metadata_json, now_micros } = cmd else {
            panic!("expected a create command");
        };
        assert!(id.starts_with("ses_") && id.len() == 24, "{id}");
        assert!(id[4..].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert!(is_valid_session_id(&id));
        assert_eq!((title, metadata_json.as_str(), now_micros), (None, "{}", 5));
        assert_ne!(generate_session_id(), generate_session_id());
    }

    #[test]
    fn create_command_keeps_a_client_chosen_id() {
        let cmd = parse_create(br#"{"id":"mine","title":"T","metadata":{"b":1,"a":2}}"#).expect("valid").into_command(9);
        assert_eq!(
            cmd,
            Command::CreateSession { id: "mine".into(), title: Some("T".into()), metadata_json: r#"{"b":1,"a":2}"#.into(), now_micros: 9 }
        );
        assert_eq!(cmd.session_id(), "mine");
    }

    #[test]
    fn commands_round_trip_through_rkyv() {
        for cmd in [sample_append(), parse_create(b"{}").expect("valid").into_command(1)] {
            let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&cmd).expect("serialize");
            let back = rkyv::from_bytes::<Command, rkyv::rancor::Error>(&bytes).expect("decode");
            assert_eq!(back, cmd);
        }
    }

    #[test]
    fn commands_round_trip_through_serde_json() {
        let cmd = sample_append();
        let text = serde_json::to_string(&cmd).expect("serialize");
        assert_eq!(serde_json::from_str::<Command>(&text).expect("decode"), cmd);
    }

    #[test]
    fn timestamps_have_six_fraction_digits_and_z() {
        assert_eq!(format_timestamp(1_770_562_801_123_456), "2026-02-08T15:00:01.123456Z");
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(1_000_000), "1970-01-01T00:00:01.000000Z");
    }

    #[test]
    fn out_of_range_timestamps_are_clamped_instead_of_panicking() {
        assert_eq!(format_timestamp(-1), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(i64::MIN), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(i64::MAX), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn now_micros_is_after_2020() {
        assert!(now_micros() > 1_577_836_800_000_000);
    }
}
