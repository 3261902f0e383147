//! `recovery`: start the server on a data dir (filling it through the server when empty), kill -9 it, and time process start → `/health/ready` = 200 on restart; then read back a sample of sessions and check their last_seq survived.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::{secs, RecoveryArgs};
use crate::http::BlockingClient;
use crate::scenarios::common;
use crate::server::{self, Server, ServerSpec};
use crate::stats::{Stats, Summary, Violations};
use crate::sys::{self, CpuWindow};
use crate::verify;

#[derive(Debug, Serialize)]
struct Restart {
    restart: usize,
    /// Process start → first accepted HTTP connection.
    listen_secs: f64,
    /// Process start → `/health/ready` 200.
    ready_secs: f64,
    /// CPU seconds the new process used up to ready.
    server_cpu_secs_to_ready: Option<f64>,
    server_rss_kib_at_ready: Option<u64>,
    sessions_verified: usize,
    events_verified: u64,
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    let mut budget = 1_000_000usize;
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                return total;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub fn run(args: &RecoveryArgs) -> Result<Summary, String> {
    if args.sessions == 0 || args.restarts == 0 {
        return Err("--sessions and --restarts must be at least 1".into());
    }
    if !args.server_bin.is_file() {
        return Err(format!("--server-bin {} is not a file", args.server_bin.display()));
    }
    let ready_timeout = secs(args.ready_timeout_secs, "--ready-timeout-secs")?;
    // The server's log writes with O_DIRECT: test the filesystem (not the path: /tmp may be ext4).
    crate::sys::probe_direct_io(&args.data_dir)?;
    let env: Vec<(String, String)> = args
        .server_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))
        })
        .collect::<Result<_, _>>()?;
    let empty = server::dir_is_empty(&args.data_dir)?;
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("create {}: {e}", args.data_dir.display()))?;
    let port = if args.port == 0 { server::free_port()? } else { args.port };
    let log = args.server_log.clone().unwrap_or_else(|| {
        let mut p = args.data_dir.clone().into_os_string();
        p.push(".server.log");
        p.into()
    });
    let spec = ServerSpec { bin: args.server_bin.clone(), data_dir: args.data_dir.clone(), port, cores: args.cores, log: log.clone(), env };
    let cpu = CpuWindow::start(None);
    let mut v = Violations::default();
    let mut stats = Stats::new();

    // 1. First start; fill when the data dir was empty.
    let mut srv = Server::spawn(&spec)?;
    let (_, first_ready) = srv.wait_ready(ready_timeout).map_err(|e| format!("first start: {e} (server log: {})", log.display()))?;
    let ids = common::session_ids(&args.session_prefix, args.sessions);
    let mut fill_info = serde_json::Map::new();
    if empty {
        common::setup_sessions(srv.addr, &ids)?;
        let per = args.events / args.sessions as u64;
        let counts: Vec<u64> = (0..args.sessions).map(|i| per + u64::from((i as u64) < args.events % args.sessions as u64)).collect();
        eprintln!("starcite-bench: filling {} events over {} sessions", args.events, args.sessions);
        let f = common::fill(srv.addr, &ids, &counts, args.payload_bytes, args.connections, args.pipeline)?;
        let acked: u64 = f.acked.iter().sum();
        fill_info.insert("appended".into(), acked.into());
        fill_info.insert("secs".into(), f.elapsed.as_secs_f64().into());
        fill_info.insert("appends_per_sec".into(), (acked as f64 / f.elapsed.as_secs_f64().max(1e-9)).into());
        fill_info.insert("errors".into(), serde_json::to_value(&f.stats.errors).unwrap_or_default());
        for (k, n) in &f.stats.errors {
            *stats.errors.entry(format!("fill:{k}")).or_default() += n;
        }
    }
    let mut client = BlockingClient::new(srv.addr, Duration::from_secs(30));
    let mut expected = Vec::with_capacity(ids.len());
    for id in &ids {
        expected.push(verify::last_seq(&mut client, id).map_err(|e| {
            format!(
                "{e} (does {} hold the bench's sessions? use an empty dir or the same --session-prefix/--sessions)",
                args.data_dir.display()
            )
        })?);
    }
    drop(client);
    let total_events: u64 = expected.iter().sum();
    let data_bytes = dir_bytes(&args.data_dir);
    let sample: Vec<usize> = if args.sample >= ids.len() {
        (0..ids.len()).collect()
    } else {
        (0..args.sample.max(1)).map(|k| k * ids.len() / args.sample.max(1)).collect()
    };

    // 2. kill -9, restart, time to ready, verify.
    let mut restarts = Vec::new();
    for r in 1..=args.restarts {
        srv.kill9()?;
        drop(srv);
        srv = Server::spawn(&spec)?;
        let (listen, ready) = srv.wait_ready(ready_timeout).map_err(|e| format!("restart {r}: {e} (server log: {})", log.display()))?;
        let server_cpu = sys::proc_cpu_secs(srv.pid);
        let rss = sys::rss_kib(srv.pid);
        stats.record_us("restart_to_ready", ready.as_micros() as u64);
        let mut client = BlockingClient::new(srv.addr, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut events_verified = 0;
        for &s in &sample {
            let back = verify::read_back(&mut client, &ids[s], 0, 1000, deadline, &mut v)?;
            events_verified += back.events;
            if back.last_seq != expected[s] {
                let (id, want, got) = (&ids[s], expected[s], back.last_seq);
                v.add("last_seq_after_restart", || format!("restart {r}, session {id}: last_seq {got}, expected {want}"));
            }
        }
        stats.ok += 1;
        stats.completed += 1;
        restarts.push(Restart {
            restart: r,
            listen_secs: listen.as_secs_f64(),
            ready_secs: ready.as_secs_f64(),
            server_cpu_secs_to_ready: server_cpu,
            server_rss_kib_at_ready: rss,
            sessions_verified: sample.len(),
            events_verified,
        });
        eprintln!("starcite-bench: restart {r}: ready after {:.3} s (listening after {:.3} s)", ready.as_secs_f64(), listen.as_secs_f64());
    }
    srv.kill9()?;
    let cpu = cpu.finish();
    let ready_total: f64 = restarts.iter().map(|r| r.ready_secs).sum();
    let performed = vec![format!(
        "after each kill -9 + restart, {} of {} sessions read back contiguous with the last_seq they had before",
        sample.len(),
        ids.len()
    )];
    let mut sum = Summary::new("recovery", args, &stats, ready_total, cpu, &v, performed);
    let readies: Vec<String> = restarts.iter().map(|r| format!("{:.3}", r.ready_secs)).collect();
    sum.headline = Some(format!(
        "restart to /health/ready: {} s ({} restarts, {total_events} events in {} sessions)",
        readies.join(", "),
        restarts.len(),
        ids.len()
    ));
    sum.extra("port", port);
    sum.extra("data_dir_was_empty", empty);
    sum.extra("data_dir_bytes", data_bytes);
    sum.extra("events_in_sessions", total_events);
    sum.extra("first_start_ready_secs", first_ready.as_secs_f64());
    if !fill_info.is_empty() {
        sum.extra("fill", fill_info);
    }
    sum.extra("restarts", &restarts);
    sum.extra("server_log", log.display().to_string());
    Ok(sum)
}
