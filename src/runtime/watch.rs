//! Live-tail wake-ups.
//!
//! Tails never receive events pushed into per-connection queues: a tail holds a cursor and
//! reads committed events from the owner shard (memory or disk) when it is told there is
//! something past its cursor. That is what bounds a slow tail's memory: it costs one fetch
//! batch, never a backlog.
//!
//! - On the owner core, `remote` counts, per session, the tails each core has open on it.
//!   After an apply, every core with a count gets one `Notify { session, last_seq }`.
//! - On every core, `local` lists the tail signals waiting on each session; a notify sets
//!   each signal's `last_seq` (monotonic) and wakes it.
//!
//! Registration happens before a tail's first read, so any commit after the read is
//! notified: no lost wake-ups, and the cursor makes duplicate wake-ups harmless.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

/// One tail's wake-up slot.
#[derive(Default)]
pub struct TailSignal {
    last_seq: Cell<u64>,
    waker: Cell<Option<Waker>>,
}

impl TailSignal {
    pub fn raise(&self, last_seq: u64) {
        if last_seq > self.last_seq.get() {
            self.last_seq.set(last_seq);
        }
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Resolves once a commit past `cursor` has been announced.
    pub async fn wait_beyond(&self, cursor: u64) {
        poll_fn(|cx| {
            if self.last_seq.get() > cursor {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

#[derive(Default)]
pub struct WatchRegistry {
    local: RefCell<HashMap<String, Vec<Weak<TailSignal>>>>,
    remote: RefCell<HashMap<String, HashMap<usize, u32>>>,
}

impl WatchRegistry {
    pub fn add_local(&self, session: &str, signal: &Rc<TailSignal>) {
        self.local.borrow_mut().entry(session.to_string()).or_default().push(Rc::downgrade(signal));
    }

    pub fn remove_local(&self, session: &str, signal: &Rc<TailSignal>) {
        let mut local = self.local.borrow_mut();
        if let Some(list) = local.get_mut(session) {
            let target = Rc::downgrade(signal);
            list.retain(|w| !w.ptr_eq(&target) && w.strong_count() > 0);
            if list.is_empty() {
                local.remove(session);
            }
        }
    }

    /// Wake this core's tails of `session`.
    pub fn notify_local(&self, session: &str, last_seq: u64) {
        let signals: Vec<Rc<TailSignal>> = match self.local.borrow().get(session) {
            Some(list) => list.iter().filter_map(Weak::upgrade).collect(),
            None => return,
        };
        for s in signals {
            s.raise(last_seq);
        }
    }

    /// Owner side: one more (or one fewer) tail of `session` on `core`.
    pub fn set_remote(&self, session: &str, core: usize, on: bool) {
        let mut remote = self.remote.borrow_mut();
        let cores = remote.entry(session.to_string()).or_default();
        let count = cores.entry(core).or_insert(0);
        if on {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                cores.remove(&core);
            }
        }
        if cores.is_empty() {
            remote.remove(session);
        }
    }

    /// Owner side: the cores that have tails on `session`.
    pub fn watching_cores(&self, session: &str) -> Vec<usize> {
        self.remote.borrow().get(session).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_counts_drop_to_nothing_and_local_signals_rise_monotonically() {
        let reg = WatchRegistry::default();
        reg.set_remote("s", 1, true);
        reg.set_remote("s", 1, true);
        reg.set_remote("s", 0, true);
        assert_eq!(reg.watching_cores("s").len(), 2);
        reg.set_remote("s", 1, false);
        reg.set_remote("s", 1, false);
        reg.set_remote("s", 0, false);
        assert!(reg.watching_cores("s").is_empty());
        let sig = Rc::new(TailSignal::default());
        reg.add_local("s", &sig);
        reg.notify_local("s", 5);
        reg.notify_local("s", 3);
        assert_eq!(sig.last_seq.get(), 5);
        reg.remove_local("s", &sig);
        assert!(reg.local.borrow().is_empty());
    }
}
