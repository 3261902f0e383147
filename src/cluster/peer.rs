//! Raft RPCs over one authenticated connection: the calling side ([`RpcClient`]) and the
//! answering side ([`serve`]).
//!
//! One connection carries every Raft group's RPCs for a pair of cores: each request has an
//! id, one reader task routes responses to their waiters (answers may come in any order),
//! and writes are coalesced — everything queued during one turn of the executor goes out in
//! one `write` (the writer task wakes once per turn, not once per RPC).
//!
//! Invariants:
//! - a call never hangs: it ends with its response, [`CallFailure::Timeout`] at its
//!   deadline, [`CallFailure::NotSent`] on a connection already dead, or
//!   [`CallFailure::Unreachable`] when the connection dies under it (every pending call
//!   fails at once);
//! - a response whose id matches no pending call (late, after a timeout) is dropped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;
use futures::io::WriteHalf;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};

use super::rpc::{self, Request, Response};
use super::wire::{self, Decoder};
use crate::limits::CLUSTER_READ_BYTES;

/// Why a call got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// No connection: the request was surely not sent (safe to send elsewhere).
    #[error("peer not connected: {0}")]
    NotSent(String),
    /// The connection died while the request was in flight: it may have been done.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The request does not fit one frame (`CLUSTER_FRAME_BYTES_MAX`); it was not sent.
    #[error("request of {0} bytes does not fit a cluster frame")]
    TooLarge(usize),
}

/// Frames waiting to be written, and the writer task's waker.
#[derive(Default)]
struct Outbox {
    bytes: RefCell<Vec<u8>>,
    waker: RefCell<Option<std::task::Waker>>,
    closed: Cell<bool>,
}

impl Outbox {
    fn push(&self, kind: u8, body: &[u8]) {
        wire::encode(&mut self.bytes.borrow_mut(), kind, body);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves with everything queued (at least one frame), or None once closed.
    async fn take(&self) -> Option<Vec<u8>> {
        std::future::poll_fn(|cx| {
            if self.closed.get() {
                return std::task::Poll::Ready(None);
            }
            let mut bytes = self.bytes.borrow_mut();
            if !bytes.is_empty() {
                return std::task::Poll::Ready(Some(std::mem::take(&mut *bytes)));
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        })
        .await
    }

    fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

thread_local! {
    /// Bytes this thread (core) wrote to cluster connections, both sides.
    static BYTES_SENT: Cell<u64> = const { Cell::new(0) };
}

/// Bytes this core has written to cluster connections since it started.
pub fn bytes_sent() -> u64 {
    BYTES_SENT.with(Cell::get)
}

/// Write everything the outbox collects until it closes or a write fails.
async fn write_loop<W: AsyncWrite>(mut writer: WriteHalf<W>, outbox: Rc<Outbox>) -> std::io::Result<()> {
    while let Some(bytes) = outbox.take().await {
        writer.write_all(&bytes).await?;
        writer.flush().await?;
        BYTES_SENT.with(|b| b.set(b.get() + bytes.len() as u64));
    }
    Ok(())
}

/// Read frames of kind `expected` (after `leftover`, the bytes read past the handshake)
/// and hand each body to `on_body` (and a GOODBYE to `on_goodbye`), until the connection
/// ends, a frame of another kind arrives, or `on_body` refuses one; returns why it ended.
async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut R,
    leftover: &[u8],
    expected: u8,
    mut on_body: impl FnMut(&[u8]) -> Result<(), String>,
    mut on_goodbye: impl FnMut(),
) -> String {
    let mut decoder = Decoder::default();
    decoder.push(leftover);
    let mut buf = vec![0u8; CLUSTER_READ_BYTES];
    loop {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) if frame.kind == expected => {
                    if let Err(why) = on_body(&frame.body) {
                        return why;
                    }
                }
                Ok(Some(frame)) if frame.kind == rpc::kind::GOODBYE => on_goodbye(),
                Ok(Some(frame)) => return format!("unexpected frame kind {}", frame.kind),
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        match reader.read(&mut buf).await {
            Ok(0) => return "connection closed by the peer".to_string(),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => return format!("read failed: {e}"),
        }
    }
}

type Pending = RefCell<HashMap<u64, oneshot::Sender<Response>>>;

/// The calling side of a connection.
pub struct RpcClient {
    outbox: Rc<Outbox>,
    pending: Rc<Pending>,
    next_id: Cell<u64>,
    /// Set when the connection died: why.
    dead: Rc<RefCell<Option<String>>>,
}

impl RpcClient {
    /// Take over an authenticated stream and the bytes already read past the handshake
    /// (`session::dial`, then `Framed::into_parts`): start its reader and writer tasks on
    /// this executor.
    pub fn start<S: AsyncRead + AsyncWrite + Unpin + 'static>(stream: S, leftover: Vec<u8>) -> RpcClient {
        let (mut reader, writer) = stream.split();
        let outbox = Rc::new(Outbox::default());
        let pending: Rc<Pending> = Rc::default();
        let dead: Rc<RefCell<Option<String>>> = Rc::default();
        let fail_all = {
            let (pending, dead, outbox) = (pending.clone(), dead.clone(), outbox.clone());
            move |why: String| {
                outbox.close();
                dead.borrow_mut().get_or_insert(why);
                // Dropping the senders fails every waiter (they map it to Unreachable).
                pending.borrow_mut().clear();
            }
        };
        {
            let (outbox, fail_all) = (outbox.clone(), fail_all.clone());
            glommio::spawn_local(async move {
                if let Err(e) = write_loop(writer, outbox).await {
                    fail_all(format!("write failed: {e}"));
                }
            })
            .detach();
        }
        {
            let (pending, leaving) = (pending.clone(), dead.clone());
            glommio::spawn_local(async move {
                let on_body = |body: &[u8]| {
                    let (id, response) = rpc::decode_response(body).map_err(|e| format!("bad response: {e}"))?;
                    if let Some(waiter) = pending.borrow_mut().remove(&id) {
                        let _ = waiter.send(response);
                    }
                    Ok(())
                };
                // The peer is shutting down: no new calls here (they fail as NotSent and go
                // elsewhere); the ones in flight still get their answers.
                let on_goodbye = || {
                    leaving.borrow_mut().get_or_insert_with(|| "the peer is shutting down".into());
                };
                let why = read_loop(&mut reader, &leftover, rpc::kind::RAFT_RESPONSE, on_body, on_goodbye).await;
                fail_all(why);
            })
            .detach();
        }
        RpcClient { outbox, pending, next_id: Cell::new(1), dead }
    }

    /// Whether the connection died (a new one must be dialed).
    pub fn is_dead(&self) -> bool {
        self.dead.borrow().is_some()
    }

    /// Send `request` for `shard`'s group and wait at most `timeout` for its response.
    pub async fn call(&self, shard: u32, request: &Request, timeout: Duration) -> Result<Response, CallFailure> {
        if let Some(why) = self.dead.borrow().clone() {
            return Err(CallFailure::NotSent(why));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let body = rpc::encode_request(id, shard, request);
        if body.len() + 1 > crate::limits::CLUSTER_FRAME_BYTES_MAX {
            return Err(CallFailure::TooLarge(body.len()));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        self.outbox.push(rpc::kind::RAFT_REQUEST, &body);
        let outcome = futures::select! {
            r = rx.fuse() => r.map_err(|_| CallFailure::Unreachable(self.dead.borrow().clone().unwrap_or_else(|| "connection closed".into()))),
            _ = glommio::timer::sleep(timeout).fuse() => Err(CallFailure::Timeout(timeout)),
        };
        // A timed-out call leaves no entry behind (a late answer is dropped).
        self.pending.borrow_mut().remove(&id);
        outcome
    }
}

/// Answer RPCs arriving on an authenticated stream (`session::accept`, then
/// `Framed::into_parts`: the stream and the bytes already read past the handshake) with
/// `handler`, each in its own task (a slow group never blocks another's answer), until the
/// connection ends. When `closing` resolves (the node shuts down), the dialer is told
/// GOODBYE and sends nothing more, while what it sent before is still answered. Returns
/// why it ended.
pub async fn serve<S, H, F>(stream: S, leftover: Vec<u8>, handler: H, closing: LocalBoxFuture<'static, ()>) -> String
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
    H: Fn(u32, Request) -> F + 'static,
    F: Future<Output = Response> + 'static,
{
    let (mut reader, writer) = stream.split();
    let outbox = Rc::new(Outbox::default());
    let writing = {
        let outbox = outbox.clone();
        glommio::spawn_local(async move { write_loop(writer, outbox).await })
    };
    let goodbye = {
        let outbox = outbox.clone();
        glommio::spawn_local(async move {
            closing.await;
            outbox.push(rpc::kind::GOODBYE, &[]);
        })
    };
    let handler = Rc::new(move |shard, request| -> LocalBoxFuture<'static, Response> { handler(shard, request).boxed_local() });
    let on_body = |body: &[u8]| {
        let (id, shard, request) = rpc::decode_request(body).map_err(|e| format!("bad request: {e}"))?;
        let (outbox, handler) = (outbox.clone(), handler.clone());
        glommio::spawn_local(async move {
            let response = handler(shard, request).await;
            outbox.push(rpc::kind::RAFT_RESPONSE, &rpc::encode_response(id, &response));
        })
        .detach();
        Ok(())
    };
    let why = read_loop(&mut reader, &leftover, rpc::kind::RAFT_REQUEST, on_body, || {}).await;
    goodbye.cancel().await;
    outbox.close();
    let _ = writing.await;
    why
}
