//! Starcite: a durable, ordered, replayable event log per session, for AI applications.
//!
//! The write path, top to bottom:
//!
//! ```text
//! front (server/, http/)  ──► runtime::api ──► owner core (runtime/core.rs, channel mesh)
//!   ──► shard Raft group (raft/: openraft on glommio) ──► propose
//!   ──► log engine append (log/: group commit, one write + fdatasync per batch)
//!   ──► commit ──► apply to the session state machine (session/)
//!   ──► reply to the client + wake tails (runtime/watch.rs, server/tail/)
//!   ··► (with the archive on) the leader's flusher (runtime/archiver.rs) ──► the archive
//!       thread (archive/: tokio-postgres) ──► Postgres ──► MarkArchived through Raft
//! ```
//!
//! Layers (imports point down only; docs/ARCHITECTURE.md §0 has the rule of each): node →
//! server → runtime → raft → session → log, with archive, http, config, limits, metrics
//! and logging at the ground.
//!
//! Modules:
//! - [`archive`]: the Postgres archive thread (schema, batched idempotent inserts);
//! - [`cluster`]: the intra-cluster wire codecs (frames, the HMAC handshake);
//! - [`config`]: environment variables, validated at startup;
//! - [`healthcheck`]: `starcite healthcheck`, the container probe (a tiny HTTP client);
//! - [`limits`]: every bound and default, with units;
//! - [`logging`]: the tracing subscriber (human or JSON lines, node and core on each);
//! - [`node`]: the composition root — data dir, ports, executors, signals, shutdown;
//! - [`runtime`]: cores, placement, the cross-core mesh, shards, the in-process API;
//! - [`log`]: the per-core segment log (records, segments, writer, recovery, the file seam);
//! - [`raft`]: openraft glue (runtime, log storage, state machine, network);
//! - [`session`]: request validation and the pure session state machine;
//! - [`http`]: HTTP/1.1 request parsing, responses, routing (pure codecs);
//! - [`server`]: per-core listeners, connection handling, and the WebSocket/SSE tails;
//! - [`metrics`]: per-core counters merged into a Prometheus exposition.
//! - [`alloc`]: the global allocator (mimalloc) and its per-thread allocation count.

pub mod alloc;
pub mod archive;
pub mod cluster;
pub mod config;
pub mod healthcheck;
pub mod http;
pub mod limits;
pub mod listen;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod session;
