//! The intra-cluster transport's codecs, pure and unit-tested: framing of everything nodes
//! send each other ([`wire`]) and the mutual HMAC-SHA256 handshake that authenticates a peer
//! before anything it sends is acted on ([`handshake`]). Formats: docs/FORMAT.md,
//! "Cluster wire format".
//!
//! [`session`] runs the handshake over a byte stream and then carries frames; [`rpc`]
//! encodes openraft's RPCs (with request id and shard) as frame bodies; [`peer`] carries
//! them over one connection (ids, coalesced writes, timeouts, serving).
//!
//! Status: the codecs and the authenticated session only.
//!
//! Layering: cluster/ sits beside runtime/ (it knows raft's types, never the front). The TCP transport on `STARCITE_CLUSTER_PORT` that drives them
//! (connections per peer, coalesced writes, openraft's `RaftNetwork`, forwarding) is the
//! next step of the issue "A real cluster…"; a single node never opens a connection.

pub mod handshake;
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
