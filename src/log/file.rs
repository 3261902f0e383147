//! The file seam under the log engine: the handful of segment-file operations the engine
//! performs ([`SegmentFile`], [`FileSystem`]), implemented over glommio's DMA files
//! ([`DmaFs`]) and, for tests, over those with faults injected on a plan ([`FaultyFs`]).
//!
//! The seam is narrow on purpose (raft-engine's `FileSystem` trait is the model): open,
//! create, positioned read and write, fdatasync, size, rename. Everything the engine
//! promises about durability is expressed through these calls, so a test can make any one
//! of them fail — a failed fdatasync, a short write, ENOSPC while a segment is
//! pre-allocated, a crash at any step of a segment rotation — and check the promise.
//!
//! Writes are whole blocks: `write_at` zero-pads `bytes` up to the next `LOG_BLOCK_BYTES`
//! multiple (O_DIRECT) and returns the padded length written.

use std::cell::{Cell, RefCell};
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures::future::{FutureExt, LocalBoxFuture};
use glommio::io::{DmaFile, OpenOptions, ReadResult};

use crate::limits::LOG_BLOCK_BYTES;

/// Bytes read from a segment, shared without copying (sub-slices included).
#[derive(Clone)]
pub struct ReadBuf {
    bytes: ReadResult,
    start: usize,
    len: usize,
}

impl ReadBuf {
    /// The bytes `[start, start + len)` of this buffer, sharing its memory.
    pub fn slice(&self, start: usize, len: usize) -> Option<ReadBuf> {
        let end = start.checked_add(len)?;
        (end <= self.len).then(|| ReadBuf { bytes: self.bytes.clone(), start: self.start + start, len })
    }
}

impl Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

/// One open segment file.
pub trait SegmentFile {
    /// Up to `len` bytes at `pos` (fewer at the end of the file).
    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<ReadBuf>>;
    /// Write `bytes`, zero-padded to whole blocks, at the block-aligned `pos`; returns the
    /// padded length written (less is a short write).
    fn write_at<'a>(&'a self, pos: u64, bytes: &'a [u8]) -> LocalBoxFuture<'a, io::Result<usize>>;
    /// Write `len` (block-aligned) zero bytes at `pos`; returns the length written.
    fn write_zeros(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<usize>>;
    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>>;
    /// Current length in bytes.
    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>>;
    /// Rename the file (the caller makes the directory entry durable).
    fn rename<'a>(&'a self, to: &'a Path) -> LocalBoxFuture<'a, io::Result<()>>;
}

/// Opens and creates segment files.
pub trait FileSystem {
    /// Open an existing file for reading and in-place writing.
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>>;
    /// Create a file that must not exist yet, for reading and writing.
    fn create_new<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>>;
}

fn padded(len: usize) -> usize {
    len.div_ceil(LOG_BLOCK_BYTES as usize) * LOG_BLOCK_BYTES as usize
}

/// The production file system: glommio DMA files (O_DIRECT, io_uring).
#[derive(Debug, Default, Clone, Copy)]
pub struct DmaFs;

struct Dma(DmaFile);

impl SegmentFile for Dma {
    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<ReadBuf>> {
        async move {
            let r = self.0.read_at(pos, len).await.map_err(io::Error::from)?;
            let len = r.len();
            Ok(ReadBuf { bytes: r, start: 0, len })
        }
        .boxed_local()
    }

    fn write_at<'a>(&'a self, pos: u64, bytes: &'a [u8]) -> LocalBoxFuture<'a, io::Result<usize>> {
        // Copy into an aligned DMA buffer now, so the future does not hold `bytes`.
        let mut buf = self.0.alloc_dma_buffer(padded(bytes.len()));
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buf.as_bytes_mut()[bytes.len()..].fill(0);
        async move { self.0.write_at(buf, pos).await.map_err(io::Error::from) }.boxed_local()
    }

    fn write_zeros(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<usize>> {
        let mut buf = self.0.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0);
        async move { self.0.write_at(buf, pos).await.map_err(io::Error::from) }.boxed_local()
    }

    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        async move { self.0.fdatasync().await.map_err(io::Error::from) }.boxed_local()
    }

    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>> {
        async move { self.0.file_size().await.map_err(io::Error::from) }.boxed_local()
    }

    fn rename<'a>(&'a self, to: &'a Path) -> LocalBoxFuture<'a, io::Result<()>> {
        async move { self.0.rename(to).await.map_err(io::Error::from) }.boxed_local()
    }
}

impl FileSystem for DmaFs {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            // Read+write: opening DMA files write-only makes glommio log a failed iopoll probe.
            let f = OpenOptions::new().read(true).write(true).dma_open(path).await.map_err(io::Error::from)?;
            Ok(Rc::new(Dma(f)) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }

    fn create_new<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            let f = OpenOptions::new().read(true).write(true).create_new(true).dma_open(path).await.map_err(io::Error::from)?;
            Ok(Rc::new(Dma(f)) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }
}

// ---- fault injection -----------------------------------------------------------------

/// The operations a [`FaultPlan`] counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOp {
    Open,
    Create,
    Read,
    Write,
    WriteZeros,
    Fdatasync,
    Size,
    Rename,
}

/// What happens to the operation a rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this errno (e.g. `libc::EIO`, `libc::ENOSPC`); nothing is done.
    Errno(i32),
    /// Write only the first block (writes only; other operations fail with EIO).
    ShortWrite,
    /// The process "dies" here: this operation and every later one fail with EIO without
    /// touching the disk, so the files hold exactly what was done before it.
    Crash,
}

/// When a fault fires: the `nth` (1-based) operation of kind `op`, or with `op: None`
/// the `nth` operation of any kind; `sticky` keeps failing every later matching call.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub op: Option<FileOp>,
    pub nth: u64,
    pub fault: Fault,
    pub sticky: bool,
}

/// A schedule of faults shared by every file of a [`FaultyFs`], and the record of what was
/// called (kind and path), so tests can assert what happened — e.g. that nothing was
/// retried after a failed fdatasync.
#[derive(Default)]
pub struct FaultPlan {
    rules: RefCell<Vec<Rule>>,
    counts: RefCell<Vec<(FileOp, u64)>>,
    total: Cell<u64>,
    crashed: Cell<bool>,
    /// Every operation attempted, in order, with the file it was for.
    pub calls: RefCell<Vec<(FileOp, PathBuf)>>,
}

impl FaultPlan {
    pub fn new(rules: Vec<Rule>) -> Rc<FaultPlan> {
        Rc::new(FaultPlan { rules: RefCell::new(rules), ..FaultPlan::default() })
    }

    /// Add a rule while the plan is in use.
    pub fn add(&self, rule: Rule) {
        self.rules.borrow_mut().push(rule);
    }

    /// Fail the next operation of kind `op` with `fault` (and, when `sticky`, every later one).
    pub fn fail_next(&self, op: FileOp, fault: Fault, sticky: bool) {
        self.add(Rule { op: Some(op), nth: self.count(op) + 1, fault, sticky });
    }

    /// How many operations of kind `op` were attempted.
    pub fn count(&self, op: FileOp) -> u64 {
        self.counts.borrow().iter().find(|(o, _)| *o == op).map_or(0, |(_, n)| *n)
    }

    /// Operations of every kind attempted so far.
    pub fn total(&self) -> u64 {
        self.total.get()
    }

    /// Whether a `Crash` fault fired.
    pub fn crashed(&self) -> bool {
        self.crashed.get()
    }

    /// Count the call and decide its fate: `None` = perform it.
    fn check(&self, op: FileOp, path: &Path) -> Option<Fault> {
        self.calls.borrow_mut().push((op, path.to_path_buf()));
        let total = self.total.get() + 1;
        self.total.set(total);
        let nth = {
            let mut counts = self.counts.borrow_mut();
            match counts.iter_mut().find(|(o, _)| *o == op) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((op, 1));
                    1
                }
            }
        };
        if self.crashed.get() {
            return Some(Fault::Crash);
        }
        let fired = self.rules.borrow().iter().find_map(|r| {
            let n = if r.op.is_some() { nth } else { total };
            let matches = r.op.is_none_or(|o| o == op) && (n == r.nth || (r.sticky && n > r.nth));
            matches.then_some(r.fault)
        });
        if fired == Some(Fault::Crash) {
            self.crashed.set(true);
        }
        fired
    }
}

fn injected(fault: Fault) -> io::Error {
    match fault {
        Fault::Errno(e) => io::Error::from_raw_os_error(e),
        Fault::ShortWrite | Fault::Crash => io::Error::from_raw_os_error(libc::EIO),
    }
}

/// [`DmaFs`] with the faults of a shared [`FaultPlan`].
pub struct FaultyFs {
    pub plan: Rc<FaultPlan>,
}

struct Faulty {
    inner: Rc<dyn SegmentFile>,
    path: RefCell<PathBuf>,
    plan: Rc<FaultPlan>,
}

impl Faulty {
    fn check(&self, op: FileOp) -> Option<Fault> {
        self.plan.check(op, &self.path.borrow())
    }
}

impl SegmentFile for Faulty {
    fn read_at(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<ReadBuf>> {
        match self.check(FileOp::Read) {
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => self.inner.read_at(pos, len),
        }
    }

    fn write_at<'a>(&'a self, pos: u64, bytes: &'a [u8]) -> LocalBoxFuture<'a, io::Result<usize>> {
        match self.check(FileOp::Write) {
            Some(Fault::ShortWrite) if bytes.len() > LOG_BLOCK_BYTES as usize => {
                self.inner.write_at(pos, &bytes[..LOG_BLOCK_BYTES as usize])
            }
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => self.inner.write_at(pos, bytes),
        }
    }

    fn write_zeros(&self, pos: u64, len: usize) -> LocalBoxFuture<'_, io::Result<usize>> {
        match self.check(FileOp::WriteZeros) {
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => self.inner.write_zeros(pos, len),
        }
    }

    fn fdatasync(&self) -> LocalBoxFuture<'_, io::Result<()>> {
        match self.check(FileOp::Fdatasync) {
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => self.inner.fdatasync(),
        }
    }

    fn size(&self) -> LocalBoxFuture<'_, io::Result<u64>> {
        match self.check(FileOp::Size) {
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => self.inner.size(),
        }
    }

    fn rename<'a>(&'a self, to: &'a Path) -> LocalBoxFuture<'a, io::Result<()>> {
        match self.check(FileOp::Rename) {
            Some(f) => futures::future::ready(Err(injected(f))).boxed_local(),
            None => async move {
                self.inner.rename(to).await?;
                *self.path.borrow_mut() = to.to_path_buf();
                Ok(())
            }
            .boxed_local(),
        }
    }
}

impl FileSystem for FaultyFs {
    fn open<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            if let Some(f) = self.plan.check(FileOp::Open, path) {
                return Err(injected(f));
            }
            let inner = DmaFs.open(path).await?;
            Ok(Rc::new(Faulty { inner, path: RefCell::new(path.to_path_buf()), plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }

    fn create_new<'a>(&'a self, path: &'a Path) -> LocalBoxFuture<'a, io::Result<Rc<dyn SegmentFile>>> {
        async move {
            if let Some(f) = self.plan.check(FileOp::Create, path) {
                return Err(injected(f));
            }
            let inner = DmaFs.create_new(path).await?;
            Ok(Rc::new(Faulty { inner, path: RefCell::new(path.to_path_buf()), plan: self.plan.clone() }) as Rc<dyn SegmentFile>)
        }
        .boxed_local()
    }
}
