//! Starting and stopping a server process for the recovery scenario: free loopback port, spawn with its environment and log file, poll `/health/ready` every 10 ms, kill -9; a child still running when the guard drops is killed.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::BlockingClient;

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

pub struct ServerSpec {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub cores: Option<usize>,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
}

/// A running server we started. Dropping it kills it.
pub struct Server {
    child: Option<Child>,
    pub pid: u32,
    pub addr: SocketAddr,
    pub started: Instant,
}

impl Server {
    pub fn spawn(spec: &ServerSpec) -> Result<Server, String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| format!("open {}: {e}", spec.log.display()))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&spec.bin);
        cmd.env("PORT", spec.port.to_string()).env("STARCITE_RAFT_DATA_DIR", &spec.data_dir).stdin(Stdio::null()).stdout(log).stderr(log2);
        if let Some(c) = spec.cores {
            cmd.env("STARCITE_CORES", c.to_string());
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", spec.bin.display()))?;
        let pid = child.id();
        Ok(Server { child: Some(child), pid, addr: SocketAddr::from(([127, 0, 0, 1], spec.port)), started })
    }

    /// Poll `GET /health/ready` every 10 ms until it answers 200. Returns (time from spawn to
    /// the first accepted connection, time from spawn to ready).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(Duration, Duration), String> {
        let deadline = self.started + timeout;
        let mut first_accept = None;
        let mut last_answer = String::from("no answer yet");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("server exited with {status} before it was ready (last answer: {last_answer})"));
            }
            let tick = Instant::now();
            let mut client = BlockingClient::new(self.addr, Duration::from_millis(500));
            match client.request("GET", "/health/ready", None) {
                Ok(r) => {
                    first_accept.get_or_insert_with(|| tick.saturating_duration_since(self.started));
                    if r.status == 200 {
                        let ready = self.started.elapsed();
                        return Ok((first_accept.unwrap_or(ready), ready));
                    }
                    last_answer = format!("HTTP {} {}", r.status, r.body_str());
                }
                Err(e) => last_answer = e,
            }
            if Instant::now() >= deadline {
                return Err(format!("server not ready within {timeout:?} (last answer: {last_answer})"));
            }
            let next = tick + Duration::from_millis(10);
            crate::sys::sleep_until(next);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) -> Result<(), String> {
        if let Some(mut c) = self.child.take() {
            c.kill().map_err(|e| format!("kill -9 {}: {e}", self.pid))?;
            c.wait().map_err(|e| format!("wait {}: {e}", self.pid))?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// True when `dir` is missing or has no entries.
pub fn dir_is_empty(dir: &Path) -> Result<bool, String> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("read {}: {e}", dir.display())),
    }
}
