//! A real, ephemeral Postgres for the archive tests: `initdb` in a temporary folder (as the
//! `postgres` user when the tests run as root: initdb refuses root), a free loopback port,
//! its socket in the same folder. Killed with SIGKILL (postmaster and backends) or stopped
//! with `pg_ctl -m immediate` when the fixture is dropped. Nothing is mocked.
//!
//! The server binaries come from `/usr/lib/postgresql/<version>/bin` (Debian's
//! `postgresql` package; `.ci/run` installs it when missing), or from `$STARCITE_PG_BIN`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

/// The newest installed Postgres server's bin folder.
fn find_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("STARCITE_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!("no Postgres server binaries in /usr/lib/postgresql/*/bin: install them (Debian: apt-get install postgresql; .ci/run does) or set STARCITE_PG_BIN")
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    /// A fresh cluster, initialized and started.
    pub fn start() -> Postgres {
        let mut pg = Postgres::initialized();
        pg.launch();
        pg
    }

    /// A fresh cluster, initialized but not running (its URL refuses connections).
    pub fn initialized() -> Postgres {
        let bin = find_bin();
        // Under /tmp: the postgres user must reach it (the checkout may not be readable).
        let dir = tempfile::Builder::new().prefix("starcite-pg-").tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown the Postgres folder to the postgres user");
        }
        let data = dir.path().join("data");
        let out = as_postgres(bin.join("initdb"))
            .args(["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        Postgres { port: free_port(), bin, dir, running: false }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Start (again) on the same port and data; returns once it accepts connections.
    pub fn launch(&mut self) {
        assert!(!self.running);
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let out = as_postgres(self.bin.join("pg_ctl"))
            .args(["-D", self.data().to_str().unwrap(), "-o", &options, "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start failed: {}\n{}", String::from_utf8_lossy(&out.stdout), self.log());
        self.running = true;
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// SIGKILL the postmaster and every backend: a crash, with recovery at the next start.
    pub fn kill9(&mut self) {
        assert!(self.running);
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut victims = children_of(postmaster);
        victims.push(postmaster);
        for pid in &victims {
            // SAFETY: kill(2) on processes of the cluster this fixture started.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while victims.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.running = false;
    }

    /// Run `sql` with text parameters; every value of every row as text (NULL as None).
    pub fn query(&self, sql: &str, params: &[&str]) -> Vec<Vec<Option<String>>> {
        let url = self.url();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect to the test Postgres");
            tokio::spawn(connection);
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            let rows = client.query(sql, &params).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter().map(|row| (0..row.len()).map(|i| row.get::<_, Option<String>>(i)).collect()).collect()
        })
    }
}

impl Postgres {
    /// The archived rows of a session in seq order: `seq` and `event_json`.
    pub fn archived(&self, session: &str) -> Vec<(u64, String)> {
        self.query("SELECT seq::text, event_json FROM events WHERE session_id = $1 ORDER BY events.seq", &[session])
            .into_iter()
            .map(|r| (r[0].as_deref().unwrap().parse().unwrap(), r[1].clone().unwrap()))
            .collect()
    }

    /// Rows in the archive's `events` table.
    pub fn row_count(&self) -> usize {
        self.query("SELECT count(*)::text FROM events", &[])[0][0].as_deref().unwrap().parse().unwrap()
    }
}

/// Processes whose parent is `parent` (from /proc).
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// `program` run as the postgres user when the tests run as root.
fn as_postgres(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- postgres log ----\n{}\n---- end of postgres log ----", self.log());
        }
        if self.running {
            let _ = as_postgres(self.bin.join("pg_ctl")).args(["-D", self.data().to_str().unwrap(), "-m", "immediate", "stop"]).output();
        }
    }
}
