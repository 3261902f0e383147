//! One core's connections to the other members of the cluster: at most one authenticated
//! connection per (core, peer), shared by every Raft group and forwarded request of this
//! core (frames carry the shard), dialed on first use and redialed with capped exponential
//! backoff after it dies.
//!
//! Invariants:
//! - a call never waits for a dial that is already in progress or in backoff: it fails at
//!   once as unreachable (openraft backs off and retries; forwarding retries until its
//!   deadline), so a dead peer costs one failed dial per backoff period, not one per RPC;
//! - each connection knows the node id its handshake proved; a call addressed to another id
//!   of the same name (a node that came back with an empty disk under a new incarnation)
//!   fails as unreachable and is never delivered (docs/ARCHITECTURE.md, "Membership").

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::handshake::{ClusterKey, Peer, Shape};
use super::peer::{CallFailure, RpcClient};
use super::rpc::{Request, Response};
use super::session;
use crate::limits::{CLUSTER_CONNECT_TIMEOUT_MS, CLUSTER_REDIAL_MAX_MS, CLUSTER_REDIAL_MIN_MS};

/// A member of the cluster as configured: name and intra-cluster address (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: String,
}

#[derive(Default)]
struct Link {
    client: Option<Rc<RpcClient>>,
    /// The node id the last successful handshake with this member proved.
    peer_id: Option<u64>,
    dialing: bool,
    /// No dial before this instant (backoff after a failure).
    next_dial: Option<Instant>,
    backoff_ms: u64,
    last_error: Option<String>,
}

/// Clears `Link::dialing` however the dial ends, also when the caller's future is dropped
/// mid-dial (openraft drops an RPC at its TTL, shorter than a dial that gets no answer): a
/// flag left set refused every later call to that peer as "connecting", for good — a node
/// restarted during a partition never reached the peer again (found by the fault campaign,
/// chaos/; regression test: tests/cluster_rpc.rs `a_dropped_dial_does_not_block_the_next`).
struct DialInProgress<'a>(&'a RefCell<Link>);

impl Drop for DialInProgress<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().dialing = false;
    }
}

/// This core's links to the other members.
pub struct Links {
    me: Peer,
    key: ClusterKey,
    shape: Shape,
    members: HashMap<String, (Member, RefCell<Link>)>,
}

impl Links {
    /// Links from `me` to every other member of `members`.
    pub fn new(me: Peer, key: ClusterKey, shape: Shape, members: &[Member]) -> Links {
        let members =
            members.iter().filter(|m| m.name != me.name).map(|m| (m.name.clone(), (m.clone(), RefCell::new(Link::default())))).collect();
        Links { me, key, shape, members }
    }

    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// The node id `name` proved in its last handshake (this node's own id for itself).
    pub fn peer_id(&self, name: &str) -> Option<u64> {
        if name == self.me.name {
            return Some(self.me.node_id);
        }
        self.members.get(name).and_then(|(_, l)| l.borrow().peer_id)
    }

    /// Whether a connection to `name` is up now (this node counts as up for itself).
    pub fn is_connected(&self, name: &str) -> bool {
        name == self.me.name || self.members.get(name).is_some_and(|(_, l)| l.borrow().client.as_ref().is_some_and(|c| !c.is_dead()))
    }

    /// A live connection to `name`: the current one, or a new dial when none is in progress
    /// and the backoff allows it.
    pub async fn connect(&self, name: &str) -> Result<Rc<RpcClient>, CallFailure> {
        let (member, link) = self.members.get(name).ok_or_else(|| CallFailure::NotSent(format!("{name} is not a cluster member")))?;
        {
            let mut l = link.borrow_mut();
            if let Some(c) = &l.client {
                if !c.is_dead() {
                    return Ok(c.clone());
                }
                l.client = None;
            }
            let why = l.last_error.clone().unwrap_or_else(|| "connecting".into());
            if l.dialing || l.next_dial.is_some_and(|t| Instant::now() < t) {
                return Err(CallFailure::NotSent(format!("{name}: {why}")));
            }
            l.dialing = true;
        }
        let dialing = DialInProgress(link);
        let dialed = self.dial(member).await;
        drop(dialing);
        let mut l = link.borrow_mut();
        match dialed {
            Ok((client, peer)) => {
                if l.peer_id.is_some_and(|old| old != peer.node_id) {
                    tracing::info!(peer = %name, old = l.peer_id, new = peer.node_id, "peer came back under a new incarnation");
                }
                if l.last_error.is_some() {
                    tracing::info!(peer = %name, "peer reachable again");
                }
                l.peer_id = Some(peer.node_id);
                l.backoff_ms = 0;
                l.next_dial = None;
                l.last_error = None;
                let client = Rc::new(client);
                l.client = Some(client.clone());
                Ok(client)
            }
            Err(why) => {
                l.backoff_ms = (l.backoff_ms * 2).clamp(CLUSTER_REDIAL_MIN_MS, CLUSTER_REDIAL_MAX_MS);
                l.next_dial = Some(Instant::now() + Duration::from_millis(l.backoff_ms));
                if l.last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!(peer = %name, addr = %member.addr, retry_ms = l.backoff_ms, "cannot reach peer: {why}");
                }
                l.last_error = Some(why.clone());
                Err(CallFailure::NotSent(format!("{name}: {why}")))
            }
        }
    }

    async fn dial(&self, member: &Member) -> Result<(RpcClient, Peer), String> {
        use futures::FutureExt;
        let limit = Duration::from_millis(CLUSTER_CONNECT_TIMEOUT_MS);
        let addr = resolve(&member.addr).await?;
        let stream = futures::select! {
            s = glommio::net::TcpStream::connect(addr).fuse() => s.map_err(|e| format!("connect {addr}: {e}"))?,
            _ = glommio::timer::sleep(limit).fuse() => return Err(format!("connect {addr}: no answer within {limit:?}")),
        };
        let _ = stream.set_nodelay(true);
        let (framed, peer) = session::dial(stream, self.key.clone(), &self.me, self.shape).await.map_err(|e| e.to_string())?;
        if peer.name != member.name {
            return Err(format!("{} answered at {}, expected {}", peer.name, member.addr, member.name));
        }
        let (stream, leftover) = framed.into_parts();
        Ok((RpcClient::start(stream, leftover), peer))
    }

    /// Send `request` for `shard` to the member `name`, which must still be the node
    /// `node_id` (None: whichever incarnation answers), and wait at most `timeout`.
    pub async fn call(
        &self,
        name: &str,
        node_id: Option<u64>,
        shard: u32,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallFailure> {
        let client = self.connect(name).await?;
        if let (Some(want), Some(have)) = (node_id, self.peer_id(name)) {
            if want != have {
                return Err(CallFailure::NotSent(format!("{name} is now node {have}, not node {want}")));
            }
        }
        client.call(shard, request, timeout).await
    }
}

/// Resolve `host:port` without blocking the executor (getaddrinfo runs on a helper thread;
/// literal addresses need none).
async fn resolve(addr: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = addr.parse::<std::net::SocketAddr>() {
        return Ok(a);
    }
    let (tx, rx) = futures::channel::oneshot::channel();
    let owned = addr.to_string();
    std::thread::Builder::new()
        .name("starcite-resolve".into())
        .spawn(move || {
            use std::net::ToSocketAddrs;
            let _ = tx.send(owned.to_socket_addrs().map(|mut it| it.next()));
        })
        .map_err(|e| format!("resolving {addr}: {e}"))?;
    match rx.await {
        Ok(Ok(Some(a))) => Ok(a),
        Ok(Ok(None)) => Err(format!("{addr} resolves to no address")),
        Ok(Err(e)) => Err(format!("resolving {addr}: {e}")),
        Err(_) => Err(format!("resolving {addr}: resolver thread died")),
    }
}
