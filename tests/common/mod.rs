//! Test support: start the real `starcite` binary on a free port with a temp data dir,
//! and talk to it over real sockets (raw HTTP/1.1, WebSocket, SSE).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

pub mod postgres;

pub const READY_WAIT: Duration = Duration::from_secs(60);

/// The server's startup line (README, "Startup line") carries the bound HTTP port.
const STARTUP_PORT_FIELD: &str = "http_port=";

/// Stderr lines of every server process a test started, printed if the test fails.
type Log = Arc<Mutex<Vec<String>>>;

/// Start the real binary with exactly `env` (plus PATH) and `PORT=0`; returns the child,
/// the port it printed on its startup line, and a live copy of its stderr. Fails the test
/// when the process exits or prints nothing within READY_WAIT.
pub fn spawn_starcite(env: &[(String, String)], log: &Log) -> (Child, u16) {
    let (child, port) = spawn_starcite_raw(env, log);
    match port {
        Ok(port) => (child, port),
        Err(status) => panic!("server exited during startup ({status}); stderr:\n{}", log.lock().unwrap().join("\n")),
    }
}

/// Like `spawn_starcite`, but a process that exits before printing its startup line is
/// returned as `Err(exit status)` (for tests of refused startups).
pub fn spawn_starcite_raw(env: &[(String, String)], log: &Log) -> (Child, Result<u16, std::process::ExitStatus>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_starcite"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("PORT", "0").stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Die with the test process, whatever happens to it.
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start starcite");
    // Drain stderr in the background so the server never blocks on it; keep every line.
    let stderr = child.stderr.take().unwrap();
    let (port_tx, port_rx) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if std::env::var("STARCITE_TEST_LOG").is_ok() {
                eprintln!("[server] {line}");
            }
            if let Some(rest) = line.split_whitespace().find_map(|f| f.strip_prefix(STARTUP_PORT_FIELD)) {
                let _ = port_tx.send(rest.parse::<u16>().expect("startup line port"));
            }
            lines.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + READY_WAIT;
    loop {
        if let Ok(port) = port_rx.try_recv() {
            return (child, Ok(port));
        }
        if let Some(status) = child.try_wait().unwrap() {
            // Let the reader thread collect the last lines.
            std::thread::sleep(Duration::from_millis(100));
            return (child, Err(status));
        }
        assert!(Instant::now() < deadline, "no startup line within {READY_WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run the binary with exactly `env` (plus PATH, `PORT=0` unless `env` sets PORT) and
/// expect it to refuse to start: returns its exit status and everything it wrote to
/// stderr. Fails the test if it is still running after READY_WAIT.
pub fn run_starcite_expecting_refusal(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let log = Log::default();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let (mut child, _) = spawn_starcite_raw(&env, &log);
    let deadline = Instant::now() + READY_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server kept running although it should have refused; stderr:\n{}", log.lock().unwrap().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let the reader thread collect the last lines.
    std::thread::sleep(Duration::from_millis(100));
    let stderr = log.lock().unwrap().join("\n");
    (status, stderr)
}

pub struct Server {
    pub port: u16,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    log: Log,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let data_dir = tmp.path().join("data");
        let mut s = Server {
            port: 0,
            data_dir,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            log: Log::default(),
            _tmp: Some(tmp),
        };
        s.spawn();
        s.wait_ready();
        s
    }

    /// A server with `env` in a fresh temp data dir, not started yet: [`Server::launch`]
    /// starts it without waiting for readiness (a cluster's nodes get ready together).
    pub fn unstarted(env: &[(String, String)]) -> Server {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let data_dir = tmp.path().join("data");
        Server { port: 0, data_dir, env: env.to_vec(), child: None, log: Log::default(), _tmp: Some(tmp) }
    }

    /// Start the process (after `unstarted`, or after `kill9`); returns once it printed its
    /// startup line.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Set (`Some`) or remove (`None`) a variable for the next launch.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// The environment the server runs with (the data dir, then the test's variables).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("STARCITE_RAFT_DATA_DIR".to_string(), self.data_dir.display().to_string())];
        env.extend(self.env.iter().cloned());
        env
    }

    fn spawn(&mut self) {
        let (child, port) = spawn_starcite(&self.env(), &self.log);
        self.child = Some(child);
        self.port = port;
    }

    /// Everything the server processes of this test wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited during startup: {status}");
            }
            if let Ok(r) = try_request(self.port, "GET", "/health/ready", &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "server not ready within {READY_WAIT:?}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL, no shutdown of any kind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send `signal` (e.g. SIGTERM) and wait for the process to exit, at most `within`.
    /// Returns the exit status; fails the test if the process is still running.
    pub fn signal_and_wait(&mut self, signal: i32, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server still running {within:?} after signal {signal}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal without waiting (for a second signal during a drain).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.port)
    }

    pub fn req(&self, method: &str, path: &str, body: &str) -> Resp {
        request(self.port, method, path, &[], body.as_bytes())
    }

    pub fn json(&self, method: &str, path: &str, body: Value) -> Resp {
        self.req(method, path, &body.to_string())
    }

    pub fn create(&self, id: &str) -> Resp {
        let r = self.json("POST", "/v1/sessions", json!({ "id": id }));
        assert_eq!(r.status, 201, "create {id}: {}", r.text());
        r
    }

    pub fn append(&self, id: &str, body: Value) -> Resp {
        self.json("POST", &format!("/v1/sessions/{id}/append"), body)
    }

    /// All events of a session through the events page.
    pub fn all_events(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let r = self.req("GET", &format!("/v1/sessions/{id}/events?cursor={cursor}&limit=1000"), "");
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            let events = v["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            cursor = v["next_cursor"].as_u64().unwrap();
            out.extend(events);
        }
    }
}

/// One series' value in a node's `/metrics` (0 when absent).
pub fn metric(node: &Server, series: &str) -> f64 {
    let text = node.req("GET", "/metrics", "").text();
    starcite::metrics::parse_exposition(&text).get(series).copied().unwrap_or(0.0)
}

impl Server {
    /// Every event of a session exactly as the API renders it (each event's raw JSON text).
    pub fn raw_events(&self, session: &str) -> Vec<String> {
        #[derive(serde::Deserialize)]
        struct Page {
            events: Vec<Box<serde_json::value::RawValue>>,
            next_cursor: u64,
        }
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let r = self.req("GET", &format!("/v1/sessions/{session}/events?cursor={cursor}&limit=1000"), "");
            assert_eq!(r.status, 200, "{}", r.text());
            let page: Page = serde_json::from_str(&r.text()).unwrap();
            if page.events.is_empty() {
                return out;
            }
            cursor = page.next_cursor;
            out.extend(page.events.iter().map(|e| e.get().to_string()));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server stderr (port {}) ----\n{}\n---- end of server stderr ----", self.port, self.stderr());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|s| s.as_str())
    }
    /// Assert an error response: status, code, JSON content type.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let v = self.json();
        assert_eq!(v["error"], code, "body: {}", self.text());
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "message missing: {}", self.text());
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
    }

    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.send(method, path, headers, body);
        self.read_response().unwrap()
    }

    /// Read one response (content-length or chunked body).
    pub fn read_response(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let mut body = Vec::new();
        if let Some(len) = headers.get("content-length") {
            body.resize(len.parse().unwrap(), 0);
            self.reader.read_exact(&mut body)?;
        } else if headers.get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        Ok(Resp { status, headers, body })
    }

    /// Read raw bytes until the peer closes; fails the test if the read times out (the
    /// server kept the connection open) instead of returning what arrived.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.reader.read_to_end(&mut out) {
            Ok(_) => out,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => out,
            Err(e) => panic!("the server did not close the connection ({e}); received {:?}", String::from_utf8_lossy(&out)),
        }
    }

    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }
}

pub fn try_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let reader = BufReader::new(stream.try_clone()?);
    let mut c = Conn { stream, reader };
    c.send(method, path, headers, body);
    c.read_response()
}

pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    try_request(port, method, path, headers, body).unwrap()
}

pub type Ws = async_tungstenite::tungstenite::WebSocket<TcpStream>;

/// Open a WebSocket tail.
pub fn ws_connect(port: u16, path: &str) -> Result<Ws, async_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let url = format!("ws://127.0.0.1:{port}{path}");
    async_tungstenite::tungstenite::client::client(url, stream).map(|(ws, _)| ws).map_err(|e| match e {
        async_tungstenite::tungstenite::HandshakeError::Failure(e) => e,
        _ => panic!("handshake interrupted"),
    })
}

/// Read the next `n` events from a WebSocket tail opened with `batch_size=1`: every text
/// frame must be exactly one event object (SPEC §3), never an array.
pub fn ws_read_events(ws: &mut Ws, n: usize) -> Vec<Value> {
    use async_tungstenite::tungstenite::Message;
    let mut out = Vec::new();
    while out.len() < n {
        match ws.read().expect("ws read") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert!(v.is_object(), "a frame of a batch_size=1 tail must be one event object: {t}");
                out.push(v);
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    out
}

/// Assert events have seqs from..from+len, contiguous.
pub fn assert_contiguous(events: &[Value], from: u64) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(from + i as u64), "event {i}: {e}");
    }
}

pub fn event(i: usize) -> Value {
    json!({ "type": "msg", "payload": { "i": i }, "actor": "tester" })
}

/// Open an SSE tail and consume the response head (asserting 200 and the content type).
pub fn sse_open(port: u16, path: &str, headers: &[(&str, &str)]) -> Conn {
    let mut c = Conn::open(port);
    let mut all = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n");
    for (k, v) in &all {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.send_raw(req.as_bytes());
    let mut line = String::new();
    c.reader().read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut content_type = None;
    loop {
        line.clear();
        c.reader().read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
    }
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    c
}

/// The raw `data:` texts of the next `n` SSE messages (chunk-size lines, comments and
/// blank lines skipped).
pub fn sse_data(c: &mut Conn, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let mut line = String::new();
        assert!(c.reader().read_line(&mut line).unwrap() > 0, "SSE stream ended");
        if let Some(v) = line.trim_end_matches(['\r', '\n']).strip_prefix("data: ") {
            out.push(v.to_string());
        }
    }
    out
}

/// The raw texts of the next `n` WebSocket text frames (pings and pongs skipped).
pub fn ws_frames(ws: &mut Ws, n: usize) -> Vec<String> {
    use async_tungstenite::tungstenite::Message;
    let mut out = Vec::new();
    while out.len() < n {
        match ws.read().expect("ws read") {
            Message::Text(t) => out.push(t.to_string()),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    out
}

/// An append the server acknowledged: the session, the seq it answered, the body sent.
#[derive(Clone, Debug)]
pub struct Acked {
    pub session: String,
    pub seq: u64,
    pub body: Value,
}

/// `threads` keep-alive connections appending `body(thread, n)` round robin over their
/// share of `sessions` until the server stops answering (killed, drained) or says
/// `connection: close`, recording every 201; any other answer fails the test. Bounded:
/// each writer stops after `max_per_writer` appends.
pub fn spawn_writers(
    port: u16,
    sessions: &[String],
    threads: usize,
    max_per_writer: usize,
    body: fn(usize, usize) -> Value,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<Mutex<Vec<Acked>>>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let handles = (0..threads)
        .map(|t| {
            let acked = acked.clone();
            let mine: Vec<String> = sessions.iter().skip(t).step_by(threads).cloned().collect();
            std::thread::spawn(move || {
                let mut conn = Conn::open(port);
                for n in 0..max_per_writer {
                    let session = &mine[n % mine.len()];
                    let body = body(t, n);
                    conn.send("POST", &format!("/v1/sessions/{session}/append"), &[], body.to_string().as_bytes());
                    match conn.read_response() {
                        Ok(r) if r.status == 201 => {
                            let seq = r.json()["seq"].as_u64().unwrap();
                            acked.lock().unwrap().push(Acked { session: session.clone(), seq, body });
                            if r.header("connection") == Some("close") {
                                return; // the server's last answer on this connection
                            }
                        }
                        Ok(r) => panic!("unexpected {}: {}", r.status, r.text()),
                        Err(_) => return, // the server stopped answering
                    }
                }
            })
        })
        .collect();
    (handles, acked)
}

/// Every acknowledged append is present at its seq with identical content, and every
/// session it touched reads back gap-free from seq 1.
pub fn assert_acked_present(s: &Server, acked: &[Acked]) {
    let mut by_session: HashMap<String, Vec<Value>> = HashMap::new();
    for a in acked {
        let events = by_session.entry(a.session.clone()).or_insert_with(|| s.all_events(&a.session));
        let e = events.get(a.seq as usize - 1).unwrap_or_else(|| panic!("acknowledged {}#{} lost", a.session, a.seq));
        for field in ["type", "payload", "actor", "idempotency_key"] {
            assert_eq!(e[field], a.body[field], "{field} of {}#{}", a.session, a.seq);
        }
    }
    for events in by_session.values() {
        assert_contiguous(events, 1);
    }
}
