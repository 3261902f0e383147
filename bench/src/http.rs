//! HTTP/1.1 client side: request writers, an incremental response parser (status line, headers, Content-Length or chunked bodies, pipelined responses back to back) and a small blocking keep-alive client for control-plane calls.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response head (status line + headers) accepted.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most headers one response head may have.
pub const HEADERS_MAX: usize = 64;
/// Largest response body accepted (the server's events page is at most 8 MiB).
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// One parsed response. `body` borrows the read buffer unless the body was chunked.
#[derive(Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub status: u16,
    pub body: Cow<'a, [u8]>,
    /// The server said `Connection: close` (or answered HTTP/1.0 without keep-alive).
    pub close: bool,
    /// `Upgrade:` header value, for `101 Switching Protocols`.
    pub upgrade: Option<&'a str>,
}

impl Response<'_> {
    pub fn body_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

/// Why a response could not be parsed; the connection cannot be used after one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad HTTP response: {}", self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(msg.into()))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|b| *b != b' ' && *b != b'\t').map(|p| p + 1).unwrap_or(start);
    &s[start..end.max(start)]
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, d| acc.checked_mul(10)?.checked_add((d - b'0') as u64))
}

fn contains_token(value: &[u8], token: &str) -> bool {
    value.split(|b| *b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse the first complete response in `buf`. `Ok(None)`: more bytes are needed.
/// Interim `1xx` responses other than `101` are skipped (their bytes count as consumed).
pub fn parse_response(buf: &[u8]) -> Result<Option<(Response<'_>, usize)>, ParseError> {
    let mut offset = 0;
    loop {
        match parse_one(&buf[offset..])? {
            None => return Ok(None),
            Some(Parsed::Interim(n)) => offset += n,
            Some(Parsed::Final(resp, n)) => return Ok(Some((resp, offset + n))),
        }
    }
}

enum Parsed<'a> {
    Interim(usize),
    Final(Response<'a>, usize),
}

fn parse_one(buf: &[u8]) -> Result<Option<Parsed<'_>>, ParseError> {
    // The status line and headers: httparse (RFC 9112 §4, §5).
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_end = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > HEAD_BYTES_MAX => {
            return err(format!("no end of headers within {HEAD_BYTES_MAX} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return err(format!("{e} in {:?}", String::from_utf8_lossy(&buf[..buf.len().min(40)]))),
    };
    let status = response.code.unwrap_or(0);
    if status < 100 {
        return err(format!("bad status code {status}"));
    }
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = response.version == Some(0);
    let mut upgrade = None;
    for h in response.headers.iter() {
        let (name, value) = (h.name, trim(h.value));
        if name.eq_ignore_ascii_case("content-length") {
            let n = parse_decimal(value).ok_or_else(|| ParseError(format!("bad Content-Length {:?}", String::from_utf8_lossy(value))))?;
            if content_length.is_some_and(|c| c != n) {
                return err("conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if contains_token(value, "chunked") {
                chunked = true;
            } else if !value.is_empty() && !value.eq_ignore_ascii_case(b"identity") {
                return err(format!("unsupported Transfer-Encoding {:?}", String::from_utf8_lossy(value)));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if contains_token(value, "close") {
                close = true;
            } else if contains_token(value, "keep-alive") {
                close = false;
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = std::str::from_utf8(value).ok();
        }
    }

    if (100..200).contains(&status) && status != 101 {
        return Ok(Some(Parsed::Interim(head_end)));
    }
    let rest = &buf[head_end..];
    if status == 101 || status == 204 || status == 304 {
        let resp = Response { status, body: Cow::Borrowed(&[][..]), close, upgrade };
        return Ok(Some(Parsed::Final(resp, head_end)));
    }
    if chunked {
        return Ok(
            parse_chunked(rest)?.map(|(body, n)| Parsed::Final(Response { status, body: Cow::Owned(body), close, upgrade }, head_end + n))
        );
    }
    let len = match content_length {
        Some(n) => n,
        None => return err(format!("status {status} response has neither Content-Length nor chunked encoding (unsupported)")),
    };
    if len > BODY_BYTES_MAX as u64 {
        return err(format!("Content-Length {len} is over the {BODY_BYTES_MAX} byte limit"));
    }
    let len = len as usize;
    if rest.len() < len {
        return Ok(None);
    }
    Ok(Some(Parsed::Final(Response { status, body: Cow::Borrowed(&rest[..len]), close, upgrade }, head_end + len)))
}

/// Decode a chunked body; returns the body and the bytes consumed (including trailers).
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ParseError> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let line_end = match buf[pos..].windows(2).position(|w| w == b"\r\n") {
            Some(e) => pos + e,
            None => {
                if buf.len() - pos > 1024 {
                    return err("chunk size line too long");
                }
                return Ok(None);
            }
        };
        let line = &buf[pos..line_end];
        let size_part = line.split(|b| *b == b';').next().unwrap_or_default();
        let size_part = trim(size_part);
        if size_part.is_empty() || size_part.len() > 15 {
            return err(format!("bad chunk size {:?}", String::from_utf8_lossy(line)));
        }
        let mut size: usize = 0;
        for b in size_part {
            let d = (*b as char).to_digit(16).ok_or_else(|| ParseError(format!("bad chunk size {:?}", String::from_utf8_lossy(line))))?;
            size = size * 16 + d as usize;
        }
        pos = line_end + 2;
        if size == 0 {
            // Trailers: header lines until an empty line.
            loop {
                let e = match buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    Some(e) => pos + e,
                    None => return Ok(None),
                };
                let empty = e == pos;
                pos = e + 2;
                if empty {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if body.len() + size > BODY_BYTES_MAX {
            return err("chunked body over the byte limit");
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return err("chunk data not followed by CRLF");
        }
        pos += size + 2;
    }
}

/// Append one request to `out`. `body` is sent as `application/json` with Content-Length.
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, host: &str, body: Option<&[u8]>) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        let _ = write!(out, "content-type: application/json\r\ncontent-length: {}\r\n\r\n", b.len());
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// A blocking keep-alive client for setup, verification and polling (not for load).
pub struct BlockingClient {
    addr: SocketAddr,
    host: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    timeout: Duration,
}

/// An owned response from the blocking client.
#[derive(Debug, Clone)]
pub struct OwnedResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

impl OwnedResponse {
    pub fn body_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl BlockingClient {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Self {
        BlockingClient { addr, host: addr.to_string(), stream: None, buf: Vec::with_capacity(64 * 1024), timeout }
    }

    /// One request; reconnects once if a kept-alive connection turned out to be closed.
    pub fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<OwnedResponse, String> {
        let reused = self.stream.is_some();
        match self.try_request(method, path, body) {
            Ok(r) => Ok(r),
            Err(e) if reused => {
                self.stream = None;
                self.try_request(method, path, body).map_err(|e2| format!("{e2} (after retry; first error: {e})"))
            }
            Err(e) => Err(e),
        }
    }

    fn try_request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<OwnedResponse, String> {
        let deadline = Instant::now() + self.timeout;
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().expect("connected");
        let mut req = Vec::with_capacity(256 + body.map_or(0, |b| b.len()));
        write_request(&mut req, method, path, &self.host, body);
        if let Err(e) = stream.write_all(&req) {
            self.stream = None;
            return Err(format!("{method} {path}: write: {e}"));
        }
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match parse_response(&self.buf) {
                Ok(Some((resp, consumed))) => {
                    let out = OwnedResponse { status: resp.status, body: resp.body.into_owned() };
                    let close = resp_close(&self.buf[..consumed]);
                    self.buf.drain(..consumed);
                    if close {
                        self.stream = None;
                    }
                    return Ok(out);
                }
                Ok(None) => {}
                Err(e) => {
                    self.stream = None;
                    return Err(format!("{method} {path}: {e}"));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stream = None;
                return Err(format!("{method} {path}: no complete response within {:?}", self.timeout));
            }
            let stream = self.stream.as_mut().expect("connected");
            let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match stream.read(&mut chunk) {
                Ok(0) => {
                    self.stream = None;
                    return Err(format!("{method} {path}: connection closed before a complete response"));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.stream = None;
                    return Err(format!("{method} {path}: read: {e}"));
                }
            }
        }
    }
}

fn resp_close(raw: &[u8]) -> bool {
    matches!(parse_response(raw), Ok(Some((r, _))) if r.close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> (Response<'_>, usize) {
        parse_response(buf).expect("parses").expect("complete")
    }

    #[test]
    fn content_length_body() {
        let raw = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n{\"seq\":1}    ";
        let (r, n) = one(raw);
        assert_eq!(r.status, 201);
        assert_eq!(&*r.body, b"{\"seq\":1}    ");
        assert_eq!(n, raw.len());
        assert!(!r.close);
    }

    #[test]
    fn partial_reads_every_split_point() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        for cut in 0..raw.len() {
            assert_eq!(parse_response(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (r, n) = one(raw);
        assert_eq!((r.status, &*r.body, n), (200, &b"hello"[..], raw.len()));
    }

    #[test]
    fn pipelined_responses_back_to_back() {
        let raw = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 409 Conflict\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcHTTP/1.1 2";
        let (a, n1) = one(raw);
        assert_eq!((a.status, &*a.body), (201, &b"{}"[..]));
        let (b, n2) = one(&raw[n1..]);
        assert_eq!((b.status, &*b.body, b.close), (409, &b"abc"[..], true));
        assert_eq!(parse_response(&raw[n1 + n2..]).unwrap(), None);
    }

    #[test]
    fn header_names_case_insensitive_and_whitespace() {
        let (r, _) = one(b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH:   2  \r\nconnection: Keep-Alive\r\n\r\nok");
        assert_eq!(&*r.body, b"ok");
        assert!(!r.close);
    }

    #[test]
    fn status_without_reason() {
        let (r, _) = one(b"HTTP/1.1 204\r\n\r\n");
        assert_eq!(r.status, 204);
        assert!(r.body.is_empty());
    }

    #[test]
    fn http10_closes_by_default() {
        let (r, _) = one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(r.close);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";
        let (r, n) = one(raw);
        assert_eq!(&*r.body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&raw[n..], b"NEXT");
        for cut in 0..n {
            assert_eq!(parse_response(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn interim_100_continue_is_skipped() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
        let (r, n) = one(raw);
        assert_eq!((r.status, n), (201, raw.len()));
    }

    #[test]
    fn switching_protocols_leaves_frames() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi";
        let (r, n) = one(raw);
        assert_eq!(r.status, 101);
        assert_eq!(r.upgrade, Some("websocket"));
        assert_eq!(&raw[n..], b"\x81\x02hi");
    }

    #[test]
    fn errors() {
        for raw in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"SSH-2.0-OpenSSH",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            assert!(parse_response(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn oversized_head_is_an_error() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'a', HEAD_BYTES_MAX + 10));
        assert!(parse_response(&raw).is_err());
    }
}
