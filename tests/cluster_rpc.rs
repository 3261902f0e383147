//! Raft RPCs between two executors over a real, authenticated loopback connection
//! (src/cluster/peer.rs): many calls in flight answered out of order reach the right
//! callers, a call whose answer never comes times out, and a connection that dies fails
//! every pending call at once instead of hanging.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use openraft::raft::{VoteRequest, VoteResponse};
use openraft::Vote;
use starcite::cluster::handshake::{ClusterKey, Peer};
use starcite::cluster::peer::{serve, CallFailure, RpcClient};
use starcite::cluster::rpc::{Request, Response};
use starcite::cluster::session::{accept, dial};

const SECRET: &[u8] = b"the cluster's shared secret, thirty-two bytes or more";

fn peer(name: &str) -> Peer {
    Peer { name: name.to_string(), node_id: 1 + name.len() as u64 }
}

/// A server that answers Vote requests by granting them iff the term is even, after a delay
/// of (100 - term) ms — so later requests overtake earlier ones — never answers term 999,
/// and drops the connection (ends its executor) on term 998.
fn start_server() -> u16 {
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            let stream = listener.accept().await.expect("accept");
            let (framed, _peer) = accept(stream, ClusterKey::derive(SECRET), &peer("server"), 256).await.expect("authenticated");
            let (stream, leftover) = framed.into_parts();
            let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
            let stop = std::rc::Rc::new(std::cell::RefCell::new(Some(stop_tx)));
            let serving = serve(
                stream,
                leftover,
                move |shard, request| {
                    let stop = stop.clone();
                    async move {
                        let Request::Vote(v) = request else { panic!("only votes in this test") };
                        let term = v.vote.leader_id().term;
                        if term == 998 {
                            if let Some(tx) = stop.borrow_mut().take() {
                                let _ = tx.send(());
                            }
                        }
                        if term >= 998 {
                            futures::future::pending::<()>().await;
                        }
                        glommio::timer::sleep(Duration::from_millis(100u64.saturating_sub(term))).await;
                        let granted = term % 2 == 0 && shard == 7;
                        Response::Vote(Ok(VoteResponse { vote: v.vote, vote_granted: granted, last_log_id: None }))
                    }
                },
                Box::pin(futures::future::pending()),
            );
            use futures::FutureExt;
            // Serve until told to drop the connection (or, bounded, 30 s).
            futures::select! {
                _ = serving.fuse() => {}
                _ = stop_rx.fuse() => {}
                _ = glommio::timer::sleep(Duration::from_secs(30)).fuse() => {}
            }
        });
    });
    port_rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

fn vote(term: u64) -> Request {
    Request::Vote(VoteRequest { vote: Vote::new(term, 3), last_log_id: None })
}

#[test]
fn calls_in_flight_get_their_own_answers_time_out_or_fail_when_the_connection_dies() {
    let port = start_server();
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
        let stream = glommio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let (framed, peer) = dial(stream, ClusterKey::derive(SECRET), &peer("client"), 256).await.expect("authenticated");
        assert_eq!(peer.name, "server");
        let (stream, leftover) = framed.into_parts();
        let client = std::rc::Rc::new(RpcClient::start(stream, leftover));

        // 20 calls at once; the server answers the later ones first.
        let calls: Vec<_> = (1..=20u64)
            .map(|term| {
                let client = client.clone();
                glommio::spawn_local(async move { (term, client.call(7, &vote(term), Duration::from_secs(5)).await) })
            })
            .collect();
        for call in calls {
            let (term, answer) = call.await;
            match answer {
                Ok(Response::Vote(Ok(r))) => {
                    assert_eq!(r.vote.leader_id().term, term, "an answer reached another caller");
                    assert_eq!(r.vote_granted, term % 2 == 0);
                }
                other => panic!("term {term}: {other:?}"),
            }
        }

        // No answer: a timeout, on time, and the client keeps working.
        let started = Instant::now();
        let r = client.call(7, &vote(999), Duration::from_millis(200)).await;
        assert_eq!(r.err(), Some(CallFailure::Timeout(Duration::from_millis(200))));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(client.call(7, &vote(2), Duration::from_secs(5)).await, Ok(Response::Vote(Ok(_)))));

        // The connection dies under pending calls: each fails as unreachable, none hangs.
        let pending: Vec<_> = (0..3)
            .map(|_| {
                let client = client.clone();
                glommio::spawn_local(async move { client.call(7, &vote(999), Duration::from_secs(30)).await })
            })
            .collect();
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        // Term 998 makes the server drop the connection.
        let _ = client.call(7, &vote(998), Duration::from_secs(30)).await;
        for p in pending {
            assert!(matches!(p.await, Err(CallFailure::Unreachable(_))));
        }
        assert!(started.elapsed() < Duration::from_secs(10), "pending calls hung");
        assert!(client.is_dead());
        assert!(matches!(client.call(7, &vote(2), Duration::from_secs(1)).await, Err(CallFailure::NotSent(_))));
    });
}

/// Regression (found by the fault campaign, chaos/): a caller that dropped its `connect`
/// while the dial was in flight (openraft drops an RPC at its TTL) left the link marked
/// "dialing" forever, so the node never reached that peer again. After the drop, the next
/// call must dial again: the listener sees a second connection.
#[test]
fn a_dropped_dial_does_not_block_the_next() {
    use futures::FutureExt;
    use starcite::cluster::handshake::Shape;
    use starcite::cluster::links::{Links, Member};
    // A peer that accepts connections and never answers the handshake.
    let (accepted_tx, accepted_rx) = mpsc::channel::<()>();
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            let mut held = Vec::new();
            for _ in 0..2 {
                let accept = listener.accept().fuse();
                let stop = glommio::timer::sleep(Duration::from_secs(20)).fuse();
                futures::pin_mut!(accept, stop);
                futures::select! {
                    s = accept => { held.push(s.expect("accept")); let _ = accepted_tx.send(()); }
                    _ = stop => return,
                }
            }
            // Keep both connections open (unanswered) while the client looks.
            glommio::timer::sleep(Duration::from_secs(2)).await;
            drop(held);
        });
    });
    let port = port_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
        let names = ["client".to_string(), "silent".to_string()];
        let members = [
            Member { name: "client".into(), addr: "127.0.0.1:1".into() },
            Member { name: "silent".into(), addr: format!("127.0.0.1:{port}") },
        ];
        let links = Links::new(peer("client"), ClusterKey::derive(SECRET), Shape::new(256, &names), &members);
        // The first dial gets a TCP connection, then no handshake answer; its caller gives up.
        futures::select! {
            _ = links.connect("silent").fuse() => panic!("the silent peer cannot complete a handshake"),
            _ = glommio::timer::sleep(Duration::from_millis(300)).fuse() => {}
        }
        // The next call dials again (before the fix: an immediate NotSent "connecting").
        futures::select! {
            r = links.connect("silent").fuse() => panic!("a second dial should be in progress, got {:?}", r.err()),
            _ = glommio::timer::sleep(Duration::from_millis(300)).fuse() => {}
        }
    });
    for attempt in 1..=2 {
        accepted_rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("dial {attempt} never reached the peer"));
    }
}
