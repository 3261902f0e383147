//! Cluster peer authentication over real loopback sockets: an acceptor (glommio TCP, the
//! node's code path in src/cluster/session.rs) against hand-driven peers (blocking std
//! sockets): a wrong secret, garbage bytes, a replayed handshake transcript, a truncated
//! frame and a frame claiming 4 GiB are each refused before anything they sent reaches the
//! handler, and the acceptor keeps serving good peers afterwards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use starcite::cluster::handshake::{ClusterKey, Dialer, Peer};
use starcite::cluster::session::{accept, kind};
use starcite::cluster::wire::{self, Decoder};
use starcite::limits::CLUSTER_HANDSHAKE_TIMEOUT_MS;

const SECRET: &[u8] = b"the cluster's shared secret, thirty-two bytes or more";

fn peer(name: &str) -> Peer {
    Peer { name: name.to_string(), node_id: 1 + name.len() as u64 }
}
const SHARDS: u32 = 256;

/// What the acceptor reports per connection: the authenticated peer (if any), whether it
/// ended as a rejection, why, and the frames it delivered to the handler.
#[derive(Debug)]
struct Outcome {
    peer: Option<String>,
    rejected: bool,
    reason: String,
    frames: Vec<(u8, Vec<u8>)>,
}

/// Start an acceptor on 127.0.0.1:0 that serves `connections` connections, one at a time,
/// then stops. Returns its port and the channel of outcomes.
fn start_acceptor(connections: usize) -> (u16, mpsc::Receiver<Outcome>) {
    let (port_tx, port_rx) = mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            for _ in 0..connections {
                let stream = listener.accept().await.expect("accept");
                let outcome = match accept(stream, ClusterKey::derive(SECRET), &peer("acceptor"), SHARDS).await {
                    Err(why) => Outcome { peer: None, rejected: why.is_rejection(), reason: why.to_string(), frames: vec![] },
                    Ok((mut framed, peer)) => {
                        // Authenticated: collect its frames until the connection ends.
                        let mut frames = Vec::new();
                        let why = loop {
                            match framed.read_frame().await {
                                Ok(f) => frames.push((f.kind, f.body)),
                                Err(e) => break e,
                            }
                        };
                        Outcome { peer: Some(peer.name), rejected: why.is_rejection(), reason: why.to_string(), frames }
                    }
                };
                out_tx.send(outcome).unwrap();
            }
        });
    });
    (port_rx.recv_timeout(Duration::from_secs(10)).unwrap(), out_rx)
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send_frame(s: &mut TcpStream, kind: u8, body: &[u8]) {
    let mut out = Vec::new();
    wire::encode(&mut out, kind, body);
    s.write_all(&out).unwrap();
}

/// Read one frame (blocking); None when the acceptor closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<wire::Frame> {
    let mut d = Decoder::default();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(f) = d.next_frame().unwrap() {
            return Some(f);
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => d.push(&buf[..n]),
        }
    }
}

/// The acceptor closed its side: a read ends (EOF or reset) instead of timing out.
fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the acceptor kept the connection open: {e}"),
        }
    }
}

/// A well-behaved peer: handshake with `secret`, then one frame. Returns the handshake
/// bytes it sent (Hello, Proof) for replay.
fn good_peer(port: u16, secret: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut s = connect(port);
    let (dialer, hello) = Dialer::start(ClusterKey::derive(secret), &peer("dialer"), SHARDS);
    send_frame(&mut s, kind::HELLO, &hello);
    let challenge = read_frame(&mut s).expect("challenge");
    match dialer.on_challenge(&challenge.body) {
        Ok((proof, peer)) => {
            assert_eq!(peer.name, "acceptor");
            send_frame(&mut s, kind::PROOF, &proof);
            send_frame(&mut s, 16, b"after auth");
            drop(s);
            (hello, proof)
        }
        Err(e) => {
            // A dialer with the wrong secret already refuses the acceptor; send a proof
            // anyway, as an attacker would, to exercise the acceptor's check.
            send_frame(&mut s, kind::PROOF, &[0u8; 32]);
            send_frame(&mut s, 16, b"must never be delivered");
            assert_closed(&mut s);
            assert!(e.to_string().contains("authentication"));
            (hello, Vec::new())
        }
    }
}

#[test]
fn only_authenticated_peers_reach_the_handler_and_the_acceptor_keeps_serving() {
    let (port, outcomes) = start_acceptor(7);
    let next = || outcomes.recv_timeout(Duration::from_millis(CLUSTER_HANDSHAKE_TIMEOUT_MS) + Duration::from_secs(10)).unwrap();

    // 1. A good peer: authenticated, its frame delivered.
    let (hello, proof) = good_peer(port, SECRET);
    let o = next();
    assert_eq!(o.peer.as_deref(), Some("dialer"));
    assert_eq!(o.frames, vec![(16, b"after auth".to_vec())]);

    // 2. A wrong secret: refused, nothing delivered.
    good_peer(port, b"a wrong secret that is also more than thirty-two bytes");
    let o = next();
    assert!(o.peer.is_none() && o.rejected && o.frames.is_empty(), "{o:?}");
    assert!(o.reason.contains("authentication"), "{}", o.reason);

    // 3. Garbage (an HTTP request): refused from its first bytes.
    let mut s = connect(port);
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    assert_closed(&mut s);
    let o = next();
    assert!(o.peer.is_none() && o.rejected && o.frames.is_empty(), "{o:?}");

    // 4. A replayed transcript: the recorded Hello and Proof against a fresh challenge.
    let mut s = connect(port);
    send_frame(&mut s, kind::HELLO, &hello);
    read_frame(&mut s).expect("a fresh challenge");
    send_frame(&mut s, kind::PROOF, &proof);
    send_frame(&mut s, 16, b"replayed");
    assert_closed(&mut s);
    let o = next();
    assert!(o.peer.is_none() && o.rejected && o.frames.is_empty(), "{o:?}");
    assert!(o.reason.contains("authentication"), "{}", o.reason);

    // 5. A frame claiming 4 GiB: refused from its header, nothing buffered for it.
    let mut s = connect(port);
    let mut header = u32::MAX.to_le_bytes().to_vec();
    header.extend_from_slice(&[0; 4]);
    s.write_all(&header).unwrap();
    assert_closed(&mut s);
    let o = next();
    assert!(o.rejected && o.reason.contains("exceeds the limit"), "{o:?}");

    // 6. A truncated frame that never completes: cut off by the handshake timeout.
    let mut s = connect(port);
    let mut partial = Vec::new();
    wire::encode(&mut partial, kind::HELLO, &hello);
    s.write_all(&partial[..partial.len() / 2]).unwrap();
    assert_closed(&mut s);
    let o = next();
    assert!(o.rejected && o.reason.contains("did not finish the handshake"), "{o:?}");

    // 7. And a good peer is still served.
    good_peer(port, SECRET);
    assert_eq!(next().peer.as_deref(), Some("dialer"));
}

#[test]
fn the_node_dialer_and_acceptor_authenticate_each_other_and_carry_frames() {
    let (port, outcomes) = start_acceptor(2);
    let dial_with = |secret: &'static [u8]| {
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let stream = glommio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
            match starcite::cluster::session::dial(stream, ClusterKey::derive(secret), &peer("dialer"), SHARDS).await {
                Ok((mut framed, peer)) => {
                    assert_eq!(peer.name, "acceptor");
                    framed.write_frame(17, b"hello over glommio").await.expect("write");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        })
    };
    dial_with(SECRET).expect("authenticated");
    let o = outcomes.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(o.frames, vec![(17, b"hello over glommio".to_vec())]);
    // The dialer refuses an acceptor that cannot prove the secret (here: the dialer's is wrong).
    let e = dial_with(b"not the cluster's secret, though long enough anyway").unwrap_err();
    assert!(e.contains("authentication"), "{e}");
    let o = outcomes.recv_timeout(Duration::from_millis(CLUSTER_HANDSHAKE_TIMEOUT_MS) + Duration::from_secs(10)).unwrap();
    assert!(o.peer.is_none() && o.frames.is_empty(), "{o:?}");
}
