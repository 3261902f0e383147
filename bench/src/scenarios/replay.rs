//! `replay`: fill one session with N events (pipelined appends) unless it holds them, then time a full replay from cursor 0 over WebSocket (per batch size) and over the events page, checking contiguity and the count.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api;
use crate::cli::{secs, ReplayArgs};
use crate::http::{self, BlockingClient};
use crate::scenarios::common;
use crate::stats::{Stats, Summary, Violations};
use crate::sys::CpuWindow;
use crate::verify;
use crate::ws;

#[derive(Debug, Serialize)]
struct ModeResult {
    mode: String,
    events: u64,
    secs: f64,
    events_per_sec: f64,
    mib_per_sec: f64,
    bytes: u64,
    /// WebSocket frames or HTTP pages.
    messages: u64,
    first_event_ms: f64,
    bench_cpu_secs: f64,
    bench_cpu_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_secs: Option<f64>,
}

enum Mode {
    Ws(usize),
    Page(usize),
}

fn parse_mode(m: &str) -> Result<Mode, String> {
    let bad = || format!("replay mode {m:?}: expected wsB (1 ≤ B ≤ 1000) or pageL (1 ≤ L ≤ 1000)");
    if let Some(n) = m.strip_prefix("ws") {
        let b: usize = n.parse().map_err(|_| bad())?;
        if (1..=1000).contains(&b) {
            return Ok(Mode::Ws(b));
        }
    } else if let Some(n) = m.strip_prefix("page") {
        let l: usize = n.parse().map_err(|_| bad())?;
        if (1..=1000).contains(&l) {
            return Ok(Mode::Page(l));
        }
    }
    Err(bad())
}

pub fn run(args: &ReplayArgs) -> Result<Summary, String> {
    let modes: Vec<(String, Mode)> = args.modes.iter().map(|m| parse_mode(m).map(|p| (m.clone(), p))).collect::<Result<_, _>>()?;
    let timeout = secs(args.timeout_secs, "--timeout-secs")?;
    let ids = vec![args.session.clone()];
    let mut client = BlockingClient::new(args.addr, Duration::from_secs(30));
    let mut v = Violations::default();
    let mut summary_stats = Stats::new();
    let mut fill_info = serde_json::Map::new();

    let mut have = if args.skip_fill { verify::last_seq(&mut client, &args.session)? } else { common::setup_sessions(args.addr, &ids)?[0] };
    if !args.skip_fill && have < args.events {
        let need = args.events - have;
        eprintln!("starcite-bench: filling session {} with {need} events", args.session);
        let f = common::fill(args.addr, &ids, &[need], args.payload_bytes, args.connections, args.pipeline)?;
        fill_info.insert("appended".into(), f.acked[0].into());
        fill_info.insert("secs".into(), f.elapsed.as_secs_f64().into());
        fill_info.insert("appends_per_sec".into(), (f.acked[0] as f64 / f.elapsed.as_secs_f64().max(1e-9)).into());
        fill_info.insert("errors".into(), serde_json::to_value(&f.stats.errors).unwrap_or_default());
        if let Some(h) = f.stats.hists.get("fill_append") {
            fill_info.insert("append_latency_us".into(), serde_json::to_value(crate::stats::LatencySummary::of(h)).unwrap_or_default());
        }
        fill_info.insert("bench_cpu_percent".into(), f.cpu.cpu_percent.into());
        for (k, n) in &f.stats.errors {
            *summary_stats.errors.entry(format!("fill:{k}")).or_default() += n;
        }
        have = verify::last_seq(&mut client, &args.session)?;
        if have < args.events {
            return Err(format!("session {} holds {have} events after the fill, wanted {}", args.session, args.events));
        }
    }
    let target = have;
    if target == 0 {
        return Err(format!("session {} is empty: nothing to replay", args.session));
    }

    let mut results = Vec::new();
    let overall = CpuWindow::start(args.common.server_pid);
    let mut total_secs = 0.0;
    for (name, mode) in &modes {
        let cpu = CpuWindow::start(args.common.server_pid);
        let start = Instant::now();
        let deadline = start + timeout;
        let (events, bytes, messages, first) = match mode {
            Mode::Ws(b) => replay_ws(args, *b, target, deadline, &mut v)?,
            Mode::Page(l) => replay_pages(args, *l, target, deadline, &mut v)?,
        };
        let secs = start.elapsed().as_secs_f64();
        let c = cpu.finish();
        if events != target {
            v.add("replay_count", || format!("{name}: replayed {events} events, session holds {target}"));
        }
        summary_stats.ok += events;
        summary_stats.completed += events;
        total_secs += secs;
        results.push(ModeResult {
            mode: name.clone(),
            events,
            secs,
            events_per_sec: events as f64 / secs.max(1e-9),
            mib_per_sec: bytes as f64 / 1_048_576.0 / secs.max(1e-9),
            bytes,
            messages,
            first_event_ms: first.map_or(0.0, |d| d.as_secs_f64() * 1e3),
            bench_cpu_secs: c.cpu_secs,
            bench_cpu_percent: c.cpu_percent,
            server_cpu_secs: c.server_cpu_secs,
        });
        eprintln!("starcite-bench: {name}: {events} events in {secs:.3} s ({:.0} events/s)", events as f64 / secs.max(1e-9));
    }
    let cpu = overall.finish();
    let performed = vec![format!("each mode replayed seqs 1..={target} contiguously, no duplicates, exact count")];
    let mut sum = Summary::new("replay", args, &summary_stats, total_secs, cpu, &v, performed);
    sum.headline = Some(
        results.iter().map(|m| format!("{}: {:.0} events/s ({:.3} s)", m.mode, m.events_per_sec, m.secs)).collect::<Vec<_>>().join("; "),
    );
    sum.extra("session_events", target);
    if !fill_info.is_empty() {
        sum.extra("fill", fill_info);
    }
    sum.extra("modes", &results);
    Ok(sum)
}

/// Replay over a WebSocket tail with `batch_size`; returns (events, bytes, frames, time to first event).
fn replay_ws(
    args: &ReplayArgs,
    batch: usize,
    target: u64,
    deadline: Instant,
    v: &mut Violations,
) -> Result<(u64, u64, u64, Option<Duration>), String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&args.addr, Duration::from_secs(5)).map_err(|e| format!("connect {}: {e}", args.addr))?;
    let _ = s.set_nodelay(true);
    let key = ws::make_key();
    let mut req = Vec::new();
    ws::write_handshake(&mut req, &api::tail_path(&args.session, 0, batch), &args.addr.to_string(), &key);
    s.write_all(&req).map_err(|e| format!("handshake write: {e}"))?;
    let mut rbuf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    let mut upgraded = false;
    let mut reader = ws::Reader::default();
    let mut next_seq = 1u64;
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut first = None;
    let id = &args.session;
    while next_seq <= target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("ws{batch}: replay not finished in time (at seq {})", next_seq - 1));
        }
        let _ = s.set_read_timeout(Some(left.min(Duration::from_secs(5))));
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err(format!("ws{batch}: server closed the connection at seq {}", next_seq - 1)),
            Ok(n) => n,
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) =>
            {
                continue
            }
            Err(e) => return Err(format!("ws{batch}: read: {e}")),
        };
        rbuf.extend_from_slice(&chunk[..n]);
        if !upgraded {
            match http::parse_response(&rbuf).map_err(|e| format!("ws{batch}: {e}"))? {
                None => continue,
                Some((r, used)) => {
                    if r.status != 101 {
                        return Err(format!("ws{batch}: upgrade answered HTTP {} {}", r.status, r.body_str()));
                    }
                    ws::check_accept(&rbuf[..used], &key).map_err(|e| format!("ws{batch}: {e}"))?;
                    rbuf.drain(..used);
                    upgraded = true;
                }
            }
        }
        let mut err = None;
        let mut closed = None;
        let used = reader
            .feed(&rbuf, |m| match m {
                ws::Message::Text(t) => {
                    bytes += t.len() as u64;
                    match api::parse_tail_frame(t) {
                        Ok(evs) => {
                            if first.is_none() {
                                first = Some(start.elapsed());
                            }
                            for e in evs {
                                events += 1;
                                if e.seq != next_seq {
                                    let want = next_seq;
                                    v.add("replay_gap_or_duplicate", || {
                                        format!("ws{batch} session {id}: expected seq {want}, got {}", e.seq)
                                    });
                                }
                                next_seq = next_seq.max(e.seq + 1);
                            }
                        }
                        Err(e) => err = Some(e),
                    }
                }
                ws::Message::Binary(_) => err = Some("binary frame".into()),
                ws::Message::Close(code, why) => closed = Some(format!("close frame {code} {why}")),
            })
            .map_err(|e| format!("ws{batch}: {e}"))?;
        rbuf.drain(..used);
        if !reader.outgoing.is_empty() {
            let _ = s.write_all(&reader.outgoing);
            reader.outgoing.clear();
        }
        if let Some(e) = err {
            return Err(format!("ws{batch}: {e}"));
        }
        if let Some(c) = closed {
            return Err(format!("ws{batch}: server closed at seq {}: {c}", next_seq - 1));
        }
    }
    let mut close = Vec::new();
    ws::write_close(&mut close, 1000, ws::mask_for(events));
    let _ = s.write_all(&close);
    Ok((events, bytes, reader.frames, first))
}

/// Replay through the events page with `limit`; returns (events, bytes, pages, time to first page).
fn replay_pages(
    args: &ReplayArgs,
    limit: usize,
    target: u64,
    deadline: Instant,
    v: &mut Violations,
) -> Result<(u64, u64, u64, Option<Duration>), String> {
    let start = Instant::now();
    let mut client = BlockingClient::new(args.addr, Duration::from_secs(30));
    let mut cursor = 0u64;
    let (mut events, mut bytes, mut pages) = (0u64, 0u64, 0u64);
    let mut first = None;
    let id = &args.session;
    while cursor < target {
        if Instant::now() > deadline {
            return Err(format!("page{limit}: replay not finished in time (at cursor {cursor})"));
        }
        let resp = client.request("GET", &api::events_path(id, cursor, limit), None)?;
        if resp.status != 200 {
            return Err(format!("page{limit}: HTTP {} {}", resp.status, resp.body_str()));
        }
        bytes += resp.body.len() as u64;
        pages += 1;
        let page: api::Page = serde_json::from_slice(&resp.body).map_err(|e| format!("page{limit}: {e}"))?;
        if first.is_none() {
            first = Some(start.elapsed());
        }
        if page.events.is_empty() {
            v.add("page_short", || format!("page{limit} session {id}: empty page at cursor {cursor} below {target}"));
            break;
        }
        for (i, e) in page.events.iter().enumerate() {
            let want = cursor + 1 + i as u64;
            if e.seq != want {
                v.add("replay_gap_or_duplicate", || format!("page{limit} session {id}: expected seq {want}, got {}", e.seq));
            }
        }
        events += page.events.len() as u64;
        let n = page.events.len() as u64;
        if page.next_cursor != cursor + n {
            v.add("page_next_cursor", || format!("page{limit} session {id}: cursor {cursor} + {n} but next_cursor {}", page.next_cursor));
        }
        cursor += n;
    }
    Ok((events, bytes, pages, first))
}
