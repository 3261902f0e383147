//! Every bound and default of the server, in one place, unit last in the name.
//!
//! Relationships between them are asserted at the bottom of this file at compile time,
//! so a change that breaks one fails the build instead of silently clamping.

// ---- log engine -------------------------------------------------------------------

/// Records start at multiples of this (keeps archived u64 fields naturally aligned).
pub const FRAME_ALIGN_BYTES: usize = 8;
/// Largest record payload the log accepts (a request body plus its envelope).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 3 * 1024 * 1024;
/// O_DIRECT block: writes go out in whole blocks, the last partial block is rewritten.
pub const LOG_BLOCK_BYTES: u64 = 4096;
/// The segment header occupies the first block of every segment file.
pub const SEGMENT_HEADER_BYTES: u64 = LOG_BLOCK_BYTES;
/// One page of a spilled index (`log/spill.rs`): each session's seq → position map and
/// each shard's entry locations keep only their newest, partly filled page in memory
/// (at most this many bytes per session and per shard) and write full pages to the
/// core's scratch file. 1 KiB = 128 positions or 85 entry locations per page.
pub const SPILL_PAGE_BYTES: usize = 1024;
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

// ---- sessions and reads ------------------------------------------------------------

/// Longest accepted session id, in bytes (ids are ASCII, so also characters).
pub const SESSION_ID_BYTES_MAX: usize = 128;

/// Number of random `[a-z0-9]` characters after `ses_` in generated session ids
/// (36^20 ≈ 2^103, so collisions are not a practical concern).
pub const SESSION_ID_GENERATED_RANDOM_CHARS: usize = 20;

/// Idempotency keys are remembered for at least this many most recent seqs of a
/// session; a key whose event seq is `<= last_seq - this` is forgotten. This
/// bounds per-session memory while giving clients a wide retry window.
pub const IDEMPOTENCY_KEYS_REMEMBERED_MIN: u64 = 10_000;

/// Deepest nesting of arrays and objects in a request body, the body object itself being
/// level 1 (so `payload`'s own members may nest this minus two more levels). Deeper valid
/// JSON is `400 invalid_event` naming this limit; it bounds the parser's and writers'
/// recursion (session/json.rs). 128 is what earlier builds accepted (serde_json's limit).
pub const JSON_NESTING_DEPTH_MAX: usize = 128;

/// Page size used when a read request gives no `limit`.
pub const PAGE_LIMIT_DEFAULT: usize = 100;

/// Largest page a read returns; larger requested limits are clamped to it.
pub const PAGE_LIMIT_MAX: usize = 1000;

/// Batch size used when a request gives no `batch_size`.
pub const BATCH_SIZE_DEFAULT: usize = 1;

/// Largest accepted `batch_size`; larger values are rejected, not clamped.
pub const BATCH_SIZE_MAX: usize = 1000;

// ---- HTTP -------------------------------------------------------------------------

/// Most bytes a request head (request line + header fields + the blank line)
/// may take. A peer that has not finished its head within this many bytes
/// gets 431; this also bounds how much the parser rescans per attempt.
pub const REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;

/// Most header fields in one request head (and, separately, most trailer
/// fields after a chunked body). More gets 431.
pub const REQUEST_HEADERS_MAX: usize = 64;

/// Most CR/LF bytes tolerated before a request line (clients may send a
/// stray CRLF after a body). Bounded because each empty line would make the
/// incremental parser re-run its head parse.
pub const REQUEST_LEADING_CRLF_BYTES_MAX: usize = 64;

/// Default most bytes of a request body, after de-chunking. More gets 413.
pub const BODY_BYTES_MAX_DEFAULT: usize = 1024 * 1024;

/// Most bytes of one chunk-size line (hex digits plus ignored chunk
/// extensions, without the CRLF). Extensions are not counted as body, so
/// without this bound a peer could stream an endless size line.
pub const CHUNK_LINE_BYTES_MAX: usize = 4 * 1024;

// ---- compile-time relationships ---------------------------------------------------

const _: () = assert!((LOG_BLOCK_BYTES as usize).is_multiple_of(FRAME_ALIGN_BYTES));
// Any record fits in an empty segment.
const _: () = assert!(SEGMENT_BYTES_MIN >= SEGMENT_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX as u64 + 64);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= SEGMENT_BYTES_MIN && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(LOG_BLOCK_BYTES));
const _: () = assert!((SEGMENT_ZERO_FILL_CHUNK_BYTES as u64).is_multiple_of(LOG_BLOCK_BYTES));

// ---- server defaults (configurable, see `config.rs`) --------------------------------

pub const PORT_DEFAULT: u16 = 4000;
pub const CLUSTER_PORT_DEFAULT: u16 = 4100;
pub const SHARDS_DEFAULT: u32 = 256;
pub const SHARDS_MAX: u32 = 65_536;
/// Events each session keeps in memory (`STARCITE_TAIL_KEEP`).
pub const TAIL_KEEP_DEFAULT: usize = 1000;
pub const TAIL_KEEP_MAX: usize = 1_000_000;
/// Largest accepted `STARCITE_MAX_BODY_BYTES`: a body must fit in one log record.
pub const BODY_BYTES_MAX_LIMIT: usize = 2 * 1024 * 1024;
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;
pub const TAIL_IDLE_TIMEOUT_MS_DEFAULT: u64 = 60_000;
pub const ARCHIVE_FLUSH_INTERVAL_MS_DEFAULT: u64 = 5_000;
pub const DB_POOL_SIZE_DEFAULT: u32 = 10;
pub const DNS_POLL_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Open client connections per core before new ones are refused (`STARCITE_MAX_CONNECTIONS_PER_CORE`).
pub const CONNECTIONS_PER_CORE_MAX_DEFAULT: usize = 20_000;
/// Time a client has to send a complete request head once it started one (408 after).
pub const REQUEST_HEAD_TIMEOUT_MS: u64 = 10_000;
/// Idle keep-alive connections are closed after this long without a request.
pub const KEEP_ALIVE_IDLE_TIMEOUT_MS: u64 = 120_000;
/// Pipelined requests one connection may have in flight at once (answered in order).
pub const PIPELINE_IN_FLIGHT_MAX: usize = 64;
/// Socket read size per syscall.
pub const CONNECTION_READ_BYTES: usize = 64 * 1024;
/// glommio io_uring buffer memory per executor (`STARCITE_IO_MEMORY_BYTES`): fits the
/// default 8 MiB `ulimit -l` with two executors when the process cannot raise it.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 2 * 1024 * 1024;
pub const IO_MEMORY_BYTES_MIN: usize = 512 * 1024;
/// Cross-core request channel depth (per pair of cores).
pub const MESH_CHANNEL_DEPTH: usize = 1024;
/// Events a tail fetches from the owner core per round trip.
pub const TAIL_FETCH_EVENTS_MAX: usize = 1000;
/// Rendered bytes a tail fetch stops after (bounds one tail's memory with big events).
pub const TAIL_FETCH_BYTES_MAX: usize = 1024 * 1024;
/// An events page stops early (fewer than `limit` events, `next_cursor` says where)
/// once its events reach this many bytes of JSON.
pub const PAGE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes an events page's body needs besides its events (`{"events":[`, `],"next_cursor":
/// …,"last_seq":…}` with two u64s); the events get `PAGE_BYTES_MAX` minus this.
pub const PAGE_ENVELOPE_BYTES: usize = 128;
/// WebSocket read buffer per tail: inbound frames are only control frames and ignored data.
pub const WS_READ_BUFFER_BYTES: usize = 4096;
/// Largest inbound WebSocket message/frame a tail accepts before closing the connection.
pub const WS_INBOUND_MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// SSE comment heartbeat period.
pub const SSE_HEARTBEAT_MS: u64 = 15_000;
/// SIGTERM/SIGINT: how long a node may take to drain (finish in-flight requests, end
/// tails, wait for the other cores) before it flushes its log and exits regardless.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// At startup, how long the main thread waits for every core's HTTP listener before it
/// prints the startup line anyway (a core that cannot listen exits the process first).
pub const LISTEN_WAIT_MS: u64 = 10_000;
/// How often each core checks the process-wide shutdown request (set by the signal thread,
/// which cannot wake a glommio executor directly).
pub const SHUTDOWN_POLL_MS: u64 = 20;
/// Default `STARCITE_STALL_THRESHOLD_MS`: a task that runs this long past its queue's
/// budget without yielding is an executor stall, logged and counted
/// (`starcite_executor_stalls_total`). Every connection of the core waits that long, so it
/// is the latency alarm of a thread-per-core server.
pub const EXECUTOR_STALL_THRESHOLD_MS: u64 = 25;
/// Raft timing (milliseconds). The election timeout bounds failover after a leader dies
/// (openraft's leader lease is the timeout's max: followers refuse votes for that long
/// after the last heartbeat, so a new leader is in place 1.5–3 s after a crash, within the
/// default request timeout). Heartbeats cost idle CPU per group (docs/ARCHITECTURE.md §1b:
/// 256 groups at 100 ms cost 10.5 % of a core per node idle, at 250 ms 7.3 %); a graceful
/// shutdown hands leadership over without waiting for any timeout.
pub const RAFT_HEARTBEAT_MS: u64 = 250;
pub const RAFT_ELECTION_TIMEOUT_MIN_MS: u64 = 750;
pub const RAFT_ELECTION_TIMEOUT_MAX_MS: u64 = 1_500;

const _: () = assert!(TAIL_FETCH_EVENTS_MAX >= PAGE_LIMIT_MAX);
const _: () = assert!(BODY_BYTES_MAX_LIMIT + 64 * 1024 <= RECORD_PAYLOAD_BYTES_MAX);
const _: () = assert!(BODY_BYTES_MAX_DEFAULT <= BODY_BYTES_MAX_LIMIT);
const _: () = assert!(IO_MEMORY_BYTES_DEFAULT >= IO_MEMORY_BYTES_MIN);

// ---- cluster transport ----------------------------------------------------------------

/// Largest frame a peer may send (kind byte and body): a frame header claiming more is
/// refused before anything is buffered for it. Room for an AppendEntries of several full
/// proposals.
pub const CLUSTER_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A peer must finish the handshake within this (milliseconds), or it is cut off.
pub const CLUSTER_HANDSHAKE_TIMEOUT_MS: u64 = 3_000;
/// Socket read size of a cluster connection.
pub const CLUSTER_READ_BYTES: usize = 64 * 1024;

/// Dialing a peer (TCP connect) gives up after this (milliseconds).
pub const CLUSTER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// After a failed dial, the next waits this long, doubling per failure up to the max
/// (milliseconds).
pub const CLUSTER_REDIAL_MIN_MS: u64 = 50;
pub const CLUSTER_REDIAL_MAX_MS: u64 = 2_000;
/// Raft entries per AppendEntries RPC (openraft's `max_payload_entries`): one entry is at
/// most one log record, so this many always fit one frame.
pub const RAFT_PAYLOAD_ENTRIES_MAX: u64 = 4;
/// Hops a request follows "not leader" answers before giving up (SPEC §4 forwarding).
pub const FORWARD_HOPS_MAX: usize = 4;
/// Between attempts to find a shard's leader (an election in progress), milliseconds.
pub const FORWARD_RETRY_MS: u64 = 50;
/// A tail served by another node's replica waits this long for new events per request
/// (its long poll), milliseconds.
pub const TAIL_REMOTE_WAIT_MS: u32 = 2_000;
/// How often each core reconciles its leaders' memberships and bootstraps groups
/// (milliseconds).
pub const MEMBERSHIP_CHECK_MS: u64 = 500;
/// A learner must catch up, and a voter change commit, within this (milliseconds).
pub const MEMBERSHIP_CHANGE_TIMEOUT_MS: u64 = 60_000;
/// On SIGTERM, a leader waits at most this long for its groups' leadership to move to
/// followers before it stops them (milliseconds).
pub const LEADERSHIP_HANDOFF_MS: u64 = 2_000;
/// On a graceful shutdown, proposals in flight get this long to be answered before the
/// Raft groups stop (milliseconds).
pub const PROPOSALS_SETTLE_MS: u64 = 2_000;
/// After telling its peers GOODBYE, a stopping node keeps answering what they sent before
/// it for this long, then exits (milliseconds; many round trips on any network).
pub const CLUSTER_GOODBYE_GRACE_MS: u64 = 300;
/// A port that a process which just exited held may stay busy a moment (io_uring tears
/// its requests, an accept among them, down asynchronously): binding retries this long
/// before reporting the port in use (milliseconds).
pub const PORT_RELEASE_WAIT_MS: u64 = 3_000;

const _: () = assert!(CLUSTER_FRAME_BYTES_MAX >= 4 * PROPOSAL_BYTES_MAX);
const _: () = assert!(RAFT_PAYLOAD_ENTRIES_MAX as usize * RECORD_PAYLOAD_BYTES_MAX + 64 * 1024 <= CLUSTER_FRAME_BYTES_MAX);
const _: () = assert!(PAGE_BYTES_MAX + 1024 * 1024 <= CLUSTER_FRAME_BYTES_MAX);

// ---- proposals ---------------------------------------------------------------------

/// Commands a shard packs into one Raft entry while the previous entry is being committed.
pub const PROPOSAL_COMMANDS_MAX: usize = 1024;
/// A proposal stops growing once its commands' JSON reaches this many bytes (one command
/// alone may be larger, up to the body limit).
pub const PROPOSAL_BYTES_MAX: usize = 512 * 1024;
/// Bits of an event position that hold the command's slot in its Raft entry.
pub const POSITION_SLOT_BITS: u32 = 16;

const _: () = assert!(PROPOSAL_COMMANDS_MAX < (1 << POSITION_SLOT_BITS));
const _: () = assert!(BODY_BYTES_MAX_LIMIT + PROPOSAL_BYTES_MAX + 256 * 1024 <= RECORD_PAYLOAD_BYTES_MAX);

// ---- the Postgres archive (src/archive/, runtime/archiver.rs) -----------------------

/// Rows one archive batch holds at most (one INSERT; a core has one batch in flight).
pub const ARCHIVE_BATCH_ROWS: usize = 2_000;
/// A batch stops growing once its events' JSON reaches this many bytes (one event alone
/// may be larger, up to the body limit).
pub const ARCHIVE_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Batches queued for the archive thread (all cores together) before senders wait.
pub const ARCHIVE_QUEUE_DEPTH: usize = 64;
/// How often a core looks whether a full batch is waiting, between flush intervals
/// (milliseconds).
pub const ARCHIVE_POLL_MS: u64 = 50;
/// First and largest wait before retrying after a failed flush (milliseconds; doubles
/// per failure in a row).
pub const ARCHIVE_RETRY_MIN_MS: u64 = 100;
pub const ARCHIVE_RETRY_MAX_MS: u64 = 10_000;
/// A batch not confirmed by Postgres within this long counts as failed and is sent again
/// (rows it did insert are skipped then by ON CONFLICT DO NOTHING) (milliseconds).
pub const ARCHIVE_WRITE_TIMEOUT_MS: u64 = 30_000;
/// A read of trimmed events not answered by Postgres within this long is
/// `503 archive_unavailable` (milliseconds).
pub const ARCHIVE_READ_TIMEOUT_MS: u64 = 5_000;
/// Connecting to Postgres, and waiting for a free pooled connection (milliseconds).
pub const ARCHIVE_CONNECT_TIMEOUT_MS: u64 = 5_000;

const _: () = assert!(ARCHIVE_RETRY_MIN_MS <= ARCHIVE_RETRY_MAX_MS);

// ---- log compaction with the archive on (runtime/compactor.rs) -----------------------

/// How often a core's compactor looks for segments to free (milliseconds).
pub const COMPACT_INTERVAL_MS: u64 = 1_000;
/// A shard holding more events than this only in its log (unarchived, out of the tail)
/// gets no new snapshot: the snapshot would carry them all into memory. They pin the log
/// until the archive catches up (events).
pub const COMPACT_LOG_ONLY_EVENTS_MAX: u64 = 50_000;
/// How long the compactor waits for a snapshot it asked openraft for (milliseconds).
pub const COMPACT_SNAPSHOT_WAIT_MS: u64 = 30_000;

/// `starcite healthcheck` gives the node this long to connect and answer (milliseconds).
pub const HEALTHCHECK_TIMEOUT_MS: u64 = 2_000;

/// Largest per-thread scratch buffer, in bytes, that rendering an event keeps for the next
/// one (`session::state::render_event_shared`); a larger event's buffer is freed after use.
pub const RENDER_SCRATCH_KEEP_BYTES: usize = 64 * 1024;
const _: () = assert!(SPILL_PAGE_BYTES >= 64 && SPILL_PAGE_BYTES.is_multiple_of(8));
