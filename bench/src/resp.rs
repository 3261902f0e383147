//! Redis RESP2 client side: command encoder, an incremental reply parser (simple strings, errors, integers, bulk strings, arrays; pipelined replies back to back), a blocking client for setup and checks, and stream-ID helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest bulk string or array accepted.
pub const BULK_BYTES_MAX: usize = 512 * 1024 * 1024;
const ARRAY_LEN_MAX: usize = 1 << 24;
const LINE_BYTES_MAX: usize = 64 * 1024;
const DEPTH_MAX: usize = 16;

/// One RESP reply; strings borrow the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Integer(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Reply<'a>>>),
}

impl Reply<'_> {
    pub fn describe(&self) -> String {
        match self {
            Reply::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
            Reply::Error(s) => format!("-{}", String::from_utf8_lossy(s)),
            Reply::Integer(i) => format!(":{i}"),
            Reply::Bulk(Some(b)) => format!("${}", String::from_utf8_lossy(&b[..b.len().min(80)])),
            Reply::Bulk(None) => "$nil".into(),
            Reply::Array(Some(v)) => format!("*{} items", v.len()),
            Reply::Array(None) => "*nil".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad RESP reply: {}", self.0)
    }
}

fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    match buf[from..].windows(2).position(|w| w == b"\r\n") {
        Some(p) => Ok(Some((&buf[from..from + p], from + p + 2))),
        None if buf.len() - from > LINE_BYTES_MAX => Err(ParseError("line too long".into())),
        None => Ok(None),
    }
}

fn int(s: &[u8]) -> Result<i64, ParseError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ParseError(format!("bad integer {:?}", String::from_utf8_lossy(s))))
}

/// Parse the first complete reply in `buf`. `Ok(None)`: more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ParseError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply<'_>, usize)>, ParseError> {
    if depth > DEPTH_MAX {
        return Err(ParseError("arrays nested too deep".into()));
    }
    if pos >= buf.len() {
        return Ok(None);
    }
    let kind = buf[pos];
    let Some((l, next)) = line(buf, pos + 1)? else { return Ok(None) };
    match kind {
        b'+' => Ok(Some((Reply::Simple(l), next))),
        b'-' => Ok(Some((Reply::Error(l), next))),
        b':' => Ok(Some((Reply::Integer(int(l)?), next))),
        b'$' => {
            let n = int(l)?;
            if n == -1 {
                return Ok(Some((Reply::Bulk(None), next)));
            }
            if n < 0 || n as usize > BULK_BYTES_MAX {
                return Err(ParseError(format!("bad bulk length {n}")));
            }
            let n = n as usize;
            if buf.len() < next + n + 2 {
                return Ok(None);
            }
            if &buf[next + n..next + n + 2] != b"\r\n" {
                return Err(ParseError("bulk string not followed by CRLF".into()));
            }
            Ok(Some((Reply::Bulk(Some(&buf[next..next + n])), next + n + 2)))
        }
        b'*' => {
            let n = int(l)?;
            if n == -1 {
                return Ok(Some((Reply::Array(None), next)));
            }
            if n < 0 || n as usize > ARRAY_LEN_MAX {
                return Err(ParseError(format!("bad array length {n}")));
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            let mut at = next;
            for _ in 0..n {
                match parse_at(buf, at, depth + 1)? {
                    None => return Ok(None),
                    Some((r, after)) => {
                        items.push(r);
                        at = after;
                    }
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ParseError(format!("unknown reply type byte {:?}", other as char))),
    }
}

/// Append one command as a RESP array of bulk strings.
pub fn write_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A stream entry ID `ms-seq`.
pub fn parse_stream_id(s: &[u8]) -> Option<(u64, u64)> {
    let t = std::str::from_utf8(s).ok()?;
    let (a, b) = t.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// An owned reply from the blocking client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedReply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<OwnedReply>>),
}

impl From<&Reply<'_>> for OwnedReply {
    fn from(r: &Reply<'_>) -> Self {
        match r {
            Reply::Simple(s) => OwnedReply::Simple(String::from_utf8_lossy(s).into_owned()),
            Reply::Error(s) => OwnedReply::Error(String::from_utf8_lossy(s).into_owned()),
            Reply::Integer(i) => OwnedReply::Integer(*i),
            Reply::Bulk(b) => OwnedReply::Bulk(b.map(|b| b.to_vec())),
            Reply::Array(a) => OwnedReply::Array(a.as_ref().map(|v| v.iter().map(OwnedReply::from).collect())),
        }
    }
}

/// Blocking one-command-at-a-time client for setup and verification.
pub struct BlockingRedis {
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl BlockingRedis {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(BlockingRedis { stream, buf: Vec::new(), timeout })
    }

    pub fn command(&mut self, args: &[&[u8]]) -> Result<OwnedReply, String> {
        let mut out = Vec::new();
        write_command(&mut out, args);
        let name = String::from_utf8_lossy(args.first().copied().unwrap_or_default()).into_owned();
        self.stream.write_all(&out).map_err(|e| format!("{name}: write: {e}"))?;
        let deadline = Instant::now() + self.timeout;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((r, n)) = parse_reply(&self.buf).map_err(|e| format!("{name}: {e}"))? {
                let owned = OwnedReply::from(&r);
                self.buf.drain(..n);
                return Ok(owned);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{name}: no reply within {:?}", self.timeout));
            }
            let _ = self.stream.set_read_timeout(Some(left));
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(format!("{name}: connection closed")),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{name}: read: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> (Reply<'_>, usize) {
        parse_reply(buf).expect("parses").expect("complete")
    }

    #[test]
    fn scalar_types() {
        assert_eq!(one(b"+OK\r\n"), (Reply::Simple(b"OK"), 5));
        assert_eq!(one(b"-ERR wrong type\r\n").0, Reply::Error(b"ERR wrong type"));
        assert_eq!(one(b":-42\r\n").0, Reply::Integer(-42));
        assert_eq!(one(b"$15\r\n1700000000000-0\r\n"), (Reply::Bulk(Some(b"1700000000000-0")), 22));
        assert_eq!(one(b"$-1\r\n").0, Reply::Bulk(None));
        assert_eq!(one(b"$0\r\n\r\n").0, Reply::Bulk(Some(b"")));
        assert_eq!(one(b"*-1\r\n").0, Reply::Array(None));
    }

    #[test]
    fn bulk_may_contain_crlf() {
        assert_eq!(one(b"$4\r\na\r\nb\r\n").0, Reply::Bulk(Some(b"a\r\nb")));
    }

    #[test]
    fn nested_arrays() {
        let raw = b"*2\r\n*2\r\n$1\r\na\r\n:1\r\n$-1\r\n";
        let (r, n) = one(raw);
        assert_eq!(n, raw.len());
        assert_eq!(r, Reply::Array(Some(vec![Reply::Array(Some(vec![Reply::Bulk(Some(b"a")), Reply::Integer(1)])), Reply::Bulk(None)])));
    }

    #[test]
    fn partial_reads_every_split_point() {
        let raw = b"*3\r\n$3\r\nfoo\r\n+bar\r\n:7\r\n";
        for cut in 0..raw.len() {
            assert_eq!(parse_reply(&raw[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(one(raw).1, raw.len());
    }

    #[test]
    fn pipelined_replies() {
        let raw = b"$3\r\n1-0\r\n$3\r\n1-1\r\n-ERR x\r\n";
        let (a, n1) = one(raw);
        let (b, n2) = one(&raw[n1..]);
        let (c, n3) = one(&raw[n1 + n2..]);
        assert_eq!((a, b, c), (Reply::Bulk(Some(b"1-0")), Reply::Bulk(Some(b"1-1")), Reply::Error(b"ERR x")));
        assert_eq!(n1 + n2 + n3, raw.len());
    }

    #[test]
    fn errors() {
        for raw in [&b"?x\r\n"[..], b":abc\r\n", b"$-2\r\n", b"$3\r\nabcd\r\n", b"*-5\r\n"] {
            assert!(parse_reply(raw).is_err(), "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn encode_command() {
        let mut out = Vec::new();
        write_command(&mut out, &[b"XADD", b"s", b"*", b"f", b""]);
        assert_eq!(out, b"*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nf\r\n$0\r\n\r\n");
    }

    #[test]
    fn stream_ids() {
        assert_eq!(parse_stream_id(b"1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_stream_id(b"17-"), None);
        assert_eq!(parse_stream_id(b"x-1"), None);
    }
}
