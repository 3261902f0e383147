//! The in-process API, callable from any core: each call finds the session's shard, runs
//! on the owner core (directly when that is this core, else over the channel mesh), and
//! returns the result here. The HTTP front and the tails use only this.

use std::rc::Rc;

use super::core::{current, AppendOk, Op, OpReply};
use super::shard::Page;
use super::watch::TailSignal;
use crate::metrics::CoreStats;
use crate::session::{generate_session_id, ApiError, AppendRequest, CreateRequest};

fn unexpected(reply: OpReply) -> ApiError {
    match reply {
        OpReply::Ready(Err(e)) => ApiError::new(503, "raft_unavailable", e),
        _ => ApiError::internal("unexpected reply from the owner core"),
    }
}

/// Create a session; returns its record as JSON.
pub async fn create(mut req: CreateRequest) -> Result<String, ApiError> {
    // The id decides the shard, so it is chosen here, before routing.
    let id = req.id.get_or_insert_with(generate_session_id).clone();
    let core = current();
    let (_, owner) = core.owner_of(&id);
    match core.call(owner, Op::Create(Box::new(req))).await {
        OpReply::Json(r) => r,
        other => Err(unexpected(other)),
    }
}

pub async fn get(session: &str) -> Result<String, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    match core.call(owner, Op::Get(session.to_string())).await {
        OpReply::Json(r) => r,
        other => Err(unexpected(other)),
    }
}

pub async fn append(session: &str, req: AppendRequest) -> Result<AppendOk, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    match core.call(owner, Op::Append(session.to_string(), Box::new(req))).await {
        OpReply::Appended(r) => r,
        other => Err(unexpected(other)),
    }
}

/// Committed events after `after`: at most `limit`, stopping once `max_bytes` of JSON.
pub async fn read(session: &str, after: u64, limit: usize, max_bytes: usize) -> Result<Page, ApiError> {
    let core = current();
    let (_, owner) = core.owner_of(session);
    match core.call(owner, Op::Read { session: session.to_string(), after, limit, max_bytes }).await {
        OpReply::Page(r) => r,
        other => Err(unexpected(other)),
    }
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
    core.call(owner, Op::Watch { session: session.to_string(), core: core.id, on: true }).await;
    Subscription { session: session.to_string(), owner, signal }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let core = current();
        core.watch.remove_local(&self.session, &self.signal);
        let op = Op::Watch { session: std::mem::take(&mut self.session), core: core.id, on: false };
        let owner = self.owner;
        glommio::spawn_local(async move {
            current().call(owner, op).await;
        })
        .detach();
    }
}

/// Every core's metrics, for a scrape.
pub async fn stats_all() -> Vec<CoreStats> {
    let core = current();
    let mut out = Vec::with_capacity(core.cores);
    for c in 0..core.cores {
        if let OpReply::Stats(s) = core.call(c, Op::Stats).await {
            out.push(*s);
        }
    }
    out
}

/// Ok when every core finished recovery and all its shards have a leader.
pub async fn ready_all() -> Result<(), String> {
    let core = current();
    for c in 0..core.cores {
        match core.call(c, Op::Ready).await {
            OpReply::Ready(Ok(())) => {}
            OpReply::Ready(Err(e)) => return Err(format!("core {c}: {e}")),
            _ => return Err(format!("core {c}: unexpected reply")),
        }
    }
    Ok(())
}
