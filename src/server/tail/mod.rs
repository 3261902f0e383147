//! Tails: replay then live over WebSocket or SSE, from a cursor.
//!
//! The pump is the same for both transports: read the next committed events after the
//! cursor from the owner shard (memory or disk, at most [`TAIL_FETCH_EVENTS_MAX`] events /
//! [`TAIL_FETCH_BYTES_MAX`] bytes), send them, advance the cursor; when caught up, wait for
//! a commit announcement. Because every event comes from a read by cursor, a connection
//! sees strictly increasing seqs with no gap and no duplicate, also when appends race the
//! replay. Because nothing is pushed into a per-connection queue, a slow client costs one
//! fetch batch of memory: when its socket is full the pump simply stops reading, and it
//! resumes from storage when the client catches up. A send that makes no progress for
//! `STARCITE_TAIL_IDLE_TIMEOUT_MS` closes the connection (WebSocket close code 1008).

pub mod sse;
pub mod ws;

use std::sync::Arc;

use super::handlers::{api_error, http_error, Response};
use crate::config::TailSource;
use crate::http::request::Request;
use crate::http::response::websocket_accept;
use crate::limits::{TAIL_FETCH_BYTES_MAX, TAIL_FETCH_EVENTS_MAX, TAIL_REMOTE_WAIT_MS};
use crate::runtime::api;
use crate::runtime::core::current;
use crate::session::{self, ApiError};

pub enum Transport {
    WebSocket { handshake: Vec<u8> },
    Sse { version_minor: u8 },
}

pub struct TailPlan {
    pub session: String,
    pub cursor: u64,
    pub batch_size: usize,
    pub transport: Transport,
    /// The replay's first batch after `cursor`, read before the response head so that a
    /// read that cannot be served (the archive unreachable: `503 archive_unavailable`,
    /// README "Archive") is the request's status, not a stream that ends at once.
    pub first: Vec<Arc<str>>,
}

const ROUTE: &str = "tail";

/// Validate a tail request (cursor, batch size, upgrade, session) before upgrading.
pub async fn prepare(req: &Request, session: String) -> Result<TailPlan, Response> {
    let sse = req.accepts_event_stream();
    let last_event_id = if sse { req.header("last-event-id").map(|v| String::from_utf8_lossy(v).trim().to_string()) } else { None };
    // Two Last-Event-ID headers name two cursors: refuse rather than guess which one the
    // client meant (a wrong guess is a gap or a duplicate).
    if sse && req.headers_all("last-event-id").nth(1).is_some() {
        let e = ApiError::invalid_cursor("more than one Last-Event-ID header");
        return Err(api_error(req, &e, ROUTE));
    }
    let cursor = match &last_event_id {
        Some(id) => session::parse_cursor(Some(id)),
        None => session::parse_cursor(req.query_param("cursor")),
    }
    .map_err(|e| api_error(req, &e, ROUTE))?;
    let batch_size = session::parse_batch_size(req.query_param("batch_size")).map_err(|e| api_error(req, &e, ROUTE))?;
    let transport = if sse {
        Transport::Sse { version_minor: req.version_minor }
    } else if req.is_websocket_upgrade() {
        Transport::WebSocket { handshake: websocket_accept(req).map_err(|e| http_error(req, &e, None, ROUTE))? }
    } else {
        let e = ApiError::invalid_websocket_upgrade("this endpoint needs a WebSocket upgrade or `Accept: text/event-stream`");
        return Err(api_error(req, &e, ROUTE));
    };
    api::get(&session).await.map_err(|e| api_error(req, &e, ROUTE))?;
    // Without waiting: a caught-up tail gets its head at once, and waits in the pump.
    let first = fetch_waiting(&session, cursor, 0).await.map_err(|e| api_error(req, &e, ROUTE))?;
    Ok(TailPlan { session, cursor, batch_size, transport, first })
}

/// Serve the tail until the client leaves, the session becomes unreadable, or the client
/// stays stuck past the idle timeout.
pub async fn run(stream: glommio::net::TcpStream, mut plan: TailPlan, leftover: Vec<u8>) {
    // The request loop's read deadlines (idle keep-alive, request head) must not apply to
    // a stream: a tail client may stay silent for as long as it likes.
    if stream.set_read_timeout(None).is_err() {
        return;
    }
    let core = current();
    // A WebSocket tail is answered 101 Switching Protocols, an SSE tail 200.
    let status = match plan.transport {
        Transport::WebSocket { .. } => 101,
        Transport::Sse { .. } => 200,
    };
    core.metrics.count_request(ROUTE, status);
    core.metrics.counters.open_tails.inc();
    let first = std::mem::take(&mut plan.first);
    match &mut plan.transport {
        Transport::WebSocket { handshake } => {
            let handshake = std::mem::take(handshake);
            ws::run(stream, &plan, first, handshake, leftover).await
        }
        Transport::Sse { version_minor } => {
            let version_minor = *version_minor;
            sse::run(stream, &plan, first, version_minor).await
        }
    }
    let core = current();
    core.metrics.counters.open_tails.dec();
}

/// The next events after `cursor` (empty when caught up): from this core's mirror when the
/// tail source is `ets` and the mirror holds them, else from this node's replica of the
/// shard, else (no replica here) from another node's, which waits for new events up to
/// `TAIL_REMOTE_WAIT_MS` before answering empty.
pub async fn fetch(session: &str, cursor: u64) -> Result<Vec<Arc<str>>, ApiError> {
    fetch_waiting(session, cursor, TAIL_REMOTE_WAIT_MS).await
}

/// [`fetch`], with a remote replica waiting at most `wait_ms` milliseconds for new events.
async fn fetch_waiting(session: &str, cursor: u64, wait_ms: u32) -> Result<Vec<Arc<str>>, ApiError> {
    let core = current();
    if core.config.tail_source == TailSource::Ets {
        if let Some(events) = core.watch.read_mirror(session, cursor, TAIL_FETCH_EVENTS_MAX, TAIL_FETCH_BYTES_MAX) {
            core.metrics.counters.tail_mirror_reads.inc();
            return Ok(events);
        }
    }
    api::read_committed(session, cursor, TAIL_FETCH_EVENTS_MAX, TAIL_FETCH_BYTES_MAX, wait_ms).await.map(|p| p.events)
}

/// Join events into one JSON array frame.
pub fn json_array(events: &[Arc<str>]) -> String {
    let mut s = String::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push(']');
    s
}

pub fn count_sent(n: usize) {
    let core = current();
    core.metrics.counters.tail_events_sent.add(n as u64);
}
