//! Record framing: `[len: u32 LE][crc32: u32 LE][payload: len bytes][zero pad to 8]`.
//!
//! Invariants:
//! - every frame starts at an offset that is a multiple of [`FRAME_ALIGN_BYTES`], so the
//!   payload that follows the 8-byte header is 8-aligned in any buffer whose base is
//!   aligned (DMA buffers are). rkyv is built with its `unaligned` feature (archived
//!   primitives have alignment 1, free on x86-64), so in-place access never depends on
//!   where a record sits; the 8-byte alignment keeps loads of archived u64s cheap;
//! - `crc32` covers the 4 length bytes and the payload, so a corrupted length is caught;
//! - `len == 0` never describes a record: it marks the end of written data in a
//!   pre-zeroed segment.
//!
//! The format is documented in `docs/FORMAT.md`; keep both in step.

use crate::limits::{FRAME_ALIGN_BYTES, RECORD_PAYLOAD_BYTES_MAX};

/// Bytes of the frame header (length + CRC).
pub const FRAME_HEADER_BYTES: usize = 8;

/// Total bytes a frame of `payload_len` occupies on disk, padding included.
pub fn frame_len(payload_len: usize) -> usize {
    let raw = FRAME_HEADER_BYTES + payload_len;
    raw.div_ceil(FRAME_ALIGN_BYTES) * FRAME_ALIGN_BYTES
}

fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Append one framed record to `out`. `out.len()` must already be frame-aligned.
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(!payload.is_empty(), "empty payloads are not records");
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "record payload over the limit");
    assert_eq!(out.len() % FRAME_ALIGN_BYTES, 0, "frames start aligned");
    let len_bytes = (payload.len() as u32).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len()), 0);
    // Check the frame right after writing it, as it will be checked right after reading.
    debug_assert!(matches!(decode(&out[start..]), Decoded::Record { .. }));
}

/// What sits at the start of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole, checksummed record; `frame_bytes` includes header and padding.
    Record { payload: &'a [u8], frame_bytes: usize },
    /// The header is all zeros: end of written data.
    End,
    /// The slice ends before the frame does (need more bytes, or a torn tail).
    Truncated { frame_bytes: Option<usize> },
    /// The frame is complete but its length is impossible or its CRC does not match.
    Corrupt { reason: &'static str },
}

/// Decode the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < FRAME_HEADER_BYTES {
        if bytes.iter().all(|b| *b == 0) {
            return Decoded::End;
        }
        return Decoded::Truncated { frame_bytes: None };
    }
    let len_bytes = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len == 0 {
        return if crc == 0 { Decoded::End } else { Decoded::Corrupt { reason: "zero length with non-zero crc" } };
    }
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Decoded::Corrupt { reason: "record length over the limit" };
    }
    let total = frame_len(len);
    if bytes.len() < FRAME_HEADER_BYTES + len {
        return Decoded::Truncated { frame_bytes: Some(total) };
    }
    let payload = &bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len];
    if checksum(len_bytes, payload) != crc {
        return Decoded::Corrupt { reason: "crc mismatch" };
    }
    Decoded::Record { payload, frame_bytes: total }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(&mut out, p);
        }
        out
    }

    #[test]
    fn a_record_round_trips_and_is_padded_to_the_frame_alignment() {
        let buf = framed(&[b"hello", b"world!!!!"]);
        assert_eq!(buf.len(), frame_len(5) + frame_len(9));
        assert_eq!(frame_len(5) % FRAME_ALIGN_BYTES, 0);
        let Decoded::Record { payload, frame_bytes } = decode(&buf) else { panic!("not a record") };
        assert_eq!(payload, b"hello");
        let Decoded::Record { payload, .. } = decode(&buf[frame_bytes..]) else { panic!("not a record") };
        assert_eq!(payload, b"world!!!!");
    }

    #[test]
    fn a_flipped_byte_anywhere_in_the_frame_is_rejected() {
        let buf = framed(&[b"some payload bytes"]);
        for i in 0..FRAME_HEADER_BYTES + 18 {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(!matches!(decode(&bad), Decoded::Record { .. }), "flip at byte {i} was accepted");
        }
    }

    #[test]
    fn zeros_mean_end_and_a_cut_frame_is_truncated() {
        assert_eq!(decode(&[0u8; 64]), Decoded::End);
        assert_eq!(decode(&[0u8; 3]), Decoded::End);
        let buf = framed(&[b"0123456789abcdef"]);
        for cut in 1..FRAME_HEADER_BYTES + 16 {
            assert!(matches!(decode(&buf[..cut]), Decoded::Truncated { .. }), "cut at {cut}");
        }
    }

    #[test]
    fn an_impossible_length_is_corrupt_not_a_huge_allocation() {
        let mut buf = vec![0xffu8; 16];
        buf[4..8].copy_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(decode(&buf), Decoded::Corrupt { .. }));
    }
}
