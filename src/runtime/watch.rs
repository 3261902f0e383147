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
//!
//! Mirrors (`STARCITE_PAYLOAD_PLANE=dual_write`): notifies then also carry the committed
//! events (shared `Arc<str>`s), and each core keeps a bounded mirror of the recent events
//! of the sessions its tails watch. With `STARCITE_TAIL_SOURCE=ets` tails read from the
//! local mirror when it holds the events right after their cursor, saving the round trip
//! to the owner core. The mirror is never trusted to say "caught up": only the owner
//! answers that, so a mirror that missed a batch costs a round trip, never an event.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::session::ByteBudget;

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

/// Recent committed events of one session, contiguous from `first_seq`.
#[derive(Default)]
struct Mirror {
    first_seq: u64,
    events: VecDeque<Arc<str>>,
}

impl Mirror {
    fn push(&mut self, first_seq: u64, events: &[Arc<str>], keep: usize) {
        if events.is_empty() {
            return;
        }
        let next = self.first_seq + self.events.len() as u64;
        if self.events.is_empty() || first_seq != next {
            // Not contiguous (a batch was skipped or reordered): start over from this one.
            self.events.clear();
            self.first_seq = first_seq;
        }
        self.events.extend(events.iter().cloned());
        while self.events.len() > keep {
            self.events.pop_front();
            self.first_seq += 1;
        }
    }

    /// Events after `after`, if this mirror holds the very next one.
    fn read(&self, after: u64, max_events: usize, max_bytes: usize) -> Option<Vec<Arc<str>>> {
        let next = self.first_seq + self.events.len() as u64;
        if after + 1 < self.first_seq || after + 1 >= next {
            return None;
        }
        let mut out = Vec::new();
        let mut budget = ByteBudget::new(max_bytes);
        for e in self.events.iter().skip((after + 1 - self.first_seq) as usize).take(max_events) {
            if !budget.admit(e.len()) {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }
}

#[derive(Default)]
pub struct WatchRegistry {
    local: RefCell<HashMap<String, Vec<Weak<TailSignal>>>>,
    remote: RefCell<HashMap<String, HashMap<usize, u32>>>,
    mirrors: RefCell<HashMap<String, Mirror>>,
    mirror_keep: Cell<usize>,
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
                self.mirrors.borrow_mut().remove(session);
            }
        }
    }

    /// Record committed events `first_seq..=last_seq` of `session` (mirror them when they
    /// came along and this core tails the session), then wake this core's tails of it.
    pub fn notify_local(&self, session: &str, first_seq: u64, last_seq: u64, events: &[Arc<str>]) {
        let signals: Vec<Rc<TailSignal>> = match self.local.borrow().get(session) {
            Some(list) => list.iter().filter_map(Weak::upgrade).collect(),
            None => return,
        };
        if !events.is_empty() {
            debug_assert_eq!(events.len() as u64, last_seq - first_seq + 1);
            let keep = self.mirror_keep.get();
            self.mirrors.borrow_mut().entry(session.to_string()).or_default().push(first_seq, events, keep);
        }
        for s in signals {
            s.raise(last_seq);
        }
    }

    /// Events right after `after` from this core's mirror, when it has them.
    pub fn read_mirror(&self, session: &str, after: u64, max_events: usize, max_bytes: usize) -> Option<Vec<Arc<str>>> {
        self.mirrors.borrow().get(session).and_then(|m| m.read(after, max_events, max_bytes))
    }

    /// How many events a mirror keeps per session (the hot tail size).
    pub fn set_mirror_keep(&self, keep: usize) {
        self.mirror_keep.set(keep);
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
        reg.notify_local("s", 5, 5, &[]);
        reg.notify_local("s", 3, 3, &[]);
        assert_eq!(sig.last_seq.get(), 5);
        reg.remove_local("s", &sig);
        assert!(reg.local.borrow().is_empty());
    }

    fn ev(seq: u64) -> Arc<str> {
        format!("{{\"seq\":{seq}}}").into()
    }

    #[test]
    fn a_mirror_serves_only_the_events_right_after_a_cursor_and_never_claims_caught_up() {
        let reg = WatchRegistry::default();
        reg.set_mirror_keep(4);
        let sig = Rc::new(TailSignal::default());
        reg.add_local("s", &sig);
        reg.notify_local("s", 1, 3, &[ev(1), ev(2), ev(3)]);
        assert_eq!(reg.read_mirror("s", 0, 10, 1 << 20).unwrap().len(), 3);
        assert_eq!(reg.read_mirror("s", 2, 10, 1 << 20).unwrap(), vec![ev(3)]);
        assert!(reg.read_mirror("s", 3, 10, 1 << 20).is_none(), "caught up is the owner's call");
        // Bounded: only the last 4 stay.
        reg.notify_local("s", 4, 6, &[ev(4), ev(5), ev(6)]);
        assert!(reg.read_mirror("s", 0, 10, 1 << 20).is_none());
        assert_eq!(reg.read_mirror("s", 2, 10, 1 << 20).unwrap().len(), 4);
        // A gap resets the mirror instead of splicing unrelated runs.
        reg.notify_local("s", 9, 9, &[ev(9)]);
        assert!(reg.read_mirror("s", 5, 10, 1 << 20).is_none());
        assert_eq!(reg.read_mirror("s", 8, 10, 1 << 20).unwrap(), vec![ev(9)]);
        reg.remove_local("s", &sig);
        assert!(reg.read_mirror("s", 8, 10, 1 << 20).is_none(), "mirrors go with the last tail");
    }
}
