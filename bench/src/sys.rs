//! Operating-system probes: this process's CPU time (getrusage), another process's RSS and CPU time (/proc), wall clocks, and timer slack.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// User and system CPU seconds of this process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub user: f64,
    pub sys: f64,
}

pub fn self_cpu() -> CpuTimes {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return CpuTimes::default();
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    CpuTimes { user: tv(ru.ru_utime), sys: tv(ru.ru_stime) }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid` (all its threads) in seconds.
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_sec())
}

/// The unit of `/proc`'s CPU times (`USER_HZ`, 100 on Linux unless sysconf says otherwise).
fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Seconds every CPU of the machine spent busy since boot: `/proc/stat`'s first line,
/// user + nice + system + irq + softirq (idle, iowait and steal excluded; guest time is
/// inside user). Work the kernel does for a process in threads that are not its own
/// (softirqs, block-layer workers) counts here and not in [`proc_cpu_secs`].
pub fn machine_busy_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next().filter(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line.split_whitespace().skip(1).map(|t| t.parse().unwrap_or(0.0)).collect();
    let [user, nice, system, _idle, _iowait, irq, softirq, ..] = ticks.as_slice() else { return None };
    Some((user + nice + system + irq + softirq) / clock_ticks_per_sec())
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME).
pub fn realtime_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Ask the kernel for 1 µs timer slack so timed wake-ups are precise (default is 50 µs).
/// Create `dir` if needed and write one 4 KiB block there with O_DIRECT, as the server's
/// log does; an error names the directory and why (e.g. a filesystem without O_DIRECT).
pub fn probe_direct_io(dir: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(".bench-odirect-probe");
    let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
    // SAFETY: a zeroed, 4096-aligned allocation of 4096 bytes, freed below.
    let buf = unsafe { std::alloc::alloc_zeroed(layout) };
    if buf.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `buf` points to 4096 initialised bytes.
    let block = unsafe { std::slice::from_raw_parts(buf, 4096) };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .and_then(|mut f| f.write_all(block));
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    let _ = std::fs::remove_file(&path);
    written.map_err(|e| {
        format!("{}: the filesystem refuses an O_DIRECT write ({e}); the server's log needs one that allows it (ext4, xfs)", dir.display())
    })
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Make SIGINT and SIGTERM stop the run instead of the process: the load loops see
/// [`interrupted`] and finish with what they measured (a second signal still kills: the
/// handler is reset after the first).
pub fn stop_on_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction with a handler that only stores to an atomic (async-signal-safe),
        // SA_RESETHAND so the next signal has the default action.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Whether SIGINT or SIGTERM arrived since [`stop_on_signals`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// CPU use over a measured window, for this process and optionally the server.
pub struct CpuWindow {
    start_wall: Instant,
    start_self: CpuTimes,
    server_pid: Option<u32>,
    start_server: Option<f64>,
    start_machine: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuReport {
    pub wall_secs: f64,
    pub user_secs: f64,
    pub sys_secs: f64,
    pub cpu_secs: f64,
    /// CPU seconds / wall seconds × 100 (100 = one core busy).
    pub cpu_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_percent: Option<f64>,
    /// Busy CPU seconds of the whole machine over the window (every process and the
    /// kernel's own threads, the bench included; [`machine_busy_secs`]): what a change
    /// that moves work into kernel threads still costs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_cpu_percent: Option<f64>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<u32>) -> Self {
        CpuWindow {
            start_wall: Instant::now(),
            start_self: self_cpu(),
            server_pid,
            start_server: server_pid.and_then(proc_cpu_secs),
            start_machine: machine_busy_secs(),
        }
    }

    pub fn finish(&self) -> CpuReport {
        let wall = self.start_wall.elapsed().as_secs_f64().max(1e-9);
        let now = self_cpu();
        let user = (now.user - self.start_self.user).max(0.0);
        let sys = (now.sys - self.start_self.sys).max(0.0);
        let server = match (self.server_pid.and_then(proc_cpu_secs), self.start_server) {
            (Some(b), Some(a)) => Some((b - a).max(0.0)),
            _ => None,
        };
        let machine = machine_busy_secs().zip(self.start_machine).map(|(b, a)| (b - a).max(0.0));
        CpuReport {
            wall_secs: wall,
            user_secs: user,
            sys_secs: sys,
            cpu_secs: user + sys,
            cpu_percent: (user + sys) / wall * 100.0,
            server_cpu_secs: server,
            server_cpu_percent: server.map(|s| s / wall * 100.0),
            machine_cpu_secs: machine,
            machine_cpu_percent: machine.map(|s| s / wall * 100.0),
        }
    }
}

/// Parse an RFC 3339 UTC timestamp (`2026-02-08T15:00:01.123456Z`, or with a `±HH:MM`
/// offset) into nanoseconds since the Unix epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &b[r];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0i64, |a, d| a * 10 + (d - b'0') as i64))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut pos = 19;
    let mut frac_ns: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = &b[start..pos];
        if digits.is_empty() {
            return None;
        }
        for i in 0..9 {
            frac_ns = frac_ns * 10 + digits.get(i).map_or(0, |d| (d - b'0') as i64);
        }
    }
    let offset_secs: i64 = match b.get(pos) {
        Some(b'Z') | Some(b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let v = num(pos + 1..pos + 3)? * 3600 + num(pos + 4..pos + 6)? * 60;
            if *sign == b'+' {
                v
            } else {
                -v
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs as i128 * 1_000_000_000 + frac_ns as i128)
}

/// Sleep in small steps until `deadline` (used only outside measured loops).
pub fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep((deadline - now).min(Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        // date -u -d 2026-02-08T15:00:01Z +%s = 1770562801
        assert_eq!(parse_rfc3339_ns("2026-02-08T15:00:01.123456Z"), Some(1_770_562_801_123_456_000));
        assert_eq!(parse_rfc3339_ns("2026-02-08T16:00:01.123456+01:00"), Some(1_770_562_801_123_456_000));
        assert_eq!(parse_rfc3339_ns("2000-02-29T00:00:00Z"), Some(951_782_400_000_000_000));
        assert_eq!(parse_rfc3339_ns("2026-02-08 15:00:01"), None);
        assert_eq!(parse_rfc3339_ns("2026-13-08T15:00:01Z"), None);
        assert_eq!(parse_rfc3339_ns("2026-02-08T15:00:01.Z"), None);
    }

    #[test]
    fn self_cpu_moves() {
        let a = self_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = self_cpu();
        assert!(b.user + b.sys >= a.user + a.sys);
    }

    #[test]
    fn proc_probes_on_self() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(proc_cpu_secs(pid).is_some());
    }
}
