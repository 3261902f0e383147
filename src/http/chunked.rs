//! Incremental decoder for the chunked transfer-coding (RFC 9112 §7.1).
//!
//! Role: driven by `request::RequestParser` once a head says
//! `Transfer-Encoding: chunked`; it de-chunks the body straight out of the
//! connection buffer and reports where the message ends.
//!
//! Invariants:
//! - `pos` is an absolute offset into the caller's buffer; a resumed call
//!   continues exactly where the last stopped, so decoding a body costs
//!   O(its size) however the bytes are split across calls.
//! - Strict CRLF everywhere in framing: accepting bare LF (or other
//!   leniencies) where a front proxy does not is how request smuggling
//!   happens.
//! - Declared chunk sizes are checked against `body_bytes_max` digit by
//!   digit, so an oversize body is refused (413) before its data is sent.
//! - Chunk extensions are ignored but bounded per line by
//!   `crate::limits::CHUNK_LINE_BYTES_MAX`; trailers are validated as field
//!   lines, bounded like a head (`head_bytes_max` bytes, `headers_max`
//!   fields → 431) and discarded.
//! - Never panics.

use super::syntax::{hex_value, is_tchar, HttpError, Limits};

/// Incremental chunked-body decoder (RFC 9112 §7.1). Works byte by byte on
/// framing and copies data in bulk; `pos` is an absolute offset into the
/// caller's `buf` so a resumed call continues where the last one stopped.
/// Strict CRLF everywhere: bare LF in framing is a smuggling vector.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    pub(crate) pos: usize,
    state: ChunkState,
    pub(crate) body: Vec<u8>,
    /// Bytes in the current chunk-size line.
    line_bytes: usize,
    /// Bytes and field count of the trailer section (bounded like a head).
    trailer_bytes: usize,
    trailer_fields: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size {
        value: u64,
        digits: usize,
    },
    /// After the size: whitespace and `;ext` up to CR, ignored.
    Ext {
        value: u64,
    },
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine {
        colon_seen: bool,
    },
    TrailerLf,
    FinalLf,
    Done,
}

impl ChunkedDecoder {
    pub(crate) fn new(start: usize) -> Self {
        ChunkedDecoder {
            pos: start,
            state: ChunkState::Size { value: 0, digits: 0 },
            body: Vec::new(),
            line_bytes: 0,
            trailer_bytes: 0,
            trailer_fields: 0,
        }
    }

    /// Consume what is available. `Ok(true)` when the whole chunked body,
    /// trailers and final CRLF have been read (`pos` is then the end).
    pub(crate) fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<bool, HttpError> {
        let bad = |m: &str| HttpError::bad_request(format!("malformed chunked body: {m}"));
        let body_max = limits.body_bytes_max;
        while self.state != ChunkState::Done {
            let Some(&b) = buf.get(self.pos) else {
                return Ok(false);
            };
            if let ChunkState::Data { remaining } = self.state {
                let avail = buf.get(self.pos..).unwrap_or(&[]);
                let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(avail.len());
                self.body.extend_from_slice(avail.get(..take).unwrap_or(&[]));
                self.pos += take;
                let remaining = remaining - take as u64;
                self.state = if remaining == 0 { ChunkState::DataCr } else { ChunkState::Data { remaining } };
                continue;
            }
            self.pos += 1;
            self.state = match self.state {
                ChunkState::Size { value, digits } => {
                    self.line_bytes += 1;
                    if self.line_bytes > crate::limits::CHUNK_LINE_BYTES_MAX {
                        return Err(bad("chunk-size line too long"));
                    }
                    if let Some(d) = hex_value(b) {
                        let value = value.checked_mul(16).and_then(|v| v.checked_add(u64::from(d))).unwrap_or(u64::MAX);
                        // Reject as soon as the declared sizes pass the limit,
                        // before any of that data is sent.
                        if value.saturating_add(self.body.len() as u64) > body_max as u64 {
                            return Err(HttpError::payload_too_large(body_max));
                        }
                        ChunkState::Size { value, digits: digits + 1 }
                    } else if digits == 0 {
                        return Err(bad("expected a hex chunk size"));
                    } else if b == b';' || b == b' ' || b == b'\t' {
                        ChunkState::Ext { value }
                    } else if b == b'\r' {
                        ChunkState::SizeLf { value }
                    } else {
                        return Err(bad("invalid chunk size"));
                    }
                }
                ChunkState::Ext { value } => {
                    self.line_bytes += 1;
                    if self.line_bytes > crate::limits::CHUNK_LINE_BYTES_MAX {
                        return Err(bad("chunk-size line too long"));
                    }
                    match b {
                        b'\r' => ChunkState::SizeLf { value },
                        b'\t' => ChunkState::Ext { value },
                        0..=0x1f | 0x7f => return Err(bad("control character in chunk extension")),
                        _ => ChunkState::Ext { value },
                    }
                }
                ChunkState::SizeLf { value } => {
                    if b != b'\n' {
                        return Err(bad("expected LF after chunk size"));
                    }
                    self.line_bytes = 0;
                    if value == 0 {
                        ChunkState::TrailerLineStart
                    } else {
                        ChunkState::Data { remaining: value }
                    }
                }
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::Size { value: 0, digits: 0 },
                ChunkState::DataCr | ChunkState::DataLf => return Err(bad("chunk data not followed by CRLF")),
                ChunkState::TrailerLineStart => {
                    if b == b'\r' {
                        ChunkState::FinalLf
                    } else {
                        self.trailer_fields += 1;
                        if self.trailer_fields > limits.headers_max {
                            return Err(HttpError::head_too_large("too many trailer fields"));
                        }
                        self.count_trailer_byte(limits)?;
                        if !is_tchar(b) {
                            return Err(bad("invalid trailer field"));
                        }
                        ChunkState::TrailerLine { colon_seen: false }
                    }
                }
                ChunkState::TrailerLine { colon_seen } => {
                    self.count_trailer_byte(limits)?;
                    match b {
                        b'\r' if colon_seen => ChunkState::TrailerLf,
                        b':' if !colon_seen => ChunkState::TrailerLine { colon_seen: true },
                        b'\t' if colon_seen => ChunkState::TrailerLine { colon_seen },
                        0..=0x1f | 0x7f => return Err(bad("invalid trailer field")),
                        _ if colon_seen || is_tchar(b) => ChunkState::TrailerLine { colon_seen },
                        _ => return Err(bad("invalid trailer field name")),
                    }
                }
                ChunkState::TrailerLf if b == b'\n' => ChunkState::TrailerLineStart,
                ChunkState::FinalLf if b == b'\n' => ChunkState::Done,
                ChunkState::TrailerLf | ChunkState::FinalLf => return Err(bad("expected LF after CR")),
                // Handled before the match / loop condition; kept total.
                ChunkState::Data { .. } | ChunkState::Done => self.state,
            };
        }
        Ok(true)
    }

    fn count_trailer_byte(&mut self, limits: &Limits) -> Result<(), HttpError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > limits.head_bytes_max {
            return Err(HttpError::head_too_large("trailer section too large"));
        }
        Ok(())
    }
}

/// A chunked request with extensions and trailers, shared by the tests here
/// and in `request`.
#[cfg(test)]
pub(crate) const SAMPLE_REQUEST: &[u8] = b"POST /v1/sessions/s1/append HTTP/1.1\r\nhost: x\r\n\
    transfer-encoding: chunked\r\n\r\n\
    5;name=value;flag\r\nhello\r\n1 ; ext\r\n \r\n6\r\nworld!\r\n\
    0;last\r\nx-checksum: abc\r\nx-other: 1\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::SAMPLE_REQUEST as CHUNKED;
    use crate::http::request::{parse_request, Parse, RequestParser};

    use crate::http::test_support::{complete, error, limits, small_limits};

    #[test]
    fn chunked_body_with_extensions_and_trailers_is_dechunked_and_trailers_dropped() {
        let (req, consumed) = complete(CHUNKED);
        assert_eq!(req.body, b"hello world!");
        assert_eq!(consumed, CHUNKED.len());
        assert!(req.header("x-checksum").is_none(), "trailers are not merged into headers");
    }

    #[test]
    fn chunked_body_split_at_every_byte_offset_decodes_identically() {
        let expected = complete(CHUNKED);
        for split in 0..=CHUNKED.len() {
            let mut parser = RequestParser::new(limits());
            let first = parser.parse(&CHUNKED[..split]);
            if split < CHUNKED.len() {
                assert_eq!(first, Ok(Parse::Incomplete), "split at {split}");
            }
            let got = if split == CHUNKED.len() { first } else { parser.parse(CHUNKED) };
            assert_eq!(got, Ok(Parse::Complete { request: expected.0.clone(), consumed: expected.1 }));
        }
    }

    #[test]
    fn malformed_chunks_are_bad_requests() {
        let head = "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n";
        for body in ["x\r\n", "5\r\nhelloXX", "5\nhello\r\n", "\r\n", "5\r\nhello\r\n0\r\nbad field\r\n\r\n", "0\r\n\r\r"] {
            let e = error(format!("{head}{body}").as_bytes(), &limits());
            assert_eq!((e.status, e.code), (400, "bad_request"), "{body:?}");
        }
    }

    #[test]
    fn chunk_sizes_over_the_limit_are_413_before_the_data_arrives() {
        let e = error(b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n41", &small_limits());
        assert_eq!(e.status, 413);
        // Cumulative: 32 bytes received, then a size that would make 65.
        let head = "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n";
        let data = "a".repeat(32);
        let e = error(format!("{head}20\r\n{data}\r\n21").as_bytes(), &small_limits());
        assert_eq!(e.status, 413);
        let exact = format!("{head}20\r\n{data}\r\n20\r\n{data}\r\n0\r\n\r\n");
        assert!(matches!(parse_request(exact.as_bytes(), &small_limits()), Ok(Parse::Complete { .. })));
    }

    #[test]
    fn a_one_mebibyte_body_fed_in_small_reads_resumes_instead_of_restarting() {
        let data = vec![b'x'; 1000];
        let mut raw = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..1048 {
            raw.extend_from_slice(b"3e8\r\n");
            raw.extend_from_slice(&data);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let mut parser = RequestParser::new(limits());
        let mut end = 0;
        let outcome = loop {
            end = (end + 1500).min(raw.len());
            match parser.parse(&raw[..end]) {
                Ok(Parse::Incomplete) if end < raw.len() => continue,
                other => break other,
            }
        };
        match outcome {
            Ok(Parse::Complete { request, consumed }) => {
                assert_eq!(request.body.len(), 1_048_000);
                assert_eq!(consumed, raw.len());
            }
            other => panic!("{other:?}"),
        }
    }
}
