//! The per-core log engine: segment files written through io_uring (glommio DMA files),
//! group commit, CRC-framed records, recovery.
//!
//! One engine per core, shared by every Raft group hosted on that core, under
//! `STARCITE_RAFT_DATA_DIR/<core>/`.
//!
//! Rules callers can rely on (they mirror openraft's storage contract):
//! - [`engine::LogEngine::submit`] assigns each record its [`Loc`] synchronously and in
//!   submission order; the durability callback runs only after the record's bytes and every
//!   record submitted before it have been written *and* fdatasync'd;
//! - an fdatasync or write error is fatal for the engine: every pending and later
//!   submission fails; nothing is retried (a retried fsync can report success for data the
//!   kernel already dropped); the durable position never moves past what was written
//!   *and* synced, so a failed batch is never readable;
//! - every file operation goes through the [`file::FileSystem`] seam, so tests inject
//!   faults (tests/log_faults.rs) where production uses glommio's DMA files.
//! - [`engine::LogEngine::read`] only serves durable records, verifies the CRC again and
//!   hands out the payload in place (8-aligned, ready for rkyv access).
//!
//! Design notes: writes overwrite pre-zeroed segments in whole 4 KiB blocks (the last,
//! partial block is kept in memory and rewritten by the next batch) because growing a file
//! with direct I/O costs a kernel tick here; see `docs/FORMAT.md` for the bytes.

pub mod engine;
pub mod error;
pub mod file;
pub mod frame;
pub mod recovery;
pub mod segment;
pub mod spill;
pub mod vouch;

pub use engine::{Durable, LogEngine, LogStats, RecordBuf};
pub use error::{LogError, Rejected};
pub use file::{DmaFs, FileSystem};

/// Called for every record recovery finds, in log order; an `Err` stops startup (reported
/// as corruption at that record).
pub type RecordVisitor<'a> = dyn FnMut(Loc, &[u8]) -> Result<(), Rejected> + 'a;

/// Where a record lives: segment sequence number, frame offset in it, payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    pub segment: u32,
    pub offset: u32,
    pub payload_len: u32,
}

/// 12 bytes in a spilled page: segment, offset, payload length (little-endian u32s).
impl spill::PageItem for Loc {
    const BYTES: usize = 12;
    fn write_to(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.segment.to_le_bytes());
        out[4..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
    }
    fn read_from(b: &[u8]) -> Self {
        let u = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Loc { segment: u(0), offset: u(4), payload_len: u(8) }
    }
}

impl Loc {
    /// Offset just past this record's frame.
    pub fn end(&self) -> u64 {
        self.offset as u64 + frame::frame_len(self.payload_len as usize) as u64
    }
}
