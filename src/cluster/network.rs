//! openraft's `RaftNetwork` over the cluster links: each RPC of a shard's group goes to the
//! target member over this core's one connection to it, tagged with the shard.
//!
//! A group's member is named by its Raft node id and its `BasicNode::addr`, which holds the
//! member's *name* (addresses come from `CLUSTER_NODES`). Failures map to openraft's own
//! kinds so it backs off and retries: no connection or a dead one → `Unreachable`; no answer
//! within the RPC's TTL → `Timeout`; a request over the frame limit → `PayloadTooLarge`
//! (openraft then sends fewer entries).

use std::rc::Rc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::BasicNode;

use super::links::Links;
use super::peer::CallFailure;
use super::rpc::{Request, Response};
use crate::raft::{NodeId, TypeConfig};

/// The network of one shard's group on this core.
#[derive(Clone)]
pub struct Network {
    pub links: Rc<Links>,
    pub shard: u32,
}

/// The connection openraft holds for one target of one group (a handle: the socket is the
/// core's shared link).
pub struct Connection {
    links: Rc<Links>,
    shard: u32,
    from: NodeId,
    target: NodeId,
    name: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection { links: self.links.clone(), shard: self.shard, from: self.links.me().node_id, target, name: node.addr.clone() }
    }
}

fn io_error(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, why)
}

impl Connection {
    async fn send<E: std::error::Error>(
        &self,
        action: RPCTypes,
        request: Request,
        ttl: Duration,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        match self.links.call(&self.name, Some(self.target), self.shard, &request, ttl).await {
            Ok(Response::NotHosted) => {
                Err(RPCError::Unreachable(Unreachable::new(&io_error(format!("{} does not host shard {} yet", self.name, self.shard)))))
            }
            Ok(r) => Ok(r),
            Err(CallFailure::NotSent(why) | CallFailure::Unreachable(why)) => Err(RPCError::Unreachable(Unreachable::new(&io_error(why)))),
            Err(CallFailure::Timeout(timeout)) => Err(RPCError::Timeout(Timeout { action, id: self.from, target: self.target, timeout })),
            Err(CallFailure::TooLarge(_)) => Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1))),
        }
    }

    fn mismatch<E: std::error::Error>(&self, got: Response) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&io_error(format!("{} answered with the wrong kind: {got:?}", self.name))))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.send(RPCTypes::AppendEntries, Request::AppendEntries(rpc), option.hard_ttl()).await? {
            Response::AppendEntries(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.mismatch(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>> {
        match self.send(RPCTypes::InstallSnapshot, Request::InstallSnapshot(rpc), option.hard_ttl()).await? {
            Response::InstallSnapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.mismatch(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.send(RPCTypes::Vote, Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(self.mismatch(other)),
        }
    }
}
