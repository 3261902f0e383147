//! One client connection: read, parse (pipelined requests back to back), answer in
//! request order, keep alive, or hand the socket to a tail.
//!
//! Pipelined appends already in the buffer run concurrently (up to
//! [`PIPELINE_IN_FLIGHT_MAX`]) so a pipelining client feeds the group commit, while
//! `FuturesOrdered` keeps the responses in request order; any other request first waits
//! for the ones before it, so pipelined requests behave as if run one by one. A framing error answers once and
//! closes only this connection.

use std::time::{Duration, Instant};

use futures::stream::FuturesOrdered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use glommio::net::TcpStream;

use super::handlers::{self, Response};
use crate::http::request::{HttpError, Limits, Parse, Request, RequestParser};
use crate::http::response::{write_error, CONTINUE_100};
use crate::http::router::Route;
use crate::limits::{
    CONNECTION_READ_BYTES, KEEP_ALIVE_IDLE_TIMEOUT_MS, PIPELINE_IN_FLIGHT_MAX, REQUEST_HEADERS_MAX, REQUEST_HEAD_BYTES_MAX,
    REQUEST_HEAD_TIMEOUT_MS,
};
use crate::runtime::core::current;

/// Refuse a connection over the per-core limit with a clear answer, then close.
pub async fn refuse(mut stream: TcpStream) {
    let mut out = Vec::new();
    let e = HttpError::new(503, "too_many_connections", "this node is at its connection limit; retry later");
    write_error(&mut out, 1, &e, false);
    let _ = stream.write_all(&out).await;
    let _ = stream.close().await;
}

fn limits() -> Limits {
    Limits { head_bytes_max: REQUEST_HEAD_BYTES_MAX, headers_max: REQUEST_HEADERS_MAX, body_bytes_max: current().config.max_body_bytes }
}

fn count(resp: &Response) {
    current().metrics.count_request(resp.route, resp.status);
}

enum Next {
    Read,
    /// Complete requests may still be buffered: parse again before reading.
    Parse,
    Close,
    Tail(Box<Request>, String),
}

pub async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut parser = RequestParser::new(limits());
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; CONNECTION_READ_BYTES];
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // When the head of the request now in `buf` started arriving (the 408 clock).
    let mut head_started: Option<Instant> = None;
    loop {
        let mut inflight = FuturesOrdered::new();
        let mut next = Next::Read;
        // Bytes of `buf` taken by the requests parsed this round: dropped once after the
        // loop (one move of the rest per read, not one per pipelined request).
        let mut parsed = 0;
        loop {
            if inflight.len() >= PIPELINE_IN_FLIGHT_MAX {
                // Answer what is in flight, then parse the rest of the buffer (no read).
                next = Next::Parse;
                break;
            }
            match parser.parse(&buf[parsed..]) {
                Ok(Parse::Complete { mut request, consumed }) => {
                    parsed += consumed;
                    head_started = None;
                    if current().draining.is_set() {
                        // Graceful shutdown: answer this request, say so, then close.
                        request.keep_alive = false;
                    }
                    let keep_alive = request.keep_alive;
                    match handlers::resolve(&request) {
                        Err(resp) => inflight.push_back(futures::future::Either::Left(futures::future::ready(resp))),
                        Ok(Route::Tail(id)) => {
                            next = Next::Tail(Box::new(request), id);
                            break;
                        }
                        Ok(route) => {
                            // Appends may overlap (they are proposed in request order over
                            // FIFO channels, so seqs follow request order); anything else
                            // waits for what came before it, so a read sees earlier writes.
                            if !matches!(route, Route::Append(_)) {
                                out_after(&mut inflight, &mut out).await;
                            }
                            inflight.push_back(futures::future::Either::Right(handlers::respond(request, route)))
                        }
                    }
                    if !keep_alive {
                        next = Next::Close;
                        break;
                    }
                }
                Ok(Parse::Incomplete) => {
                    if parser.take_continue() {
                        // An interim response belongs to the request being received: the
                        // final responses of the requests before it go first (RFC 9110
                        // §15.2: a client matches responses to requests in order).
                        out_after(&mut inflight, &mut out).await.extend_from_slice(CONTINUE_100);
                    }
                    break;
                }
                Err(e) => {
                    write_error(out_after(&mut inflight, &mut out).await, 1, &e, false);
                    current().metrics.count_request("bad_request", e.status);
                    next = Next::Close;
                    break;
                }
            }
        }
        buf.drain(..parsed);
        out_after(&mut inflight, &mut out).await;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        match next {
            Next::Close => {
                let _ = stream.close().await;
                return;
            }
            Next::Tail(request, id) => {
                match super::tail::prepare(&request, id).await {
                    Ok(plan) => {
                        // The connection's buffers are not needed while it streams.
                        drop((chunk, out, parser));
                        super::tail::run(stream, plan, buf).await;
                        return;
                    }
                    Err(resp) => {
                        count(&resp);
                        if stream.write_all(&resp.bytes).await.is_err() || !request.keep_alive {
                            return;
                        }
                    }
                }
                continue;
            }
            Next::Parse => continue,
            Next::Read => {}
        }
        // An idle keep-alive connection gets the idle timeout; a request head must arrive
        // whole within the head timeout from its first byte; a body must keep moving.
        let head_timeout = Duration::from_millis(REQUEST_HEAD_TIMEOUT_MS);
        let wait = if buf.is_empty() {
            Duration::from_millis(KEEP_ALIVE_IDLE_TIMEOUT_MS)
        } else if !parser.head_parsed() {
            (*head_started.get_or_insert_with(Instant::now) + head_timeout).saturating_duration_since(Instant::now())
        } else {
            head_timeout
        };
        let read = if wait.is_zero() {
            Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
        } else {
            let _ = stream.set_read_timeout(Some(wait));
            if buf.is_empty() {
                // Between requests: a graceful shutdown closes the connection here.
                futures::select! {
                    read = stream.read(&mut chunk).fuse() => read,
                    _ = current().draining.wait().fuse() => {
                        let _ = stream.close().await;
                        return;
                    }
                }
            } else {
                // Inside a request: let it arrive (bounded by the head timeout) and answer it.
                stream.read(&mut chunk).await
            }
        };
        match read {
            Ok(0) => return,
            Ok(n) => {
                if buf.is_empty() {
                    head_started = Some(Instant::now());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !buf.is_empty() => {
                let mut out = Vec::new();
                write_error(&mut out, 1, &HttpError::new(408, "request_timeout", "the request was not received in time"), false);
                current().metrics.count_request("bad_request", 408);
                let _ = stream.write_all(&out).await;
                let _ = stream.close().await;
                return;
            }
            Err(_) => return,
        }
    }
}

/// Responses already queued must go out before an error that closes the connection.
async fn out_after<'a, F>(inflight: &mut FuturesOrdered<F>, out: &'a mut Vec<u8>) -> &'a mut Vec<u8>
where
    F: std::future::Future<Output = Response>,
{
    while let Some(resp) = inflight.next().await {
        count(&resp);
        out.extend_from_slice(&resp.bytes);
    }
    out
}
