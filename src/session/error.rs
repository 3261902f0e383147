//! Client-visible errors of the session API.
//!
//! Invariants: `code` is a stable machine-readable identifier (clients branch on
//! it, so it never changes for a given condition); `message` is for humans and
//! may be reworded, except where the SPEC fixes it (`expected_seq_conflict`).
//! `ApiError` is plain data so it can travel inside an `Outcome` produced by
//! the replicated state machine and compare equal across replicas.

use super::json::push_json_string;

/// A client-visible error: HTTP status, stable code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    /// `{"error":code,"message":msg}`, written by hand so it cannot fail.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(32 + self.code.len() + self.message.len());
        out.push_str("{\"error\":");
        push_json_string(&mut out, self.code);
        out.push_str(",\"message\":");
        push_json_string(&mut out, &self.message);
        out.push('}');
        out
    }

    /// 400: the body is not parseable JSON at all.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_json", message)
    }

    /// 400: a create-session body is structurally wrong (not an object, bad `id`/`title` type).
    pub fn invalid_session(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_session", message)
    }

    /// 400: a session id string has forbidden characters or is too long.
    pub fn invalid_session_id(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_session_id", message)
    }

    /// 400: `metadata` is present but not a JSON object.
    pub fn invalid_metadata(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_metadata", message)
    }

    /// 400: an append body violates a field rule not covered by a more specific code.
    pub fn invalid_event(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_event", message)
    }

    /// 400: `refs` is not an object or one of its well-known keys has the wrong type.
    pub fn invalid_refs(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_refs", message)
    }

    /// 400: the `cursor` query parameter is not a non-negative integer.
    pub fn invalid_cursor(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_cursor", message)
    }

    /// 400: the `limit` query parameter is zero or not a number.
    pub fn invalid_limit(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_limit", message)
    }

    /// 400: the `batch_size` query parameter is outside `1..=BATCH_SIZE_MAX`.
    pub fn invalid_batch_size(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_batch_size", message)
    }

    /// 404: no session with this id exists on the shard.
    pub fn session_not_found(id: &str) -> Self {
        Self::new(404, "session_not_found", format!("Session {id} not found"))
    }

    /// 409: a create named an id that is already taken.
    pub fn session_exists(id: &str) -> Self {
        Self::new(409, "session_exists", format!("Session {id} already exists"))
    }

    /// 409: an idempotency key was reused for an event with different content.
    /// The key is not echoed: it is client-chosen and unbounded in length.
    pub fn idempotency_conflict() -> Self {
        Self::new(409, "idempotency_conflict", "idempotency_key was already used for a different event in this session")
    }

    /// 409: optimistic concurrency check failed. The message text is fixed by the SPEC.
    pub fn expected_seq_conflict(expected: u64, current: u64) -> Self {
        Self::new(409, "expected_seq_conflict", format!("Expected seq {expected}, current seq is {current}"))
    }

    /// 500: an internal invariant could not be upheld; never caused by valid input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal_error", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn to_json_has_exactly_error_and_message() {
        let e = ApiError::session_not_found("abc");
        let v: Value = serde_json::from_str(&e.to_json()).expect("valid json");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 2);
        assert_eq!(obj["error"], "session_not_found");
        assert_eq!(obj["message"], "Session abc not found");
    }

    #[test]
    fn to_json_escapes_quotes_and_control_characters() {
        let e = ApiError::invalid_event("bad \"x\"\n\u{1}");
        let v: Value = serde_json::from_str(&e.to_json()).expect("valid json");
        assert_eq!(v["message"], "bad \"x\"\n\u{1}");
    }

    #[test]
    fn constructors_carry_the_spec_status_and_code() {
        let cases = [
            (ApiError::invalid_json("m"), 400, "invalid_json"),
            (ApiError::invalid_session("m"), 400, "invalid_session"),
            (ApiError::invalid_session_id("m"), 400, "invalid_session_id"),
            (ApiError::invalid_metadata("m"), 400, "invalid_metadata"),
            (ApiError::invalid_event("m"), 400, "invalid_event"),
            (ApiError::invalid_refs("m"), 400, "invalid_refs"),
            (ApiError::invalid_cursor("m"), 400, "invalid_cursor"),
            (ApiError::invalid_limit("m"), 400, "invalid_limit"),
            (ApiError::invalid_batch_size("m"), 400, "invalid_batch_size"),
            (ApiError::session_not_found("s"), 404, "session_not_found"),
            (ApiError::session_exists("s"), 409, "session_exists"),
            (ApiError::idempotency_conflict(), 409, "idempotency_conflict"),
            (ApiError::expected_seq_conflict(1, 2), 409, "expected_seq_conflict"),
            (ApiError::internal("m"), 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status, err.code), (status, code));
        }
    }

    #[test]
    fn conflict_messages_match_the_spec_wording() {
        assert_eq!(ApiError::expected_seq_conflict(3, 5).message, "Expected seq 3, current seq is 5");
        assert_eq!(ApiError::session_exists("a").message, "Session a already exists");
    }
}
