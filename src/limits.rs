//! Every bound and default of the server, in one place, unit last in the name.
//!
//! Relationships between them are asserted at the bottom of this file at compile time,
//! so a change that breaks one fails the build instead of silently clamping.

// ---- log engine -------------------------------------------------------------------

/// Records start at multiples of this; also the alignment rkyv needs for in-place access.
pub const FRAME_ALIGN_BYTES: usize = 8;
/// Largest record payload the log accepts (a request body plus its envelope).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 3 * 1024 * 1024;
/// O_DIRECT block: writes go out in whole blocks, the last partial block is rewritten.
pub const LOG_BLOCK_BYTES: u64 = 4096;
/// The segment header occupies the first block of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = LOG_BLOCK_BYTES;
/// Default segment size (`STARCITE_SEGMENT_BYTES`). 64 MiB: large enough that rollover
/// (and the background pre-zeroing of the next file) is rare, small enough to pre-zero in
/// well under a second.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest accepted `STARCITE_SEGMENT_BYTES`.
pub const SEGMENT_BYTES_MIN: u64 = 4 * 1024 * 1024;
/// Largest accepted `STARCITE_SEGMENT_BYTES` (offsets inside a segment are u32).
pub const SEGMENT_BYTES_MAX: u64 = 2 * 1024 * 1024 * 1024;
/// Pre-zeroing writes this much per direct write.
pub const SEGMENT_ZERO_FILL_CHUNK_BYTES: usize = 1024 * 1024;
/// Recovery scans segments through windows of this size.
pub const RECOVERY_READ_WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// Reads of several records coalesce into one I/O while they stay within this span.
pub const READ_COALESCE_BYTES: u64 = 1024 * 1024;
/// Start preparing (pre-zeroing) the next segment once the active one is this full (percent).
pub const SEGMENT_PREPARE_AT_PERCENT: u64 = 50;

// ---- compile-time relationships ---------------------------------------------------

const _: () = assert!(LOG_BLOCK_BYTES as usize % FRAME_ALIGN_BYTES == 0);
// Any record fits in an empty segment.
const _: () = assert!(SEGMENT_BYTES_MIN >= SEGMENT_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX as u64 + 64);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= SEGMENT_BYTES_MIN && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_DEFAULT % LOG_BLOCK_BYTES == 0);
const _: () = assert!(SEGMENT_ZERO_FILL_CHUNK_BYTES as u64 % LOG_BLOCK_BYTES == 0);
