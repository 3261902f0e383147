//! The vouch table: per slot (per shard), the last state this node acknowledged, kept in a
//! file apart from the segments (`<core dir>/vouch.tbl`), so a log that lost its tail or its
//! newest segment while the node was down is *known* to be behind what it acknowledged
//! (docs/ARCHITECTURE.md §3b; issue #10).
//!
//! Write rule (the engine's writer loop): the slots staged with a batch are written and
//! fdatasync'd *after* that batch's segment data is durable and *before* its waiters run.
//! Hence, without outside damage, the table never claims more than the log holds (a
//! crash between the two fdatasyncs leaves the table one batch behind, never ahead), and
//! every acknowledgement is covered by the table.
//!
//! Layout: the file is `slots × 64` bytes rounded up to whole 4 KiB blocks, created
//! zero-filled (tmp file, fdatasync, rename, directory fsync). Slot `i` is at `64 × i`:
//! `[payload: 48 bytes][slot: u32 LE][crc32 of payload+slot: u32 LE][8 zero bytes]`.
//! An all-zero slot is empty; a slot whose CRC fails (a torn write) reads as empty — the
//! table then protects less, never wrongly more. Only the blocks a batch changed are
//! rewritten, each a whole aligned block (one DMA write).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::LogError;
use super::file::{FileSystem, SegmentFile};
use super::segment::{sync_dir, zero_fill};
use crate::limits::LOG_BLOCK_BYTES;

/// Bytes of caller data per slot.
pub const VOUCH_PAYLOAD_BYTES: usize = 48;
const SLOT_BYTES: usize = 64;
const SLOTS_PER_BLOCK: usize = LOG_BLOCK_BYTES as usize / SLOT_BYTES;
pub const VOUCH_FILE: &str = "vouch.tbl";

pub type VouchPayload = [u8; VOUCH_PAYLOAD_BYTES];

/// The table of one core's log: the file and its in-memory image.
pub struct VouchTable {
    path: PathBuf,
    file: Rc<dyn SegmentFile>,
    slots: u32,
    image: RefCell<Vec<u8>>,
    /// Blocks changed since the last batch was cut.
    dirty: RefCell<BTreeMap<u64, ()>>,
}

fn encode_slot(slot: u32, payload: &VouchPayload) -> [u8; SLOT_BYTES] {
    let mut out = [0u8; SLOT_BYTES];
    out[..VOUCH_PAYLOAD_BYTES].copy_from_slice(payload);
    out[48..52].copy_from_slice(&slot.to_le_bytes());
    let crc = crc32fast::hash(&out[..52]);
    out[52..56].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The payload of a slot, None when empty or torn (and then whether it was torn).
fn decode_slot(slot: u32, bytes: &[u8]) -> (Option<VouchPayload>, bool) {
    if bytes.iter().all(|b| *b == 0) {
        return (None, false);
    }
    let crc = u32::from_le_bytes(bytes[52..56].try_into().expect("4 bytes"));
    let named = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes"));
    if crc32fast::hash(&bytes[..52]) != crc || named != slot {
        return (None, true);
    }
    (Some(bytes[..VOUCH_PAYLOAD_BYTES].try_into().expect("48 bytes")), false)
}

impl VouchTable {
    /// Open `<dir>/vouch.tbl` (created empty when missing, grown when `slots` grew) and
    /// return it with every non-empty slot's payload.
    pub async fn open(fs: &dyn FileSystem, dir: &Path, slots: u32) -> Result<(VouchTable, BTreeMap<u32, VouchPayload>), LogError> {
        let path = dir.join(VOUCH_FILE);
        let size = ((slots as u64 * SLOT_BYTES as u64).div_ceil(LOG_BLOCK_BYTES) * LOG_BLOCK_BYTES).max(LOG_BLOCK_BYTES);
        let file = if path.exists() {
            fs.open(&path).await.map_err(|e| LogError::io("open", &path, 0, e))?
        } else {
            let tmp = dir.join(format!("{VOUCH_FILE}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            let file = fs.create_new(&tmp).await.map_err(|e| LogError::io("create", &tmp, 0, e))?;
            zero_fill(file.as_ref(), &tmp, 0, size).await?;
            file.rename(&path).await.map_err(|e| LogError::io("rename", &tmp, 0, e))?;
            sync_dir(dir).await.map_err(|e| LogError::io("fsync directory", dir, 0, e))?;
            file
        };
        // The size through std, not the DMA file: glommio's statx of a relative path after a
        // rename fails with EBADF (tests/log_engine.rs, relative-directory regression test).
        let have = std::fs::metadata(&path).map_err(|e| LogError::io("stat", &path, 0, e))?.len();
        let bytes = file.read_at(0, have.min(size) as usize).await.map_err(|e| LogError::io("read", &path, 0, e))?;
        let mut image = vec![0u8; size as usize];
        image[..bytes.len()].copy_from_slice(&bytes);
        if have < size {
            // More shards than when the table was made, or a file cut short: zeros beyond.
            zero_fill(file.as_ref(), &path, have - have % LOG_BLOCK_BYTES, size).await?;
            let keep = (have - have % LOG_BLOCK_BYTES) as usize;
            image[keep..].fill(0);
        }
        let mut found = BTreeMap::new();
        let mut torn = 0;
        for slot in 0..slots {
            let at = slot as usize * SLOT_BYTES;
            match decode_slot(slot, &image[at..at + SLOT_BYTES]) {
                (Some(p), _) => {
                    found.insert(slot, p);
                }
                (None, true) => torn += 1,
                (None, false) => {}
            }
        }
        if torn > 0 {
            tracing::warn!(path = %path.display(), torn, "vouch table: slots with a bad checksum (a torn write) read as empty");
        }
        let table = VouchTable { path, file, slots, image: RefCell::new(image), dirty: RefCell::new(BTreeMap::new()) };
        Ok((table, found))
    }

    /// Stage `payload` for `slot`: it is written with the batch being gathered now.
    pub fn set(&self, slot: u32, payload: &VouchPayload) {
        assert!(slot < self.slots, "vouch slot {slot} out of range ({} slots)", self.slots);
        let at = slot as usize * SLOT_BYTES;
        let encoded = encode_slot(slot, payload);
        let mut image = self.image.borrow_mut();
        if image[at..at + SLOT_BYTES] != encoded {
            image[at..at + SLOT_BYTES].copy_from_slice(&encoded);
            self.dirty.borrow_mut().insert((slot as usize / SLOTS_PER_BLOCK) as u64, ());
        }
    }

    /// The changed blocks as they are now (the batch being cut), to write after its data.
    pub fn cut(&self) -> Vec<(u64, Vec<u8>)> {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        let image = self.image.borrow();
        let block = LOG_BLOCK_BYTES as usize;
        dirty.into_keys().map(|b| (b, image[b as usize * block..(b as usize + 1) * block].to_vec())).collect()
    }

    /// Write the blocks a batch cut, then fdatasync.
    pub async fn write(&self, blocks: &[(u64, Vec<u8>)]) -> Result<(), LogError> {
        for (block, bytes) in blocks {
            let pos = block * LOG_BLOCK_BYTES;
            let n = self.file.write_at(pos, bytes).await.map_err(|e| LogError::io("write", &self.path, pos, e))?;
            if n != bytes.len() {
                let short = io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {} bytes", bytes.len()));
                return Err(LogError::io("write", &self.path, pos, short));
            }
        }
        self.file.fdatasync().await.map_err(|e| LogError::io("fdatasync", &self.path, 0, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_damage_reads_as_empty() {
        let payload: VouchPayload = std::array::from_fn(|i| i as u8 + 1);
        let slot = encode_slot(9, &payload);
        assert_eq!(decode_slot(9, &slot), (Some(payload), false));
        assert_eq!(decode_slot(9, &[0u8; SLOT_BYTES]), (None, false));
        // Another slot's bytes in this place, or a flipped bit: torn, read as empty.
        assert_eq!(decode_slot(8, &slot), (None, true));
        let mut flipped = slot;
        flipped[3] ^= 0x10;
        assert_eq!(decode_slot(9, &flipped), (None, true));
    }
}
