//! The in-process API, callable from any core of any node: each call finds the session's
//! shard and has it done by the replica that can do it — this node's replica (on the
//! shard's owner core, directly or over the channel mesh) when it hosts one, else a replica
//! on another node over the cluster transport — and returns the typed result here. The
//! HTTP front and the tails use only this.
//!
//! Routing (SPEC §4, "any node accepts any request"): writes and linearizable reads go to
//! the shard's leader. A replica that is not the leader answers "not leader" (having done
//! nothing) with its leader hint; the call follows hints for at most `FORWARD_HOPS_MAX`
//! hops in a row, waits `FORWARD_RETRY_MS` when nobody knows a leader (an election), and
//! gives up at `STARCITE_REQUEST_TIMEOUT_MS` with `503 raft_unavailable`. A forwarded write
//! whose answer is lost (timeout, connection died after sending) is not retried: the client
//! gets `503 raft_timeout`/`raft_unavailable`, which it may retry (with an idempotency key,
//! exactly once).

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{current, AppendOk, Core, NotReady, Op, ReplyTo};
use super::shard::{reply_error, Page};
use super::watch::TailSignal;
use crate::cluster::peer::CallFailure;
use crate::cluster::rpc::{Consistency, Forward, Forwarded, Request, Response};
use crate::limits::{FORWARD_HOPS_MAX, FORWARD_RETRY_MS};
use crate::metrics::CoreStats;
use crate::raft::{Refused, Reply};
use crate::session::{generate_session_id, now_micros, ApiError, AppendRequest, Command, CreateRequest};

/// Create a session; returns its record as JSON.
pub async fn create(mut req: CreateRequest) -> Result<String, ApiError> {
    // The id decides the shard, so it is chosen here, before routing.
    req.id.get_or_insert_with(generate_session_id);
    match write(req.into_command(now_micros())).await? {
        Reply::Created { header_json } => Ok(header_json),
        other => Err(reply_error(other)),
    }
}

pub async fn append(session: String, req: AppendRequest) -> Result<AppendOk, ApiError> {
    let core = current();
    let cmd = req.into_command(session, now_micros());
    let payload_bytes = match &cmd {
        Command::Append { event, .. } => event.payload_json.len(),
        _ => 0,
    };
    let started = Instant::now();
    match write(cmd).await? {
        Reply::Appended { seq, last_seq, deduped } => {
            core.metrics.append_micros.borrow_mut().observe(started.elapsed().as_micros() as f64);
            if deduped {
                core.metrics.counters.deduped.inc();
            } else {
                core.metrics.counters.events_appended.inc();
                core.metrics.counters.payload_bytes.add(payload_bytes as u64);
            }
            Ok(AppendOk { seq, last_seq, deduped })
        }
        other => Err(reply_error(other)),
    }
}

async fn write(cmd: Command) -> Result<Reply, ApiError> {
    // Shared, not copied, with the replica that proposes it: kept here until answered,
    // in case it must go to another replica.
    let cmd = Arc::new(cmd);
    route(
        cmd.session_id(),
        Retry::OnlyIfNotSent,
        |reply| Op::Write(cmd.clone(), reply),
        || Forward::Write(cmd.clone()),
        |f| match f {
            Forwarded::Written(r) => Some(r),
            _ => None,
        },
    )
    .await
}

/// The session record as JSON (linearizable).
pub async fn get(session: &str) -> Result<String, ApiError> {
    route(
        session,
        Retry::Always,
        |reply| Op::Get(session.to_string(), reply),
        || Forward::Get { session: session.to_string() },
        |f| match f {
            Forwarded::Header(r) => Some(r),
            _ => None,
        },
    )
    .await
}

/// Committed events after `after`, at most `limit`, stopping once `max_bytes` of JSON;
/// linearizable (the page endpoint).
pub async fn read(session: &str, after: u64, limit: usize, max_bytes: usize) -> Result<Page, ApiError> {
    read_with(session, after, limit, max_bytes, Consistency::Linearizable).await
}

/// Committed events after `after` from any replica (a tail's fetch): from this node's
/// replica when it has one, else from another node's, waiting there up to `wait_ms` for
/// new events when there are none.
pub async fn read_committed(session: &str, after: u64, limit: usize, max_bytes: usize, wait_ms: u32) -> Result<Page, ApiError> {
    let core = current();
    let wait_ms = if hosted_here(&core, session) { 0 } else { wait_ms };
    read_with(session, after, limit, max_bytes, Consistency::Committed { wait_ms }).await
}

async fn read_with(session: &str, after: u64, limit: usize, max_bytes: usize, consistency: Consistency) -> Result<Page, ApiError> {
    route(
        session,
        Retry::Always,
        |reply| Op::Read { session: session.to_string(), after, limit, max_bytes, consistency, reply },
        || Forward::Read { session: session.to_string(), after, limit: limit as u32, max_bytes: max_bytes as u32, consistency },
        |f| match f {
            Forwarded::Page(r) => Some(r.map(|(events, last_seq)| Page { events: events.into_iter().map(Arc::from).collect(), last_seq })),
            _ => None,
        },
    )
    .await
}

fn hosted_here(core: &Core, session: &str) -> bool {
    let (shard, _) = core.owner_of(session);
    core.hosts(shard)
}

/// Whether an operation whose answer was lost may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: always (they change nothing).
    Always,
    /// Writes: only when it surely never reached a replica (no connection); a lost answer
    /// is the client's to retry.
    OnlyIfNotSent,
}

/// Have the operation done by the right replica of the session's shard (module doc).
async fn route<T>(
    session: &str,
    retry: Retry,
    local: impl Fn(ReplyTo<Result<T, Refused>>) -> Op,
    remote: impl Fn() -> Forward,
    unpack: impl Fn(Forwarded) -> Option<Result<T, Refused>>,
) -> Result<T, ApiError> {
    let core = current();
    let (shard, owner) = core.owner_of(session);
    let me = core.config.node_name.as_str();
    let hosted = core.hosts(shard);
    let timeout = Duration::from_millis(core.config.request_timeout_ms);
    let deadline = Instant::now() + timeout;
    let candidates = core.replicas(shard);
    // Start where the leader most likely is: here when this node has a replica (it knows
    // the leader), else the last leader seen, else the first replica.
    // Borrowed where it can be (no copy of a member name per request); a hint is copied
    // out of the map, which may change while this call waits.
    let mut next: Option<Cow<'_, str>> =
        if hosted { Some(Cow::Borrowed(me)) } else { core.leader_hints.borrow().get(&shard).cloned().map(Cow::Owned) };
    let mut rotation = 0usize;
    let mut hops = 0usize;
    // Written only when an attempt fails (no formatting on the path that succeeds).
    let mut last_error: Option<String> = None;
    loop {
        let target = next.take().unwrap_or_else(|| {
            rotation += 1;
            Cow::Borrowed(candidates[rotation % candidates.len()].as_str())
        });
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let why = last_error.unwrap_or_else(|| format!("shard {shard} has no reachable leader"));
            return Err(ApiError::raft_unavailable(format!("{why} (no answer within {} ms)", timeout.as_millis())));
        }
        let outcome = if target == me {
            core.call(owner, &local).await.map_err(|e| (false, e.to_string()))
        } else {
            // Boxed with its request: both are large and most calls never take this path.
            let forwarded = Box::pin(async { core.links.call(&target, None, shard, &Request::Forward(remote()), left).await }).await;
            match forwarded {
                Ok(Response::Forward(f)) => unpack(f).ok_or((true, format!("{target} answered with the wrong kind"))),
                Ok(Response::NotHosted) => Err((false, format!("{target} does not host shard {shard} (yet)"))),
                Ok(_) => Err((true, format!("{target} answered with the wrong kind"))),
                // Refused before anything was sent: no connection.
                Err(CallFailure::NotSent(why)) => Err((false, why)),
                Err(CallFailure::TooLarge(n)) => Err((false, format!("request of {n} bytes does not fit a cluster frame"))),
                Err(e) => Err((true, format!("{target}: {e}"))),
            }
        };
        match outcome {
            Ok(Ok(value)) => {
                if !hosted && target != me {
                    core.leader_hints.borrow_mut().insert(shard, target.into_owned());
                }
                return Ok(value);
            }
            Ok(Err(Refused::Api(e))) => return Err(e),
            Ok(Err(Refused::NotLeader { leader })) => {
                last_error = Some(format!("shard {shard} has no leader (election in progress?)"));
                match leader {
                    Some(l) if hops < FORWARD_HOPS_MAX && l != target => {
                        hops += 1;
                        // From this node's own replica the hint names a leader elsewhere: go.
                        next = Some(Cow::Owned(l));
                        continue;
                    }
                    _ => {}
                }
            }
            Err((maybe_sent, why)) => {
                if maybe_sent && retry == Retry::OnlyIfNotSent {
                    return Err(ApiError::raft_timeout(format!(
                        "forwarding to {target}: {why}; the write may or may not have been committed"
                    )));
                }
                last_error = Some(why);
                if !hosted {
                    core.leader_hints.borrow_mut().remove(&shard);
                }
            }
        }
        hops = 0;
        let pause = Duration::from_millis(FORWARD_RETRY_MS).min(deadline.saturating_duration_since(Instant::now()));
        glommio::timer::sleep(pause).await;
    }
}

/// A registration for wake-ups about `session`'s commits; unregisters on drop. When this
/// node has no replica of the session's shard, the tail long-polls another node's
/// (`read_committed`), so the signal is always raised and never makes it wait here.
pub struct Subscription {
    session: String,
    owner: Option<usize>,
    pub signal: Rc<TailSignal>,
}

pub async fn subscribe(session: &str) -> Subscription {
    let core = current();
    let (_, owner) = core.owner_of(session);
    let signal = Rc::new(TailSignal::default());
    if !hosted_here(&core, session) {
        signal.raise(u64::MAX);
        return Subscription { session: session.to_string(), owner: None, signal };
    }
    core.watch.add_local(session, &signal);
    // Registered with the owner before the first read: no commit after it goes unnoticed.
    // (If the owner core is gone, reads fail too and end the tail.)
    let _ = core.call(owner, |reply| Op::Watch { session: session.to_string(), core: core.id, on: true, reply }).await;
    Subscription { session: session.to_string(), owner: Some(owner), signal }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(owner) = self.owner else { return };
        let core = current();
        core.watch.remove_local(&self.session, &self.signal);
        let (session, watcher) = (std::mem::take(&mut self.session), core.id);
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

/// Ok when every core finished recovery and every group this node hosts has a leader it
/// can reach; else the first reason found.
pub async fn ready_all() -> Result<(), NotReady> {
    let core = current();
    for c in 0..core.cores {
        core.call(c, Op::Ready).await.map_err(NotReady::Unreachable)??;
    }
    Ok(())
}
