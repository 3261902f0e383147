//! The command line (clap derive): one subcommand per scenario, shared option groups, and loopback-only target addresses. README.md lists every option.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::driver::{Limit, LoadSpec};

#[derive(Parser, Debug)]
#[command(
    name = "starcite-bench",
    version,
    about = "Load generator and verifier for the Starcite event-log server (single-threaded, loopback only)",
    after_help = "Exit status: 0 ok; 1 verification failed (gaps, duplicates, wrong counts, dedupe violations, or the \
                  read-back could not finish); 2 setup or usage error; 3 requests failed (errors > 0) and --allow-errors \
                  was not given; 4 an open-loop run fell behind its schedule (requests never sent: they count in the \
                  latency from their scheduled time); 5 a --max-p99-ms or --min-ops threshold failed; 130 interrupted \
                  (SIGINT/SIGTERM). Every status but 2 comes after the full report (and --json) of what was measured."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Hot-path appends over pipelined HTTP/1.1 keep-alive connections.
    Append(AppendArgs),
    /// Read/write mix: appends with expected_seq chains and events-page reads.
    Mix(MixArgs),
    /// Every append sent twice with the same idempotency_key; the second must be deduped.
    RetryStorm(RetryStormArgs),
    /// WebSocket tailers + appends at a fixed rate: delivery latency, completeness, server RSS per tail.
    Tail(TailArgs),
    /// Fill one session, then time its full replay over WebSocket and the events page.
    Replay(ReplayArgs),
    /// Start the server, kill -9 it, and time restart to /health/ready; check the data survived.
    Recovery(RecoveryArgs),
    /// The append workload against Redis Streams XADD (RESP), for comparison.
    RedisXadd(RedisXaddArgs),
    /// Plain GET load, for the loopback HTTP ceiling (e.g. nginx `return 200`).
    HttpGet(HttpGetArgs),
    /// Put two --json results side by side with ratios (B / A).
    Compare(CompareArgs),
}

impl Command {
    /// The Starcite node the command loads (None for baselines, recovery and compare).
    pub fn starcite_addr(&self) -> Option<SocketAddr> {
        match self {
            Command::Append(a) => Some(a.addr),
            Command::Mix(a) => Some(a.addr),
            Command::RetryStorm(a) => Some(a.addr),
            Command::Tail(a) => Some(a.addr),
            Command::Replay(a) => Some(a.addr),
            _ => None,
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Command::Append(a) => &a.common,
            Command::Mix(a) => &a.common,
            Command::RetryStorm(a) => &a.common,
            Command::Tail(a) => &a.common,
            Command::Replay(a) => &a.common,
            Command::Recovery(a) => &a.common,
            Command::RedisXadd(a) => &a.common,
            Command::HttpGet(a) => &a.common,
            Command::Compare(a) => &a.common,
        }
    }
}

/// Accept only loopback targets (127.0.0.0/8, ::1).
pub fn loopback(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|_| format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:4000)"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address: this bench only targets 127.0.0.0/8 or [::1]"));
    }
    Ok(addr)
}

/// Options every subcommand takes.
#[derive(Args, Debug, Clone, Serialize)]
pub struct Common {
    /// Also write the result (numbers and parameters) as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// PID of the server under test: report its CPU time (and RSS where the scenario says).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Exit 0 even if requests failed (verification failures still exit 1).
    #[arg(long)]
    pub allow_errors: bool,
    /// No progress line on stderr every second.
    #[arg(long)]
    pub no_progress: bool,
    /// Fail (exit 5) when the worst p99 latency of the run is above this many milliseconds.
    #[arg(long, value_name = "MS", value_parser = positive)]
    pub max_p99_ms: Option<f64>,
    /// Fail (exit 5) when the ok throughput is below this many operations per second.
    #[arg(long, value_name = "OPS", value_parser = positive)]
    pub min_ops: Option<f64>,
}

/// An event payload size the append body can honour: at least 37 bytes (the smallest
/// `{"t_ns":…,"pad":""}` object), refused below rather than silently raised.
pub fn payload_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v >= crate::api::PAYLOAD_BYTES_MIN => Ok(v),
        Ok(v) => Err(format!("{v} is below the smallest payload this bench writes ({} bytes)", crate::api::PAYLOAD_BYTES_MIN)),
        Err(_) => Err(format!("{s:?} is not a number of bytes")),
    }
}

/// A count of at least 1.
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(format!("{s:?} is not a number of at least 1")),
    }
}

/// A finite number above zero.
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number above 0")),
    }
}

/// Options of the request/response load scenarios.
#[derive(Args, Debug, Clone, Serialize)]
pub struct LoadArgs {
    /// Connections (each a pipelined keep-alive connection).
    #[arg(long, short = 'c', value_name = "C", default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (1 = no pipelining).
    #[arg(long, short = 'd', value_name = "D", default_value_t = 1)]
    pub pipeline: usize,
    /// Measured run length in seconds (the default is 10 when --requests is not given).
    #[arg(long, value_name = "T", conflicts_with = "requests")]
    pub duration_secs: Option<f64>,
    /// Measured run length in requests.
    #[arg(long, value_name = "N", conflicts_with = "rate_ramp")]
    pub requests: Option<u64>,
    /// Open loop: send R requests/s in total on a fixed schedule; latency counts from the
    /// scheduled send time. Without it the load is closed-loop.
    #[arg(long, value_name = "R", conflicts_with = "rate_ramp")]
    pub rate: Option<f64>,
    /// Run this long before measuring (the numbers of the warmup are discarded).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub warmup_secs: f64,
    /// After the run, wait at most this long for replies still in flight.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub drain_secs: f64,
    #[command(flatten)]
    pub ramp: RampArgs,
}

/// The load ramp's options (every scenario with an open-loop rate: the request scenarios
/// and `tail`, whose offered rate is its append rate).
#[derive(Args, Debug, Clone, Serialize)]
pub struct RampArgs {
    /// Load ramp: open-loop steps from START to END requests/s (STEPS rates, geometric),
    /// each --step-secs long, to find the knee; see --plot.
    #[arg(long, value_name = "START,END,STEPS", value_parser = rate_ramp)]
    pub rate_ramp: Option<RateRamp>,
    /// Seconds of each ramp step.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive)]
    pub step_secs: f64,
    /// With --rate-ramp: write an SVG of latency percentiles against offered load here.
    #[arg(long, value_name = "PATH", requires = "rate_ramp")]
    pub plot: Option<PathBuf>,
}

pub fn secs(s: f64, what: &str) -> Result<Duration, String> {
    if !(s >= 0.0 && s.is_finite() && s < 1e7) {
        return Err(format!("{what} must be a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

impl LoadArgs {
    pub fn spec(&self, addr: SocketAddr, common: &Common) -> Result<LoadSpec, String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.pipeline == 0 {
            return Err("--pipeline must be at least 1".into());
        }
        if self.requests == Some(0) {
            return Err("--requests must be at least 1".into());
        }
        if let Some(d) = self.duration_secs {
            if d <= 0.0 {
                return Err("--duration-secs must be above 0".into());
            }
        }
        let limit = match (self.duration_secs, self.requests) {
            (_, Some(n)) => Limit::Requests(n),
            (Some(t), None) => Limit::Duration(secs(t, "--duration-secs")?),
            (None, None) => Limit::Duration(Duration::from_secs(10)),
        };
        Ok(LoadSpec {
            addr,
            connections: self.connections,
            pipeline: self.pipeline,
            limit,
            rate: self.rate,
            warmup: secs(self.warmup_secs, "--warmup-secs")?,
            drain: secs(self.drain_secs, "--drain-secs")?,
            server_pid: common.server_pid,
            progress: !common.no_progress,
        })
    }
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct AppendArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Sessions appended to (created first; an existing one is reused).
    #[arg(long, value_name = "S", default_value_t = 16)]
    pub sessions: usize,
    /// Size of each event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Session ids are PREFIX-0 .. PREFIX-(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench-append")]
    pub session_prefix: String,
    /// Give every append a unique idempotency_key (exercises the dedupe index).
    #[arg(long)]
    pub idempotency_keys: bool,
    /// After the run, read every session back and check it holds exactly the acked events.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub common: Common,
}

/// A tail's transport (`tail --transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ws,
    Sse,
}

/// `--rate-ramp START,END,STEPS`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateRamp {
    pub start: f64,
    pub end: f64,
    pub steps: usize,
}

impl RateRamp {
    /// The offered rates, geometric from start to end (the knee is easier to see on a
    /// log scale of load).
    pub fn rates(&self) -> Vec<f64> {
        if self.steps == 1 {
            return vec![self.start];
        }
        let ratio = (self.end / self.start).powf(1.0 / (self.steps - 1) as f64);
        (0..self.steps).map(|i| (self.start * ratio.powi(i as i32)).round()).collect()
    }
}

pub fn rate_ramp(s: &str) -> Result<RateRamp, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [a, b, n] = parts.as_slice() else { return Err(format!("{s:?} is not START,END,STEPS (e.g. 1000,50000,8)")) };
    let start = positive(a)?;
    let end = positive(b)?;
    if start < 1.0 {
        // Rates are whole requests per second: a smaller START would round to 0.
        return Err(format!("{s:?}: START must be at least 1 request/s"));
    }
    let steps: usize = n.parse().map_err(|_| format!("STEPS {n:?} is not a count"))?;
    if !(1..=100).contains(&steps) || end < start {
        return Err(format!("{s:?}: STEPS must be 1..=100 and END at least START"));
    }
    Ok(RateRamp { start, end, steps })
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct CompareArgs {
    /// The baseline result (a --json file of any command).
    #[arg(value_name = "A.json")]
    pub a: PathBuf,
    /// The result compared with it (ratios are B / A).
    #[arg(value_name = "B.json")]
    pub b: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct MixArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Sessions; with more connections than sessions, writers contend (409s).
    #[arg(long, value_name = "S", default_value_t = 4)]
    pub sessions: usize,
    /// Fraction of requests that are events-page reads (0..1).
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub read_ratio: f64,
    /// `limit` of each events-page read (1..1000); reads start `limit` events before the
    /// writer's known last seq.
    #[arg(long, value_name = "L", default_value_t = 100)]
    pub read_limit: usize,
    /// Size of each event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Session ids are PREFIX-0 .. PREFIX-(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench-mix")]
    pub session_prefix: String,
    /// Seed of the read/write choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// After the run, read every session back and check it holds exactly the acked events.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct RetryStormArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Sessions appended to (created first; an existing one is reused).
    #[arg(long, value_name = "S", default_value_t = 16)]
    pub sessions: usize,
    /// Size of each event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Session ids are PREFIX-0 .. PREFIX-(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench-retry")]
    pub session_prefix: String,
    /// After the run, read every session back and check it holds exactly one event per key.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct TailArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    /// WebSocket tailers, spread round-robin over the sessions, all from cursor 0.
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub tailers: usize,
    /// Sessions tailed and appended to (created first; an existing one is reused).
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub sessions: usize,
    /// Appends per second in total (open loop, round-robin over the sessions).
    #[arg(long, visible_alias = "rate", value_name = "R", default_value_t = 1000.0, value_parser = positive, conflicts_with = "rate_ramp")]
    pub append_rate: f64,
    /// Seconds of appending.
    #[arg(long, value_name = "T", default_value_t = 10.0, conflicts_with = "rate_ramp")]
    pub duration_secs: f64,
    /// Events per WebSocket frame (the tail's batch_size, 1..1000; SSE sends one per message).
    #[arg(long, value_name = "B", default_value_t = 1)]
    pub batch_size: usize,
    /// How the tailers tail: WebSocket (RFC 6455) or Server-Sent Events (`Accept: text/event-stream`).
    #[arg(long, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,
    /// Connections the appends go over.
    #[arg(long, short = 'c', visible_alias = "connections", value_name = "N", default_value_t = 2)]
    pub append_connections: usize,
    /// Appends in flight per append connection.
    #[arg(long, short = 'd', value_name = "D", default_value_t = 32)]
    pub pipeline: usize,
    /// Size of each event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Session ids are PREFIX-0 .. PREFIX-(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench-tail")]
    pub session_prefix: String,
    /// After appending stops, wait at most this long for every tailer to catch up.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Wait at most this long for all tails to open and replay what the sessions held.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub open_timeout_secs: f64,
    // With --rate-ramp each step's append rate and length come from the ramp; every step
    // opens the tailers anew and checks them (bench/README.md, "Load ramps").
    #[command(flatten)]
    pub ramp: RampArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct ReplayArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    /// Events the session must hold (filled with pipelined appends if it has fewer).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub events: u64,
    /// The session replayed (created when missing, unless --skip-fill).
    #[arg(long, value_name = "ID", default_value = "bench-replay")]
    pub session: String,
    /// Do not append: replay whatever the session holds.
    #[arg(long)]
    pub skip_fill: bool,
    /// Size of each filled event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Fill connections.
    #[arg(long, short = 'c', value_name = "C", default_value_t = 4)]
    pub connections: usize,
    /// Fill appends in flight per connection.
    #[arg(long, short = 'd', value_name = "D", default_value_t = 32)]
    pub pipeline: usize,
    /// Replay modes, in order: wsB (WebSocket tail, batch_size B) and pageL (events page, limit L).
    #[arg(long, value_delimiter = ',', default_value = "ws1000,ws1,page1000")]
    pub modes: Vec<String>,
    /// Give up on one mode after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub timeout_secs: f64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct RecoveryArgs {
    /// The starcite server binary to start.
    #[arg(long, value_name = "PATH")]
    pub server_bin: PathBuf,
    /// STARCITE_RAFT_DATA_DIR (on a real disk, not tmpfs). Filled first when empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Events to fill when the data dir is empty (spread over --sessions).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub events: u64,
    /// STARCITE_CORES for the server (unset: the server's default).
    #[arg(long, value_name = "C")]
    pub cores: Option<usize>,
    /// Sessions the fill spreads the events over (and that are checked after restarts).
    #[arg(long, value_name = "S", default_value_t = 8)]
    pub sessions: usize,
    /// Session ids are PREFIX-0 .. PREFIX-(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench-recovery")]
    pub session_prefix: String,
    /// PORT for the server (0: pick a free loopback port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// kill -9 / restart cycles.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub restarts: usize,
    /// Give up waiting for /health/ready after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub ready_timeout_secs: f64,
    /// Size of each filled event's JSON `payload` object in bytes (minimum 37).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = payload_size)]
    pub payload_bytes: usize,
    /// Fill connections.
    #[arg(long, short = 'c', value_name = "C", default_value_t = 4)]
    pub connections: usize,
    /// Fill appends in flight per connection.
    #[arg(long, short = 'd', value_name = "D", default_value_t = 32)]
    pub pipeline: usize,
    /// Sessions read back in full after each restart (evenly spread; all when S is smaller).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub sample: usize,
    /// Server stdout/stderr go here (default: DIR with `.server.log` appended).
    #[arg(long, value_name = "PATH")]
    pub server_log: Option<PathBuf>,
    /// Extra environment for the server, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct RedisXaddArgs {
    /// Redis address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:6379")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Streams appended to (PREFIX:0 .. PREFIX:(S-1)).
    #[arg(long, alias = "sessions", value_name = "S", default_value_t = 16)]
    pub streams: usize,
    /// Size of each entry's `p` field value in bytes (plus a `t` field with the send time).
    #[arg(long, value_name = "P", default_value_t = 256, value_parser = at_least_one)]
    pub payload_bytes: usize,
    /// Stream keys are PREFIX:0 .. PREFIX:(S-1).
    #[arg(long, value_name = "PREFIX", default_value = "bench")]
    pub key_prefix: String,
    /// Check with XLEN that each stream grew by exactly its acked count.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug, Clone, Serialize)]
pub struct HttpGetArgs {
    /// Server address (loopback only).
    #[arg(long, value_parser = loopback, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Request path.
    #[arg(long, default_value = "/")]
    pub path: String,
    #[command(flatten)]
    pub common: Common,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn loopback_only() {
        assert!(loopback("127.0.0.1:4000").is_ok());
        assert!(loopback("127.1.2.3:1").is_ok());
        assert!(loopback("[::1]:80").is_ok());
        assert!(loopback("10.0.0.1:80").is_err());
        assert!(loopback("localhost:80").is_err());
    }

    #[test]
    fn parses_append() {
        let cli = Cli::try_parse_from([
            "starcite-bench",
            "append",
            "--connections",
            "8",
            "--pipeline",
            "4",
            "--requests",
            "100",
            "--rate",
            "500",
            "--verify",
        ])
        .unwrap();
        let Command::Append(a) = cli.command else { panic!() };
        assert_eq!((a.load.connections, a.load.pipeline, a.load.requests, a.load.rate, a.verify), (8, 4, Some(100), Some(500.0), true));
        assert!(Cli::try_parse_from(["starcite-bench", "append", "--requests", "1", "--duration-secs", "1"]).is_err());
    }

    #[test]
    fn ramps_parse_and_step_geometrically() {
        let r = rate_ramp("1000,8000,4").unwrap();
        assert_eq!(r.rates(), vec![1000.0, 2000.0, 4000.0, 8000.0]);
        assert_eq!(rate_ramp("5,5,1").unwrap().rates(), vec![5.0]);
        assert!(rate_ramp("0.4,100,3").is_err(), "a START that rounds to 0 is refused");
        for bad in ["1000,500,3", "1,2", "0,10,3", "1,10,0", "1,10,101"] {
            assert!(rate_ramp(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["starcite-bench", "append", "--rate-ramp", "1,2,2", "--rate", "5"]).is_err());
    }

    #[test]
    fn the_same_flags_mean_the_same_everywhere_and_minimums_are_refused() {
        let tail = Cli::try_parse_from(["starcite-bench", "tail", "-c", "3", "-d", "8", "--rate", "50", "--payload-bytes", "64"]).unwrap();
        let Command::Tail(t) = tail.command else { panic!() };
        assert_eq!((t.append_connections, t.pipeline, t.append_rate, t.payload_bytes), (3, 8, 50.0, 64));
        let replay = Cli::try_parse_from(["starcite-bench", "replay", "-c", "2", "-d", "4"]).unwrap();
        let Command::Replay(r) = replay.command else { panic!() };
        assert_eq!((r.connections, r.pipeline), (2, 4));
        for bad in [
            vec!["starcite-bench", "append", "--payload-bytes", "10"],
            vec!["starcite-bench", "tail", "--rate", "0"],
            vec!["starcite-bench", "append", "--max-p99-ms", "-1"],
            vec!["starcite-bench", "redis-xadd", "--payload-bytes", "0"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }
}
