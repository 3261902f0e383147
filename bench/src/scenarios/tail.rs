//! `tail`: K WebSocket tailers from cursor 0 spread over S sessions, then open-loop appends at a fixed rate; measures commit→delivery and send→delivery latency, checks every tailer gets every event of its session in order, and reports the server's RSS per open tail.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::api;
use crate::cli::Transport;
use crate::cli::{secs, TailArgs};
use crate::conn::{self, Conn, HttpCodec};
use crate::driver::Schedule;
use crate::http::{self, BlockingClient};
use crate::scenarios::append::Acks;
use crate::scenarios::common::{self, error_kind};
use crate::sse;
use crate::stats::{Stats, Summary, Violations};
use crate::sys;
use crate::timer::Timer;
use crate::verify;
use crate::ws;

const TIMER: Token = Token(usize::MAX - 1);

struct Tailer {
    stream: Option<TcpStream>,
    s: usize,
    key: String,
    upgraded: bool,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    reader: ws::Reader,
    /// `Some` for an SSE tail (`--transport sse`): its event-stream decoder.
    sse: Option<sse::Reader>,
    /// The next seq this tailer must receive.
    next_seq: u64,
    received: u64,
    ended: Option<String>,
}

/// What frame handling needs besides the tailer.
struct Ctx<'a> {
    stats: &'a mut Stats,
    v: &'a mut Violations,
    ids: &'a [String],
    base: &'a [u64],
    deliveries: &'a mut u64,
    record: bool,
}

impl Tailer {
    fn flush(&mut self) -> io::Result<()> {
        let Some(s) = self.stream.as_mut() else { return Ok(()) };
        while !self.wbuf.is_empty() {
            match s.write(&self.wbuf) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn end(&mut self, poll: &Poll, why: String) {
        if let Some(mut s) = self.stream.take() {
            let _ = poll.registry().deregister(&mut s);
        }
        if self.ended.is_none() {
            self.ended = Some(why);
        }
    }

    fn on_readable(&mut self, poll: &Poll, scratch: &mut [u8], cx: &mut Ctx<'_>) {
        loop {
            let Some(s) = self.stream.as_mut() else { return };
            let n = match s.read(scratch) {
                Ok(0) => {
                    let why = if self.reader.closed {
                        "closed by the server (close frame)".to_string()
                    } else {
                        "connection closed by the server".to_string()
                    };
                    self.end(poll, why);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.end(poll, format!("read error: {e}"));
                    return;
                }
            };
            let now_ns = sys::realtime_ns() as i128;
            self.rbuf.extend_from_slice(&scratch[..n]);
            if self.sse.is_some() {
                if !self.on_sse_bytes(poll, now_ns, cx) {
                    return;
                }
                if n < scratch.len() {
                    return;
                }
                continue;
            }
            if !self.upgraded {
                match http::parse_response(&self.rbuf) {
                    Ok(None) if n < scratch.len() => return,
                    Ok(None) => continue,
                    Ok(Some((r, used))) => {
                        if r.status != 101 {
                            let why = format!("upgrade answered HTTP {} {}", r.status, r.body_str());
                            cx.stats.error(format!("tail_upgrade_http_{}", r.status));
                            self.end(poll, why);
                            return;
                        }
                        if let Err(e) = ws::check_accept(&self.rbuf[..used], &self.key) {
                            cx.stats.error("tail_bad_accept");
                            self.end(poll, e);
                            return;
                        }
                        self.rbuf.drain(..used);
                        self.upgraded = true;
                    }
                    Err(e) => {
                        cx.stats.error("tail_upgrade_protocol_error");
                        self.end(poll, e.to_string());
                        return;
                    }
                }
            }
            let Tailer { reader, rbuf, next_seq, received, s, .. } = self;
            let sid = &cx.ids[*s];
            let base = cx.base[*s];
            let mut bad: Option<String> = None;
            let mut server_close: Option<String> = None;
            let fed = reader.feed(rbuf, |m| match m {
                ws::Message::Text(t) => match api::parse_tail_frame(t) {
                    Ok(evs) => deliver(&evs, next_seq, received, sid, base, now_ns, cx),
                    Err(err) => bad = Some(err),
                },
                ws::Message::Binary(_) => bad = Some("binary frame on a JSON tail".into()),
                ws::Message::Close(code, why) => server_close = Some(format!("close frame {code} {why}")),
            });
            match fed {
                Ok(used) => {
                    rbuf.drain(..used);
                }
                Err(e) => {
                    cx.stats.error("tail_ws_protocol_error");
                    self.end(poll, e);
                    return;
                }
            }
            if let Some(e) = bad {
                cx.stats.error("tail_bad_frame");
                cx.v.add("tail_bad_frame", || format!("session {sid}: {e}"));
            }
            if !self.reader.outgoing.is_empty() {
                let out = std::mem::take(&mut self.reader.outgoing);
                self.wbuf.extend_from_slice(&out);
                if let Err(e) = self.flush() {
                    self.end(poll, format!("write error: {e}"));
                    return;
                }
            }
            if let Some(why) = server_close {
                self.end(poll, why);
                return;
            }
            if n < scratch.len() {
                // Socket drained (edge-triggered: new bytes raise a new event).
                return;
            }
        }
    }
}

impl Tailer {
    /// SSE: the response head, then the chunked event stream. Returns false once the
    /// tailer ended.
    fn on_sse_bytes(&mut self, poll: &Poll, now_ns: i128, cx: &mut Ctx<'_>) -> bool {
        if !self.upgraded {
            match sse::parse_head(&self.rbuf) {
                Ok(None) => return true,
                Ok(Some(used)) => {
                    self.rbuf.drain(..used);
                    self.upgraded = true;
                }
                Err(e) => {
                    cx.stats.error("tail_sse_bad_answer");
                    self.end(poll, e);
                    return false;
                }
            }
        }
        let Tailer { sse, rbuf, next_seq, received, s, .. } = self;
        let reader = sse.as_mut().expect("an SSE tailer");
        let sid = &cx.ids[*s];
        let base = cx.base[*s];
        let mut bad: Option<String> = None;
        let fed = reader.feed(rbuf, |data| match api::parse_tail_frame(data.as_bytes()) {
            Ok(evs) => deliver(&evs, next_seq, received, sid, base, now_ns, cx),
            Err(e) => bad = Some(e),
        });
        let ended = reader.ended();
        match fed {
            Ok(used) => {
                rbuf.drain(..used);
            }
            Err(e) => {
                cx.stats.error("tail_sse_protocol_error");
                self.end(poll, e);
                return false;
            }
        }
        if let Some(e) = bad {
            cx.stats.error("tail_bad_frame");
            cx.v.add("tail_bad_frame", || format!("session {sid}: {e}"));
        }
        if ended {
            self.end(poll, "the server ended the event stream".into());
            return false;
        }
        true
    }
}

/// Check and count the events of one frame or SSE message of session `sid`'s tailer.
#[allow(clippy::too_many_arguments)]
fn deliver(evs: &[api::TailEvent<'_>], next_seq: &mut u64, received: &mut u64, sid: &str, base: u64, now_ns: i128, cx: &mut Ctx<'_>) {
    for e in evs {
        *cx.deliveries += 1;
        *received += 1;
        if e.seq != *next_seq {
            let want = *next_seq;
            if e.seq > want {
                cx.v.add("tail_gap", || format!("session {sid}: tailer expected seq {want}, got {}", e.seq));
            } else {
                cx.v.add("tail_duplicate_or_regress", || format!("session {sid}: tailer expected seq {want}, got {}", e.seq));
            }
        }
        *next_seq = (*next_seq).max(e.seq + 1);
        if cx.record && e.seq > base {
            if let Some(t) = e.t_ns() {
                cx.stats.record_us("send_to_delivery", ((now_ns - t as i128).max(0) / 1000) as u64);
            }
            match e.inserted_at.as_deref().map(sys::parse_rfc3339_ns) {
                Some(Some(at)) => cx.stats.record_us("commit_to_delivery", ((now_ns - at).max(0) / 1000) as u64),
                _ => cx.v.add("bad_inserted_at", || format!("session {sid}: seq {} has inserted_at {:?}", e.seq, e.inserted_at)),
            }
        }
    }
}

struct Appender {
    conn: Conn<usize>,
    last_acked: Vec<u64>,
}

pub fn run(args: &TailArgs) -> Result<Summary, String> {
    if args.sessions == 0 || args.tailers == 0 || args.append_connections == 0 || args.pipeline == 0 {
        return Err("--tailers, --sessions, --append-connections and --pipeline must be at least 1".into());
    }
    if !(1..=1000).contains(&args.batch_size) {
        return Err("--batch-size must be within 1..1000".into());
    }
    if !(args.append_rate > 0.0 && args.append_rate.is_finite()) {
        return Err("--append-rate must be a positive number".into());
    }
    let duration = secs(args.duration_secs, "--duration-secs")?;
    let drain = secs(args.drain_secs, "--drain-secs")?;
    let open_timeout = secs(args.open_timeout_secs, "--open-timeout-secs")?;
    sys::tighten_timer_slack();
    let ids = common::session_ids(&args.session_prefix, args.sessions);
    let base = common::setup_sessions(args.addr, &ids)?;
    let host = args.addr.to_string();
    let pid = args.common.server_pid;
    let mut v = Violations::default();
    let mut stats = Stats::new();
    let mut deliveries = 0u64;

    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut events = Events::with_capacity(4096);
    let mut scratch = vec![0u8; 256 * 1024];

    // 1. Open the tails and let them replay what the sessions already hold.
    let rss_before = pid.and_then(sys::rss_kib);
    let open_start = Instant::now();
    let mut tailers: Vec<Tailer> = Vec::with_capacity(args.tailers);
    for k in 0..args.tailers {
        let s = k % args.sessions;
        let mut stream = conn::connect(args.addr, Duration::from_secs(5)).map_err(|e| format!("tailer {k}: connect {}: {e}", args.addr))?;
        poll.registry().register(&mut stream, Token(k), Interest::READABLE | Interest::WRITABLE).map_err(|e| format!("register: {e}"))?;
        let key = ws::make_key();
        let mut wbuf = Vec::new();
        match args.transport {
            Transport::Ws => ws::write_handshake(&mut wbuf, &api::tail_path(&ids[s], 0, args.batch_size), &host, &key),
            Transport::Sse => sse::write_request(&mut wbuf, &api::tail_path(&ids[s], 0, 1), &host),
        }
        let mut t = Tailer {
            stream: Some(stream),
            s,
            key,
            upgraded: false,
            rbuf: Vec::new(),
            wbuf,
            reader: ws::Reader::default(),
            sse: (args.transport == Transport::Sse).then(sse::Reader::default),
            next_seq: 1,
            received: 0,
            ended: None,
        };
        if let Err(e) = t.flush() {
            t.end(&poll, format!("handshake write: {e}"));
        }
        tailers.push(t);
    }
    let caught_up =
        |ts: &[Tailer], target: &dyn Fn(usize) -> u64| ts.iter().all(|t| t.ended.is_some() || (t.upgraded && t.next_seq > target(t.s)));
    let open_deadline = Instant::now() + open_timeout;
    loop {
        if caught_up(&tailers, &|s| base[s]) || Instant::now() >= open_deadline {
            break;
        }
        poll_once(&mut poll, &mut events, Duration::from_millis(50))?;
        let mut cx = Ctx { stats: &mut stats, v: &mut v, ids: &ids, base: &base, deliveries: &mut deliveries, record: false };
        handle(&events, &poll, &mut tailers, &mut [], &mut scratch, &mut cx, &mut Acks::new(vec![], &[]));
    }
    let open_secs = open_start.elapsed().as_secs_f64();
    let not_open = tailers.iter().filter(|t| t.ended.is_none() && !(t.upgraded && t.next_seq > base[t.s])).count();
    if not_open > 0 {
        v.add("tail_open_timeout", || format!("{not_open} tailers had not opened and replayed their session within {open_timeout:?}"));
    }
    let open_tails = tailers.iter().filter(|t| t.ended.is_none()).count();
    let rss_open = pid.and_then(sys::rss_kib);

    // 2. Append at the fixed rate while the tails deliver.
    let mut acks = Acks::new(ids.clone(), &base);
    let mut appenders: Vec<Appender> = Vec::with_capacity(args.append_connections);
    for i in 0..args.append_connections {
        let c = Conn::connect(args.addr, poll.registry(), Token(args.tailers + i)).map_err(|e| format!("append connection {i}: {e}"))?;
        appenders.push(Appender { conn: c, last_acked: base.clone() });
    }
    let timer = Timer::new(poll.registry(), TIMER).map_err(|e| format!("timerfd: {e}"))?;
    let paths: Vec<String> = ids.iter().map(|id| api::append_path(id)).collect();
    let pad = api::padding(args.payload_bytes);
    let mut body = Vec::with_capacity(args.payload_bytes + 256);
    let deliveries_before = deliveries;
    let cpu = sys::CpuWindow::start(pid);
    let t0 = Instant::now();
    let schedule = Schedule::new(t0, args.append_rate);
    let stop = t0 + duration;
    let mut issued = 0u64;
    let mut rr = 0usize;
    let mut max_backlog = 0u64;
    let mut stopped = false;
    let mut append_drain_deadline = None;
    let mut stopped_at = stop;
    loop {
        let now = Instant::now();
        if !stopped && (now >= stop || sys::interrupted()) {
            stopped = true;
            stopped_at = now.min(stop);
            append_drain_deadline = Some(now + drain);
        }
        if !stopped {
            // Nothing is scheduled at or past the end of the appending window.
            let due = schedule.due(now).min(schedule.due_before(stop));
            while issued < due {
                let n = appenders.len();
                let Some(i) =
                    (0..n).map(|k| (rr + k) % n).find(|&i| appenders[i].conn.is_open() && appenders[i].conn.inflight.len() < args.pipeline)
                else {
                    break;
                };
                rr = (i + 1) % n;
                let s = (issued % args.sessions as u64) as usize;
                body.clear();
                api::write_append_body(&mut body, &pad, sys::realtime_ns(), None, None);
                http::write_request(appenders[i].conn.out(), "POST", &paths[s], &host, Some(&body));
                appenders[i].conn.push(schedule.at(issued), s);
                issued += 1;
            }
            max_backlog = max_backlog.max(due.saturating_sub(issued));
        }
        for (i, a) in appenders.iter_mut().enumerate() {
            if a.conn.has_output() {
                if let Err(e) = a.conn.flush() {
                    fail_appender(a, i, &e, &poll, &mut stats, &mut acks);
                }
            }
        }
        let inflight: usize = appenders.iter().map(|a| a.conn.inflight.len()).sum();
        if stopped && (inflight == 0 || now >= append_drain_deadline.unwrap_or(now)) {
            for a in appenders.iter_mut() {
                for p in a.conn.close(poll.registry()) {
                    stats.error("unanswered_at_end");
                    stats.completed += 1;
                    acks.unknown[p.meta] += 1;
                }
            }
            break;
        }
        let mut timeout = Duration::from_millis(50);
        if !stopped {
            let next = schedule.at(issued).min(stop);
            let d = next.saturating_duration_since(now);
            if d.is_zero() {
                timeout = Duration::ZERO;
            } else if d < timeout {
                timer.arm(d);
            }
        }
        poll_once(&mut poll, &mut events, timeout)?;
        let mut cx = Ctx { stats: &mut stats, v: &mut v, ids: &ids, base: &base, deliveries: &mut deliveries, record: true };
        handle(&events, &poll, &mut tailers, &mut appenders, &mut scratch, &mut cx, &mut acks);
        for ev in events.iter() {
            if ev.token() == TIMER {
                timer.drain();
            }
        }
    }
    let append_secs = t0.elapsed().as_secs_f64();

    // 3. Wait for every tailer to reach the last acked seq of its session, then the
    //    server's last_seq (it may hold events whose append outcome was unknown).
    let drain_deadline = Instant::now() + drain;
    let acked_max: Vec<u64> = acks.acked.iter().map(|a| a.max()).collect();
    while !caught_up(&tailers, &|s| acked_max[s]) && Instant::now() < drain_deadline {
        poll_once(&mut poll, &mut events, Duration::from_millis(50))?;
        let mut cx = Ctx { stats: &mut stats, v: &mut v, ids: &ids, base: &base, deliveries: &mut deliveries, record: true };
        handle(&events, &poll, &mut tailers, &mut [], &mut scratch, &mut cx, &mut acks);
    }
    let delivery_secs = t0.elapsed().as_secs_f64();
    let deliveries_run = deliveries - deliveries_before;
    let cpu = cpu.finish();
    let mut client = BlockingClient::new(args.addr, Duration::from_secs(10));
    // The server's last_seq of each session; a server that no longer answers leaves the
    // acked maximum as the target, and the run is reported, not lost.
    let mut target = Vec::with_capacity(ids.len());
    for (s, id) in ids.iter().enumerate() {
        match verify::last_seq(&mut client, id) {
            Ok(last) => target.push(last),
            Err(e) => {
                v.add("verify_incomplete", || format!("session {id}: last_seq unreadable: {e}"));
                target.push(acked_max[s]);
            }
        }
    }
    while !caught_up(&tailers, &|s| target[s]) && Instant::now() < drain_deadline {
        poll_once(&mut poll, &mut events, Duration::from_millis(50))?;
        let mut cx = Ctx { stats: &mut stats, v: &mut v, ids: &ids, base: &base, deliveries: &mut deliveries, record: false };
        handle(&events, &poll, &mut tailers, &mut [], &mut scratch, &mut cx, &mut acks);
    }
    let rss_after = pid.and_then(sys::rss_kib);

    // 4. Verify and close.
    let mut incomplete = 0u64;
    for t in &tailers {
        let want = target[t.s];
        if t.next_seq <= want {
            incomplete += 1;
            let (sid, got) = (&ids[t.s], t.next_seq - 1);
            let why = t.ended.clone().unwrap_or_else(|| "still open".into());
            v.add("tail_incomplete", || format!("session {sid}: tailer reached seq {got} of {want} ({why})"));
        }
    }
    for s in 0..ids.len() {
        if acked_max[s] > target[s] {
            let (sid, a, t) = (&ids[s], acked_max[s], target[s]);
            v.add("acked_seq_missing", || format!("session {sid}: seq {a} acked but last_seq is {t}"));
        }
    }
    for t in tailers.iter_mut() {
        if t.stream.is_some() {
            if t.sse.is_none() {
                ws::write_close(&mut t.wbuf, 1000, ws::mask_for(t.received));
                let _ = t.flush();
            }
            t.end(&poll, "closed by the bench".into());
        }
    }
    v.merge(std::mem::take(&mut acks.v));

    let performed = vec![
        format!(
            "{} tailers over {} sessions: contiguous seqs from 1, no duplicates, every event up to the session's last_seq",
            args.tailers, args.sessions
        ),
        format!("{} append acks: no duplicate seq, strictly increasing per connection and session", acks.acks),
    ];
    let mut sum = Summary::new("tail", args, &stats, append_secs, cpu, &v, performed);
    let scheduled = schedule.due_before(stopped_at);
    sum.open_loop = Some(crate::stats::OpenLoop {
        rate_per_sec: args.append_rate,
        scheduled,
        sent: issued,
        answered: stats.completed,
        missed: scheduled.saturating_sub(issued),
        behind_schedule: scheduled > issued,
        max_backlog,
    });
    if sys::interrupted() {
        sum.stopped = crate::driver::StopReason::Interrupted.describe().to_string();
    } else if stats.errors.contains_key("all_connections_failed") || v.counts.contains_key("verify_incomplete") {
        sum.stopped = crate::driver::StopReason::ServerUnreachable.describe().to_string();
    }
    sum.headline = Some(format!(
        "{:.1} appends/s acked ({} of {} issued in {:.3} s); {:.1} tail deliveries/s ({} to {} tailers)",
        sum.throughput_ops_per_sec,
        sum.ok,
        issued,
        append_secs,
        deliveries_run as f64 / delivery_secs.max(1e-9),
        deliveries_run,
        args.tailers
    ));
    sum.extra("tails_open", open_tails);
    sum.extra("tails_open_secs", open_secs);
    sum.extra("appends_issued", issued);
    sum.extra("append_max_backlog", max_backlog);
    sum.extra("deliveries", deliveries_run);
    sum.extra("deliveries_per_sec", deliveries_run as f64 / delivery_secs.max(1e-9));
    sum.extra("tailers_incomplete", incomplete);
    match (rss_before, rss_open, rss_after) {
        (Some(b), Some(o), Some(a)) => {
            sum.extra("server_rss_kib_before_tails", b);
            sum.extra("server_rss_kib_tails_open", o);
            sum.extra("server_rss_kib_after_run", a);
            sum.extra("server_rss_kib_per_tail", (o as f64 - b as f64) / args.tailers as f64);
        }
        _ => sum.extra("server_rss", "pass --server-pid to measure"),
    }
    Ok(sum)
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(format!("epoll_wait: {e}")),
    }
}

fn handle(
    events: &Events,
    poll: &Poll,
    tailers: &mut [Tailer],
    appenders: &mut [Appender],
    scratch: &mut [u8],
    cx: &mut Ctx<'_>,
    acks: &mut Acks,
) {
    let k = tailers.len();
    for ev in events.iter() {
        let tok = ev.token().0;
        if tok < k {
            let t = &mut tailers[tok];
            if ev.is_writable() && !t.wbuf.is_empty() {
                if let Err(e) = t.flush() {
                    t.end(poll, format!("write error: {e}"));
                    continue;
                }
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                t.on_readable(poll, scratch, cx);
            }
        } else if tok != TIMER.0 && tok - k < appenders.len() {
            let i = tok - k;
            let a = &mut appenders[i];
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let stats = &mut *cx.stats;
                let last_acked = &mut a.last_acked;
                let res = a.conn.read::<HttpCodec>(scratch, |p, reply, at| {
                    let s = p.meta;
                    stats.completed += 1;
                    if reply.status == 201 {
                        match serde_json::from_slice::<api::AppendOk>(&reply.body) {
                            Ok(ok) => {
                                stats.ok += 1;
                                stats.record_us("append_ack", at.saturating_duration_since(p.start).as_micros() as u64);
                                acks.ack(s, ok.seq, ok.last_seq, &mut last_acked[s]);
                            }
                            Err(_) => {
                                stats.error("bad_append_body");
                                acks.unknown[s] += 1;
                            }
                        }
                    } else {
                        stats.error(error_kind(reply));
                        if reply.status >= 500 {
                            acks.unknown[s] += 1;
                        }
                    }
                });
                if let Err(e) = res {
                    fail_appender(a, i, &e, poll, cx.stats, acks);
                    continue;
                }
            }
            if ev.is_writable() && a.conn.has_output() {
                if let Err(e) = a.conn.flush() {
                    fail_appender(a, i, &e, poll, cx.stats, acks);
                }
            }
        }
    }
}

fn fail_appender(a: &mut Appender, i: usize, e: &conn::ConnError, poll: &Poll, stats: &mut Stats, acks: &mut Acks) {
    eprintln!("starcite-bench: append connection {i}: {}: {}", e.kind, e.detail);
    for p in a.conn.close(poll.registry()) {
        stats.error(e.kind);
        stats.completed += 1;
        acks.unknown[p.meta] += 1;
    }
}
