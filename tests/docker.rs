//! The Docker deployment (issue #12) on this machine's engine: the image the Dockerfile
//! makes, started with the README's `docker run` line, and the three-node cluster of
//! deploy/docker-compose.yml, under `docker kill`, `docker restart` and `docker network
//! disconnect`. Nothing is pulled: the runtime stage's base image is made locally
//! (scripts/docker-base-image.sh, debootstrap), and the image takes the binary cargo built
//! for these tests (the Dockerfile's PREBUILT_BINARY). Skipped, with the reason printed,
//! where no Docker engine answers.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use starcite::runtime::placement::shard_of;

const IMAGE: &str = "starcite";
const SECRET: &str = "docker-test-secret-0123456789abcdef0123456789abcdef";
const SHARDS: u32 = 16;

/// Docker tests run one at a time (they share the engine, the image and 2 CPUs).
static SERIAL: Mutex<()> = Mutex::new(());
static IMAGE_READY: OnceLock<Result<(), String>> = OnceLock::new();

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a command; its stdout, or the failure with stderr.
fn run(program: &str, args: &[&str], envs: &[(&str, String)]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(repo())
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("{program} {args:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn docker(args: &[&str]) -> String {
    run("docker", args, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// The engine answers and the image is built; None (after printing why) when there is no
/// engine. The image: the local base image, then `docker build` of the repository's
/// Dockerfile with the test binary (stripped of debug info: smaller context).
fn engine() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = run("docker", &["info", "--format", "{{.ServerVersion}}"], &[]) {
        eprintln!("skipped: no Docker engine answers ({e})");
        return None;
    }
    let ready = IMAGE_READY.get_or_init(|| {
        run("bash", &["scripts/docker-base-image.sh"], &[])?;
        let dir = repo().join("target/docker");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let binary = dir.join("starcite");
        run("strip", &["--strip-debug", "-o", binary.to_str().unwrap(), env!("CARGO_BIN_EXE_starcite")], &[])?;
        run(
            "docker",
            &[
                "build",
                "-q",
                "--build-arg",
                "BUILDER_IMAGE=debian:bookworm-slim",
                "--build-arg",
                "PREBUILT_BINARY=target/docker/starcite",
                "-t",
                IMAGE,
                ".",
            ],
            &[],
        )
        .map(|_| ())
    });
    if let Err(e) = ready {
        panic!("building the image failed: {e}");
    }
    Some(guard)
}

fn wait_ready(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if try_request(port, "GET", "/health/ready", &[], b"").is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} on port {port} never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The README's `docker run` line (section "Deploy"), with this test's port, container
/// name and volume instead of 4000, `starcite` and `starcite-data`.
fn readme_docker_run(port: u16, name: &str, volume: &str) -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme.lines().find(|l| l.starts_with("docker run -d --name starcite ")).expect("README has the docker run line");
    assert!(line.contains("-p 4000:4000") && line.contains("starcite-data:/data"), "{line}");
    line.replace("--name starcite ", &format!("--name {name} "))
        .replace("-p 4000:4000", &format!("-p 127.0.0.1:{port}:4000"))
        .replace("starcite-data:/data", &format!("{volume}:/data"))
}

/// Remove the container and volume on drop (also when the test fails).
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = run("docker", &args, &[]);
        }
    }
}

#[test]
fn the_readme_docker_run_line_serves_create_append_and_tails_and_keeps_its_data_across_restarts() {
    let Some(_engine) = engine() else { return };
    let (name, volume) = (format!("starcite-test-{}", std::process::id()), format!("starcite-test-data-{}", std::process::id()));
    let _cleanup =
        Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()], vec!["volume".into(), "rm".into(), "-f".into(), volume.clone()]]);
    let port = free_port();
    run("sh", &["-c", &readme_docker_run(port, &name, &volume)], &[]).unwrap_or_else(|e| panic!("{e}"));
    wait_ready(port, "the container");
    assert_eq!(request(port, "POST", "/v1/sessions", &[], br#"{"id":"d"}"#).status, 201);
    for i in 0..3 {
        let r = request(port, "POST", "/v1/sessions/d/append", &[], event(i).to_string().as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let mut sse = sse_open(port, "/v1/sessions/d/tail?cursor=0", &[]);
    assert_eq!(sse_data(&mut sse, 3).len(), 3);
    let mut ws = ws_connect(port, "/v1/sessions/d/tail?cursor=1").unwrap();
    assert_eq!(ws_frames(&mut ws, 2).len(), 2);
    let before = request(port, "GET", "/v1/sessions/d/events?cursor=0", &[], b"").text();
    // The image's HEALTHCHECK (`starcite healthcheck`, no curl in the image) turns healthy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]) != "healthy" {
        assert!(Instant::now() < deadline, "never healthy: {}", docker(&["inspect", "-f", "{{json .State.Health}}", &name]));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(docker(&["exec", &name, "id", "-u"]), "10001", "the server does not run as root");
    // `docker restart` (SIGTERM, then start): the volume keeps every event.
    docker(&["restart", "-t", "30", &name]);
    wait_ready(port, "the restarted container");
    assert_eq!(request(port, "GET", "/v1/sessions/d/events?cursor=0", &[], b"").text(), before);
    let r = request(port, "POST", "/v1/sessions/d/append", &[], event(3).to_string().as_bytes());
    assert_eq!((r.status, r.json()["seq"].as_u64()), (201, Some(4)));
    // SIGTERM is handled: a drain and a clean exit, not the engine's SIGKILL after 30 s.
    let started = Instant::now();
    docker(&["stop", "-t", "30", &name]);
    assert!(started.elapsed() < Duration::from_secs(25), "stop took {:?}", started.elapsed());
    assert_eq!(docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]), "0");
    let logs = run("sh", &["-c", &format!("docker logs {name} 2>&1")], &[]).unwrap();
    assert!(logs.contains("draining"), "{logs}");
}

#[test]
fn without_io_uring_the_server_names_the_option_to_add_and_exits_non_zero() {
    let Some(_engine) = engine() else { return };
    // deploy/docker/seccomp.json without its io_uring rule: what Docker's own default
    // profile does since Engine 25.
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/docker/seccomp.json")).unwrap()).unwrap();
    let mut blocked = profile.clone();
    blocked["syscalls"].as_array_mut().unwrap().retain(|rule| !rule["names"].to_string().contains("io_uring_setup"));
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = tmp.path().join("no-io-uring.json");
    std::fs::write(&path, blocked.to_string()).unwrap();
    let out =
        Command::new("docker").args(["run", "--rm", "--security-opt", &format!("seccomp={}", path.display()), IMAGE]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--security-opt seccomp=deploy/docker/seccomp.json") && stderr.contains("io_uring_setup"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The compose cluster of deploy/docker-compose.yml under a project name of this test.
struct Compose {
    project: String,
    env: Vec<(&'static str, String)>,
    ports: [u16; 3],
    _tmp: tempfile::TempDir,
}

impl Compose {
    fn up() -> Compose {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let env_file = tmp.path().join("starcite.env");
        std::fs::write(
            &env_file,
            format!("SECRET_KEY_BASE={SECRET}\nSTARCITE_SHARDS={SHARDS}\nSTARCITE_CORES=1\nSTARCITE_REQUEST_TIMEOUT_MS=5000\n"),
        )
        .unwrap();
        let ports = [free_port(), free_port(), free_port()];
        let seccomp = repo().join("deploy/docker/seccomp.json");
        let env = vec![
            ("STARCITE_ENV_FILE", env_file.display().to_string()),
            ("STARCITE_SECCOMP", seccomp.display().to_string()),
            ("STARCITE_PORT_1", ports[0].to_string()),
            ("STARCITE_PORT_2", ports[1].to_string()),
            ("STARCITE_PORT_3", ports[2].to_string()),
        ];
        let c = Compose { project: format!("sctest{}", std::process::id()), env, ports, _tmp: tmp };
        c.compose(&["up", "-d"]);
        for (i, port) in ports.iter().enumerate() {
            wait_ready(*port, &format!("starcite-{}", i + 1));
        }
        c
    }

    fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["-p", &self.project, "-f", "deploy/docker-compose.yml"];
        all.extend_from_slice(args);
        run("docker-compose", &all, &self.env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn container(&self, node: usize) -> String {
        self.compose(&["ps", "-q", &format!("starcite-{}", node + 1)])
    }

    fn network(&self) -> String {
        format!("{}_default", self.project)
    }

    /// Which node leads `session`'s shard, as the nodes' metrics say.
    fn leader_of(&self, session: &str, up: &[usize]) -> usize {
        let series = format!("starcite_raft_is_leader{{shard=\"{}\"}}", shard_of(session, SHARDS));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for &i in up {
                if let Ok(r) = try_request(self.ports[i], "GET", "/metrics", &[], b"") {
                    if starcite::metrics::parse_exposition(&r.text()).get(&series) == Some(&1.0) {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader for {session}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = run("docker-compose", &["-p", &self.project, "-f", "deploy/docker-compose.yml", "logs", "--tail", "30"], &self.env)
                .map(|logs| eprintln!("{logs}"));
        }
        let _ = run("docker-compose", &["-p", &self.project, "-f", "deploy/docker-compose.yml", "down", "-v", "-t", "5"], &self.env);
    }
}

/// Append with an idempotency key through `port`, retrying 503s (no leader yet, the
/// request timed out: the key makes a retry exactly-once) for up to a minute.
fn append_retrying(port: u16, session: &str, n: usize) -> u64 {
    let body = serde_json::json!({"type": "w", "payload": {"n": n}, "actor": "w", "idempotency_key": format!("{session}-{n}")}).to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_request(port, "POST", &format!("/v1/sessions/{session}/append"), &[], body.as_bytes()) {
            Ok(r) if r.status == 201 => return r.json()["seq"].as_u64().unwrap(),
            Ok(r) if r.status != 503 => panic!("{session} #{n}: {} {}", r.status, r.text()),
            _ => {}
        }
        assert!(Instant::now() < deadline, "{session} #{n} never acknowledged");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every acknowledged `(session, n, seq)` is at its seq on node `port`, each once.
fn assert_acked(port: u16, acked: &[(String, usize, u64)]) {
    for (session, n, seq) in acked {
        let r = request(port, "GET", &format!("/v1/sessions/{session}/events?cursor={}&limit=1", seq - 1), &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["events"][0]["payload"]["n"], *n, "{session}#{seq} on port {port}");
    }
    for session in acked.iter().map(|a| &a.0).collect::<std::collections::BTreeSet<_>>() {
        let last = acked.iter().filter(|a| &a.0 == session).map(|a| a.2).max().unwrap();
        let r = request(port, "GET", &format!("/v1/sessions/{session}/events?cursor=0&limit=1000"), &[], b"");
        let events = r.json()["events"].as_array().unwrap().clone();
        assert_eq!(events.len() as u64, last, "{session}: nothing twice, nothing missing");
    }
}

#[test]
fn the_compose_cluster_serves_through_every_node_and_survives_a_kill_and_a_network_cut() {
    let Some(_engine) = engine() else { return };
    let c = Compose::up();
    let sessions: Vec<String> = (0..6).map(|i| format!("compose-{i}")).collect();
    let mut acked = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        assert_eq!(request(c.ports[i % 3], "POST", "/v1/sessions", &[], format!(r#"{{"id":"{s}"}}"#).as_bytes()).status, 201);
    }
    // Every node takes writes and reads for every session.
    let mut n = 0;
    for s in &sessions {
        for node in 0..3 {
            acked.push((s.clone(), n, append_retrying(c.ports[node], s, n)));
            n += 1;
        }
    }
    for port in c.ports {
        assert_acked(port, &acked);
    }
    // docker kill: the other two keep serving; the killed node catches up after docker start.
    let victim = c.container(1);
    docker(&["kill", &victim]);
    for s in &sessions {
        for node in [0, 2] {
            acked.push((s.clone(), n, append_retrying(c.ports[node], s, n)));
            n += 1;
        }
    }
    docker(&["start", &victim]);
    wait_ready(c.ports[1], "the restarted node");
    for port in c.ports {
        assert_acked(port, &acked);
    }
    // docker network disconnect of a leader: the others elect a new one and serve; the
    // cut node serves again once reconnected.
    let s = &sessions[0];
    let leader = c.leader_of(s, &[0, 1, 2]);
    let cut = c.container(leader);
    let alias = format!("starcite-{}", leader + 1);
    docker(&["network", "disconnect", &c.network(), &cut]);
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for s in &sessions {
        for &node in &others {
            acked.push((s.clone(), n, append_retrying(c.ports[node], s, n)));
            n += 1;
        }
    }
    assert_ne!(c.leader_of(s, &others), leader);
    docker(&["network", "connect", "--alias", &alias, &c.network(), &cut]);
    for s in &sessions {
        acked.push((s.clone(), n, append_retrying(c.ports[leader], s, n)));
        n += 1;
    }
    for port in c.ports {
        assert_acked(port, &acked);
    }
}
