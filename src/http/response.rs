//! Response serialisation: plain responses, JSON errors, SSE streams, chunk
//! framing and the WebSocket handshake answer.
//!
//! Role: append wire bytes to a caller-owned `Vec<u8>` (so the loop can
//! batch several responses into one write). Never panics.
//!
//! Invariants:
//! - The status line always says `HTTP/1.1`: RFC 9110 §6.2 asks a server to
//!   answer with the highest 1.x it supports even to HTTP/1.0 clients.
//!   `version_minor` (the request's) only decides the connection semantics:
//!   HTTP/1.0 + keep-alive gets an explicit `connection: keep-alive`, and
//!   HTTP/1.0 SSE streams are close-delimited because 1.0 has no chunking.
//! - Every non-streaming response carries `content-length` (except 1xx and
//!   204, which must not, RFC 9110 §8.6, and carry no body), and
//!   `connection: close` whenever `keep_alive` is false.
//! - Caller-supplied header names/values that would break framing (CR, LF,
//!   NUL, non-token names) are dropped rather than written: they could only
//!   come from a bug and must never let a value inject headers.
//!   Callers must not pass `content-length`/`transfer-encoding`/`connection`
//!   in `extra_headers`: those are this module's job.

use super::request::{has_token, trim_ows, Request};
use super::syntax::{is_tchar, HttpError};

/// Append a complete response with `content-length`.
pub fn write_response(
    out: &mut Vec<u8>,
    version_minor: u8,
    status: u16,
    extra_headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
    keep_alive: bool,
) {
    let status = write_status_line(out, status);
    for (name, value) in extra_headers {
        write_header(out, name, value);
    }
    let bodiless = (100..200).contains(&status) || status == 204;
    if !bodiless {
        if let Some(ct) = content_type {
            write_header(out, "content-type", ct);
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_connection(out, version_minor, keep_alive);
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(body);
    }
}

/// Append a response whose body is already-serialised JSON.
pub fn write_json(out: &mut Vec<u8>, version_minor: u8, status: u16, body: &[u8], keep_alive: bool) {
    write_response(out, version_minor, status, &[], Some("application/json"), body, keep_alive);
}

/// Append `{"error":code,"message":msg}` with `e.status`.
pub fn write_error(out: &mut Vec<u8>, version_minor: u8, e: &HttpError, keep_alive: bool) {
    write_error_with_headers(out, version_minor, e, &[], keep_alive);
}

/// [`write_error`] plus extra headers, e.g. `allow` on 405.
pub fn write_error_with_headers(out: &mut Vec<u8>, version_minor: u8, e: &HttpError, extra_headers: &[(&str, &str)], keep_alive: bool) {
    let body = serde_json::json!({ "error": e.code, "message": e.message });
    // Serialising a Value of two strings cannot fail; fall back anyway
    // rather than panic.
    let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    write_response(out, version_minor, e.status, extra_headers, Some("application/json"), &body, keep_alive);
}

/// Standard reason phrase; `""` for unknown codes (an empty reason is
/// valid on the wire).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// Interim response the loop sends when `RequestParser::take_continue`
/// says so.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Head of a Server-Sent Events stream (200, `text/event-stream`).
/// HTTP/1.1: `transfer-encoding: chunked`, one chunk per message (use
/// [`write_sse_frame`] or [`write_chunk`]), end with [`write_sse_end`]; the
/// connection can then be reused. HTTP/1.0: no length, `connection: close`;
/// the stream ends when the server closes.
pub fn write_sse_head(out: &mut Vec<u8>, version_minor: u8) {
    write_status_line(out, 200);
    out.extend_from_slice(b"content-type: text/event-stream\r\n");
    out.extend_from_slice(b"cache-control: no-cache\r\n");
    // Tells nginx-style proxies not to buffer the stream.
    out.extend_from_slice(b"x-accel-buffering: no\r\n");
    if sse_chunked(version_minor) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    } else {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether an SSE stream for this request version is chunk-framed.
pub fn sse_chunked(version_minor: u8) -> bool {
    version_minor >= 1
}

/// Append one already-formatted SSE message (from [`sse_event`] /
/// [`sse_comment`]) with the framing [`write_sse_head`] chose.
pub fn write_sse_frame(out: &mut Vec<u8>, version_minor: u8, message: &[u8]) {
    if sse_chunked(version_minor) {
        write_chunk(out, message);
    } else {
        out.extend_from_slice(message);
    }
}

/// Finish an SSE stream: the last chunk on HTTP/1.1; nothing on HTTP/1.0
/// (the caller closes the connection).
pub fn write_sse_end(out: &mut Vec<u8>, version_minor: u8) {
    if sse_chunked(version_minor) {
        write_last_chunk(out);
    }
}

/// Append one chunk. Empty `data` writes nothing, because a zero-size chunk
/// would end the body; use [`write_last_chunk`] for that.
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Append the terminating zero-size chunk (no trailers).
pub fn write_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Append `id: N\nevent: event\ndata: ...\n\n`. `data` is meant to be
/// single-line JSON; any CR, LF or CRLF in it starts a new `data:` line, so a
/// multi-line payload can never end the event early or inject fields (SSE
/// clients rejoin the lines with `\n`).
pub fn sse_event(out: &mut Vec<u8>, id: u64, data: &str) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    out.extend_from_slice(b"\nevent: event\n");
    for line in sse_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Append a comment (`: text\n\n`), e.g. as a keep-alive ping. Line breaks
/// in `text` start further comment lines.
pub fn sse_comment(out: &mut Vec<u8>, text: &str) {
    for line in sse_lines(text) {
        out.extend_from_slice(b": ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Split on the SSE line terminators CRLF, LF and CR. Always yields at
/// least one (possibly empty) line.
fn sse_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\r', '\n']) {
            Some(i) => {
                let line = current.get(..i).unwrap_or("");
                let skip = if current.get(i..i + 2) == Some("\r\n") { 2 } else { 1 };
                rest = Some(current.get(i + skip..).unwrap_or(""));
                Some(line)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Validate a WebSocket opening handshake (RFC 6455 §4.2.1) and return the
/// complete `101 Switching Protocols` response. After writing it the
/// connection speaks WebSocket frames. No subprotocol or extension is
/// negotiated.
pub fn websocket_accept(req: &Request) -> Result<Vec<u8>, HttpError> {
    let invalid = |m: &str| HttpError::new(400, "invalid_websocket_upgrade", m);
    if req.method != super::request::Method::Get {
        return Err(invalid("websocket upgrade requires GET"));
    }
    if req.version_minor != 1 {
        return Err(invalid("websocket upgrade requires HTTP/1.1"));
    }
    if !req.header_has_token("upgrade", "websocket") {
        return Err(invalid("missing `Upgrade: websocket` header"));
    }
    if !has_token(req.headers_all("connection"), "upgrade") {
        return Err(invalid("`Connection` header must include `upgrade`"));
    }
    match req.header("sec-websocket-version").map(trim_ows) {
        Some(b"13") => {}
        Some(_) => return Err(invalid("unsupported Sec-WebSocket-Version (only 13 is supported)")),
        None => return Err(invalid("missing Sec-WebSocket-Version header")),
    }
    let key = match req.header("sec-websocket-key").map(trim_ows) {
        Some(key) => key,
        None => return Err(invalid("missing Sec-WebSocket-Key header")),
    };
    if !is_websocket_key(key) {
        return Err(invalid("Sec-WebSocket-Key must be base64 of 16 bytes"));
    }
    let accept = async_tungstenite::tungstenite::handshake::derive_accept_key(key);
    let mut out = Vec::with_capacity(160);
    write_status_line(&mut out, 101);
    out.extend_from_slice(b"upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    Ok(out)
}

/// 16 bytes base64-encode to 22 alphabet characters plus `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.get(22..) == Some(b"==".as_slice())
        && key.get(..22).is_some_and(|k| k.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'))
}

/// Writes the status line; out-of-range codes become 500 so the line stays
/// three digits. Returns the status actually written.
fn write_status_line(out: &mut Vec<u8>, status: u16) -> u16 {
    let status = if (100..=999).contains(&status) { status } else { 500 };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    status
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
    let value_ok = value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if name_ok && value_ok {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn write_connection(out: &mut Vec<u8>, version_minor: u8, keep_alive: bool) {
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if version_minor == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request, Limits, Parse};

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).expect("responses are ASCII in these tests")
    }

    fn request(raw: &str) -> Request {
        match parse_request(raw.as_bytes(), &Limits::default()) {
            Ok(Parse::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_always_carry_content_length_and_connection_semantics() {
        let mut out = Vec::new();
        write_response(&mut out, 1, 201, &[("location", "/v1/sessions/a")], Some("text/plain"), b"hi", true);
        assert_eq!(
            text(&out),
            "HTTP/1.1 201 Created\r\nlocation: /v1/sessions/a\r\ncontent-type: text/plain\r\n\
             content-length: 2\r\n\r\nhi"
        );
        let cases = [(1, true, None), (1, false, Some("close")), (0, true, Some("keep-alive")), (0, false, Some("close"))];
        for (minor, keep_alive, connection) in cases {
            let mut out = Vec::new();
            write_json(&mut out, minor, 200, b"{}", keep_alive);
            let s = text(&out);
            assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(s.contains("content-type: application/json\r\ncontent-length: 2\r\n"));
            match connection {
                Some(c) => assert!(s.contains(&format!("connection: {c}\r\n")), "{s}"),
                None => assert!(!s.contains("connection:"), "{s}"),
            }
        }
    }

    #[test]
    fn no_content_has_no_length_and_unsafe_headers_are_dropped() {
        let mut out = Vec::new();
        write_response(&mut out, 1, 204, &[("x-a", "ok"), ("x-b", "evil\r\nset-cookie: 1"), ("bad name", "v")], None, b"body", true);
        assert_eq!(text(&out), "HTTP/1.1 204 No Content\r\nx-a: ok\r\n\r\n");
        let mut out = Vec::new();
        write_response(&mut out, 1, 42, &[], None, b"", false);
        assert!(text(&out).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        assert_eq!(reason_phrase(799), "");
    }

    #[test]
    fn errors_are_json_with_escaped_code_and_message() {
        let e = HttpError::new(400, "bad_request", "quote \" backslash \\ newline \n done");
        let mut out = Vec::new();
        write_error_with_headers(&mut out, 1, &e, &[("allow", "GET")], false);
        let s = text(&out);
        assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\nallow: GET\r\ncontent-type: application/json\r\n"));
        assert!(s.contains("connection: close\r\n"));
        let body = s.split("\r\n\r\n").nth(1).unwrap_or("");
        let json: serde_json::Value = serde_json::from_str(body).expect("valid JSON");
        assert_eq!(json["error"], "bad_request");
        assert_eq!(json["message"], "quote \" backslash \\ newline \n done");
        let length = format!("content-length: {}\r\n", body.len());
        assert!(s.contains(&length));
    }

    #[test]
    fn websocket_accept_answers_the_rfc_6455_sample_key() {
        let req = request(
            "GET /v1/sessions/s/tail HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
        );
        let out = websocket_accept(&req).expect("valid handshake");
        assert_eq!(
            text(&out),
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    #[test]
    fn websocket_accept_rejects_each_missing_or_wrong_piece_with_a_clear_message() {
        let good =
            ["upgrade: websocket", "connection: upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version: 13"];
        let replacements = [
            (0, "upgrade: h2c", "Upgrade"),
            (1, "connection: keep-alive", "Connection"),
            (2, "sec-websocket-key: short", "Sec-WebSocket-Key"),
            (2, "x-none: 1", "Sec-WebSocket-Key"),
            (3, "sec-websocket-version: 8", "Sec-WebSocket-Version"),
            (3, "x-none: 1", "Sec-WebSocket-Version"),
        ];
        for (index, replacement, mentions) in replacements {
            let mut headers = good;
            headers[index] = replacement;
            let req = request(&format!("GET / HTTP/1.1\r\nhost: a\r\n{}\r\n\r\n", headers.join("\r\n")));
            let e = websocket_accept(&req).expect_err(replacement);
            assert_eq!((e.status, e.code), (400, "invalid_websocket_upgrade"));
            assert!(e.message.contains(mentions), "{} should mention {mentions}", e.message);
        }
        let post = request(&format!("POST / HTTP/1.1\r\nhost: a\r\n{}\r\n\r\n", good.join("\r\n")));
        assert!(websocket_accept(&post).is_err());
        let old = request(&format!("GET / HTTP/1.0\r\n{}\r\n\r\n", good.join("\r\n")));
        assert!(websocket_accept(&old).is_err());
    }

    #[test]
    fn sse_head_is_chunked_on_http11_and_close_delimited_on_http10() {
        let mut out = Vec::new();
        write_sse_head(&mut out, 1);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
             x-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut out = Vec::new();
        write_sse_head(&mut out, 0);
        assert!(text(&out).ends_with("x-accel-buffering: no\r\nconnection: close\r\n\r\n"));
        assert!(!text(&out).contains("transfer-encoding"));
    }

    #[test]
    fn sse_events_and_comments_are_formatted_and_multiline_data_is_split() {
        let mut out = Vec::new();
        sse_event(&mut out, 42, r#"{"seq":42}"#);
        assert_eq!(text(&out), "id: 42\nevent: event\ndata: {\"seq\":42}\n\n");
        let mut out = Vec::new();
        sse_event(&mut out, 0, "a\nb\r\nc\rd\n");
        assert_eq!(text(&out), "id: 0\nevent: event\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n");
        let mut out = Vec::new();
        sse_comment(&mut out, "ping");
        sse_comment(&mut out, "two\nlines");
        assert_eq!(text(&out), ": ping\n\n: two\n: lines\n\n");
    }

    #[test]
    fn sse_frames_are_chunks_that_our_own_parser_can_dechunk() {
        let mut message = Vec::new();
        sse_event(&mut message, 7, "{}");
        let mut body = Vec::new();
        write_sse_frame(&mut body, 1, &message);
        write_chunk(&mut body, b"");
        write_sse_frame(&mut body, 1, &message);
        write_sse_end(&mut body, 1);
        let mut raw = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(&body);
        match parse_request(&raw, &Limits::default()) {
            Ok(Parse::Complete { request, consumed }) => {
                assert_eq!(request.body, [message.clone(), message.clone()].concat());
                assert_eq!(consumed, raw.len());
            }
            other => panic!("{other:?}"),
        }
        let mut plain = Vec::new();
        write_sse_frame(&mut plain, 0, &message);
        write_sse_end(&mut plain, 0);
        assert_eq!(plain, message, "HTTP/1.0 streams are unframed");
    }
}
