//! RPCs as cluster frames: what a node sends a peer for one of its shards — openraft's own
//! messages for the shard's Raft group, or a client operation forwarded to the replica that
//! can do it ([`Forward`]) — and the answer. Bodies are postcard (serde) encodings behind a
//! fixed header that routes them without decoding:
//!
//! ```text
//! request  (kind RAFT_REQUEST):  request id u64 LE ‖ shard u32 LE ‖ method u8 ‖ postcard(request)
//! response (kind RAFT_RESPONSE): request id u64 LE ‖ postcard(Result<response, RaftError>)
//! ```
//!
//! The request id lets many groups' RPCs share one connection and be answered out of
//! order; the shard picks the group on the receiving node. Decoding never panics: a body
//! that is not what its header says is a [`RpcError`], and the connection is closed.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, Refused, Reply, TypeConfig};
use crate::session::Command;

/// Frame kinds of the RPCs (after the handshake's 1–3).
pub mod kind {
    pub const RAFT_REQUEST: u8 = 16;
    pub const RAFT_RESPONSE: u8 = 17;
    /// Empty body, acceptor → dialer: this node is shutting down; send nothing more on this
    /// connection (what was sent before it is still answered).
    pub const GOODBYE: u8 = 18;
}

/// One RPC for `shard` on the receiving node.
#[derive(Debug)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Forward(Forward),
}

/// A client operation forwarded to a replica of its shard (SPEC §4: any node takes any
/// request). The receiving node never forwards it further: it does it or says why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Forward {
    /// Propose a command (create or append, built by the node the client called); only
    /// the leader does, anyone else answers [`Refused::NotLeader`] having proposed nothing.
    Write(std::sync::Arc<Command>),
    /// The session record, linearizable (leader, after a read-index check).
    Get { session: String },
    /// Committed events after `after`: at most `limit` events and `max_bytes` of JSON.
    Read { session: String, after: u64, limit: u32, max_bytes: u32, consistency: Consistency },
    /// Whether this node's group for the shard is initialized (bootstrap asks the other
    /// replicas before initializing one).
    GroupState,
    /// Start an election now: the leader asks an up-to-date follower to take over before
    /// it shuts down (a leadership handoff).
    Campaign,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Served by the leader after confirming its leadership with a quorum (read index):
    /// includes everything acknowledged before the read began.
    Linearizable,
    /// Served by any replica from what it has applied (only committed events); when there
    /// is nothing after the cursor, waits up to `wait_ms` for a commit (a tail's long poll).
    Committed { wait_ms: u32 },
}

/// The answer to a [`Forward`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Forwarded {
    Written(Result<Reply, Refused>),
    Header(Result<String, Refused>),
    /// Events (rendered JSON) and the session's last seq.
    Page(Result<(Vec<String>, u64), Refused>),
    GroupState {
        initialized: bool,
    },
    Campaigned,
}

/// The answer to a [`Request`], as the peer's Raft group (or its node) gave it.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Forward(Forwarded),
    /// The receiving node does not host a replica of the shard (or is not started yet).
    NotHosted,
}

/// A request or response body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("RPC frame too short for its header")]
    Truncated,
    #[error("unknown Raft RPC method {0}")]
    UnknownMethod(u8),
    #[error("undecodable RPC body: {0}")]
    Body(String),
}

const APPEND_ENTRIES: u8 = 1;
const VOTE: u8 = 2;
const INSTALL_SNAPSHOT: u8 = 3;
const FORWARD: u8 = 4;

fn to_body<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing our own well-formed values into a Vec cannot fail.
    *out = postcard::to_extend(value, std::mem::take(out)).expect("Raft RPC values serialize");
}

fn from_body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, RpcError> {
    postcard::from_bytes(bytes).map_err(|e| RpcError::Body(e.to_string()))
}

/// Encode a request frame body.
pub fn encode_request(id: u64, shard: u32, request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&shard.to_le_bytes());
    match request {
        Request::AppendEntries(r) => {
            out.push(APPEND_ENTRIES);
            to_body(&mut out, r);
        }
        Request::Vote(r) => {
            out.push(VOTE);
            to_body(&mut out, r);
        }
        Request::InstallSnapshot(r) => {
            out.push(INSTALL_SNAPSHOT);
            to_body(&mut out, r);
        }
        Request::Forward(r) => {
            out.push(FORWARD);
            to_body(&mut out, r);
        }
    }
    out
}

/// Decode a request frame body into (request id, shard, request).
pub fn decode_request(body: &[u8]) -> Result<(u64, u32, Request), RpcError> {
    let (id, rest) = split_u64(body)?;
    let shard = rest.get(..4).ok_or(RpcError::Truncated)?;
    let shard = u32::from_le_bytes([shard[0], shard[1], shard[2], shard[3]]);
    let (&method, payload) = rest[4..].split_first().ok_or(RpcError::Truncated)?;
    let request = match method {
        APPEND_ENTRIES => Request::AppendEntries(from_body(payload)?),
        VOTE => Request::Vote(from_body(payload)?),
        INSTALL_SNAPSHOT => Request::InstallSnapshot(from_body(payload)?),
        FORWARD => Request::Forward(from_body(payload)?),
        other => return Err(RpcError::UnknownMethod(other)),
    };
    Ok((id, shard, request))
}

/// Encode a response frame body.
pub fn encode_response(id: u64, response: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&id.to_le_bytes());
    to_body(&mut out, response);
    out
}

/// Decode a response frame body into (request id, response).
pub fn decode_response(body: &[u8]) -> Result<(u64, Response), RpcError> {
    let (id, payload) = split_u64(body)?;
    Ok((id, from_body(payload)?))
}

fn split_u64(bytes: &[u8]) -> Result<(u64, &[u8]), RpcError> {
    let head = bytes.get(..8).ok_or(RpcError::Truncated)?;
    let id = u64::from_le_bytes(head.try_into().map_err(|_| RpcError::Truncated)?);
    Ok((id, &bytes[8..]))
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    use super::*;
    use crate::raft::Proposal;
    use crate::session::{Command, EventBody};

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 7), index)
    }

    fn append_entries() -> AppendEntriesRequest<TypeConfig> {
        let cmd = Command::Append {
            session_id: "s".into(),
            event: EventBody {
                event_type: "t".into(),
                payload_json: r#"{"x":0.9574343289165503}"#.into(),
                actor: "a".into(),
                source: None,
                metadata_json: "{}".into(),
                refs_json: "{}".into(),
                fingerprint: 5,
            },
            idempotency_key: Some("k".into()),
            expected_seq: Some(3),
            now_micros: 1_700_000_000_000_000,
        };
        AppendEntriesRequest {
            vote: Vote::new_committed(4, 7),
            prev_log_id: Some(log_id(4, 9)),
            entries: vec![
                Entry { log_id: log_id(4, 10), payload: EntryPayload::Normal(Proposal::new(vec![std::sync::Arc::new(cmd)])) },
                Entry { log_id: log_id(4, 11), payload: EntryPayload::Blank },
            ],
            leader_commit: Some(log_id(4, 9)),
        }
    }

    #[test]
    fn every_request_round_trips_with_its_id_and_shard() {
        let requests = [
            Request::AppendEntries(append_entries()),
            Request::Vote(VoteRequest { vote: Vote::new(5, 7), last_log_id: Some(log_id(4, 11)) }),
            Request::Forward(Forward::Read {
                session: "ses".into(),
                after: 9,
                limit: 100,
                max_bytes: 1 << 20,
                consistency: Consistency::Committed { wait_ms: 500 },
            }),
        ];
        // openraft's messages have no PartialEq: compare their full Debug renderings.
        for (i, r) in requests.iter().enumerate() {
            let body = encode_request(1000 + i as u64, 42, r);
            let (id, shard, back) = decode_request(&body).unwrap();
            assert_eq!((id, shard, format!("{back:?}")), (1000 + i as u64, 42, format!("{r:?}")));
        }
    }

    #[test]
    fn responses_round_trip_including_errors() {
        let ok = Response::Vote(Ok(VoteResponse { vote: Vote::new(5, 7), vote_granted: true, last_log_id: Some(log_id(4, 11)) }));
        let appended = Response::AppendEntries(Ok(AppendEntriesResponse::Success));
        let refused = Response::AppendEntries(Ok(AppendEntriesResponse::HigherVote(Vote::new(9, 3))));
        let redirect = Response::Forward(Forwarded::Written(Err(Refused::NotLeader { leader: Some("starcite-2".into()) })));
        for (id, r) in [(9, ok), (10, appended), (11, refused), (12, redirect)] {
            let (back_id, back) = decode_response(&encode_response(id, &r)).unwrap();
            assert_eq!((back_id, format!("{back:?}")), (id, format!("{r:?}")));
        }
    }

    #[test]
    fn damaged_or_unknown_bodies_are_errors_not_panics() {
        let body = encode_request(1, 2, &Request::AppendEntries(append_entries()));
        for cut in 0..body.len() {
            assert!(decode_request(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut unknown = body.clone();
        unknown[12] = 99;
        assert_eq!(decode_request(&unknown).map(|_| ()), Err(RpcError::UnknownMethod(99)));
        assert!(decode_response(&[1, 2, 3]).is_err());
        let mut rng = 0x853c49e6748fea9bu64;
        for n in 0..400 {
            let bytes = crate::cluster::noise(&mut rng, n);
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }
}
