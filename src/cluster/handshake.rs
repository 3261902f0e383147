//! Mutual authentication of a cluster connection: a challenge-response over both sides'
//! fresh nonces, HMAC-SHA256 keyed by (a key derived from) `SECRET_KEY_BASE`.
//!
//! ```text
//! dialer   → acceptor : Hello     magic "STARCITE", version, shape, dialer identity, dialer nonce
//! acceptor → dialer   : Challenge acceptor identity, acceptor nonce, HMAC(k, "acceptor" ‖ transcript)
//! dialer   → acceptor : Proof     HMAC(k, "dialer" ‖ transcript)
//! identity   = name length u8 ‖ name ‖ Raft node id u64 LE (the data dir's incarnation)
//! shape      = shards u32 LE ‖ members digest u64 LE (xxh3-64 of the sorted member names)
//! transcript = version ‖ shape ‖ dialer identity ‖ acceptor identity ‖ dialer nonce ‖ acceptor nonce
//! k          = HMAC(SECRET_KEY_BASE, "starcite cluster handshake v1")
//! ```
//!
//! Properties (each has a test below):
//! - both sides prove knowledge of the secret; the acceptor acts on nothing from a dialer
//!   before its [`Acceptor::on_proof`] succeeded;
//! - a recorded transcript is useless: the other side's fresh nonce changes the MAC, so a
//!   replayed Proof or Challenge fails;
//! - the cluster's shape (shard count and member names: both decide placement) and both
//!   identities (name and Raft node id) are inside the MAC: a node with another
//!   `STARCITE_SHARDS` is refused with a message saying so, and nothing can be altered in
//!   flight; comparisons of MACs are constant-time (`hmac`'s `verify_slice`);
//! - malformed or truncated messages are errors, never panics.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First bytes of a Hello: a stray client (HTTP, a port scanner) is told apart at once.
pub const MAGIC: &[u8; 8] = b"STARCITE";
/// Bump when the handshake or the frames after it change; peers must match.
pub const PROTOCOL_VERSION: u8 = 2;
/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of an HMAC-SHA256 tag.
pub const TAG_BYTES: usize = 32;
/// Longest node name on the wire (config limits names to 255 bytes).
const NAME_BYTES_MAX: usize = 255;
const KEY_LABEL: &[u8] = b"starcite cluster handshake v1";

/// Why a handshake failed. The connection is closed; the metric counts these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("not a Starcite cluster peer (bad magic)")]
    BadMagic,
    #[error("peer speaks cluster protocol version {peer}, this node {ours}")]
    Version { peer: u8, ours: u8 },
    #[error("peer has STARCITE_SHARDS={peer}, this node {ours}: the shard count must be identical on every node")]
    Shards { peer: u32, ours: u32 },
    #[error("peer lists other CLUSTER_NODES names (digest {peer:016x}, this node {ours:016x}): every node must list the same members")]
    Members { peer: u64, ours: u64 },
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    #[error("peer failed authentication (wrong SECRET_KEY_BASE, or a replayed or altered handshake)")]
    BadProof,
}

/// A node as the handshake names it: its configured name and the Raft node id of its
/// current data dir (a node that lost its disk comes back under the same name with a new
/// id; docs/ARCHITECTURE.md, "Membership").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub name: String,
    pub node_id: u64,
}

/// What must be identical on every node of a cluster, because placement depends on it:
/// the shard count and the member names (their order does not matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub shards: u32,
    /// xxh3-64 of the sorted member names, each followed by a newline (0: not checked,
    /// for tests that only exercise the shard count).
    pub members: u64,
}

impl Shape {
    pub fn new(shards: u32, member_names: &[String]) -> Shape {
        let mut names: Vec<&str> = member_names.iter().map(String::as_str).collect();
        names.sort_unstable();
        let joined: String = names.iter().flat_map(|n| [*n, "\n"]).collect();
        Shape { shards, members: xxhash_rust::xxh3::xxh3_64(joined.as_bytes()) }
    }
}

impl From<u32> for Shape {
    fn from(shards: u32) -> Shape {
        Shape { shards, members: 0 }
    }
}

/// The key both sides derive from the shared secret (never the raw secret on the wire or
/// in a MAC input).
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    pub fn derive(secret_key_base: &[u8]) -> ClusterKey {
        let mut mac = HmacSha256::new_from_slice(secret_key_base).expect("HMAC takes keys of any length");
        mac.update(KEY_LABEL);
        ClusterKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, role: &[u8], transcript: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(role);
        mac.update(transcript);
        mac
    }

    fn tag(&self, role: &[u8], transcript: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(role, transcript).finalize().into_bytes().into()
    }

    fn verify(&self, role: &[u8], transcript: &[u8], tag: &[u8]) -> Result<(), HandshakeError> {
        self.mac(role, transcript).verify_slice(tag).map_err(|_| HandshakeError::BadProof)
    }
}

fn fresh_nonce() -> [u8; NONCE_BYTES] {
    use rand::RngCore;
    let mut n = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn push_shape(out: &mut Vec<u8>, shape: &Shape) {
    out.extend_from_slice(&shape.shards.to_le_bytes());
    out.extend_from_slice(&shape.members.to_le_bytes());
}

fn transcript(shape: &Shape, dialer: &Peer, acceptor: &Peer, dialer_nonce: &[u8], acceptor_nonce: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(32 + dialer.name.len() + acceptor.name.len() + 2 * NONCE_BYTES);
    t.push(PROTOCOL_VERSION);
    push_shape(&mut t, shape);
    for who in [dialer, acceptor] {
        push_identity(&mut t, who);
    }
    t.extend_from_slice(dialer_nonce);
    t.extend_from_slice(acceptor_nonce);
    t
}

/// A cursor over a received message that never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HandshakeError> {
        if self.0.len() < n {
            return Err(HandshakeError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn identity(&mut self) -> Result<Peer, HandshakeError> {
        let len = self.take(1, "truncated name length")?[0] as usize;
        let bytes = self.take(len, "truncated name")?;
        let name = std::str::from_utf8(bytes).map_err(|_| HandshakeError::Malformed("name is not UTF-8"))?;
        if name.is_empty() {
            return Err(HandshakeError::Malformed("empty name"));
        }
        let node_id = u64::from_le_bytes(self.take(8, "truncated node id")?.try_into().expect("8 bytes"));
        if node_id == 0 {
            return Err(HandshakeError::Malformed("node id 0"));
        }
        Ok(Peer { name: name.to_string(), node_id })
    }

    fn end(&self) -> Result<(), HandshakeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(HandshakeError::Malformed("trailing bytes"))
        }
    }
}

fn push_identity(out: &mut Vec<u8>, who: &Peer) {
    let name = &who.name;
    assert!(!name.is_empty() && name.len() <= NAME_BYTES_MAX, "node names are 1-255 bytes (config checks)");
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&who.node_id.to_le_bytes());
}

/// The side that opened the connection.
pub struct Dialer {
    key: ClusterKey,
    me: Peer,
    shape: Shape,
    nonce: [u8; NONCE_BYTES],
}

impl Dialer {
    /// Start a handshake; returns the Hello to send.
    pub fn start(key: ClusterKey, me: &Peer, shape: impl Into<Shape>) -> (Dialer, Vec<u8>) {
        Dialer::start_with_nonce(key, me, shape.into(), fresh_nonce())
    }

    fn start_with_nonce(key: ClusterKey, me: &Peer, shape: Shape, nonce: [u8; NONCE_BYTES]) -> (Dialer, Vec<u8>) {
        let mut hello = Vec::with_capacity(8 + 1 + 12 + 9 + me.name.len() + NONCE_BYTES);
        hello.extend_from_slice(MAGIC);
        hello.push(PROTOCOL_VERSION);
        push_shape(&mut hello, &shape);
        push_identity(&mut hello, me);
        hello.extend_from_slice(&nonce);
        (Dialer { key, me: me.clone(), shape, nonce }, hello)
    }

    /// Check the acceptor's Challenge; returns the Proof to send and the authenticated peer.
    pub fn on_challenge(self, challenge: &[u8]) -> Result<(Vec<u8>, Peer), HandshakeError> {
        let mut r = Reader(challenge);
        let acceptor = r.identity()?;
        let acceptor_nonce = r.take(NONCE_BYTES, "truncated nonce")?;
        let tag = r.take(TAG_BYTES, "truncated proof")?;
        r.end()?;
        let t = transcript(&self.shape, &self.me, &acceptor, &self.nonce, acceptor_nonce);
        self.key.verify(b"acceptor", &t, tag)?;
        Ok((self.key.tag(b"dialer", &t).to_vec(), acceptor))
    }
}

/// The side that accepted the connection: it acts on nothing before `on_proof` succeeds.
pub struct Acceptor {
    key: ClusterKey,
    me: Peer,
    shape: Shape,
    /// (dialer, transcript) once the Hello was accepted.
    pending: Option<(Peer, Vec<u8>)>,
}

impl Acceptor {
    pub fn new(key: ClusterKey, me: &Peer, shape: impl Into<Shape>) -> Acceptor {
        Acceptor { key, me: me.clone(), shape: shape.into(), pending: None }
    }

    /// Check a Hello; returns the Challenge to send.
    pub fn on_hello(&mut self, hello: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        self.on_hello_with_nonce(hello, fresh_nonce())
    }

    fn on_hello_with_nonce(&mut self, hello: &[u8], nonce: [u8; NONCE_BYTES]) -> Result<Vec<u8>, HandshakeError> {
        let mut r = Reader(hello);
        if r.take(MAGIC.len(), "truncated magic")? != MAGIC {
            return Err(HandshakeError::BadMagic);
        }
        let version = r.take(1, "truncated version")?[0];
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version { peer: version, ours: PROTOCOL_VERSION });
        }
        let shards = u32::from_le_bytes(r.take(4, "truncated shard count")?.try_into().expect("4 bytes"));
        if shards != self.shape.shards {
            return Err(HandshakeError::Shards { peer: shards, ours: self.shape.shards });
        }
        let members = u64::from_le_bytes(r.take(8, "truncated members digest")?.try_into().expect("8 bytes"));
        if members != self.shape.members {
            return Err(HandshakeError::Members { peer: members, ours: self.shape.members });
        }
        let dialer = r.identity()?;
        let dialer_nonce = r.take(NONCE_BYTES, "truncated nonce")?;
        r.end()?;
        let t = transcript(&self.shape, &dialer, &self.me, dialer_nonce, &nonce);
        let mut challenge = Vec::with_capacity(9 + self.me.name.len() + NONCE_BYTES + TAG_BYTES);
        push_identity(&mut challenge, &self.me);
        challenge.extend_from_slice(&nonce);
        challenge.extend_from_slice(&self.key.tag(b"acceptor", &t));
        self.pending = Some((dialer, t));
        Ok(challenge)
    }

    /// Check the dialer's Proof; the peer is authenticated when this returns Ok.
    pub fn on_proof(self, proof: &[u8]) -> Result<Peer, HandshakeError> {
        let (dialer, t) = self.pending.ok_or(HandshakeError::Malformed("proof before hello"))?;
        if proof.len() != TAG_BYTES {
            return Err(HandshakeError::Malformed("proof has the wrong length"));
        }
        self.key.verify(b"dialer", &t, proof)?;
        Ok(dialer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a shared secret of at least thirty-two bytes";

    fn key() -> ClusterKey {
        ClusterKey::derive(SECRET)
    }

    fn n1() -> Peer {
        Peer { name: "n1".into(), node_id: 11 }
    }

    fn n2() -> Peer {
        Peer { name: "n2".into(), node_id: 22 }
    }

    /// Run a whole handshake; returns what each side concluded.
    fn handshake(dialer_key: ClusterKey, acceptor_key: ClusterKey, dialer_shards: u32) -> Result<(Peer, Peer), HandshakeError> {
        let (dialer, hello) = Dialer::start(dialer_key, &n1(), dialer_shards);
        let mut acceptor = Acceptor::new(acceptor_key, &n2(), 256);
        let challenge = acceptor.on_hello(&hello)?;
        let (proof, acceptor_seen) = dialer.on_challenge(&challenge)?;
        let dialer_seen = acceptor.on_proof(&proof)?;
        Ok((acceptor_seen, dialer_seen))
    }

    #[test]
    fn peers_with_the_same_secret_and_shards_authenticate_each_other() {
        let (a, d) = handshake(key(), key(), 256).unwrap();
        assert_eq!((a, d), (n2(), n1()));
    }

    #[test]
    fn a_wrong_secret_fails_on_either_side() {
        let wrong = ClusterKey::derive(b"another secret, also long enough to be accepted");
        assert_eq!(handshake(wrong.clone(), key(), 256).err(), Some(HandshakeError::BadProof), "dialer with a wrong secret");
        assert_eq!(handshake(key(), wrong, 256).err(), Some(HandshakeError::BadProof), "acceptor with a wrong secret");
    }

    #[test]
    fn a_different_shard_count_is_refused_by_name() {
        let e = handshake(key(), key(), 128).unwrap_err();
        assert_eq!(e, HandshakeError::Shards { peer: 128, ours: 256 });
        assert!(e.to_string().contains("STARCITE_SHARDS"));
    }

    #[test]
    fn different_member_lists_are_refused_by_name_and_member_order_does_not_matter() {
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let ours = Shape::new(256, &names(&["a", "b", "c"]));
        assert_eq!(ours, Shape::new(256, &names(&["c", "a", "b"])), "order is not part of the shape");
        let theirs = Shape::new(256, &names(&["a", "b", "d"]));
        let (_, hello) = Dialer::start(key(), &n1(), theirs);
        let e = Acceptor::new(key(), &n2(), ours).on_hello(&hello).unwrap_err();
        assert!(matches!(e, HandshakeError::Members { .. }), "{e:?}");
        assert!(e.to_string().contains("CLUSTER_NODES"));
        let (_, hello) = Dialer::start(key(), &n1(), ours);
        assert!(Acceptor::new(key(), &n2(), ours).on_hello(&hello).is_ok());
    }

    #[test]
    fn a_replayed_transcript_fails_against_a_fresh_nonce() {
        // Record a whole successful exchange.
        let (dialer, hello) = Dialer::start(key(), &n1(), 256);
        let mut acceptor = Acceptor::new(key(), &n2(), 256);
        let challenge = acceptor.on_hello(&hello).unwrap();
        let (proof, _) = dialer.on_challenge(&challenge).unwrap();
        acceptor.on_proof(&proof).unwrap();
        // An attacker replays the dialer's side to a new acceptor: new acceptor nonce.
        let mut fresh = Acceptor::new(key(), &n2(), 256);
        fresh.on_hello(&hello).unwrap();
        assert_eq!(fresh.on_proof(&proof).err(), Some(HandshakeError::BadProof));
        // …or the acceptor's side to a new dialer: new dialer nonce.
        let (new_dialer, _) = Dialer::start(key(), &n1(), 256);
        assert_eq!(new_dialer.on_challenge(&challenge).err(), Some(HandshakeError::BadProof));
    }

    #[test]
    fn an_altered_name_or_nonce_fails_the_proof() {
        let (dialer, mut hello) = Dialer::start_with_nonce(key(), &n1(), 256.into(), [7; NONCE_BYTES]);
        let last = hello.len() - 1;
        hello[last] ^= 1; // the dialer nonce, altered in flight
        let mut acceptor = Acceptor::new(key(), &n2(), 256);
        let challenge = acceptor.on_hello_with_nonce(&hello, [9; NONCE_BYTES]).unwrap();
        assert_eq!(dialer.on_challenge(&challenge).err(), Some(HandshakeError::BadProof));
    }

    #[test]
    fn garbage_and_truncated_messages_are_errors_not_panics() {
        let mut acceptor = Acceptor::new(key(), &n2(), 256);
        assert_eq!(acceptor.on_hello(b"GET / HTTP/1.1\r\n\r\n").err(), Some(HandshakeError::BadMagic));
        let (_, hello) = Dialer::start(key(), &n1(), 256);
        for cut in 0..hello.len() {
            let mut a = Acceptor::new(key(), &n2(), 256);
            assert!(matches!(a.on_hello(&hello[..cut]), Err(HandshakeError::Malformed(_) | HandshakeError::BadMagic)), "cut at {cut}");
        }
        let mut versioned = hello.clone();
        assert_eq!(versioned[8], PROTOCOL_VERSION);
        versioned[8] = 99;
        assert_eq!(
            Acceptor::new(key(), &n2(), 256).on_hello(&versioned).err(),
            Some(HandshakeError::Version { peer: 99, ours: PROTOCOL_VERSION })
        );
        assert!(Acceptor::new(key(), &n2(), 256).on_proof(&[0; TAG_BYTES]).is_err(), "a proof before any hello");
        let mut a = Acceptor::new(key(), &n2(), 256);
        let challenge = a.on_hello(&hello).unwrap();
        assert!(a.on_proof(&[0; 5]).is_err());
        for cut in 0..challenge.len() {
            let (d, _) = Dialer::start(key(), &n1(), 256);
            assert!(d.on_challenge(&challenge[..cut]).is_err(), "cut at {cut}");
        }
        // Random bytes of every length never panic.
        let mut rng = 0x2545f4914f6cdd1du64;
        for n in 0..300 {
            let bytes = crate::cluster::noise(&mut rng, n);
            let _ = Acceptor::new(key(), &n2(), 256).on_hello(&bytes);
            let (d, _) = Dialer::start(key(), &n1(), 256);
            let _ = d.on_challenge(&bytes);
        }
    }
}
