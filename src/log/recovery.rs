//! Recovery: scan every segment in order, verify every frame, find where the writer stopped.
//!
//! Policy (explicit, as in raft-engine's `RecoveryMode`):
//! - a frame that fails its CRC or declares an impossible length, with non-zero bytes
//!   after it, is corruption: startup refuses, naming the file and the offset;
//! - in the *active* segment only (the last one holding data; empty segments created
//!   ahead of the writer may follow it), a bad or cut frame followed by nothing but zeros
//!   (or by the end of a file that was cut short) is a torn tail — a write that never
//!   completed, hence was never acknowledged — and the log is truncated there;
//! - an all-zero frame header is the end of written data; in the last segment, non-zero
//!   bytes after it can only come from a torn, unacknowledged multi-block write (a bit flip
//!   cannot zero a whole 8-byte header) and are discarded;
//! - a bit flip inside the very last record is indistinguishable from a torn write and is
//!   truncated with a warning: that is the limit of what a CRC-framed log can tell.

use std::path::Path;

use super::error::LogError;
use super::file::{ReadBuf, SegmentFile};
use super::frame::{decode, Decoded, FRAME_HEADER_BYTES};
use super::{Loc, RecordVisitor};
use crate::limits::{LOG_BLOCK_BYTES, RECORD_PAYLOAD_BYTES_MAX, RECOVERY_READ_WINDOW_BYTES, SEGMENT_HEADER_BYTES};

/// How one segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Offset just past the last good frame.
    pub data_end: u64,
    /// The bytes after `data_end` are not all zeros (or the file is short) and must be
    /// rewritten before the writer continues in this segment.
    pub needs_repair: bool,
}

struct Window {
    start: u64,
    bytes: ReadBuf,
}

async fn read_window(file: &dyn SegmentFile, path: &Path, start: u64, limit: u64) -> Result<Window, LogError> {
    let start = start - start % LOG_BLOCK_BYTES;
    let len = (limit.saturating_sub(start) as usize).min(RECOVERY_READ_WINDOW_BYTES);
    let bytes = file
        .read_at(start, len.div_ceil(LOG_BLOCK_BYTES as usize) * LOG_BLOCK_BYTES as usize)
        .await
        .map_err(|e| LogError::io("read", path, start, e))?;
    Ok(Window { start, bytes })
}

/// True when `[from, to)` of the file holds only zeros (bytes past the end of file count
/// as zeros).
async fn all_zero(file: &dyn SegmentFile, path: &Path, from: u64, to: u64) -> Result<bool, LogError> {
    let mut pos = from;
    while pos < to {
        let w = read_window(file, path, pos, to).await?;
        let skip = (pos - w.start) as usize;
        if w.bytes.len() <= skip {
            return Ok(true);
        }
        if w.bytes[skip..].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        pos = w.start + w.bytes.len() as u64;
    }
    Ok(true)
}

/// Scan one segment, calling `visit` for every good record in order.
pub async fn scan_segment(
    file: &dyn SegmentFile,
    path: &Path,
    segment: u32,
    segment_bytes: u64,
    is_last: bool,
    visit: &mut RecordVisitor<'_>,
) -> Result<ScanEnd, LogError> {
    let corrupt = |offset: u64, reason: String| LogError::Corrupt { path: path.to_path_buf(), offset, reason };
    let file_len = file.size().await.map_err(|e| LogError::io("stat", path, 0, e))?.min(segment_bytes);
    if file_len < segment_bytes && !is_last {
        return Err(corrupt(file_len, format!("the file is {file_len} bytes, shorter than its segment size {segment_bytes}")));
    }
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut window: Option<Window> = None;
    loop {
        if pos + FRAME_HEADER_BYTES as u64 > segment_bytes {
            return Ok(ScanEnd { data_end: pos, needs_repair: false });
        }
        if pos >= file_len {
            // The file was cut short (only possible in the last segment).
            return Ok(ScanEnd { data_end: pos, needs_repair: true });
        }
        let w = match window.take() {
            Some(w) if pos >= w.start && pos + FRAME_HEADER_BYTES as u64 <= w.start + w.bytes.len() as u64 => w,
            _ => read_window(file, path, pos, file_len).await?,
        };
        let rel = (pos - w.start) as usize;
        let decoded = decode(&w.bytes[rel..]);
        match decoded {
            Decoded::Record { payload, frame_bytes } => {
                let loc = Loc { segment, offset: pos as u32, payload_len: payload.len() as u32 };
                visit(loc, payload).map_err(|rejected| corrupt(pos, rejected.0))?;
                pos += frame_bytes as u64;
                window = Some(w);
            }
            Decoded::End => {
                let dirty = is_last && !all_zero(file, path, pos, file_len).await?;
                if dirty {
                    tracing::warn!(file = %path.display(), offset = pos, "log recovery: discarding unacknowledged bytes after the end of data");
                }
                return Ok(ScanEnd { data_end: pos, needs_repair: dirty || file_len < segment_bytes });
            }
            Decoded::Truncated { frame_bytes } => {
                let window_end = w.start + w.bytes.len() as u64;
                if window_end < file_len && rel > 0 {
                    // The frame straddles the window: read again starting at it.
                    // (the old window is dropped: it cannot hold this frame)
                    let fresh = read_window(file, path, pos, file_len).await?;
                    if fresh.start + fresh.bytes.len() as u64 > window_end {
                        window = Some(fresh);
                        continue;
                    }
                }
                // The frame runs past the end of the file.
                if !is_last {
                    return Err(corrupt(pos, "truncated record".into()));
                }
                let _ = frame_bytes;
                tracing::warn!(file = %path.display(), offset = pos, "log recovery: torn tail, truncating");
                return Ok(ScanEnd { data_end: pos, needs_repair: true });
            }
            Decoded::Corrupt { reason } => {
                let after = pos + FRAME_HEADER_BYTES as u64;
                // Bytes declared by the bad frame may be garbage; what matters is whether
                // anything non-zero follows its header region beyond the declared extent.
                let len = u32::from_le_bytes(w.bytes[rel..rel + 4].try_into().expect("4 bytes")) as u64;
                // An impossible length is itself the damage: check everything after the header.
                let declared = if len as usize > RECORD_PAYLOAD_BYTES_MAX { 0 } else { len };
                let extent_end = (after + declared).min(file_len).max(after);
                if is_last && all_zero(file, path, extent_end, file_len).await? {
                    tracing::warn!(file = %path.display(), offset = pos, reason, "log recovery: torn tail, truncating");
                    return Ok(ScanEnd { data_end: pos, needs_repair: true });
                }
                return Err(corrupt(pos, reason.to_string()));
            }
        }
    }
}
