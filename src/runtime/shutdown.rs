//! Graceful shutdown, in two halves: [`Shutdown`] is the process-wide request (set by the
//! signal thread, or by whoever embeds a node), [`Latch`] is one core's local view of it
//! that its tasks await without polling.
//!
//! The sequence each core follows once the request is seen (node.rs drives it): stop
//! accepting; let connections finish the requests they are in (a connection waiting for a
//! new request closes, a request parsed from now on is answered with `connection: close`);
//! tails end (WebSocket close 1001 "going away", SSE stream end); wait for every core to
//! get there (cross-core requests still in flight need their owner), then flush the log
//! and stop. The whole drain is bounded by `SHUTDOWN_GRACE_MS`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::{FutureExt, Shared};

/// A process-wide shutdown request, cheap to clone and to check from any thread.
#[derive(Clone, Default)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Cores that finished draining their connections (the cross-core barrier).
    drained_cores: Arc<AtomicUsize>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Ask every core to drain and stop. Idempotent.
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// This core has no more connections of its own (or its grace ran out).
    pub fn core_drained(&self) {
        self.drained_cores.fetch_add(1, Ordering::SeqCst);
    }

    /// How many cores have called [`Self::core_drained`].
    pub fn drained_cores(&self) -> usize {
        self.drained_cores.load(Ordering::SeqCst)
    }
}

/// A one-way flag on one core: tasks `wait` for it; `set` wakes them all. Built on a
/// shared oneshot, whose clones drop their wakers when dropped, so a connection that
/// waited and moved on leaves nothing behind.
pub struct Latch {
    /// Taken (and fired) by `set`: its absence is the latch's state.
    tx: RefCell<Option<oneshot::Sender<()>>>,
    rx: Shared<oneshot::Receiver<()>>,
}

impl Default for Latch {
    fn default() -> Self {
        let (tx, rx) = oneshot::channel();
        Latch { tx: RefCell::new(Some(tx)), rx: rx.shared() }
    }
}

impl Latch {
    pub fn set(&self) {
        if let Some(tx) = self.tx.borrow_mut().take() {
            let _ = tx.send(());
        }
    }

    pub fn is_set(&self) -> bool {
        self.tx.borrow().is_none()
    }

    /// Resolves once the latch is set (at once if it already is).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> {
        self.rx.clone().map(|_| ())
    }
}
