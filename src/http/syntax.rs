//! What the request parser and the chunked decoder share: the HTTP error type, the
//! limits in force, and RFC 9110 character classes. Kept apart so neither of the two
//! parsers imports the other's internals (the decoder is driven by the parser, not the
//! reverse).

use std::fmt;

/// Limits in force for one listener. [`Default`] takes `crate::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub head_bytes_max: usize,
    pub headers_max: usize,
    pub body_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            head_bytes_max: crate::limits::REQUEST_HEAD_BYTES_MAX,
            headers_max: crate::limits::REQUEST_HEADERS_MAX,
            body_bytes_max: crate::limits::BODY_BYTES_MAX_DEFAULT,
        }
    }
}

/// An HTTP-level failure: status to answer with, stable machine code, and a
/// human message (sent in the JSON error body; never contains raw input
/// beyond what is safe to echo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        HttpError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    pub(crate) fn head_too_large(message: impl Into<String>) -> Self {
        Self::new(431, "request_header_fields_too_large", message)
    }
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(413, "payload_too_large", format!("request body exceeds {limit} bytes"))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for HttpError {}

/// The value of one hexadecimal digit (chunk sizes, percent-encoding).
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 9110 `tchar`: the bytes allowed in tokens such as field names.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
