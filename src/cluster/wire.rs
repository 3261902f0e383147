//! Cluster frames: `[len: u32 LE][crc32: u32 LE][kind: u8][body]`, where `len` counts
//! `kind` and `body` and the CRC32 (IEEE, crc32fast) covers the same bytes.
//!
//! Invariants:
//! - a frame never exceeds `CLUSTER_FRAME_BYTES_MAX`: a header that claims more (a peer
//!   announcing 4 GiB) is refused from its 8 header bytes, before anything is buffered for
//!   it, so one peer can make the decoder hold at most one maximal frame;
//! - a frame whose CRC does not match is an error, never delivered (TCP's checksum is 16
//!   bits and does not cover bugs between the socket and us);
//! - "need more bytes" is a state (`Ok(None)`), not an error; after an `Err` the stream is
//!   unusable and the connection must be closed.

use crate::limits::CLUSTER_FRAME_BYTES_MAX;

/// Bytes before a frame's kind: length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Why a byte stream is not a valid sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("empty frame (no kind byte)")]
    Empty,
    #[error("frame checksum mismatch")]
    Checksum,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub body: Vec<u8>,
}

/// Append one frame to `out`. Panics (a bug, not input) when the body is over the limit.
pub fn encode(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let len = body.len() + 1;
    assert!(len <= CLUSTER_FRAME_BYTES_MAX, "cluster frame of {len} bytes over the limit");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(body);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
}

/// Incremental decoder over a connection's received bytes.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already returned as frames; dropped at the next `push`, so a read
    /// holding many small frames costs one move, not one per frame.
    start: usize,
    /// Set after an error: the stream's framing is lost.
    failed: bool,
}

impl Decoder {
    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The bytes buffered and not yet returned as frames (handing a stream over to another
    /// reader after the handshake).
    pub fn into_buffered(mut self) -> Vec<u8> {
        self.buf.drain(..self.start);
        self.buf
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.failed {
            return Err(WireError::Empty);
        }
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
            self.start = 0;
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Frame>, WireError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > CLUSTER_FRAME_BYTES_MAX {
            return Err(WireError::TooLarge { len: len as u64, max: CLUSTER_FRAME_BYTES_MAX });
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            return Ok(None);
        };
        if crc32fast::hash(payload) != crc {
            return Err(WireError::Checksum);
        }
        let frame = Frame { kind: payload[0], body: payload[1..].to_vec() };
        self.start += FRAME_HEADER_BYTES + len;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_at_every_byte() {
        let mut bytes = Vec::new();
        encode(&mut bytes, 1, b"hello");
        encode(&mut bytes, 2, b"");
        encode(&mut bytes, 3, &vec![7u8; 5000]);
        for split in 0..bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in [&bytes[..split], &bytes[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "split at {split}");
            assert_eq!(got[0], Frame { kind: 1, body: b"hello".to_vec() });
            assert_eq!(got[1], Frame { kind: 2, body: vec![] });
            assert_eq!(got[2].body.len(), 5000);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn a_frame_claiming_4_gib_is_refused_from_its_header_alone() {
        let mut d = Decoder::default();
        let mut header = u32::MAX.to_le_bytes().to_vec();
        header.extend_from_slice(&[0; 4]);
        d.push(&header);
        assert!(matches!(d.next_frame(), Err(WireError::TooLarge { .. })));
        assert_eq!(d.buffered(), 0, "nothing is kept for a refused stream");
        assert!(d.next_frame().is_err(), "the stream stays failed");
    }

    #[test]
    fn truncated_frames_wait_and_damaged_ones_fail() {
        let mut bytes = Vec::new();
        encode(&mut bytes, 9, b"payload");
        let mut d = Decoder::default();
        d.push(&bytes[..bytes.len() - 1]);
        assert_eq!(d.next_frame(), Ok(None));
        let mut damaged = bytes.clone();
        damaged[FRAME_HEADER_BYTES + 2] ^= 1;
        let mut d = Decoder::default();
        d.push(&damaged);
        assert_eq!(d.next_frame(), Err(WireError::Checksum));
        let mut d = Decoder::default();
        d.push(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(WireError::Empty));
    }

    #[test]
    fn garbage_never_panics_and_never_buffers_past_one_maximal_frame() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            let mut d = Decoder::default();
            let n = (rng % 64) as usize;
            let bytes = crate::cluster::noise(&mut rng, n);
            d.push(&bytes);
            let _ = d.next_frame();
            assert!(d.buffered() <= FRAME_HEADER_BYTES + CLUSTER_FRAME_BYTES_MAX);
        }
    }
}
