//! Client-visible errors of the session API.
//!
//! Invariants: `code` is a stable machine-readable identifier (clients branch on
//! it, so it never changes for a given condition); `message` is for humans and
//! may be reworded, except where the SPEC fixes it (`expected_seq_conflict`).
//! `ApiError` is plain data so it can travel inside an `Outcome` produced by
//! the replicated state machine and compare equal across replicas; its code is the
//! [`ErrorCode`] enum, so nothing ever maps a string back to a code.

use super::json::push_json_string;

/// Every code an API error can carry (SPEC §3), with the HTTP status it answers with.
/// The enum is what travels (through Raft replies, across cores, later between nodes):
/// the stable string is derived from it, never parsed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    InvalidSession,
    InvalidSessionId,
    InvalidMetadata,
    InvalidEvent,
    InvalidRefs,
    InvalidCursor,
    InvalidLimit,
    InvalidBatchSize,
    InvalidWebsocketUpgrade,
    SessionNotFound,
    SessionExists,
    IdempotencyConflict,
    ExpectedSeqConflict,
    RaftUnavailable,
    RaftTimeout,
    InternalError,
    /// A read needs events that only the Postgres archive holds, and it cannot be reached.
    ArchiveUnavailable,
}

impl ErrorCode {
    /// The HTTP status this code is answered with (SPEC §3).
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidJson
            | InvalidSession
            | InvalidSessionId
            | InvalidMetadata
            | InvalidEvent
            | InvalidRefs
            | InvalidCursor
            | InvalidLimit
            | InvalidBatchSize
            | InvalidWebsocketUpgrade => 400,
            SessionNotFound => 404,
            SessionExists | IdempotencyConflict | ExpectedSeqConflict => 409,
            RaftUnavailable | RaftTimeout | ArchiveUnavailable => 503,
            InternalError => 500,
        }
    }

    /// The stable machine-readable string (the `error` field of the body).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidSession => "invalid_session",
            InvalidSessionId => "invalid_session_id",
            InvalidMetadata => "invalid_metadata",
            InvalidEvent => "invalid_event",
            InvalidRefs => "invalid_refs",
            InvalidCursor => "invalid_cursor",
            InvalidLimit => "invalid_limit",
            InvalidBatchSize => "invalid_batch_size",
            InvalidWebsocketUpgrade => "invalid_websocket_upgrade",
            SessionNotFound => "session_not_found",
            SessionExists => "session_exists",
            IdempotencyConflict => "idempotency_conflict",
            ExpectedSeqConflict => "expected_seq_conflict",
            RaftUnavailable => "raft_unavailable",
            RaftTimeout => "raft_timeout",
            InternalError => "internal_error",
            ArchiveUnavailable => "archive_unavailable",
        }
    }
}

/// A client-visible error: a code (which owns the HTTP status) and a human message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// `{"error":code,"message":msg}`, written by hand so it cannot fail.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(48 + self.message.len());
        out.push_str("{\"error\":");
        push_json_string(&mut out, self.code.as_str());
        out.push_str(",\"message\":");
        push_json_string(&mut out, &self.message);
        out.push('}');
        out
    }

    /// 400: the body is not parseable JSON at all.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidJson, message)
    }

    /// 400: a create-session body is structurally wrong (not an object, bad `id`/`title` type).
    pub fn invalid_session(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidSession, message)
    }

    /// 400: a session id string has forbidden characters or is too long.
    pub fn invalid_session_id(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidSessionId, message)
    }

    /// 400: `metadata` is present but not a JSON object.
    pub fn invalid_metadata(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidMetadata, message)
    }

    /// 400: an append body violates a field rule not covered by a more specific code.
    pub fn invalid_event(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEvent, message)
    }

    /// 400: `refs` is not an object or one of its well-known keys has the wrong type.
    pub fn invalid_refs(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRefs, message)
    }

    /// 400: the `cursor` query parameter is not a non-negative integer.
    pub fn invalid_cursor(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidCursor, message)
    }

    /// 400: the `limit` query parameter is zero or not a number.
    pub fn invalid_limit(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidLimit, message)
    }

    /// 400: the `batch_size` query parameter is outside `1..=BATCH_SIZE_MAX`.
    pub fn invalid_batch_size(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidBatchSize, message)
    }

    /// 404: no session with this id exists on the shard.
    pub fn session_not_found(id: &str) -> Self {
        Self::new(ErrorCode::SessionNotFound, format!("Session {id} not found"))
    }

    /// 409: a create named an id that is already taken.
    pub fn session_exists(id: &str) -> Self {
        Self::new(ErrorCode::SessionExists, format!("Session {id} already exists"))
    }

    /// 409: an idempotency key was reused for an event with different content.
    /// The key is not echoed: it is client-chosen and unbounded in length.
    pub fn idempotency_conflict() -> Self {
        Self::new(ErrorCode::IdempotencyConflict, "idempotency_key was already used for a different event in this session")
    }

    /// 409: optimistic concurrency check failed. The message text is fixed by the SPEC.
    pub fn expected_seq_conflict(expected: u64, current: u64) -> Self {
        Self::new(ErrorCode::ExpectedSeqConflict, format!("Expected seq {expected}, current seq is {current}"))
    }

    /// 400: a tail request that is neither a WebSocket upgrade nor an SSE request.
    pub fn invalid_websocket_upgrade(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidWebsocketUpgrade, message)
    }

    /// 503: the shard cannot take the request now (no leader, still recovering, its core
    /// is gone); a retry may succeed. An append answered so may or may not have committed.
    pub fn raft_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RaftUnavailable, message)
    }

    /// 503: the read reaches events trimmed from the hot tier after archiving (SPEC §5) and
    /// the archive cannot serve them now (Postgres down, slow, or not configured).
    /// Retrying later is safe; reads of newer events and appends are not affected.
    pub fn archive_unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ArchiveUnavailable, message)
    }

    /// 503: the write was not committed within `STARCITE_REQUEST_TIMEOUT_MS`.
    pub fn raft_timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RaftTimeout, message)
    }

    /// 500: an internal invariant could not be upheld; never caused by valid input.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code.as_str(), self.message)
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
            (ApiError::invalid_websocket_upgrade("m"), 400, "invalid_websocket_upgrade"),
            (ApiError::raft_unavailable("m"), 503, "raft_unavailable"),
            (ApiError::raft_timeout("m"), 503, "raft_timeout"),
            (ApiError::internal("m"), 500, "internal_error"),
            (ApiError::archive_unavailable("m"), 503, "archive_unavailable"),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status(), err.code.as_str()), (status, code));
        }
    }

    #[test]
    fn conflict_messages_match_the_spec_wording() {
        assert_eq!(ApiError::expected_seq_conflict(3, 5).message, "Expected seq 3, current seq is 5");
        assert_eq!(ApiError::session_exists("a").message, "Session a already exists");
    }
}
