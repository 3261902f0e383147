//! The in-process API, callable from any core: each call finds the session's shard, runs
//! on the owner core (directly when that is this core, else over the channel mesh), and
//! returns the typed result here. The HTTP front and the tails use only this. A hop that
//! fails (`CallError`) becomes `503 raft_unavailable` through its one `From` impl.

use std::rc::Rc;

use super::core::{current, AppendOk, NotReady, Op};
use super::shard::Page;
use super::watch::TailSignal;
use crate::metrics::CoreStats;
use crate::session::{generate_session_id, ApiError, AppendRequest, CreateRequest};

/// Create a session; returns its record as JSON.
pub async fn create(mut req: CreateRequest) -> Result<String, ApiError> {
    // The id decides the shard, so it is chosen here, before routing.
    let id = req.id.get_or_insert_with(generate_session_id).clone();
    let core = current();
    let (_, owner) = core.owner_of(&id);
    core.call(owner, |reply| Op::Create(Box::new(req), reply)).await?
}

pub async fn get(session: &str) -> Result<String, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    core.call(owner, |reply| Op::Get(session.to_string(), reply)).await?
}

pub async fn append(session: &str, req: AppendRequest) -> Result<AppendOk, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    core.call(owner, |reply| Op::Append(session.to_string(), Box::new(req), reply)).await?
}

/// Committed events after `after`: at most `limit`, stopping once `max_bytes` of JSON.
pub async fn read(session: &str, after: u64, limit: usize, max_bytes: usize) -> Result<Page, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    core.call(owner, |reply| Op::Read { session: session.to_string(), after, limit, max_bytes, reply }).await?
}

/// A registration for wake-ups about `session`'s commits; unregisters on drop.
pub struct Subscription {
    session: String,
    owner: usize,
    pub signal: Rc<TailSignal>,
}

pub async fn subscribe(session: &str) -> Subscription {
    let core = current();
    let (_, owner) = core.owner_of(session);
    let signal = Rc::new(TailSignal::default());
    core.watch.add_local(session, &signal);
    // Registered with the owner before the first read: no commit after it goes unnoticed.
    // (If the owner core is gone, reads fail too and end the tail.)
    let _ = core.call(owner, |reply| Op::Watch { session: session.to_string(), core: core.id, on: true, reply }).await;
    Subscription { session: session.to_string(), owner, signal }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let core = current();
        core.watch.remove_local(&self.session, &self.signal);
        let (session, owner, watcher) = (std::mem::take(&mut self.session), self.owner, core.id);
        glommio::spawn_local(async move {
            let _ = current().call(owner, |reply| Op::Watch { session, core: watcher, on: false, reply }).await;
        })
        .detach();
    }
}

/// Every core's metrics, for a scrape (a core that does not answer is left out).
pub async fn stats_all() -> Vec<CoreStats> {
    let core = current();
    let mut out = Vec::with_capacity(core.cores);
    for c in 0..core.cores {
        if let Ok(s) = core.call(c, Op::Stats).await {
            out.push(*s);
        }
    }
    out
}

/// Ok when every core finished recovery and all its shards have a leader; else the first
/// reason found.
pub async fn ready_all() -> Result<(), NotReady> {
    let core = current();
    for c in 0..core.cores {
        core.call(c, Op::Ready).await.map_err(NotReady::Unreachable)??;
    }
    Ok(())
}
