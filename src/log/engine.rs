//! The engine: record placement, the group-commit writer, and reads.
//!
//! Group commit is one loop ([`writer_loop`]): take every record submitted since the last
//! batch (from every shard of the core), write them in whole blocks, fdatasync once per
//! touched segment, then run every waiter's callback. Submissions that arrive while a
//! write+fdatasync is in flight simply join the next batch.
//!
//! Invariants (asserted): records are placed contiguously in submission order; a batch
//! always starts exactly where the durable data ends; the durable position never regresses.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use futures::future::{FutureExt, LocalBoxFuture, Shared};

use super::error::LogError;
use super::file::{DmaFs, FileSystem, ReadBuf, SegmentFile};
use super::frame::{self, decode, Decoded};
use super::recovery::scan_segment;
use super::segment::{self, check_header, create_segment, segment_path, zero_fill};
use super::vouch::{VouchPayload, VouchTable};
use super::{Loc, RecordVisitor};
use crate::limits::{LOG_BLOCK_BYTES, READ_COALESCE_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_PREPARE_AT_PERCENT};
use crate::metrics::{LogCounters, LogHistograms};

/// Called once the record (and all before it) is durable, or with the fatal error.
pub type Durable = Box<dyn FnOnce(Result<(), LogError>)>;

/// Per-core engine metrics, read by the metrics scrape (names and help: metrics/mod.rs).
#[derive(Debug, Default)]
pub struct LogStats {
    pub counters: LogCounters,
    pub histograms: RefCell<LogHistograms>,
}

/// Bytes of consecutive frames destined for one segment, starting at `start`.
struct Chunk {
    segment: u32,
    start: u64,
    bytes: Vec<u8>,
}

type PreparedSegment = Shared<LocalBoxFuture<'static, Result<Rc<dyn SegmentFile>, Rc<LogError>>>>;

struct State {
    /// Where the next submitted record goes.
    assign_segment: u32,
    assign_pos: u64,
    pending: Vec<Chunk>,
    pending_records: u64,
    waiters: Vec<Durable>,
    /// Where written data ends (the writer's cursor): the next batch starts here.
    written_segment: u32,
    written_pos: u64,
    /// Reads are served below (durable_segment, durable_pos): it advances only after every
    /// write *and* fdatasync of a batch succeeded, so a failed or short write, or a failed
    /// fdatasync, never makes its bytes readable.
    durable_segment: u32,
    durable_pos: u64,
    /// Bytes of the partially filled last block of the written segment, starting at
    /// `last_block_start`; rewritten (with the new records appended) by the next batch.
    last_block_start: u64,
    last_block: Vec<u8>,
    poisoned: Option<String>,
    shutdown: bool,
    /// Segment being pre-zeroed ahead of the writer.
    preparing: Option<(u32, PreparedSegment)>,
}

/// One core's log.
pub struct LogEngine {
    /// The engine itself, for the spare's preparation to adopt the file it created.
    me: Weak<LogEngine>,
    dir: PathBuf,
    segment_bytes: u64,
    fs: Rc<dyn FileSystem>,
    files: RefCell<BTreeMap<u32, Rc<dyn SegmentFile>>>,
    /// Size of each existing segment (old segments keep the size they were created with).
    sizes: RefCell<BTreeMap<u32, u64>>,
    state: RefCell<State>,
    writer_waker: Cell<Option<Waker>>,
    /// Written after each batch's data is durable and before its waiters run (vouch.rs).
    vouch: RefCell<Option<Rc<VouchTable>>>,
    pub stats: LogStats,
}

/// A record read back from disk, payload accessible in place.
pub struct RecordBuf {
    buf: ReadBuf,
    start: usize,
    len: usize,
}

impl RecordBuf {
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

fn align_down(v: u64) -> u64 {
    v - v % LOG_BLOCK_BYTES
}

fn align_up(v: u64) -> u64 {
    v.div_ceil(LOG_BLOCK_BYTES) * LOG_BLOCK_BYTES
}

impl LogEngine {
    /// Open (or create) the log in `dir` on glommio DMA files, calling `visit` for every
    /// recovered record in log order, then start the writer task on the current executor.
    pub async fn open(dir: &Path, segment_bytes: u64, visit: &mut RecordVisitor<'_>) -> Result<Rc<LogEngine>, LogError> {
        LogEngine::open_with(Rc::new(DmaFs), dir, segment_bytes, visit).await
    }

    /// [`Self::open`] over any [`FileSystem`] (tests inject faults through it).
    pub async fn open_with(
        fs: Rc<dyn FileSystem>,
        dir: &Path,
        segment_bytes: u64,
        visit: &mut RecordVisitor<'_>,
    ) -> Result<Rc<LogEngine>, LogError> {
        assert_eq!(segment_bytes % LOG_BLOCK_BYTES, 0, "segment size is block-aligned");
        std::fs::create_dir_all(dir).map_err(|e| LogError::io("create directory", dir, 0, e))?;
        segment::remove_temp_files(dir).map_err(|e| LogError::io("remove temp files in", dir, 0, e))?;
        segment::probe_device(dir).await.map_err(|e| LogError::io("probe the device of", dir, 0, e))?;
        let seqs = segment::list_segments(dir).map_err(|e| LogError::io("list", dir, 0, e))?;
        let mut files: BTreeMap<u32, Rc<dyn SegmentFile>> = BTreeMap::new();
        let mut sizes = BTreeMap::new();
        let mut end = (1u32, SEGMENT_HEADER_BYTES);
        if seqs.is_empty() {
            files.insert(1, create_segment(fs.as_ref(), dir, 1, segment_bytes).await?);
            sizes.insert(1, segment_bytes);
        }
        // The next segment is created ahead of the writer, so the last *file* may be an
        // empty spare: the active segment (where a torn tail may be) is the last one with
        // data. It and the spares after it get the torn-tail tolerance; all before it
        // must be intact.
        let mut opened = Vec::with_capacity(seqs.len());
        for seq in &seqs {
            let path = segment_path(dir, *seq);
            let seq32 = u32::try_from(*seq).map_err(|_| LogError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "segment number out of range".into(),
            })?;
            let file = fs.open(&path).await.map_err(|e| LogError::io("open", &path, 0, e))?;
            let head = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await.map_err(|e| LogError::io("read header", &path, 0, e))?;
            let size = check_header(&path, &head, *seq)?;
            let first = file
                .read_at(SEGMENT_HEADER_BYTES, frame::FRAME_HEADER_BYTES)
                .await
                .map_err(|e| LogError::io("read", &path, SEGMENT_HEADER_BYTES, e))?;
            let has_data = first.iter().any(|b| *b != 0);
            opened.push((seq32, path, file, size, has_data));
        }
        let active = opened.iter().rposition(|(.., has_data)| *has_data).unwrap_or(0);
        for (i, (seq32, path, file, size, _)) in opened.into_iter().enumerate() {
            let tolerant = i >= active;
            let scan = scan_segment(file.as_ref(), &path, seq32, size, tolerant, visit).await?;
            if tolerant && scan.needs_repair {
                repair_tail(file.as_ref(), &path, scan.data_end, size).await?;
            }
            if i == active {
                end = (seq32, scan.data_end);
            } else if i > active {
                assert_eq!(scan.data_end, SEGMENT_HEADER_BYTES, "a spare segment holds no records");
            }
            files.insert(seq32, file);
            sizes.insert(seq32, size);
        }
        let (seg, pos) = end;
        let last_block_start = align_down(pos);
        let last_block = if pos > last_block_start {
            let file = files.get(&seg).expect("last segment open").clone();
            let block = file
                .read_at(last_block_start, (pos - last_block_start) as usize)
                .await
                .map_err(|e| LogError::io("read last block", segment_path(dir, seg as u64), last_block_start, e))?;
            block.to_vec()
        } else {
            Vec::new()
        };
        let engine = Rc::new_cyclic(|me| LogEngine {
            me: me.clone(),
            dir: dir.to_path_buf(),
            segment_bytes,
            fs,
            files: RefCell::new(files),
            sizes: RefCell::new(sizes),
            state: RefCell::new(State {
                assign_segment: seg,
                assign_pos: pos,
                pending: Vec::new(),
                pending_records: 0,
                waiters: Vec::new(),
                written_segment: seg,
                written_pos: pos,
                durable_segment: seg,
                durable_pos: pos,
                last_block_start,
                last_block,
                poisoned: None,
                shutdown: false,
                preparing: None,
            }),
            writer_waker: Cell::new(None),
            vouch: RefCell::new(None),
            stats: LogStats::default(),
        });
        engine.stats.counters.segments.set(engine.files.borrow().len() as u64);
        glommio::spawn_local(writer_loop(engine.clone())).detach();
        Ok(engine)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Open this log's vouch table (`slots` slots, see vouch.rs) and return what it held;
    /// from now on every batch writes the slots staged with it (via [`Self::vouch`]) after
    /// its data is durable and before its waiters run.
    pub async fn open_vouch(&self, slots: u32) -> Result<BTreeMap<u32, VouchPayload>, LogError> {
        let (table, found) = VouchTable::open(self.fs.as_ref(), &self.dir, slots).await?;
        *self.vouch.borrow_mut() = Some(Rc::new(table));
        Ok(found)
    }

    /// Whether this log keeps a vouch table (callers skip building slots when not).
    pub fn vouches(&self) -> bool {
        self.vouch.borrow().is_some()
    }

    /// Stage `payload` for `slot` with the batch being gathered: call it right after the
    /// `submit` whose records it describes, in the same turn of the executor. A no-op
    /// without a vouch table.
    pub fn vouch(&self, slot: u32, payload: &VouchPayload) {
        if let Some(table) = self.vouch.borrow().as_ref() {
            table.set(slot, payload);
        }
    }

    /// The engine failed a write or fdatasync and accepts nothing more.
    pub fn poisoned(&self) -> Option<String> {
        self.state.borrow().poisoned.clone()
    }

    /// Place `payloads` at the end of the log and return their locations; `on_durable`
    /// runs once all of them are durable. Records are readable with [`Self::read`] only
    /// after that.
    pub fn submit<P: AsRef<[u8]>>(&self, payloads: &[P], on_durable: Durable) -> Result<Vec<Loc>, LogError> {
        self.place(payloads, Some(on_durable))
    }

    /// Place `payloads` without asking for a write: they go out with the next batch that
    /// someone waits for (and become durable with it), never in a batch of their own.
    /// For bookkeeping whose loss on a crash is harmless (the committed mark: losing it
    /// only means openraft re-commits a few entries after restart), so an idle shard's
    /// commit does not cost a second fdatasync.
    pub fn submit_lazy<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Vec<Loc>, LogError> {
        self.place(payloads, None)
    }

    fn place<P: AsRef<[u8]>>(&self, payloads: &[P], on_durable: Option<Durable>) -> Result<Vec<Loc>, LogError> {
        let mut locs = Vec::with_capacity(payloads.len());
        {
            let mut st = self.state.borrow_mut();
            if let Some(why) = &st.poisoned {
                // The caller gets the error here; `on_durable` is dropped unrun.
                return Err(LogError::Stopped { reason: why.clone() });
            }
            for payload in payloads {
                let payload = payload.as_ref();
                let flen = frame::frame_len(payload.len()) as u64;
                let size = self.segment_size(st.assign_segment);
                if st.assign_pos + flen > size {
                    st.assign_segment += 1;
                    st.assign_pos = SEGMENT_HEADER_BYTES;
                }
                let (segment, start) = (st.assign_segment, st.assign_pos);
                let chunk = match st.pending.last_mut() {
                    Some(c) if c.segment == segment => c,
                    _ => {
                        st.pending.push(Chunk { segment, start, bytes: Vec::new() });
                        st.pending.last_mut().expect("just pushed")
                    }
                };
                assert_eq!(chunk.start + chunk.bytes.len() as u64, start, "records are contiguous");
                frame::encode_into(&mut chunk.bytes, payload);
                locs.push(Loc { segment, offset: start as u32, payload_len: payload.len() as u32 });
                st.assign_pos += flen;
                st.pending_records += 1;
            }
            let size = self.segment_size(st.assign_segment);
            if st.assign_pos * 100 >= size * SEGMENT_PREPARE_AT_PERCENT {
                let next = st.assign_segment + 1;
                self.start_preparing(&mut st, next);
            }
            match on_durable {
                Some(callback) => st.waiters.push(callback),
                None => return Ok(locs),
            }
        }
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
        Ok(locs)
    }

    fn segment_size(&self, segment: u32) -> u64 {
        self.sizes.borrow().get(&segment).copied().unwrap_or(self.segment_bytes)
    }

    fn start_preparing(&self, st: &mut State, segment: u32) {
        if self.files.borrow().contains_key(&segment) {
            return;
        }
        if matches!(&st.preparing, Some((s, _)) if *s == segment) {
            return;
        }
        let dir = self.dir.clone();
        let size = self.segment_bytes;
        let fs = self.fs.clone();
        let me = self.me.clone();
        let fut: LocalBoxFuture<'static, Result<Rc<dyn SegmentFile>, Rc<LogError>>> = async move {
            let file = create_segment(fs.as_ref(), &dir, segment as u64, size).await.map_err(Rc::new)?;
            // The file exists from here on: the engine owns it (and counts it) now, as it
            // does a spare found at recovery, not only once the writer reaches it.
            if let Some(engine) = me.upgrade() {
                engine.adopt(segment, file.clone(), size);
            }
            Ok(file)
        }
        .boxed_local();
        let shared = fut.shared();
        // Drive it in the background so it is ready before the writer needs it.
        glommio::spawn_local(shared.clone().map(|_| ())).detach();
        st.preparing = Some((segment, shared));
    }

    async fn file_for_write(&self, segment: u32) -> Result<Rc<dyn SegmentFile>, LogError> {
        if let Some(f) = self.files.borrow().get(&segment) {
            return Ok(f.clone());
        }
        let prep = {
            let mut st = self.state.borrow_mut();
            self.start_preparing(&mut st, segment);
            st.preparing.as_ref().expect("preparing").1.clone()
        };
        // The preparation is shared (a cloneable future), so its error is too: restate it.
        let file = prep.await.map_err(|e| LogError::io("prepare", self.path_of(segment), 0, io::Error::other(e.to_string())))?;
        self.adopt(segment, file.clone(), self.segment_bytes);
        Ok(file)
    }

    /// Take a newly created segment file into the engine's set (idempotent), so that
    /// `starcite_log_segments` counts every segment file on disk, spares included.
    fn adopt(&self, segment: u32, file: Rc<dyn SegmentFile>, size: u64) {
        self.files.borrow_mut().entry(segment).or_insert(file);
        self.sizes.borrow_mut().entry(segment).or_insert(size);
        self.stats.counters.segments.set(self.files.borrow().len() as u64);
    }

    /// Write and fdatasync everything placed so far, lazy records included; resolves once
    /// that is durable or the engine has stopped (shutdown uses it as its last write).
    pub async fn flush(&self) {
        let (tx, rx) = futures::channel::oneshot::channel();
        if self.place::<&[u8]>(&[], Some(Box::new(move |r| drop(tx.send(r))))).is_ok() {
            let _ = rx.await;
        }
    }

    /// Stop the writer after it finishes what is pending (tests use this to reopen a dir).
    pub fn shutdown(&self) {
        self.state.borrow_mut().shutdown = true;
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// `(oldest, writing)`: the oldest segment file, and the segment the durable end is in.
    /// Segments before `writing` are sealed: nothing more is written to them.
    pub fn segment_span(&self) -> (u32, u32) {
        let oldest = self.files.borrow().keys().next().copied().unwrap_or(1);
        (oldest, self.state.borrow().durable_segment)
    }

    /// Delete every segment before `keep_from` (never the one being written or later),
    /// oldest first, each unlink made durable (directory fsync) before the next, so a crash
    /// leaves a suffix of the log, never a hole. The caller guarantees that nothing in them
    /// is needed any more: every shard purged past them and restated its vote, purge point
    /// and committed mark after them (raft/log_store.rs `ShardLog::checkpoint`). Reads
    /// already in flight keep their open file. Returns how many segments were deleted.
    pub async fn delete_segments_before(&self, keep_from: u32) -> Result<u64, LogError> {
        let keep_from = keep_from.min(self.state.borrow().durable_segment);
        let victims: Vec<u32> = self.files.borrow().keys().copied().filter(|s| *s < keep_from).collect();
        for segment in &victims {
            let path = self.path_of(*segment);
            self.files.borrow_mut().remove(segment);
            self.sizes.borrow_mut().remove(segment);
            self.stats.counters.segments.set(self.files.borrow().len() as u64);
            // Off the executor (unlink + directory fsync); the next waits for this one.
            segment::delete_durably(&self.dir, &path).await.map_err(|e| LogError::io("delete", &path, 0, e))?;
            self.stats.counters.segments_deleted.inc();
            tracing::debug!(segment, "deleted a log segment every shard had purged");
        }
        Ok(victims.len() as u64)
    }

    /// The durable end of the log: (segment, offset just past the last synced record).
    pub fn durable_position(&self) -> (u32, u64) {
        let st = self.state.borrow();
        (st.durable_segment, st.durable_pos)
    }

    fn path_of(&self, segment: u32) -> PathBuf {
        segment_path(&self.dir, segment as u64)
    }

    fn check_durable(&self, loc: Loc) -> Result<(), LogError> {
        let st = self.state.borrow();
        let durable = loc.segment < st.durable_segment || (loc.segment == st.durable_segment && loc.end() <= st.durable_pos);
        if durable {
            Ok(())
        } else {
            let not_yet = io::Error::new(io::ErrorKind::InvalidInput, "the record is not durable");
            Err(LogError::io("read", self.path_of(loc.segment), loc.offset as u64, not_yet))
        }
    }

    fn file(&self, segment: u32) -> Result<Rc<dyn SegmentFile>, LogError> {
        self.files
            .borrow()
            .get(&segment)
            .cloned()
            .ok_or_else(|| LogError::io("read", self.path_of(segment), 0, io::Error::new(io::ErrorKind::NotFound, "segment is not open")))
    }

    fn checked(&self, buf: ReadBuf, loc: Loc) -> Result<RecordBuf, LogError> {
        match decode(&buf) {
            Decoded::Record { payload, .. } if payload.len() == loc.payload_len as usize => {
                Ok(RecordBuf { start: frame::FRAME_HEADER_BYTES, len: payload.len(), buf })
            }
            other => Err(LogError::Corrupt { path: self.path_of(loc.segment), offset: loc.offset as u64, reason: format!("{other:?}") }),
        }
    }

    /// Read one durable record, verifying its frame.
    pub async fn read(&self, loc: Loc) -> Result<RecordBuf, LogError> {
        self.check_durable(loc)?;
        let file = self.file(loc.segment)?;
        let len = frame::frame_len(loc.payload_len as usize);
        let offset = loc.offset as u64;
        let buf = file.read_at(offset, len).await.map_err(|e| LogError::io("read", self.path_of(loc.segment), offset, e))?;
        if buf.len() < len {
            let short = io::Error::new(io::ErrorKind::UnexpectedEof, "short read");
            return Err(LogError::io("read", self.path_of(loc.segment), offset, short));
        }
        self.checked(buf, loc)
    }

    /// Read several durable records; neighbours in the same segment share one I/O.
    pub async fn read_many(&self, locs: &[Loc]) -> Result<Vec<RecordBuf>, LogError> {
        let mut out = Vec::with_capacity(locs.len());
        let mut i = 0;
        while i < locs.len() {
            let first = locs[i];
            self.check_durable(first)?;
            let mut j = i + 1;
            let mut end = first.end();
            while j < locs.len() {
                let l = locs[j];
                if l.segment != first.segment
                    || (l.offset as u64) < first.offset as u64
                    || l.end() - first.offset as u64 > READ_COALESCE_BYTES
                {
                    break;
                }
                end = end.max(l.end());
                j += 1;
            }
            self.check_durable(locs[j - 1])?;
            let file = self.file(first.segment)?;
            let span = (end - first.offset as u64) as usize;
            let offset = first.offset as u64;
            let path = || self.path_of(first.segment);
            let buf = file.read_at(offset, span).await.map_err(|e| LogError::io("read", path(), offset, e))?;
            if buf.len() < span {
                return Err(LogError::io("read", path(), offset, io::Error::new(io::ErrorKind::UnexpectedEof, "short read")));
            }
            for loc in &locs[i..j] {
                let rel = (loc.offset - first.offset) as usize;
                let len = frame::frame_len(loc.payload_len as usize);
                // In range: every loc of the group ends within `span` (computed above).
                let piece = buf.slice(rel, len).ok_or_else(|| LogError::Corrupt {
                    path: path(),
                    offset: loc.offset as u64,
                    reason: "record outside its read span".into(),
                })?;
                out.push(self.checked(piece, *loc)?);
            }
            i = j;
        }
        Ok(out)
    }
}

/// After recovery, make the last segment's bytes after `data_end` zero again (the torn
/// tail or the cut-off part of the file), keeping the good prefix of the partial block.
async fn repair_tail(file: &dyn SegmentFile, path: &Path, data_end: u64, size: u64) -> Result<(), LogError> {
    let block_start = align_down(data_end);
    let keep = (data_end - block_start) as usize;
    let mut block = vec![0u8; LOG_BLOCK_BYTES as usize];
    if keep > 0 {
        let old = file.read_at(block_start, keep).await.map_err(|e| LogError::io("read", path, block_start, e))?;
        // The file may end inside the block's padding (a cut file): missing bytes are zeros.
        let have = keep.min(old.len());
        block[..have].copy_from_slice(&old[..have]);
    }
    file.write_at(block_start, &block).await.map_err(|e| LogError::io("repair write", path, block_start, e))?;
    zero_fill(file, path, block_start + LOG_BLOCK_BYTES, size.max(block_start + LOG_BLOCK_BYTES)).await
}

async fn wait_for_work(engine: &LogEngine) -> bool {
    poll_fn(|cx| {
        let st = engine.state.borrow();
        if !st.waiters.is_empty() {
            return Poll::Ready(true);
        }
        if st.shutdown {
            return Poll::Ready(false);
        }
        engine.writer_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    })
    .await
}

async fn writer_loop(engine: Rc<LogEngine>) {
    while wait_for_work(&engine).await {
        let (chunks, waiters, records) = {
            let mut st = engine.state.borrow_mut();
            (std::mem::take(&mut st.pending), std::mem::take(&mut st.waiters), std::mem::take(&mut st.pending_records))
        };
        // Cut with the batch: slots staged from now on describe records of the next one.
        let table = engine.vouch.borrow().clone();
        let vouched = table.as_ref().map(|t| t.cut()).unwrap_or_default();
        let committed = match write_batch(&engine, chunks).await {
            Ok(bytes) if !vouched.is_empty() => {
                let started = Instant::now();
                let table = table.as_ref().expect("blocks come from a table");
                let written = table.write(&vouched).await.map(|_| bytes);
                engine.stats.counters.fsyncs.inc();
                engine.stats.histograms.borrow_mut().fsync_micros.observe(started.elapsed().as_micros() as f64);
                written
            }
            other => other,
        };
        match committed {
            Ok(bytes) => {
                let s = &engine.stats;
                s.counters.records.add(records);
                s.counters.bytes_written.add(bytes);
                s.counters.batches.inc();
                s.histograms.borrow_mut().batch_records.observe(records as f64);
                for w in waiters {
                    w(Ok(()));
                }
            }
            Err(e) => {
                // Fatal and never retried: a retried fdatasync can report success for data
                // the kernel already dropped (the "fsyncgate" lesson).
                let why = e.to_string();
                tracing::error!(dir = %engine.dir.display(), "log engine stopped, acknowledging nothing more: {why}");
                engine.state.borrow_mut().poisoned = Some(why.clone());
                for w in waiters {
                    w(Err(LogError::Stopped { reason: why.clone() }));
                }
                // Everything submitted from now on fails in `submit`; fail what raced in.
                loop {
                    let late = std::mem::take(&mut engine.state.borrow_mut().waiters);
                    if late.is_empty() {
                        break;
                    }
                    for w in late {
                        w(Err(LogError::Stopped { reason: why.clone() }));
                    }
                }
                return;
            }
        }
    }
}

/// Write the chunks in order in whole blocks, fdatasync each touched segment once, then
/// advance the durable position to the end of what was written. Returns bytes written.
async fn write_batch(engine: &LogEngine, chunks: Vec<Chunk>) -> Result<u64, LogError> {
    let mut touched: Vec<(u32, Rc<dyn SegmentFile>)> = Vec::new();
    let mut written = 0u64;
    for chunk in chunks {
        let path = engine.path_of(chunk.segment);
        let file =
            engine.file_for_write(chunk.segment).await.map_err(|reason| LogError::io("prepare", &path, 0, io::Error::other(reason)))?;
        let (block_start, mut buf_bytes) = {
            let mut st = engine.state.borrow_mut();
            if chunk.segment != st.written_segment {
                assert!(chunk.segment > st.written_segment, "segments only move forward");
                st.written_segment = chunk.segment;
                st.written_pos = SEGMENT_HEADER_BYTES;
                st.last_block_start = SEGMENT_HEADER_BYTES;
                st.last_block.clear();
            }
            assert_eq!(chunk.start, st.written_pos, "a batch starts where written data ends");
            assert_eq!(st.last_block_start + st.last_block.len() as u64, st.written_pos);
            let mut bytes = std::mem::take(&mut st.last_block);
            bytes.extend_from_slice(&chunk.bytes);
            (st.last_block_start, bytes)
        };
        let end = block_start + buf_bytes.len() as u64;
        let padded = (align_up(end) - block_start) as usize;
        let n = file.write_at(block_start, &buf_bytes).await.map_err(|e| LogError::io("write", &path, block_start, e))?;
        if n != padded {
            let short = io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {padded} bytes"));
            return Err(LogError::io("write", &path, block_start, short));
        }
        written += padded as u64;
        // Keep the new partial block for the next batch.
        let new_block_start = align_down(end);
        let keep_from = (new_block_start - block_start) as usize;
        buf_bytes.drain(..keep_from);
        {
            let mut st = engine.state.borrow_mut();
            st.written_pos = end;
            st.last_block_start = new_block_start;
            st.last_block = buf_bytes;
        }
        if !touched.iter().any(|(s, _)| *s == chunk.segment) {
            touched.push((chunk.segment, file));
        }
    }
    for (segment, file) in &touched {
        let started = Instant::now();
        file.fdatasync().await.map_err(|e| LogError::io("fdatasync", engine.path_of(*segment), 0, e))?;
        engine.stats.counters.fsyncs.inc();
        engine.stats.histograms.borrow_mut().fsync_micros.observe(started.elapsed().as_micros() as f64);
    }
    let mut st = engine.state.borrow_mut();
    let (segment, pos) = (st.written_segment, st.written_pos);
    assert!((segment, pos) >= (st.durable_segment, st.durable_pos), "durable position never regresses");
    st.durable_segment = segment;
    st.durable_pos = pos;
    Ok(written)
}
