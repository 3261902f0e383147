//! A real cluster (SPEC §4): three or four `starcite` processes on loopback, each with its
//! own data dir and cluster port, authenticated with a shared secret. Every test is bounded
//! in time (READY_WAIT, writer deadlines) and kills its processes on the way out.
//!
//! - any node serves the single-node contract: create, append with expected_seq chains and
//!   idempotent retries through different nodes, identical pages and WS/SSE tails on every
//!   node, including one that hosts no replica of the session's shard;
//! - kill -9 of a shard leader under concurrent appends: writes resume, every acknowledged
//!   event is present exactly once at its acknowledged seq on every node, and the killed
//!   node catches up after a restart;
//! - a node that comes back with an empty data dir is repaired by its peers (new
//!   incarnation, learner, voter) and then carries the quorum with one of the others;
//! - an unauthenticated peer (garbage, a 4 GiB frame, the wrong secret) or a misconfigured
//!   one (another member list) is refused and counted while the cluster keeps serving;
//! - a rolling SIGTERM restart of every node under load fails no write that a client
//!   cannot safely retry, and loses nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use starcite::runtime::placement::{replicas, shard_of};

const SECRET: &str = "a cluster secret for tests, longer than thirty-two bytes";
const SHARDS: u32 = 8;

struct Cluster {
    nodes: Vec<Server>,
    names: Vec<String>,
    cluster_ports: Vec<u16>,
}

/// Ports free right now, below the kernel's ephemeral range (32768 and up here): a node's
/// cluster port must still be free when the node restarts, and an ephemeral one may have
/// been taken meanwhile by any outgoing connection.
/// Tests of this process take ports in turn from here (never the same twice).
static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn free_ports(n: usize) -> Vec<u16> {
    let base = 20_000 + (std::process::id() % 500) * 20;
    let mut held = Vec::new();
    while held.len() < n {
        let candidate = (base + NEXT_PORT.fetch_add(1, Ordering::SeqCst) % 2_000) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("0.0.0.0", candidate)) {
            held.push(l);
        }
    }
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// A cluster whose nodes all run with the extra variables `extra`.
    fn start_with(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let cluster_ports = free_ports(n);
        let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        let members = names.iter().zip(&cluster_ports).map(|(name, port)| format!("{name}@127.0.0.1:{port}")).collect::<Vec<_>>().join(",");
        let mut nodes: Vec<Server> = names
            .iter()
            .map(|name| {
                let env: Vec<(String, String)> = [
                    ("NODE_NAME", name.as_str()),
                    ("CLUSTER_NODES", members.as_str()),
                    ("SECRET_KEY_BASE", SECRET),
                    ("STARCITE_CORES", "1"),
                    ("STARCITE_SHARDS", "8"),
                    ("STARCITE_REQUEST_TIMEOUT_MS", "5000"),
                ]
                .iter()
                .chain(extra)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                Server::unstarted(&env)
            })
            .collect();
        for node in &mut nodes {
            node.launch();
        }
        for node in &mut nodes {
            node.wait_ready();
        }
        Cluster { nodes, names, cluster_ports }
    }

    /// The nodes holding a replica of `session`'s shard (indexes into `nodes`).
    fn replica_nodes(&self, session: &str) -> Vec<usize> {
        let shard = shard_of(session, SHARDS);
        replicas(shard, &self.names).iter().map(|r| self.names.iter().position(|n| n == r).unwrap()).collect()
    }

    /// The node that leads `session`'s shard, as the nodes' metrics say (waits for one).
    fn leader_of(&self, session: &str) -> usize {
        let shard = shard_of(session, SHARDS);
        let series = format!("starcite_raft_is_leader{{shard=\"{shard}\"}}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, node) in self.nodes.iter().enumerate() {
                if let Ok(r) = try_request(node.port, "GET", "/metrics", &[], b"") {
                    if starcite::metrics::parse_exposition(&r.text()).get(&series) == Some(&1.0) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader for shard {shard}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A session id whose shard's replicas are exactly `want(replica node indexes)`.
fn session_where(cluster: &Cluster, prefix: &str, want: impl Fn(&[usize]) -> bool) -> String {
    (0..10_000).map(|i| format!("{prefix}-{i}")).find(|s| want(&cluster.replica_nodes(s))).expect("some id lands on such a shard")
}

/// Pages of a session, as raw response bodies, through one node (linearizable reads).
fn page_text(node: &Server, session: &str) -> String {
    let r = node.req("GET", &format!("/v1/sessions/{session}/events?cursor=0&limit=1000"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

#[test]
fn every_node_serves_the_same_contract_and_the_same_tails() {
    let c = Cluster::start(4);
    // A session whose shard is not hosted by node 4 (index 3): node 4 forwards everything
    // and tails it from another node's replica.
    let s = session_where(&c, "contract", |r| !r.contains(&3));
    let r = c.nodes[3].create(&s);
    assert_eq!(r.json()["id"], s.as_str());
    c.nodes[1].json("POST", "/v1/sessions", json!({ "id": s })).assert_error(409, "session_exists");
    c.nodes[2].req("GET", "/v1/sessions/nobody-has-this", "").assert_error(404, "session_not_found");

    // An expected_seq chain across every node.
    for (i, node) in c.nodes.iter().enumerate() {
        let r = node.append(&s, json!({ "type": "t", "payload": { "i": i, "x": 0.9574343289165503 }, "actor": "a", "expected_seq": i }));
        assert_eq!(r.status, 201, "node {i}: {}", r.text());
        assert_eq!(r.json()["seq"], i + 1);
    }
    c.nodes[1]
        .append(&s, json!({ "type": "t", "payload": {}, "actor": "a", "expected_seq": 1 }))
        .assert_error(409, "expected_seq_conflict");

    // An idempotent retry through a different node.
    let body = json!({ "type": "t", "payload": { "k": 1 }, "actor": "a", "idempotency_key": "once" });
    let first = c.nodes[0].append(&s, body.clone()).json();
    let again = c.nodes[3].append(&s, body.clone()).json();
    assert_eq!((first["seq"].clone(), first["deduped"].clone()), (json!(5), json!(false)));
    assert_eq!((again["seq"].clone(), again["deduped"].clone()), (json!(5), json!(true)));
    let mut altered = body.clone();
    altered["payload"]["k"] = json!(2);
    c.nodes[2].append(&s, altered).assert_error(409, "idempotency_conflict");

    // Linearizable: the record and the page through every node include every acked append.
    let pages: Vec<String> = c.nodes.iter().map(|n| page_text(n, &s)).collect();
    assert!(pages.iter().all(|p| p == &pages[0]), "pages differ between nodes: {pages:#?}");
    assert_eq!(serde_json::from_str::<Value>(&pages[0]).unwrap()["last_seq"], 5);
    for node in &c.nodes {
        assert_eq!(node.req("GET", &format!("/v1/sessions/{s}"), "").json()["last_seq"], 5);
    }

    // Tails on every node, replay then live, deliver the same frames.
    let mut ws: Vec<Ws> = c.nodes.iter().map(|n| ws_connect(n.port, &format!("/v1/sessions/{s}/tail?cursor=2")).unwrap()).collect();
    let mut sse: Vec<Conn> = c.nodes.iter().map(|n| sse_open(n.port, &format!("/v1/sessions/{s}/tail?cursor=2"), &[])).collect();
    let replayed: Vec<Vec<String>> = ws.iter_mut().map(|w| ws_frames(w, 3)).collect();
    let r = c.nodes[2].append(&s, json!({ "type": "live", "payload": { "n": 6 }, "actor": "a" }));
    assert_eq!(r.json()["seq"], 6);
    let live: Vec<Vec<String>> = ws.iter_mut().map(|w| ws_frames(w, 1)).collect();
    let sse_seen: Vec<Vec<String>> = sse.iter_mut().map(|c| sse_data(c, 4)).collect();
    // Byte-identical frames on every node and transport, and the same events as the page
    // (compared parsed: serde_json's f64 would respell 0.9574343289165503 on our side).
    let page: Value = serde_json::from_str(&page_text(&c.nodes[3], &s)).unwrap();
    let expected: Vec<Value> = page["events"].as_array().unwrap()[2..].to_vec();
    let mut first: Option<Vec<String>> = None;
    for i in 0..c.nodes.len() {
        let mut got = replayed[i].clone();
        got.extend(live[i].clone());
        assert_eq!(got, sse_seen[i], "WS and SSE tails on node {i}");
        assert_eq!(got.iter().map(|t| serde_json::from_str::<Value>(t).unwrap()).collect::<Vec<_>>(), expected, "tail on node {i}");
        assert!(got[0].contains("0.9574343289165503"), "numbers exactly as sent: {}", got[0]);
        assert_eq!(first.get_or_insert_with(|| got.clone()), &got, "tails on node 0 and node {i}");
    }
}

/// An append a writer saw acknowledged (201), with the body it sent.
#[derive(Clone, Debug)]
struct Ack {
    session: String,
    seq: u64,
    body: Value,
}

/// Writers appending to `sessions` through `ports` (round robin per writer) until `stop`
/// (then each finishes the append it is in) or `deadline`, each append with its own
/// idempotency key; a 503 or a lost connection is retried with the same body and key (what
/// a client may safely do), on the next node. Anything else fails the test. Returns the
/// acknowledged appends and how many were retried after a 503 (a refused connection, a node
/// down, is retried too but not counted); an append still unacknowledged at the deadline
/// fails the test.
fn write_under_faults(
    ports: Arc<Mutex<Vec<u16>>>,
    sessions: Vec<String>,
    writers: usize,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> (Vec<Ack>, usize) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let retries = Arc::new(Mutex::new(0usize));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (ports, sessions, acked, retries, stop) = (ports.clone(), sessions.clone(), acked.clone(), retries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut attempt = w;
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let session = &sessions[(w + n) % sessions.len()];
                    let body = json!({ "type": "w", "payload": { "w": w, "n": n }, "actor": format!("writer-{w}"), "idempotency_key": format!("w{w}-{n}") });
                    loop {
                        assert!(Instant::now() < deadline, "writer {w}: append {n} not acknowledged by the deadline");
                        let port = {
                            let p = ports.lock().unwrap();
                            p[attempt % p.len()]
                        };
                        attempt += 1;
                        let path = format!("/v1/sessions/{session}/append");
                        match try_request(port, "POST", &path, &[], body.to_string().as_bytes()) {
                            Ok(r) if r.status == 201 => {
                                let seq = r.json()["seq"].as_u64().unwrap();
                                acked.lock().unwrap().push(Ack { session: session.clone(), seq, body: body.clone() });
                                break;
                            }
                            Ok(r) if r.status == 503 => {
                                eprintln!("retrying after 503: {}", r.text());
                                *retries.lock().unwrap() += 1;
                            }
                            Ok(r) => panic!("append {session} through port {port}: unexpected {}: {}", r.status, r.text()),
                            Err(_) => {} // the node is down: try the next one
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let retries = *retries.lock().unwrap();
    (acked, retries)
}

/// Every acknowledged append is present exactly once, at its acknowledged seq, with the
/// content sent, on `node`; every history is gap-free and has no event twice.
fn assert_exactly_once(node: &Server, acked: &[Ack]) {
    let mut histories: HashMap<String, Vec<Value>> = HashMap::new();
    for a in acked {
        let events = histories.entry(a.session.clone()).or_insert_with(|| node.all_events(&a.session));
        let e = events.get(a.seq as usize - 1).unwrap_or_else(|| panic!("acknowledged {}#{} lost on port {}", a.session, a.seq, node.port));
        for field in ["type", "payload", "actor", "idempotency_key"] {
            assert_eq!(e[field], a.body[field], "{field} of {}#{} on port {}", a.session, a.seq, node.port);
        }
    }
    for (session, events) in &histories {
        assert_contiguous(events, 1);
        let mut keys = HashSet::new();
        for e in events {
            assert!(keys.insert(e["idempotency_key"].to_string()), "{session}: {e} appended twice");
        }
    }
}

#[test]
fn a_killed_leader_loses_no_acknowledged_append_and_catches_up_after_restart() {
    let mut c = Cluster::start(3);
    let sessions: Vec<String> = (0..6).map(|i| format!("crash-{i}")).collect();
    for s in &sessions {
        c.nodes[i_of(s)].create(s);
    }
    let victim = c.leader_of(&sessions[0]);
    let survivors: Vec<u16> = (0..3).filter(|i| *i != victim).map(|i| c.nodes[i].port).collect();
    let ports = Arc::new(Mutex::new((0..3).map(|i| c.nodes[i].port).collect::<Vec<_>>()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (ports, sessions, stop) = (ports.clone(), sessions.clone(), stop.clone());
        std::thread::spawn(move || write_under_faults(ports, sessions, 6, stop, deadline))
    };
    std::thread::sleep(Duration::from_millis(1000));
    c.nodes[victim].kill9();
    // Clients keep using the dead node's address for a while, then move on.
    std::thread::sleep(Duration::from_millis(500));
    *ports.lock().unwrap() = survivors;
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::SeqCst);
    let (acked, retries) = writing.join().unwrap();
    eprintln!("kill -9 of the leader: {} appends acknowledged, {retries} retried after a 503", acked.len());
    assert!(acked.len() > 100, "writes went on: {} acknowledged", acked.len());
    let new_leader = c.leader_of(&sessions[0]);
    assert_ne!(new_leader, victim);
    for i in (0..3).filter(|i| *i != victim) {
        assert_exactly_once(&c.nodes[i], &acked);
    }
    // The killed node restarts with its data and catches up by itself.
    c.nodes[victim].launch();
    c.nodes[victim].wait_ready();
    for s in &sessions {
        let pages: Vec<String> = c.nodes.iter().map(|n| page_text(n, s)).collect();
        assert!(pages.iter().all(|p| p == &pages[0]), "{s}: pages differ after the restart");
    }
    assert_exactly_once(&c.nodes[victim], &acked);
}

/// Which node creates session `s` in tests that do not care (spread over three).
fn i_of(s: &str) -> usize {
    s.bytes().map(usize::from).sum::<usize>() % 3
}

#[test]
fn a_node_back_with_an_empty_disk_is_repaired_and_then_carries_the_quorum() {
    let mut c = Cluster::start(3);
    let s = "amnesia";
    c.nodes[0].create(s);
    for i in 0..20 {
        assert_eq!(c.nodes[i % 3].append(s, event(i)).status, 201);
    }
    let manifest = |n: &Server| std::fs::read_to_string(n.data_dir.join("STARCITE_MANIFEST")).unwrap();
    let id_before = manifest(&c.nodes[1]);
    c.nodes[1].kill9();
    std::fs::remove_dir_all(&c.nodes[1].data_dir).unwrap();
    // Appends continue on the other two meanwhile.
    for i in 20..25 {
        assert_eq!(c.nodes[[0, 2][i % 2]].append(s, event(i)).status, 201);
    }
    c.nodes[1].launch();
    c.nodes[1].wait_ready();
    assert_ne!(manifest(&c.nodes[1]), id_before, "a wiped node comes back under a new incarnation");
    let expected = page_text(&c.nodes[0], s);
    assert_eq!(page_text(&c.nodes[1], s), expected);
    // Wait until every group's voters are the three current incarnations (each of the 8
    // groups has a replica on every one of the 3 nodes): then node 2, the repaired one, and
    // one other make a quorum, and everything acknowledged must be there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_repairs(&c) < SHARDS as usize {
        assert!(Instant::now() < deadline, "groups not repaired: {} of {SHARDS}", count_repairs(&c));
        std::thread::sleep(Duration::from_millis(100));
    }
    c.nodes[0].kill9();
    let r = c.nodes[1].append(s, event(25));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["seq"], 26);
    let events = c.nodes[2].all_events(s);
    assert_eq!(events.len(), 26);
    assert_contiguous(&events, 1);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["payload"]["i"], i, "event {}", i + 1);
    }
}

/// openraft leaves a group in joint consensus when its leader dies between the two steps
/// of a membership change; the next leader must finish the change. Each leader here exits
/// (debug failpoint) the moment its group enters the joint config while it adds a wiped
/// replica's new incarnation; restarted without the failpoint, the new leaders must take
/// every group to the three current incarnations — proven by losing another original
/// replica afterwards. Before the fix a joint group stayed joint for good (fault campaign,
/// seed 7: a replica's new incarnation was never added and it never became ready).
#[test]
fn a_membership_change_cut_short_by_a_leader_crash_is_finished() {
    const CRASH: &str = "STARCITE_TEST_CRASH_IN_JOINT_CONFIG";
    let mut c = Cluster::start_with(3, &[(CRASH, "1")]);
    let s = "cut-short";
    c.nodes[0].create(s);
    for i in 0..10 {
        assert_eq!(c.nodes[i % 3].append(s, event(i)).status, 201);
    }
    c.nodes[1].kill9();
    std::fs::remove_dir_all(&c.nodes[1].data_dir).unwrap();
    c.nodes[1].set_env(CRASH, None);
    c.nodes[1].launch();
    let mut crashes = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while count_repairs(&c) < SHARDS as usize {
        assert!(Instant::now() < deadline, "groups not repaired: {} of {SHARDS} after {crashes} leader crashes", count_repairs(&c));
        for i in [0, 2] {
            if !c.nodes[i].is_running() {
                assert!(c.nodes[i].stderr().contains("exiting in the joint config"), "node {i} died otherwise");
                crashes += 1;
                c.nodes[i].kill9();
                c.nodes[i].set_env(CRASH, None);
                c.nodes[i].launch();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(crashes > 0, "no leader crashed in a joint config: the test proved nothing");
    c.nodes[1].wait_ready();
    c.nodes[0].kill9();
    let r = append_retrying(&c.nodes[1], s, event(10), "after-repair");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["seq"], 11);
    let events = c.nodes[2].all_events(s);
    assert_eq!(events.len(), 11);
    assert_contiguous(&events, 1);
}

/// Groups whose voters were replaced (logged once per group by its leader).
fn count_repairs(c: &Cluster) -> usize {
    c.nodes.iter().map(|n| n.stderr().matches("replaced the group's voters").count()).sum()
}

#[test]
fn an_unauthenticated_or_misconfigured_peer_is_refused_and_counted_and_the_cluster_keeps_serving() {
    use starcite::cluster::handshake::{ClusterKey, Dialer, Peer, Shape};
    use starcite::cluster::session::kind;
    use starcite::cluster::wire;
    let c = Cluster::start(3);
    let port = c.cluster_ports[0];
    let closed = |s: &mut std::net::TcpStream| {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    let read_frame = |s: &mut std::net::TcpStream| {
        let mut decoder = wire::Decoder::default();
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(Some(f)) = decoder.next_frame() {
                return Some(f);
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => decoder.push(&buf[..n]),
            }
        }
    };
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Garbage.
    let mut s = connect();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    assert!(closed(&mut s));
    // A frame claiming 4 GiB.
    let mut s = connect();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1]).unwrap();
    assert!(closed(&mut s));
    // The wrong secret, posing as a member (with the cluster's true shape).
    let mut s = connect();
    let me = Peer { name: "node-2".into(), node_id: 42 };
    let shape = Shape::new(SHARDS, &c.names);
    let (_dialer, hello) = Dialer::start(ClusterKey::derive(b"not the cluster's secret, but long enough"), &me, shape);
    let mut frame = Vec::new();
    wire::encode(&mut frame, kind::HELLO, &hello);
    s.write_all(&frame).unwrap();
    // The acceptor answers a challenge the impostor cannot verify; its proof fails.
    let challenge = read_frame(&mut s).expect("a challenge for a well-formed hello");
    assert_eq!(challenge.kind, kind::CHALLENGE);
    let mut proof = Vec::new();
    wire::encode(&mut proof, kind::PROOF, &[0u8; 32]);
    let _ = s.write_all(&proof);
    assert!(closed(&mut s));
    // The right secret but another member list (a misconfigured node): refused at hello.
    let mut s = connect();
    let other = Shape::new(SHARDS, &["node-1".to_string(), "node-2".to_string(), "node-9".to_string()]);
    let (_dialer, hello) = Dialer::start(ClusterKey::derive(SECRET.as_bytes()), &me, other);
    let mut frame = Vec::new();
    wire::encode(&mut frame, kind::HELLO, &hello);
    s.write_all(&frame).unwrap();
    assert!(read_frame(&mut s).is_none(), "no challenge for a node with another member list");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&c.nodes[0], "starcite_cluster_handshake_rejections_total") < 4.0 {
        assert!(
            Instant::now() < deadline,
            "rejections not counted: {}",
            metric(&c.nodes[0], "starcite_cluster_handshake_rejections_total")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still one healthy cluster.
    c.nodes[1].create("after-impostors");
    assert_eq!(c.nodes[0].append("after-impostors", event(0)).status, 201);
    for n in &c.nodes {
        assert_eq!(n.req("GET", "/health/ready", "").status, 200);
    }
}

#[test]
fn a_rolling_sigterm_restart_under_load_fails_nothing_a_client_cannot_retry_and_loses_nothing() {
    let mut c = Cluster::start(3);
    let sessions: Vec<String> = (0..4).map(|i| format!("rolling-{i}")).collect();
    for s in &sessions {
        c.nodes[0].create(s);
    }
    let ports = Arc::new(Mutex::new(c.nodes.iter().map(|n| n.port).collect::<Vec<_>>()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (ports, sessions, stop) = (ports.clone(), sessions.clone(), stop.clone());
        std::thread::spawn(move || write_under_faults(ports, sessions, 4, stop, deadline))
    };
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        // Clients stop using the node that is going down (a load balancer's drain).
        *ports.lock().unwrap() = (0..3).filter(|j| *j != i).map(|j| c.nodes[j].port).collect();
        let status = c.nodes[i].signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
        assert!(status.success(), "node {i} exited with {status}");
        c.nodes[i].launch();
        c.nodes[i].wait_ready();
        *ports.lock().unwrap() = c.nodes.iter().map(|n| n.port).collect();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (acked, retries) = writing.join().unwrap();
    eprintln!("rolling restart: {} appends acknowledged, {retries} retried after a 503", acked.len());
    assert!(acked.len() > 100, "writes went on: {} acknowledged", acked.len());
    // Leaders hand their groups over before they stop: not one write fails.
    assert_eq!(retries, 0, "appends answered 503 during the rolling restart");
    for n in &c.nodes {
        assert_exactly_once(n, &acked);
    }
}

#[test]
fn a_tail_on_a_node_without_a_replica_survives_the_death_of_the_replica_serving_it() {
    let mut c = Cluster::start(4);
    let s = session_where(&c, "failover", |r| !r.contains(&3));
    c.nodes[0].create(&s);
    let mut tail = sse_open(c.nodes[3].port, &format!("/v1/sessions/{s}/tail?cursor=0"), &[]);
    for i in 0..3 {
        assert_eq!(c.nodes[3].append(&s, event(i)).status, 201);
    }
    let before = sse_data(&mut tail, 3);
    // The leader is the replica the tail's long poll goes to: kill it.
    let leader = c.leader_of(&s);
    c.nodes[leader].kill9();
    // A write forwarded to the dead leader before this node noticed may answer 503 (it may
    // or may not have been done): a client retries it with its idempotency key.
    for i in 3..6 {
        let mut body = event(i);
        body["idempotency_key"] = json!(format!("k{i}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c.nodes[3].append(&s, body.clone());
            if r.status == 201 {
                break;
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(Instant::now() < deadline, "append {i} never acknowledged: {}", r.text());
        }
    }
    let after = sse_data(&mut tail, 3);
    let seqs: Vec<u64> = before.iter().chain(&after).map(|t| serde_json::from_str::<Value>(t).unwrap()["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6], "no gap, no duplicate across the failover");
}

#[test]
fn a_shard_without_a_quorum_answers_503_in_time_and_the_others_keep_serving() {
    let mut c = Cluster::start(4);
    // Nodes 1 and 2 (indexes 0 and 1) will die: `lost` has both among its replicas, `kept`
    // at most one.
    let lost = session_where(&c, "lost", |r| r.contains(&0) && r.contains(&1));
    let kept = session_where(&c, "kept", |r| r.contains(&2) && r.contains(&3));
    c.nodes[2].create(&lost);
    c.nodes[2].create(&kept);
    c.nodes[0].kill9();
    c.nodes[1].kill9();
    let timeout = Duration::from_millis(5000);
    let started = Instant::now();
    let r = c.nodes[3].append(&lost, event(0));
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    let code = r.json()["error"].as_str().unwrap().to_string();
    assert!(code == "raft_unavailable" || code == "raft_timeout", "{code}");
    // Bounded by the request timeout (plus one election round and scheduling slack), never a hang.
    assert!(took < timeout * 2, "answered after {took:?}");
    for node in [2, 3] {
        let r = c.nodes[node].append(&kept, event(node));
        assert_eq!(r.status, 201, "a shard with its quorum keeps serving: {}", r.text());
    }
    assert_eq!(c.nodes[3].all_events(&kept).len(), 2);
}

/// How a test damages a stopped node's log (issue #10, docs/ARCHITECTURE.md "Damaged logs").
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The newest segment cut at a record boundary: everything after `offset` is gone.
    TruncateTo(u64),
    /// The newest segment (and every spare after it) deleted.
    RemoveNewestSegment,
}

/// The newest segment of a node's core-0 log that holds records, and where its records end
/// (segments: docs/FORMAT.md — frames `[len u32][crc u32][payload][pad to 8]` from 4096).
fn newest_data_segment(data_dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    for path in segments.into_iter().rev() {
        let bytes = std::fs::read(&path).unwrap();
        let mut pos = 4096usize;
        while pos + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            pos += (8 + len).div_ceil(8) * 8;
        }
        if pos > 4096 {
            return (path, pos as u64);
        }
    }
    panic!("no segment with records under {}", data_dir.display());
}

/// Wait (at most 30 s) until `node` has logged `needle`.
fn wait_for_log(node: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.stderr().contains(needle) {
        assert!(Instant::now() < deadline, "never logged {needle:?}: {}", node.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Append `body` with idempotency key `key` through `node`, retrying an ambiguous 503 (as
/// a client must) for at most 30 s; returns the last answer.
fn append_retrying(node: &Server, session: &str, mut body: Value, key: &str) -> Resp {
    body["idempotency_key"] = json!(key);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = node.append(session, body.clone());
        if r.status != 503 || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn damage(data_dir: &std::path::Path, how: Damage) {
    let (newest, end) = newest_data_segment(data_dir);
    match how {
        Damage::TruncateTo(offset) => {
            assert!(offset < end, "the cut removes records ({offset} < {end})");
            std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(offset).unwrap();
        }
        Damage::RemoveNewestSegment => {
            for entry in std::fs::read_dir(data_dir.join("0")).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "seg") && path >= newest {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
    }
}

/// The scenario that lost acknowledged writes in Jepsen's 2025 NATS report, on one shard:
/// appends acknowledged by the leader L and follower F while X is paused; F's log then loses
/// them while it is down; L dies. Without the abstention rule X (lacking them) wins F's vote
/// and the acknowledged appends are overwritten when L returns. With it, F neither votes
/// nor campaigns: the shard answers 503 until L is back, then nothing is lost, F catches up
/// from its peers, and afterwards carries a quorum again (no operator surgery).
fn a_damaged_replica_abstains_until_caught_up(how: &dyn Fn(u64) -> Damage) {
    let mut c = Cluster::start(3);
    let s = "damaged";
    c.nodes[0].create(s);
    for i in 0..5 {
        assert_eq!(c.nodes[i % 3].append(s, event(i)).status, 201);
    }
    let l = c.leader_of(s);
    let (f, x) = ((l + 1) % 3, (l + 2) % 3);
    // Let F's log settle, then note where its records end: the cut point for truncation.
    std::thread::sleep(Duration::from_millis(500));
    let (_, before) = newest_data_segment(&c.nodes[f].data_dir);
    let pid = |n: &Server| n.pid() as i32;
    unsafe { libc::kill(pid(&c.nodes[x]), libc::SIGSTOP) };
    for i in 5..25 {
        let r = c.nodes[[l, f][i % 2]].append(s, event(i));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    c.nodes[f].kill9();
    damage(&c.nodes[f].data_dir, how(before));
    c.nodes[l].kill9();
    unsafe { libc::kill(pid(&c.nodes[x]), libc::SIGCONT) };
    c.nodes[f].launch();
    wait_for_log(&c.nodes[f], "damaged log");
    // Several election timeouts pass: X must not win with the damaged replica's vote.
    std::thread::sleep(Duration::from_millis(4000));
    let r = c.nodes[x].append(s, event(99));
    assert_eq!(r.status, 503, "a leader was elected without the acknowledged appends: {}", r.text());
    // L comes back: it leads with everything; F catches up.
    c.nodes[l].launch();
    for n in &mut c.nodes {
        n.wait_ready();
    }
    let expected: Vec<Value> = c.nodes[l].all_events(s);
    assert_eq!(expected.len(), 25, "every acknowledged append survived");
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(e["payload"]["i"], i, "event {}", i + 1);
    }
    wait_for_log(&c.nodes[f], "votes and elections resume");
    // Repaired in place: F and X now carry the shard without L.
    c.nodes[l].kill9();
    // The first try may reach L's corpse (an ambiguous 503): retry with a key, as clients do.
    let r = append_retrying(&c.nodes[f], s, event(25), "after-repair");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["seq"], 26);
    assert_eq!(c.nodes[x].all_events(s).len(), 26);
}

#[test]
fn a_replica_whose_log_lost_its_tail_abstains_until_caught_up() {
    a_damaged_replica_abstains_until_caught_up(&Damage::TruncateTo);
}

#[test]
fn a_replica_whose_newest_segment_was_removed_abstains_until_caught_up() {
    a_damaged_replica_abstains_until_caught_up(&|_| Damage::RemoveNewestSegment);
}

/// Regression (found by the fault campaign: two appends acknowledged at one seq). openraft
/// resumes leadership at startup from a committed vote for itself; a leader whose log lost
/// its tail then appended *new* entries at indexes its followers already held in the same
/// term, which they kept as the same entries — two histories under one term. The followers
/// are paused while the damaged leader restarts, so it is back before anyone else could
/// campaign. A damaged log keeps its vote, never its leadership.
#[test]
fn a_leader_whose_log_lost_its_tail_does_not_resume_leadership() {
    let mut c = Cluster::start(3);
    let s = "damaged-leader";
    c.nodes[0].create(s);
    for i in 0..5 {
        assert_eq!(c.nodes[i % 3].append(s, event(i)).status, 201);
    }
    let l = c.leader_of(s);
    std::thread::sleep(Duration::from_millis(500));
    let (_, before) = newest_data_segment(&c.nodes[l].data_dir);
    for i in 5..25 {
        let r = c.nodes[l].append(s, event(i));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let followers: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    for f in &followers {
        unsafe { libc::kill(c.nodes[*f].pid() as i32, libc::SIGSTOP) };
    }
    c.nodes[l].kill9();
    damage(&c.nodes[l].data_dir, Damage::TruncateTo(before));
    c.nodes[l].launch();
    wait_for_log(&c.nodes[l], "damaged log");
    std::thread::sleep(Duration::from_millis(300));
    for f in &followers {
        unsafe { libc::kill(c.nodes[*f].pid() as i32, libc::SIGCONT) };
    }
    // New appends through the damaged node (retried with their keys after an ambiguous 503).
    for i in 25..30 {
        let r = append_retrying(&c.nodes[l], s, event(i), &format!("after-{i}"));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["seq"], i + 1, "event {i} acknowledged at another seq: {}", r.text());
    }
    for n in &mut c.nodes {
        n.wait_ready();
    }
    // One history everywhere, with every acknowledged event at its place: the pages (the
    // leader's) and each node's own replica (its SSE tail).
    for (k, n) in c.nodes.iter().enumerate() {
        let events = n.all_events(s);
        assert_eq!(events.len(), 30, "node {k}");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["payload"]["i"], i, "node {k}, event {}", i + 1);
        }
        let mut sse = sse_open(n.port, &format!("/v1/sessions/{s}/tail?cursor=0"), &[]);
        let local: Vec<Value> = sse_data(&mut sse, 30).iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        for (i, e) in local.iter().enumerate() {
            assert_eq!(e["payload"]["i"], i, "node {k}'s replica, event {}", i + 1);
        }
    }
}

/// SPEC §5 in a cluster (issue #11): only the shard's leader archives; kill -9 it in the
/// middle of archiving under load, and the new leader resumes from the replicated
/// watermark — the archive ends equal to the history, without gap or duplicate, and the
/// new leader sends only what the watermark had not covered.
#[test]
fn the_archiving_leader_killed_mid_archive_is_followed_by_the_new_leader() {
    let pg = common::postgres::Postgres::start();
    let url = pg.url();
    let archive = [
        ("STARCITE_ARCHIVER_ENABLED", "on"),
        ("DATABASE_URL", url.as_str()),
        ("STARCITE_ARCHIVE_FLUSH_INTERVAL_MS", "100"),
        ("STARCITE_TAIL_KEEP", "100"),
    ];
    let mut c = Cluster::start_with(3, &archive);
    let s = "archived-session";
    c.nodes[0].create(s);
    let leader = c.leader_of(s);
    let writer_node = (leader + 1) % 3;
    // One writer through a node that survives, retrying ambiguous 503s with its keys while
    // leadership moves.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (port, acked) = (c.nodes[writer_node].port, acked.clone());
        std::thread::spawn(move || {
            for n in 0..1_500 {
                let body = json!({"type": "w", "payload": {"n": n}, "actor": "w", "idempotency_key": format!("w-{n}")}).to_string();
                let deadline = Instant::now() + Duration::from_secs(30);
                let r = loop {
                    let r = request(port, "POST", &format!("/v1/sessions/{s}/append"), &[], body.as_bytes());
                    if r.status != 503 || Instant::now() > deadline {
                        break r;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                assert_eq!(r.status, 201, "{}", r.text());
                acked.lock().unwrap().push((n, r.json()["seq"].as_u64().unwrap()));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.archived(s).len() < 300 {
        assert!(Instant::now() < deadline, "the leader archived nothing:\n{}", c.nodes[leader].stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Only the leader wrote to Postgres so far.
    for (k, node) in c.nodes.iter().enumerate() {
        if k != leader {
            assert_eq!(metric(node, "starcite_archive_attempted_total"), 0.0, "follower {k} sent rows");
        }
    }
    c.nodes[leader].kill9();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 1_500);
    let survivor = &c.nodes[writer_node];
    let deadline = Instant::now() + Duration::from_secs(60);
    let events = loop {
        let events = survivor.raw_events(s);
        let rows = pg.archived(s);
        if rows.len() == events.len() {
            break events;
        }
        assert!(Instant::now() < deadline, "the new leader did not finish: {} of {} rows", rows.len(), events.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    let rows = pg.archived(s);
    for (i, ((seq, json), event)) in rows.iter().zip(&events).enumerate() {
        assert_eq!(*seq, i as u64 + 1, "rows are seqs 1..N");
        assert_eq!(json, event, "row {seq} is the event, byte for byte");
    }
    // Every node reads the same history — the trimmed part from Postgres — and every
    // acknowledged append is at its seq.
    for k in (0..3).filter(|k| *k != leader) {
        let all = c.nodes[k].all_events(s);
        for (n, seq) in &acked {
            assert_eq!(all[*seq as usize - 1]["payload"]["n"], *n, "node {k}: append {n} at seq {seq}");
        }
        assert_eq!(c.nodes[k].raw_events(s), events, "node {k} reads the history byte for byte");
    }
    assert!(metric(survivor, "starcite_archive_trimmed_total") > 0.0, "the hot tier trimmed");
    let new_leader = c.leader_of(s);
    assert_ne!(new_leader, leader);
    let resent = metric(&c.nodes[new_leader], "starcite_archive_attempted_total") as usize;
    assert!(resent < events.len(), "the new leader resumed from the watermark: it sent {resent} of {} rows", events.len());
}

/// Issue #11 item 4: once the archive has the events, every replica purges its log and
/// deletes the segments under it; a replica wiped afterwards can only catch up from a
/// snapshot (the entries are gone everywhere), and the snapshot carries every event it
/// needs: made the leader of every group, it serves the whole history — the trimmed part
/// from Postgres, the rest from what the snapshot carried — byte for byte.
#[test]
fn a_replica_wiped_after_the_logs_were_purged_catches_up_from_a_snapshot_and_serves_everything() {
    let pg = common::postgres::Postgres::start();
    let url = pg.url();
    let archive = [
        ("STARCITE_ARCHIVER_ENABLED", "on"),
        ("DATABASE_URL", url.as_str()),
        ("STARCITE_ARCHIVE_FLUSH_INTERVAL_MS", "100"),
        ("STARCITE_TAIL_KEEP", "20"),
        ("STARCITE_SEGMENT_BYTES", "4194304"),
    ];
    let mut c = Cluster::start_with(3, &archive);
    let sessions: Vec<String> = (0..8).map(|i| format!("purged-{i}")).collect();
    for s in &sessions {
        assert_eq!(c.nodes[i_of(s)].create(s).status, 201);
    }
    let (writers, acked) = spawn_writers(
        c.nodes[0].port,
        &sessions,
        4,
        500,
        |t, n| json!({"type": "w", "payload": {"t": t, "n": n, "pad": "y".repeat(8_000)}, "actor": "w"}),
    );
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 2_000);
    // Every node deletes segments once the archive has everything.
    let deadline = Instant::now() + Duration::from_secs(90);
    while c.nodes.iter().any(|n| metric(n, "starcite_log_segments_deleted_total") < 2.0) {
        let deleted: Vec<f64> = c.nodes.iter().map(|n| metric(n, "starcite_log_segments_deleted_total")).collect();
        assert!(Instant::now() < deadline, "segments deleted per node: {deleted:?}\n{}", c.nodes[0].stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let reference: Vec<Vec<String>> = sessions.iter().map(|s| c.nodes[1].raw_events(s)).collect();
    // Wipe node 3; it comes back under a new incarnation and is repaired into every group.
    let (a, b, w) = (0, 1, 2);
    c.nodes[w].kill9();
    std::fs::remove_dir_all(&c.nodes[w].data_dir).unwrap();
    c.nodes[w].launch();
    c.nodes[w].wait_ready();
    let deadline = Instant::now() + Duration::from_secs(90);
    while count_repairs(&c) < SHARDS as usize {
        assert!(Instant::now() < deadline, "groups not repaired: {} of {SHARDS}\n{}", count_repairs(&c), c.nodes[w].stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Make the wiped node lead every group: kill -9 one node, stop the other gracefully
    // (it hands its groups to the only follower left), then bring that one back; again
    // while a group ended up elsewhere (a hand-off can lose a race with an election).
    c.nodes[a].kill9();
    let led = |n: &Server| {
        let text = request(n.port, "GET", "/metrics", &[], b"").text();
        starcite::metrics::parse_exposition(&text).iter().filter(|(k, v)| k.starts_with("starcite_raft_is_leader") && **v == 1.0).count()
    };
    for round in 1..=5 {
        let status = c.nodes[b].signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
        assert!(status.success(), "{status:?}");
        c.nodes[b].launch();
        c.nodes[b].wait_ready();
        let deadline = Instant::now() + Duration::from_secs(10);
        while led(&c.nodes[w]) < SHARDS as usize && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if led(&c.nodes[w]) == SHARDS as usize {
            break;
        }
        assert!(round < 5, "the wiped node leads {} of {SHARDS} groups", led(&c.nodes[w]));
    }
    for (s, expected) in sessions.iter().zip(&reference) {
        assert_eq!(&c.nodes[w].raw_events(s), expected, "{s} served by the replica rebuilt from a snapshot");
    }
    assert_acked_present(&c.nodes[w], &acked);
    assert_eq!(c.nodes[w].append(&sessions[0], event(0)).status, 201);
}
