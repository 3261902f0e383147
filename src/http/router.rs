//! Maps (method, path) to a [`Route`]. Pure and allocation-light; never
//! panics.
//!
//! Routes:
//! - `POST /v1/sessions` → [`Route::CreateSession`]
//! - `GET  /v1/sessions/:id` → [`Route::GetSession`]
//! - `POST /v1/sessions/:id/append` → [`Route::Append`]
//! - `GET  /v1/sessions/:id/events` → [`Route::Events`]
//! - `GET  /v1/sessions/:id/tail` → [`Route::Tail`]
//! - `GET  /health/live`, `GET /health/ready`, `GET /metrics`
//!
//! Decisions (and why):
//! - Matching is exact: a trailing slash (`/metrics/`, `/v1/sessions/`) or an
//!   empty segment is 404, so every resource has one spelling and metrics
//!   labels stay clean.
//! - `HEAD` and `OPTIONS` are not special-cased: on a known path they get
//!   405 with `Allow`, like any other wrong method.
//! - Precedence: unknown path (404) before wrong method (405) before a bad
//!   `:id` (400); a wrong method is reported even if the id is also bad.
//! - `:id` is percent-decoded, then must be 1..=`SESSION_ID_BYTES_MAX` bytes
//!   of `[A-Za-z0-9._:-]`. The route carries the decoded id. An encoded
//!   slash (`%2F`) therefore decodes to an invalid id, never a new segment.

use super::request::{percent_decode, HttpError, Method};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateSession,
    GetSession(String),
    Append(String),
    Events(String),
    Tail(String),
    HealthLive,
    HealthReady,
    Metrics,
    /// `GET /v1/openapi.json`: the API's OpenAPI 3.1 description (docs/openapi.yaml).
    OpenApi,
}

impl Route {
    /// Bounded-cardinality metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Route::CreateSession => "create_session",
            Route::GetSession(_) => "get_session",
            Route::Append(_) => "append",
            Route::Events(_) => "events",
            Route::Tail(_) => "tail",
            Route::HealthLive => "health_live",
            Route::HealthReady => "health_ready",
            Route::Metrics => "metrics",
            Route::OpenApi => "openapi",
        }
    }

    /// The decoded session id, for session routes.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Route::GetSession(id) | Route::Append(id) | Route::Events(id) | Route::Tail(id) => Some(id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// `allow` is the value for the `Allow` response header.
    MethodNotAllowed {
        allow: &'static str,
    },
    InvalidSessionId,
}

impl RouteError {
    /// The error response to send (404 / 405 / 400 `invalid_session_id`).
    /// For 405 also send [`RouteError::allow`] as the `allow` header.
    pub fn to_http_error(&self) -> HttpError {
        match self {
            RouteError::NotFound => HttpError::new(404, "not_found", "no such route"),
            RouteError::MethodNotAllowed { allow } => {
                HttpError::new(405, "method_not_allowed", format!("method not allowed on this path; allowed: {allow}"))
            }
            RouteError::InvalidSessionId => HttpError::new(
                400,
                "invalid_session_id",
                format!("session id must be 1 to {} bytes of [A-Za-z0-9._:-]", crate::limits::SESSION_ID_BYTES_MAX),
            ),
        }
    }

    pub fn allow(&self) -> Option<&'static str> {
        match self {
            RouteError::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }
}

/// Path shapes, before method and id checks. `&str` ids are still encoded.
#[derive(Clone, Copy)]
enum Shape<'a> {
    CreateSession,
    GetSession(&'a str),
    Append(&'a str),
    Events(&'a str),
    Tail(&'a str),
    HealthLive,
    HealthReady,
    Metrics,
    OpenApi,
}

impl Shape<'_> {
    fn method(self) -> (Method, &'static str) {
        match self {
            Shape::CreateSession | Shape::Append(_) => (Method::Post, "POST"),
            _ => (Method::Get, "GET"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Shape::CreateSession => "create_session",
            Shape::GetSession(_) => "get_session",
            Shape::Append(_) => "append",
            Shape::Events(_) => "events",
            Shape::Tail(_) => "tail",
            Shape::HealthLive => "health_live",
            Shape::HealthReady => "health_ready",
            Shape::Metrics => "metrics",
            Shape::OpenApi => "openapi",
        }
    }
}

fn shape(path: &str) -> Option<Shape<'_>> {
    let rest = path.strip_prefix('/')?;
    let mut segments = rest.split('/');
    let parts: [Option<&str>; 5] = std::array::from_fn(|_| segments.next());
    // An empty id segment (`/v1/sessions/`, `/v1/sessions//append`) is a
    // trailing/double slash, not an id: 404.
    let id = |s: &str| (!s.is_empty()).then_some(());
    Some(match parts {
        [Some("v1"), Some("sessions"), None, ..] => Shape::CreateSession,
        [Some("v1"), Some("openapi.json"), None, ..] => Shape::OpenApi,
        [Some("v1"), Some("sessions"), Some(id_raw), None, _] => {
            id(id_raw)?;
            Shape::GetSession(id_raw)
        }
        [Some("v1"), Some("sessions"), Some(id_raw), Some(action), None] => {
            id(id_raw)?;
            match action {
                "append" => Shape::Append(id_raw),
                "events" => Shape::Events(id_raw),
                "tail" => Shape::Tail(id_raw),
                _ => return None,
            }
        }
        [Some("health"), Some("live"), None, ..] => Shape::HealthLive,
        [Some("health"), Some("ready"), None, ..] => Shape::HealthReady,
        [Some("metrics"), None, ..] => Shape::Metrics,
        _ => return None,
    })
}

/// Route a request. `path` is the raw path without query
/// ([`super::request::Request::path`]).
pub fn route(method: &Method, path: &str) -> Result<Route, RouteError> {
    let shape = shape(path).ok_or(RouteError::NotFound)?;
    let (allowed, allow) = shape.method();
    if *method != allowed {
        return Err(RouteError::MethodNotAllowed { allow });
    }
    Ok(match shape {
        Shape::CreateSession => Route::CreateSession,
        Shape::GetSession(raw) => Route::GetSession(session_id(raw)?),
        Shape::Append(raw) => Route::Append(session_id(raw)?),
        Shape::Events(raw) => Route::Events(session_id(raw)?),
        Shape::Tail(raw) => Route::Tail(session_id(raw)?),
        Shape::HealthLive => Route::HealthLive,
        Shape::HealthReady => Route::HealthReady,
        Shape::Metrics => Route::Metrics,
        Shape::OpenApi => Route::OpenApi,
    })
}

/// Metrics label from the path shape alone, so that 405s and bad ids are
/// still attributed to their route; unknown paths are `"not_found"`.
/// Never echoes input, so cardinality is fixed at ten values.
pub fn route_label(path: &str) -> &'static str {
    shape(path).map_or("not_found", Shape::label)
}

fn session_id(raw: &str) -> Result<String, RouteError> {
    // Skip decoding hopeless inputs: each decoded byte takes >= 1 raw byte
    // and at most 3, so more than 3x the limit can never fit.
    if raw.len() > 3 * crate::limits::SESSION_ID_BYTES_MAX {
        return Err(RouteError::InvalidSessionId);
    }
    let decoded = percent_decode(raw.as_bytes(), false);
    let valid = (1..=crate::limits::SESSION_ID_BYTES_MAX).contains(&decoded.len())
        && decoded.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !valid {
        return Err(RouteError::InvalidSessionId);
    }
    // All bytes are ASCII, so this cannot fail; map instead of unwrap.
    String::from_utf8(decoded).map_err(|_| RouteError::InvalidSessionId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_recognised_with_its_method_and_label() {
        let cases = [
            (Method::Post, "/v1/sessions", Route::CreateSession, "create_session"),
            (Method::Get, "/v1/sessions/abc", Route::GetSession("abc".into()), "get_session"),
            (Method::Post, "/v1/sessions/abc/append", Route::Append("abc".into()), "append"),
            (Method::Get, "/v1/sessions/abc/events", Route::Events("abc".into()), "events"),
            (Method::Get, "/v1/sessions/abc/tail", Route::Tail("abc".into()), "tail"),
            (Method::Get, "/health/live", Route::HealthLive, "health_live"),
            (Method::Get, "/health/ready", Route::HealthReady, "health_ready"),
            (Method::Get, "/metrics", Route::Metrics, "metrics"),
            (Method::Get, "/v1/openapi.json", Route::OpenApi, "openapi"),
        ];
        for (method, path, expected, label) in cases {
            let got = route(&method, path);
            assert_eq!(got.as_ref(), Ok(&expected), "{path}");
            assert_eq!(expected.label(), label);
            assert_eq!(route_label(path), label);
        }
        assert_eq!(route(&Method::Get, "/v1/sessions/abc").map(|r| r.session_id().map(String::from)), Ok(Some("abc".into())));
    }

    #[test]
    fn unknown_paths_and_trailing_slashes_are_not_found() {
        for path in [
            "",
            "/",
            "metrics",
            "/metrics/",
            "/v1",
            "/v1/sessions/",
            "/v1/sessions//append",
            "/v1/sessions/a/",
            "/v1/sessions/a/append/",
            "/v1/sessions/a/other",
            "/v1/sessions/a/tail/x",
            "/v2/sessions",
            "/health",
            "/health/live/x",
            "/a/b/c/d/e/f/g",
            "/V1/sessions",
        ] {
            assert_eq!(route(&Method::Get, path), Err(RouteError::NotFound), "{path:?}");
            assert_eq!(route(&Method::Post, path), Err(RouteError::NotFound), "{path:?}");
            assert_eq!(route_label(path), "not_found");
        }
    }

    #[test]
    fn wrong_methods_get_405_with_the_allow_value() {
        let cases = [
            (Method::Get, "/v1/sessions", "POST"),
            (Method::Post, "/v1/sessions/a", "GET"),
            (Method::Get, "/v1/sessions/a/append", "POST"),
            (Method::Delete, "/v1/sessions/a/events", "GET"),
            (Method::Head, "/v1/sessions/a/tail", "GET"),
            (Method::Options, "/health/live", "GET"),
            (Method::Other, "/health/ready", "GET"),
            (Method::Put, "/metrics", "GET"),
            (Method::Patch, "/v1/sessions/bad!id", "GET"),
        ];
        for (method, path, allow) in cases {
            let err = route(&method, path).expect_err(path);
            assert_eq!(err, RouteError::MethodNotAllowed { allow });
            assert_eq!(err.allow(), Some(allow));
            assert_eq!(err.to_http_error().status, 405);
        }
    }

    #[test]
    fn session_ids_are_percent_decoded_then_validated() {
        let max = "a".repeat(128);
        let ok = [("A-z_0.9:x", "A-z_0.9:x"), ("%41bc", "Abc"), ("a%3Ab", "a:b"), (max.as_str(), max.as_str())];
        for (raw, decoded) in ok {
            let path = format!("/v1/sessions/{raw}/append");
            assert_eq!(route(&Method::Post, &path), Ok(Route::Append(decoded.into())), "{raw}");
        }
        let too_long = "a".repeat(129);
        let encoded_too_long = "%61".repeat(129);
        let bad = [too_long.as_str(), encoded_too_long.as_str(), "a%2Fb", "a%20b", "a+b", "é", "%zz", "a%00", "%", "a*b"];
        for raw in bad {
            let path = format!("/v1/sessions/{raw}");
            assert_eq!(route(&Method::Get, &path), Err(RouteError::InvalidSessionId), "{raw}");
            assert_eq!(route_label(&path), "get_session", "bad ids still count under their route");
        }
        let e = RouteError::InvalidSessionId.to_http_error();
        assert_eq!((e.status, e.code), (400, "invalid_session_id"));
        assert_eq!(RouteError::NotFound.to_http_error().status, 404);
    }

    #[test]
    fn random_paths_never_panic() {
        let alphabet = ["/", "v1", "sessions", "append", "%", "%4", "%41", "é", "", "a", "health", "metrics"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut path = String::new();
            for _ in 0..(state % 9) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                path.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let _ = route(&Method::Get, &path);
            let _ = route(&Method::Post, &path);
            let _ = route_label(&path);
        }
    }
}
