//! Server-Sent Events client side (the WHATWG HTML "event stream" format over an HTTP/1.1
//! chunked body, RFC 9112 §7.1): the request, an incremental chunked decoder and the
//! event-stream line parser. Starcite's SSE tail sends one event per message (`id: seq`,
//! `event: event`, `data: <event JSON>`) and `:` comment heartbeats.

use std::io::Write;

/// Largest SSE line accepted (one event is at most the body limit, 1 MiB by default).
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Append the SSE request for `path` (`Accept: text/event-stream`).
pub fn write_request(out: &mut Vec<u8>, path: &str, host: &str) {
    let _ = write!(out, "GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n");
}

/// Parse the response head in `buf`: `Ok(None)` while incomplete, else the bytes it took.
/// Anything but `200` with a chunked `text/event-stream` body is an error.
pub fn parse_head(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; crate::http::HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let n = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > crate::http::HEAD_BYTES_MAX => return Err("SSE response head too large".into()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("SSE response: {e}")),
    };
    let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value));
    let status = response.code.unwrap_or(0);
    if status != 200 {
        return Err(format!("SSE request answered HTTP {status}"));
    }
    if !header("content-type").is_some_and(|t| t.starts_with("text/event-stream")) {
        return Err(format!("SSE answer's content-type is {:?}", header("content-type")));
    }
    if !header("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
        return Err("SSE answer is not chunked".into());
    }
    Ok(Some(n))
}

#[derive(Debug, Default)]
enum Chunk {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Done,
}

/// Incremental decoder of a chunked event stream into complete messages' `data`.
#[derive(Debug, Default)]
pub struct Reader {
    chunk: Chunk,
    line: Vec<u8>,
    data: Option<String>,
}

impl Reader {
    /// Decode what `buf` holds; `on` gets each complete message's data. Returns the bytes
    /// consumed (an incomplete chunk-size line stays in `buf`).
    pub fn feed(&mut self, buf: &[u8], mut on: impl FnMut(&str)) -> Result<usize, String> {
        let mut pos = 0;
        while pos < buf.len() {
            match self.chunk {
                Chunk::Done => return Err("bytes after the last chunk".into()),
                Chunk::Size => {
                    let Some(end) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                        if buf.len() - pos > 64 {
                            return Err("chunk size line too long".into());
                        }
                        return Ok(pos);
                    };
                    let text = String::from_utf8_lossy(&buf[pos..pos + end]);
                    let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| format!("bad chunk size {text:?}"))?;
                    pos += end + 2;
                    self.chunk = if size == 0 { Chunk::Done } else { Chunk::Data(size) };
                }
                Chunk::Data(left) => {
                    let take = left.min(buf.len() - pos);
                    self.lines(&buf[pos..pos + take], &mut on)?;
                    pos += take;
                    self.chunk = if take == left { Chunk::DataEnd } else { Chunk::Data(left - take) };
                }
                Chunk::DataEnd => {
                    if buf.len() - pos < 2 {
                        return Ok(pos);
                    }
                    if &buf[pos..pos + 2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    pos += 2;
                    self.chunk = Chunk::Size;
                }
            }
        }
        Ok(pos)
    }

    /// Whether the stream ended (the zero-size chunk arrived).
    pub fn ended(&self) -> bool {
        matches!(self.chunk, Chunk::Done)
    }

    fn lines(&mut self, bytes: &[u8], on: &mut impl FnMut(&str)) -> Result<(), String> {
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= LINE_BYTES_MAX {
                    return Err("SSE line over the limit".into());
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    on(&data);
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = std::str::from_utf8(value).map_err(|_| "SSE data is not UTF-8".to_string())?;
                match self.data.as_mut() {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
            // `id:`, `event:`, `retry:` and `:` comments carry nothing the bench checks.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes());
        }
        out
    }

    #[test]
    fn messages_come_out_whole_at_every_split_point() {
        let stream =
            chunked(&[": hello\n\nid: 1\nevent: event\ndata: {\"seq\":1}\n\n", "id: 2\nevent: event\ndata: {\"seq\"", ":2}\n\n: hb\n\n"]);
        for split in 0..stream.len() {
            let mut r = Reader::default();
            let mut got = Vec::new();
            let mut pending = stream[..split].to_vec();
            let used = r.feed(&pending, |d| got.push(d.to_string())).unwrap();
            pending.drain(..used);
            pending.extend_from_slice(&stream[split..]);
            let used = r.feed(&pending, |d| got.push(d.to_string())).unwrap();
            assert_eq!(used, pending.len(), "split {split}");
            assert_eq!(got, vec!["{\"seq\":1}", "{\"seq\":2}"], "split {split}");
        }
    }

    #[test]
    fn heads_and_damage_are_checked() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(ok), Ok(Some(ok.len())));
        assert_eq!(parse_head(&ok[..20]), Ok(None));
        assert!(parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n").is_err());
        let mut r = Reader::default();
        assert!(r.feed(b"zz\r\n", |_| {}).is_err());
        let mut r = Reader::default();
        assert!(r.feed(b"2\r\nabXX", |_| {}).is_err());
        let mut r = Reader::default();
        r.feed(b"0\r\n", |_| {}).unwrap();
        assert!(r.ended());
    }
}
