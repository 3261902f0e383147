//! WebSocket client side (RFC 6455): the upgrade request and its accept-key check, an incremental frame decoder with message reassembly, and masked client frames (pong, close).

use std::io::Write;

/// Largest message accepted (a batch of 1000 events of up to 1 MiB total, with margin).
pub const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Append the upgrade request for `path`; `key` is [`make_key`]'s output.
pub fn write_handshake(out: &mut Vec<u8>, path: &str, host: &str, key: &str) {
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n"
    );
}

/// A fresh `Sec-WebSocket-Key` (RFC 6455 §4.1: 16 random bytes, base64; tungstenite's).
pub fn make_key() -> String {
    tungstenite::handshake::client::generate_key()
}

/// The `Sec-WebSocket-Accept` value the server must answer for `key` (RFC 6455 §4.2.2;
/// tungstenite's SHA-1 and base64).
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// Check a `101` answer's `Sec-WebSocket-Accept` header (raw head bytes) against `key`.
pub fn check_accept(head: &[u8], key: &str) -> Result<(), String> {
    let mut headers = [httparse::EMPTY_HEADER; crate::http::HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    response.parse(head).map_err(|e| format!("101 answer: {e}"))?;
    let want = accept_key(key);
    match response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept")) {
        Some(h) if h.value == want.as_bytes() => Ok(()),
        Some(h) => Err(format!("Sec-WebSocket-Accept {:?}, expected {want:?}", String::from_utf8_lossy(h.value))),
        None => Err("101 answer has no Sec-WebSocket-Accept header".into()),
    }
}

/// One frame as received (server frames are never masked).
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Decode the first complete frame in `buf`. `Ok(None)`: more bytes are needed.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err("reserved bits set (no extension was negotiated)".into());
    }
    let opcode = buf[0] & 0x0F;
    if !matches!(opcode, OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(format!("unknown opcode {opcode:#x}"));
    }
    if buf[1] & 0x80 != 0 {
        return Err("server frame is masked".into());
    }
    let (len, mut pos) = match buf[1] & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err("fragmented or oversized control frame".into());
    }
    if len > MESSAGE_BYTES_MAX as u64 {
        return Err(format!("frame of {len} bytes is over the {MESSAGE_BYTES_MAX} byte limit"));
    }
    let len = len as usize;
    if buf.len() < pos + len {
        return Ok(None);
    }
    let payload = &buf[pos..pos + len];
    pos += len;
    Ok(Some((Frame { fin, opcode, payload }, pos)))
}

/// Append a masked client frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Append a masked close frame with a status code.
pub fn write_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    write_frame(out, OP_CLOSE, &code.to_be_bytes(), mask);
}

/// A complete message handed to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a [u8]),
    Binary(&'a [u8]),
    /// The server closed: code (1005 when none) and reason.
    Close(u16, String),
}

/// Frame reassembly for one connection: feed it the read buffer, get whole messages.
/// Pings are answered by queueing a pong in `outgoing` (the caller writes it).
#[derive(Default)]
pub struct Reader {
    partial: Vec<u8>,
    partial_op: Option<u8>,
    pub outgoing: Vec<u8>,
    pub frames: u64,
    pub closed: bool,
}

impl Reader {
    /// Decode every complete frame in `buf[..]`, call `on` per complete message, and return
    /// the number of bytes consumed.
    pub fn feed(&mut self, buf: &[u8], mut on: impl FnMut(Message<'_>)) -> Result<usize, String> {
        let mut at = 0;
        while !self.closed {
            let Some((frame, n)) = parse_frame(&buf[at..])? else { break };
            at += n;
            self.frames += 1;
            match frame.opcode {
                OP_PING => write_frame(&mut self.outgoing, OP_PONG, frame.payload, mask_for(self.frames)),
                OP_PONG => {}
                OP_CLOSE => {
                    let (code, reason) = if frame.payload.len() >= 2 {
                        (
                            u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                            String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                        )
                    } else {
                        (1005, String::new())
                    };
                    self.closed = true;
                    on(Message::Close(code, reason));
                }
                OP_TEXT | OP_BINARY => {
                    if self.partial_op.is_some() {
                        return Err("new data frame while a fragmented message is open".into());
                    }
                    if frame.fin {
                        on(if frame.opcode == OP_TEXT { Message::Text(frame.payload) } else { Message::Binary(frame.payload) });
                    } else {
                        self.partial_op = Some(frame.opcode);
                        self.partial.clear();
                        self.partial.extend_from_slice(frame.payload);
                    }
                }
                _ => {
                    let Some(op) = self.partial_op else {
                        return Err("continuation frame without a message".into());
                    };
                    if self.partial.len() + frame.payload.len() > MESSAGE_BYTES_MAX {
                        return Err("fragmented message over the size limit".into());
                    }
                    self.partial.extend_from_slice(frame.payload);
                    if frame.fin {
                        self.partial_op = None;
                        let msg = std::mem::take(&mut self.partial);
                        on(if op == OP_TEXT { Message::Text(&msg) } else { Message::Binary(&msg) });
                        self.partial = msg;
                        self.partial.clear();
                    }
                }
            }
        }
        Ok(at)
    }
}

/// A cheap varying mask (masking defends proxies, not secrecy).
pub fn mask_for(n: u64) -> [u8; 4] {
    let x = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32;
    x.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(check_accept(b"HTTP/1.1 101 x\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", "dGhlIHNhbXBsZSBub25jZQ==")
            .is_ok());
        assert!(check_accept(b"HTTP/1.1 101 x\r\nSec-WebSocket-Accept: nope\r\n\r\n", "dGhlIHNhbXBsZSBub25jZQ==").is_err());
    }

    #[test]
    fn keys_are_fresh_base64_of_16_bytes() {
        assert_eq!(make_key().len(), 24);
        assert_ne!(make_key(), make_key());
    }

    fn server_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | op];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_of_every_length_class_and_partial_reads() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let raw = server_frame(true, OP_TEXT, &payload);
            for cut in [0, 1, 2, 3, 9, raw.len() - 1] {
                if cut < raw.len() {
                    assert_eq!(parse_frame(&raw[..cut]).unwrap(), None, "len {len} cut {cut}");
                }
            }
            let (f, n) = parse_frame(&raw).unwrap().unwrap();
            assert_eq!((f.fin, f.opcode, f.payload.len(), n), (true, OP_TEXT, len, raw.len()));
        }
    }

    #[test]
    fn reader_reassembles_and_answers_pings() {
        let mut raw = server_frame(true, OP_TEXT, b"{\"seq\":1}");
        raw.extend(server_frame(false, OP_TEXT, b"[{\"seq\":2},"));
        raw.extend(server_frame(true, OP_PING, b"hi"));
        raw.extend(server_frame(true, OP_CONT, b"{\"seq\":3}]"));
        raw.extend(server_frame(true, OP_CLOSE, &[0x03, 0xF0, b'b', b'y', b'e']));
        raw.extend(server_frame(true, OP_TEXT, b"after close"));
        let mut r = Reader::default();
        let mut got = Vec::new();
        let n = r
            .feed(&raw, |m| {
                got.push(match m {
                    Message::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Message::Binary(_) => "bin".into(),
                    Message::Close(c, why) => format!("close {c} {why}"),
                })
            })
            .unwrap();
        assert_eq!(got, vec!["{\"seq\":1}", "[{\"seq\":2},{\"seq\":3}]", "close 1008 bye"]);
        assert!(r.closed);
        assert!(n < raw.len());
        // The pong is masked and carries the ping payload.
        let out = &r.outgoing;
        assert_eq!(out[0], 0x80 | OP_PONG);
        assert_eq!(out[1], 0x80 | 2);
        let mask = [out[2], out[3], out[4], out[5]];
        assert_eq!([out[6] ^ mask[0], out[7] ^ mask[1]], *b"hi");
    }

    #[test]
    fn protocol_errors() {
        assert!(parse_frame(&[0x81, 0x81, 0, 0, 0, 0, b'x']).is_err(), "masked server frame");
        assert!(parse_frame(&[0xC1, 0x00]).is_err(), "rsv bit");
        assert!(parse_frame(&[0x83, 0x00]).is_err(), "opcode 3");
        assert!(parse_frame(&[0x09, 0x00]).is_err(), "fragmented ping");
        let mut r = Reader::default();
        assert!(r.feed(&server_frame(true, OP_CONT, b"x"), |_| {}).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        write_close(&mut out, 1000, [1, 2, 3, 4]);
        assert_eq!(out, vec![0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2]);
        let mut out = Vec::new();
        write_frame(&mut out, OP_TEXT, &[0u8; 200], [0; 4]);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 0, 200]);
    }
}
