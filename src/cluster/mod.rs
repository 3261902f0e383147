//! The intra-cluster transport's codecs, pure and unit-tested: framing of everything nodes
//! send each other ([`wire`]) and the mutual HMAC-SHA256 handshake that authenticates a peer
//! before anything it sends is acted on ([`handshake`]). Formats: docs/FORMAT.md,
//! "Cluster wire format".
//!
//! [`session`] runs the handshake over a byte stream and then carries frames; [`rpc`]
//! encodes openraft's RPCs (with request id and shard) as frame bodies; [`peer`] carries
//! them over one connection (ids, coalesced writes, timeouts, serving).
//!
//! On a node: [`listener`] accepts and authenticates peers on `STARCITE_CLUSTER_PORT` (every
//! core), [`links`] holds each core's one connection per peer (dial, backoff, incarnation
//! check), and [`network`] is openraft's `RaftNetwork` over those links.
//!
//! Layering: cluster/ sits under runtime/ and over raft/ (it knows raft's and session's
//! types, never the runtime or the front); the runtime hands the listener its handler.
//! A single node never opens a connection.

pub mod handshake;
pub mod links;
pub mod listener;
pub mod network;
pub mod peer;
pub mod rpc;
pub mod session;
pub mod wire;

/// Pseudo-random bytes for the codecs' "garbage never panics" tests (xorshift64; no seed
/// file, no dependency).
#[cfg(test)]
pub(crate) fn noise(state: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}
