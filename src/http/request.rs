//! Incremental HTTP/1.x request parser.
//!
//! Role: turn the bytes a connection has received into complete
//! [`Request`]s, one at a time, telling the caller exactly how many bytes
//! each request took so pipelined requests can follow back to back.
//!
//! Two entry points share one implementation:
//! - [`RequestParser`] (preferred): keeps the parsed head and the chunked
//!   decoder's position between calls, so total work per request is linear
//!   in its size however the bytes are split, and it can tell the loop when
//!   to send `100 Continue` ([`RequestParser::take_continue`]).
//! - [`parse_request`]: stateless; re-parses the head on every call. With a
//!   Content-Length body it returns `Incomplete` after the head parse without
//!   touching the body bytes, so it is also cheap; with a chunked body it
//!   re-decodes what has arrived on each call (quadratic if called per tiny
//!   read, bounded by the body limit).
//!
//! Contract for both: `buf` starts at the first byte of the current request;
//! between calls the caller only appends to it. After `Complete { consumed }`
//! the caller drops `consumed` bytes from the front and parses again. After
//! an `Err` the framing is lost: answer with the error and close.
//!
//! Invariants: never panics on any input; every size the peer controls is
//! bounded (head by `head_bytes_max`, header count by `headers_max`, body by
//! `body_bytes_max`, chunk-size lines by `crate::limits::CHUNK_LINE_BYTES_MAX`,
//! trailers by the head limits).

use super::chunked::ChunkedDecoder;
use super::syntax::hex_value;
pub use super::syntax::{HttpError, Limits};

/// Request method. Anything outside the common set is `Other`; the router
/// answers those with 405 on known paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Options,
    Patch,
    Other,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 §9.1): `get` is `Other`.
    pub fn from_bytes(bytes: &[u8]) -> Method {
        match bytes {
            b"GET" => Method::Get,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"HEAD" => Method::Head,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// A complete, de-framed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Raw (not percent-decoded) path without the query. For absolute-form
    /// targets (`http://host/p`) this is the path part; for `*` it is `*`.
    pub path: String,
    /// Query pairs in order, percent-decoded with `+` as space; invalid
    /// escapes are kept literally, invalid UTF-8 is replaced (U+FFFD).
    pub query: Vec<(String, String)>,
    /// 0 or 1.
    pub version_minor: u8,
    /// Header fields in order; names lowercased, values as sent (httparse
    /// strips surrounding whitespace).
    pub headers: HeaderFields,
    /// Body, de-chunked; trailers are discarded.
    pub body: Vec<u8>,
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: false unless
    /// `Connection: keep-alive` (and no `close`).
    pub keep_alive: bool,
}

impl Request {
    /// First value of header `name` (case-insensitive).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.headers.values(name).next()
    }

    /// All values of header `name` (case-insensitive), in order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.values(name)
    }

    /// Whether the comma-separated header `name` (all its occurrences)
    /// lists `token`, compared case-insensitively. For Connection, Upgrade...
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        has_token(self.headers_all(name), token)
    }

    /// First value of query parameter `name` (exact, case-sensitive match).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The client is attempting a WebSocket upgrade (`Upgrade` lists
    /// `websocket`). Deliberately loose: [`super::response::websocket_accept`]
    /// does the full validation and explains what is wrong.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }

    /// Some `Accept` header lists the `text/event-stream` media range
    /// (parameters and case ignored; `*/*` does not count, SSE is opt-in).
    pub fn accepts_event_stream(&self) -> bool {
        self.headers_all("accept").any(|v| {
            v.split(|&b| b == b',').any(|range| {
                let media = range.split(|&b| b == b';').next().unwrap_or(&[]);
                trim_ows(media).eq_ignore_ascii_case(b"text/event-stream")
            })
        })
    }
}

/// Outcome of one parse attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Need more bytes; append and call again.
    Incomplete,
    /// One request; it used exactly `consumed` bytes from the front of `buf`.
    Complete { request: Request, consumed: usize },
}

/// Stateless parse: see the module docs for the contract and cost.
/// It cannot report `100 Continue`; use [`RequestParser`] for that.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parse, HttpError> {
    RequestParser::new(*limits).parse(buf)
}

/// Stateful incremental parser for one connection.
///
/// Drive it like this:
/// ```text
/// loop {
///     read more bytes, append to buf
///     loop {
///         match parser.parse(&buf) {
///             Ok(Parse::Incomplete) => {
///                 if parser.take_continue() {
///                     // optionally: route parser.pending_target() first and,
///                     // if it is 404/405, answer that with keep_alive=false
///                     // and close instead of inviting the body
///                     write response::CONTINUE_100
///                 }
///                 break // read more
///             }
///             Ok(Parse::Complete { request, consumed }) => { buf.drain(..consumed); handle(request) }
///             Err(e) => { write_error(.., &e, false); close } // framing is lost
///         }
///     }
/// }
/// ```
/// `buf` must start at the current request and only grow between calls;
/// the parser remembers offsets into it, not copies of it.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Set when a head with `Expect: 100-continue` is parsed and its body is
    /// still outstanding; cleared by `take_continue` or when the request
    /// completes/fails (then a final status makes the interim one moot).
    continue_pending: bool,
}

#[derive(Debug)]
enum State {
    /// `scanned`: bytes of `buf` already looked at without finding a reason
    /// to run the head parser again (see `parse_head`).
    Head {
        scanned: usize,
    },
    Body {
        head: Head,
        head_len: usize,
        body: BodyState,
    },
}

#[derive(Debug)]
enum BodyState {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// A request's header fields in one buffer (two allocations for any number of fields,
/// instead of two per field): names lowercased, values as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFields {
    bytes: Vec<u8>,
    /// Per field: where its name ends in `bytes` and where its value ends (each starts
    /// where the one before ends).
    ends: Vec<(u32, u32)>,
}

impl HeaderFields {
    /// Appends a field; `name` is stored lowercased.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.bytes.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        let name_end = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        self.ends.push((name_end, self.bytes.len() as u32));
    }

    /// The fields in order, as (lowercased name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, value_end)| value_end as usize));
        starts.zip(&self.ends).map(|(start, &(name_end, value_end))| {
            // Names come from httparse, which accepts only tokens (ASCII): valid UTF-8.
            let name = std::str::from_utf8(&self.bytes[start..name_end as usize]).unwrap_or("");
            (name, &self.bytes[name_end as usize..value_end as usize])
        })
    }

    /// The values of field `name` (case-insensitive), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

/// Parsed head fields carried from the head parse to request completion.
#[derive(Debug)]
struct Head {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    version_minor: u8,
    headers: HeaderFields,
    keep_alive: bool,
    expect_continue: bool,
}

enum Framing {
    Length(usize),
    Chunked,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser { limits, state: State::Head { scanned: 0 }, continue_pending: false }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parse what `buf` holds of the current request. See the type docs.
    /// After `Complete` or `Err` the parser is ready for the next request.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parse, HttpError> {
        let result = self.parse_inner(buf);
        if !matches!(result, Ok(Parse::Incomplete)) {
            self.reset();
        }
        result
    }

    /// True exactly once per request whose head asked for `100-continue`
    /// (HTTP/1.1 only, and only if a body is expected), once the head has
    /// been accepted and the body is not yet complete. Call after each
    /// `Incomplete`; when true, write `HTTP/1.1 100 Continue\r\n\r\n`.
    /// Head-level rejections (413 on Content-Length, 501, ...) come back as
    /// `Err` before this can fire, so no 100 precedes them.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_pending)
    }

    /// The head of the current request has been parsed (body outstanding).
    pub fn head_parsed(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// Method and raw path of the request whose head has been parsed but
    /// whose body is still outstanding. Lets the loop route (and reject with
    /// 404/405 + close) before sending `100 Continue`.
    pub fn pending_target(&self) -> Option<(Method, &str)> {
        match &self.state {
            State::Body { head, .. } => Some((head.method, head.path.as_str())),
            State::Head { .. } => None,
        }
    }

    /// Forget any partial request.
    pub fn reset(&mut self) {
        self.state = State::Head { scanned: 0 };
        self.continue_pending = false;
    }

    fn parse_inner(&mut self, buf: &[u8]) -> Result<Parse, HttpError> {
        if let State::Head { scanned } = &mut self.state {
            let Some((head, head_len, framing)) = parse_head(buf, &self.limits, scanned)? else {
                return Ok(Parse::Incomplete);
            };
            let body = match framing {
                Framing::Length(n) => BodyState::Length(n),
                Framing::Chunked => BodyState::Chunked(ChunkedDecoder::new(head_len)),
            };
            let body_expected = !matches!(body, BodyState::Length(0));
            self.continue_pending = head.expect_continue && body_expected;
            self.state = State::Body { head, head_len, body };
        }
        let State::Body { head_len, body, .. } = &mut self.state else {
            return Ok(Parse::Incomplete); // unreachable: the Head arm moved on or returned
        };
        let head_len = *head_len;
        let (body_bytes, consumed) = match body {
            BodyState::Length(n) => {
                let Some(end) = head_len.checked_add(*n) else {
                    return Err(HttpError::payload_too_large(self.limits.body_bytes_max));
                };
                match buf.get(head_len..end) {
                    Some(bytes) => (bytes.to_vec(), end),
                    None => return Ok(Parse::Incomplete),
                }
            }
            BodyState::Chunked(decoder) => {
                if !decoder.advance(buf, &self.limits)? {
                    return Ok(Parse::Incomplete);
                }
                (std::mem::take(&mut decoder.body), decoder.pos)
            }
        };
        let state = std::mem::replace(&mut self.state, State::Head { scanned: 0 });
        let State::Body { head, .. } = state else {
            return Ok(Parse::Incomplete); // unreachable: checked above
        };
        let request = Request {
            method: head.method,
            path: head.path,
            query: head.query,
            version_minor: head.version_minor,
            headers: head.headers,
            body: body_bytes,
            keep_alive: head.keep_alive,
        };
        Ok(Parse::Complete { request, consumed })
    }
}

/// Try to parse the head. `Ok(None)` = need more bytes.
///
/// Re-running httparse costs O(head) per call, so a peer trickling one byte
/// per packet could make us do O(head²) work. We therefore only re-run it on
/// the first look (to reject garbage such as a TLS hello at once), when a new
/// line has completed since the last look, or when the size limit is hit.
/// Lines are bounded by `headers_max`, so attempts per head are bounded too.
fn parse_head(buf: &[u8], limits: &Limits, scanned: &mut usize) -> Result<Option<(Head, usize, Framing)>, HttpError> {
    let window_len = buf.len().min(limits.head_bytes_max);
    let window = buf.get(..window_len).unwrap_or(&[]);
    let at_limit = buf.len() >= limits.head_bytes_max;
    let first_look = *scanned == 0;
    let new_bytes = window.get((*scanned).min(window_len)..).unwrap_or(&[]);
    let line_completed = new_bytes.contains(&b'\n');
    *scanned = window_len;
    if !first_look && !line_completed && !at_limit {
        return Ok(None);
    }

    // httparse skips empty lines before the request line (RFC 9112 §2.2
    // allows it; some clients send a stray CRLF after a body). Each of them
    // would be a "completed line" above, so bound them to keep re-parsing
    // bounded.
    let leading = window.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    if leading > crate::limits::REQUEST_LEADING_CRLF_BYTES_MAX {
        return Err(HttpError::bad_request("too many empty lines before the request line"));
    }

    // The usual limit fits a stack array (no allocation per head); a larger one, only
    // configured in tests, takes the heap.
    let mut stack_slots = [httparse::EMPTY_HEADER; crate::limits::REQUEST_HEADERS_MAX];
    let mut heap_slots = Vec::new();
    let slots: &mut [httparse::Header<'_>] = if limits.headers_max <= stack_slots.len() {
        &mut stack_slots[..limits.headers_max]
    } else {
        heap_slots.resize(limits.headers_max, httparse::EMPTY_HEADER);
        &mut heap_slots
    };
    let mut parsed = httparse::Request::new(slots);
    let head_len = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if at_limit => {
            return Err(HttpError::head_too_large(format!("request head exceeds {} bytes", limits.head_bytes_max)))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::head_too_large(format!("more than {} header fields", limits.headers_max)))
        }
        Err(httparse::Error::Version) if looks_like_http_version(window) => {
            return Err(HttpError::new(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are supported"))
        }
        Err(e) => return Err(HttpError::bad_request(format!("malformed request head: {e}"))),
    };

    let malformed = || HttpError::bad_request("malformed request head");
    let method = Method::from_bytes(parsed.method.ok_or_else(malformed)?.as_bytes());
    let target = parsed.path.ok_or_else(malformed)?;
    let version_minor = parsed.version.ok_or_else(malformed)?;
    let mut headers = HeaderFields { bytes: Vec::with_capacity(head_len), ends: Vec::with_capacity(parsed.headers.len()) };
    for h in parsed.headers.iter() {
        headers.push(h.name, h.value);
    }

    let (path, raw_query) = split_target(target)?;
    let query = parse_query(raw_query);
    let values = |name: &'static str| headers.values(name);

    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one valid Host is a 400 (an
    // HTTP/1.0 request may omit it). Routing never looks at the value, but a server that
    // accepts what the RFC says to refuse lets proxies and caches disagree about a request.
    let mut hosts = values("host");
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(HttpError::bad_request("more than one Host header")),
        (None, _) if version_minor >= 1 => return Err(HttpError::bad_request("an HTTP/1.1 request needs a Host header")),
        (Some(v), _) if !is_valid_host(trim_ows(v)) => return Err(HttpError::bad_request("invalid Host header value")),
        _ => {}
    }
    drop(hosts);

    let keep_alive = if has_token(values("connection"), "close") {
        false
    } else if version_minor == 0 {
        has_token(values("connection"), "keep-alive")
    } else {
        true
    };

    // 100-continue means nothing to an HTTP/1.0 client (RFC 9110 §10.1.1).
    // Other expectations are ignored rather than answered with 417.
    let expect_continue = version_minor == 1 && values("expect").any(|v| trim_ows(v).eq_ignore_ascii_case(b"100-continue"));

    let framing = framing(&headers, version_minor, limits)?;
    let head = Head { method, path, query, version_minor, headers, keep_alive, expect_continue };
    Ok(Some((head, head_len, framing)))
}

/// Decide body framing (RFC 9112 §6). Strict, because disagreeing with a
/// proxy about where a body ends is how request smuggling happens.
fn framing(headers: &HeaderFields, version_minor: u8, limits: &Limits) -> Result<Framing, HttpError> {
    let te: Vec<&[u8]> = headers.values("transfer-encoding").collect();
    let cl = || headers.values("content-length");

    if !te.is_empty() {
        if cl().next().is_some() {
            return Err(HttpError::bad_request("both Content-Length and Transfer-Encoding are present"));
        }
        if version_minor == 0 {
            return Err(HttpError::bad_request("Transfer-Encoding is not allowed in HTTP/1.0"));
        }
        let codings: Vec<&[u8]> = te.iter().flat_map(|v| v.split(|&b| b == b',')).map(trim_ows).filter(|c| !c.is_empty()).collect();
        if codings.iter().any(|c| !c.eq_ignore_ascii_case(b"chunked")) {
            return Err(HttpError::new(501, "not_implemented", "only the chunked transfer-coding is supported"));
        }
        if codings.len() != 1 {
            return Err(HttpError::bad_request("Transfer-Encoding must be exactly `chunked`"));
        }
        return Ok(Framing::Chunked);
    }

    // Repeated or list-valued Content-Length is allowed only if every value
    // is the same (RFC 9112 §6.3).
    let mut length: Option<u64> = None;
    for part in cl().flat_map(|v| v.split(|&b| b == b',')) {
        let digits = trim_ows(part);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::bad_request("invalid Content-Length"));
        }
        // A syntactically valid but huge length saturates, then fails the
        // body limit below with 413 (it is too large, not malformed).
        let n = digits.iter().fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')));
        match length {
            Some(prev) if prev != n => return Err(HttpError::bad_request("conflicting Content-Length values")),
            _ => length = Some(n),
        }
    }
    let n = length.unwrap_or(0);
    match usize::try_from(n) {
        Ok(n) if n <= limits.body_bytes_max => Ok(Framing::Length(n)),
        _ => Err(HttpError::payload_too_large(limits.body_bytes_max)),
    }
}

/// On httparse's `Version` error: is the third request-line token shaped
/// A Host field value (RFC 9112 §3.2, RFC 3986 §3.2.2–3.2.3): `host [ ":" port ]` where
/// host is a reg-name, an IPv4 address or a bracketed IP-literal, and port is digits.
/// The empty value is valid (a target without an authority).
fn is_valid_host(v: &[u8]) -> bool {
    let (host, port) = if v.first() == Some(&b'[') {
        let Some(close) = v.iter().position(|&b| b == b']') else { return false };
        let literal = &v[1..close];
        if literal.is_empty() || !literal.iter().all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V')) {
            return false;
        }
        match &v[close + 1..] {
            [] => (&v[..0], None),
            [b':', port @ ..] => (&v[..0], Some(port)),
            _ => return false,
        }
    } else {
        match v.iter().rposition(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        }
    };
    let reg_name = host.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    reg_name && port.is_none_or(|p| p.iter().all(u8::is_ascii_digit))
}

/// like `HTTP/<digit>...`? Then the version is real but unsupported (505);
/// otherwise the line is just malformed (400).
fn looks_like_http_version(window: &[u8]) -> bool {
    let start = window.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(window.len());
    let line = window.get(start..).unwrap_or(&[]);
    let end = line.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(line.len());
    let line = line.get(..end).unwrap_or(&[]);
    match line.split(|&b| b == b' ').nth(2) {
        Some(token) => token.len() > 5 && token.get(..5) == Some(b"HTTP/".as_slice()) && token.get(5).is_some_and(u8::is_ascii_digit),
        None => false,
    }
}

/// Split a request-target into (path, query). Accepts origin-form
/// (`/p?q`), absolute-form (`http://host/p?q`, which HTTP/1.1 servers must
/// accept) and asterisk-form (`*`). Fragments are dropped.
fn split_target(target: &str) -> Result<(String, &str), HttpError> {
    let target = target.split('#').next().unwrap_or("");
    let (path_part, query) = target.split_once('?').unwrap_or((target, ""));
    if path_part.starts_with('/') || path_part == "*" {
        return Ok((path_part.to_string(), query));
    }
    for scheme in ["http://", "https://"] {
        let is_scheme = path_part.get(..scheme.len()).is_some_and(|p| p.eq_ignore_ascii_case(scheme));
        if is_scheme {
            let rest = path_part.get(scheme.len()..).unwrap_or("");
            let path = match rest.find('/') {
                Some(i) => rest.get(i..).unwrap_or("/"),
                None => "/",
            };
            return Ok((path.to_string(), query));
        }
    }
    Err(HttpError::bad_request("unsupported request-target form"))
}

/// `a=1&b=x+y&c` → [("a","1"),("b","x y"),("c","")]. Empty pieces skipped.
fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (decode_lossy(k, true), decode_lossy(v, true))
        })
        .collect()
}

fn decode_lossy(s: &str, plus_as_space: bool) -> String {
    String::from_utf8_lossy(&percent_decode(s.as_bytes(), plus_as_space)).into_owned()
}

/// Percent-decode; `%` not followed by two hex digits is kept literally.
/// With `plus_as_space`, `+` becomes a space (form encoding, queries only).
pub fn percent_decode(input: &[u8], plus_as_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = input.get(i + 1).and_then(|&h| hex_value(h));
            let lo = input.get(i + 2).and_then(|&l| hex_value(l));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Trim optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Does any comma-separated list element of any value equal `token`
/// (ASCII case-insensitive)?
pub(crate) fn has_token<'a>(values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    let token = token.as_bytes();
    values.flat_map(|v| v.split(|&b| b == b',')).any(|t| trim_ows(t).eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::chunked::SAMPLE_REQUEST as CHUNKED;

    use crate::http::test_support::{complete, error, limits, small_limits};

    #[test]
    fn pipelined_requests_in_one_buffer_parse_back_to_back() {
        let first = b"GET /health/live HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let second = b"POST /v1/sessions HTTP/1.1\r\nhost: a\r\nContent-Length: 5\r\n\r\nhello".to_vec();
        let mut buf = [first.clone(), second.clone(), CHUNKED.to_vec()].concat();
        buf.extend_from_slice(b"GET /met");
        let mut parser = RequestParser::new(limits());
        let mut seen = Vec::new();
        while let Ok(Parse::Complete { request, consumed }) = parser.parse(&buf) {
            buf.drain(..consumed);
            seen.push((request, consumed));
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].1, first.len());
        assert_eq!(seen[0].0.path, "/health/live");
        assert_eq!(seen[1].1, second.len());
        assert_eq!(seen[1].0.body, b"hello");
        assert_eq!(seen[2].1, CHUNKED.len());
        assert_eq!(seen[2].0.body, b"hello world!");
        assert_eq!(buf, b"GET /met", "the partial fourth request is left in the buffer");
    }

    #[test]
    fn a_request_fed_one_byte_at_a_time_completes_exactly_at_its_last_byte() {
        for full in [&b"POST /v1/sessions?x=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc"[..], CHUNKED] {
            let mut parser = RequestParser::new(limits());
            for end in 0..full.len() {
                assert_eq!(parser.parse(&full[..end]), Ok(Parse::Incomplete), "at {end}");
                assert_eq!(parse_request(&full[..end], &limits()), Ok(Parse::Incomplete));
            }
            let expected = complete(full);
            assert_eq!(expected.1, full.len());
            match parser.parse(full) {
                Ok(Parse::Complete { request, consumed }) => {
                    assert_eq!((request, consumed), expected)
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn content_length_over_the_limit_is_413_before_the_body_arrives() {
        let e = error(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 65\r\n\r\n", &small_limits());
        assert_eq!((e.status, e.code), (413, "payload_too_large"));
        let huge = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 99999999999999999999999\r\n\r\n";
        assert_eq!(error(huge, &small_limits()).status, 413);
    }

    #[test]
    fn too_many_headers_or_a_head_too_large_is_431() {
        let many = b"GET / HTTP/1.1\r\nhost: a\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n";
        let e = error(many, &small_limits());
        assert_eq!((e.status, e.code), (431, "request_header_fields_too_large"));
        let four = b"GET / HTTP/1.1\r\nhost: a\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n";
        assert!(matches!(parse_request(four, &small_limits()), Ok(Parse::Complete { .. })));
        let long = format!("GET / HTTP/1.1\r\nhost: a\r\nx: {}", "a".repeat(300));
        assert_eq!(error(long.as_bytes(), &small_limits()).status, 431);
        let just_under = format!("GET / HTTP/1.1\r\nhost: a\r\nx: {}", "a".repeat(200));
        assert_eq!(parse_request(just_under.as_bytes(), &small_limits()), Ok(Parse::Incomplete));
    }

    #[test]
    fn http10_is_close_by_default_and_http11_is_keep_alive_by_default() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nhost: a\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nhost: a\r\nconnection: CLOSE\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nhost: a\r\nconnection: te\r\nconnection: close\r\n\r\n", false),
        ];
        for (buf, keep_alive) in cases {
            assert_eq!(complete(buf).0.keep_alive, keep_alive, "{}", String::from_utf8_lossy(buf));
        }
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").0.version_minor, 0);
    }

    #[test]
    fn unsupported_versions_are_505_and_malformed_request_lines_are_400() {
        for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3"] {
            let e = error(format!("GET / {v}\r\n\r\n").as_bytes(), &limits());
            assert_eq!((e.status, e.code), (505, "http_version_not_supported"), "{v}");
        }
        assert_eq!(error(b"GET / FOO/1.1\r\n\r\n", &limits()).status, 400);
        assert_eq!(error(b"GET /\r\n\r\n", &limits()).status, 400);
        let stray = format!("{}GET / HTTP/1.1\r\nhost: a\r\n\r\n", "\r\n".repeat(8));
        assert!(matches!(parse_request(stray.as_bytes(), &limits()), Ok(Parse::Complete { .. })));
        let endless = "\r\n".repeat(40);
        assert_eq!(error(endless.as_bytes(), &limits()).status, 400);
    }

    #[test]
    fn framing_conflicts_and_unknown_codings_are_rejected() {
        let cases: [(&str, u16); 8] = [
            ("transfer-encoding: gzip, chunked", 501),
            ("transfer-encoding: chunked\r\ncontent-length: 3", 400),
            ("transfer-encoding: chunked, chunked", 400),
            ("content-length: 3\r\ncontent-length: 4", 400),
            ("content-length: -1", 400),
            ("content-length: 3a", 400),
            ("content-length: ", 400),
            ("host: a\r\nhost: b", 400),
        ];
        for (headers, status) in cases {
            let e = error(format!("POST / HTTP/1.1\r\nhost: a\r\n{headers}\r\n\r\nabc").as_bytes(), &limits());
            assert_eq!(e.status, status, "{headers}");
        }
        let e = error(b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n", &limits());
        assert_eq!(e.status, 400, "HTTP/1.0 has no chunked framing");
        let (req, _) = complete(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3, 3\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(req.body, b"abc", "identical repeated lengths are allowed");
    }

    #[test]
    fn targets_queries_and_header_helpers_are_decoded() {
        let (req, _) = complete(
            b"GET /v1/sessions/a%2Fb/tail?a=1&b=x+y&c=%zz&&d=%41%e2%82%ac&flag HTTP/1.1\r\nhost: a\r\n\
              Upgrade: WebSocket\r\nAccept: application/json, Text/Event-Stream;q=0.9\r\n\r\n",
        );
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/v1/sessions/a%2Fb/tail", "the path stays raw");
        assert_eq!(req.query_param("b"), Some("x y"));
        assert_eq!(req.query_param("c"), Some("%zz"), "invalid escapes are kept");
        assert_eq!(req.query_param("d"), Some("A€"));
        assert_eq!(req.query_param("flag"), Some(""));
        assert_eq!(req.query.len(), 5);
        assert_eq!(req.header("UPGRADE"), Some(&b"WebSocket"[..]));
        assert!(req.is_websocket_upgrade() && req.accepts_event_stream());
        let (abs, _) = complete(b"GET HTTP://example.com:80/metrics?x=1 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!((abs.path.as_str(), abs.query_param("x")), ("/metrics", Some("1")));
        assert_eq!(complete(b"OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n").0.method, Method::Options);
        assert_eq!(complete(b"BREW /pot HTTP/1.1\r\nhost: a\r\n\r\n").0.method, Method::Other);
        assert_eq!(error(b"GET pot HTTP/1.1\r\nhost: a\r\n\r\n", &limits()).status, 400);
    }

    #[test]
    fn expect_continue_is_signalled_once_after_the_head_and_only_when_useful() {
        let head = b"POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n";
        let mut parser = RequestParser::new(limits());
        assert_eq!(parser.parse(&head[..10]), Ok(Parse::Incomplete));
        assert!(!parser.take_continue(), "not before the head is complete");
        assert_eq!(parser.parse(head), Ok(Parse::Incomplete));
        assert!(parser.head_parsed());
        assert_eq!(parser.pending_target(), Some((Method::Post, "/")));
        assert!(parser.take_continue());
        assert!(!parser.take_continue(), "only once");
        let full = [&head[..], b"abc"].concat();
        assert!(matches!(parser.parse(&full), Ok(Parse::Complete { .. })));
        // Body already here: the final response makes 100 moot.
        assert!(matches!(parser.parse(&full), Ok(Parse::Complete { .. })));
        assert!(!parser.take_continue());
        let old = b"POST / HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(parser.parse(old), Ok(Parse::Incomplete));
        assert!(!parser.take_continue(), "HTTP/1.0 clients do not understand 100");
    }

    /// xorshift64*: deterministic, dependency-free randomness for fuzzing.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn status_of(r: &Result<Parse, HttpError>) -> Option<u16> {
        r.as_ref().err().map(|e| e.status)
    }

    #[test]
    fn garbage_and_mutated_requests_never_panic_and_incremental_agrees_with_whole() {
        let seeds: [&[u8]; 4] = [
            CHUNKED,
            b"POST /v1/sessions HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\nhello",
            b"GET /v1/sessions/x/tail?a=%41+b HTTP/1.0\r\nconnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n",
        ];
        let alphabet = b"GET POST/HTTP1.0\r\n:;-%+?=&0123456789abcdefxX \t\x00\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let limits = small_limits();
        for i in 0..6000 {
            let buf: Vec<u8> = if i % 3 == 0 {
                (0..rng.below(300)).map(|_| alphabet[rng.below(alphabet.len())]).collect()
            } else {
                let mut b = seeds[rng.below(seeds.len())].to_vec();
                for _ in 0..rng.below(4) {
                    let at = rng.below(b.len());
                    b[at] = if i % 2 == 0 { alphabet[rng.below(alphabet.len())] } else { rng.next() as u8 };
                }
                b.truncate(rng.below(b.len() + 1));
                b
            };
            let whole = parse_request(&buf, &limits);
            let mut parser = RequestParser::new(limits);
            let mut end = 0;
            let incremental = loop {
                end = (end + 1 + rng.below(8)).min(buf.len());
                let r = parser.parse(&buf[..end]);
                let _ = parser.take_continue();
                if end == buf.len() || r != Ok(Parse::Incomplete) {
                    break r;
                }
            };
            match (&whole, &incremental) {
                (Ok(Parse::Complete { .. }), _) | (_, Ok(Parse::Complete { .. })) => {
                    assert_eq!(whole, incremental, "{buf:?}")
                }
                (Err(_), Err(_)) => {
                    assert_eq!(status_of(&whole), status_of(&incremental), "{buf:?}")
                }
                // Incremental may hold off re-parsing until a line completes
                // (see parse_head), so it can still be waiting on an error.
                (Err(_), Ok(Parse::Incomplete)) | (Ok(Parse::Incomplete), Ok(Parse::Incomplete)) => {}
                _ => panic!("whole {whole:?} vs incremental {incremental:?} for {buf:?}"),
            }
        }
    }

    #[test]
    fn http11_needs_exactly_one_valid_host_and_http10_may_omit_it() {
        let status = |raw: &str| match parse_request(raw.as_bytes(), &limits()) {
            Ok(Parse::Complete { .. }) => 200,
            Err(e) => e.status,
            Ok(other) => panic!("{raw:?}: {other:?}"),
        };
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n"), 400);
        for bad in ["a b", "a/b", "a@b", "a:80x", "[::1", "[::1]x", "[]", "h\u{e9}", "a?b", "a#b"] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nhost: {bad}\r\n\r\n")), 400, "{bad:?}");
        }
        for good in ["", "localhost", "localhost:4000", "127.0.0.1:80", "[::1]:4000", "[::1]", "ex-ample.com.", "a:"] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nhost: {good}\r\n\r\n")), 200, "{good:?}");
        }
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status("GET / HTTP/1.0\r\nhost: a b\r\n\r\n"), 400);
    }
}
