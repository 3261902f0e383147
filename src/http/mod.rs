//! Starcite's HTTP/1.1 front, as pure synchronous codecs.
//!
//! Nothing in this module does I/O: the connection loop (elsewhere, on
//! glommio) reads bytes into a buffer, hands them to
//! [`request::RequestParser`], routes the finished [`request::Request`] with
//! [`router::route`], and writes bytes produced by [`response`] back.
//!
//! Invariants every file here keeps:
//! - no panics on any input: no `unwrap`/`expect` on peer-derived data, no
//!   unchecked indexing or slicing of peer-derived buffers;
//! - every size a peer controls is bounded by a constant in
//!   `crate::limits` (or by the [`request::Limits`] the caller passes);
//! - "need more bytes" is a state ([`request::Parse::Incomplete`]), never an
//!   error; errors carry the HTTP status and a stable machine `code`.

mod chunked;
pub mod request;
pub mod response;
pub mod router;
pub mod syntax;

pub use request::{parse_request, HttpError, Limits, Method, Parse, Request, RequestParser};
pub use response::{
    reason_phrase, sse_chunked, sse_comment, sse_event, websocket_accept, write_chunk, write_error, write_error_with_headers, write_json,
    write_last_chunk, write_response, write_sse_end, write_sse_frame, write_sse_head, CONTINUE_100,
};
pub use router::{route, route_label, Route, RouteError};

/// Helpers shared by the parser tests of `request.rs` and `chunked.rs`.
#[cfg(test)]
pub(crate) mod test_support {
    use super::request::{parse_request, HttpError, Limits, Parse, Request};

    pub fn limits() -> Limits {
        Limits::default()
    }

    pub fn small_limits() -> Limits {
        Limits { head_bytes_max: 256, headers_max: 4, body_bytes_max: 64 }
    }

    pub fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &limits()) {
            Ok(Parse::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    pub fn error(buf: &[u8], limits: &Limits) -> HttpError {
        match parse_request(buf, limits) {
            Err(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
