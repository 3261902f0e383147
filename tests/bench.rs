//! starcite-bench as a user meets it (issue #14): every figure is what was done, and a run
//! that ends badly still reports. Against a real node (short runs): an open loop that
//! cannot keep up says so and exits 4, a server killed mid-run still yields the report and
//! the JSON (exit 1, `verify_incomplete`), Ctrl-C yields them too (exit 130), thresholds
//! turn a run into pass/fail (exit 5), and values below a minimum are refused (exit 2).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The bench binary `cargo test --workspace` built beside the server.
fn bench() -> Command {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_starcite"));
    let path = server.with_file_name("starcite-bench");
    assert!(path.exists(), "{} missing: run `cargo build -p starcite-bench` (cargo test --workspace builds it)", path.display());
    Command::new(path)
}

fn json_of(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn an_open_loop_that_falls_behind_says_so_counts_the_missed_sends_and_exits_4() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let out = bench()
        .args(["append", "--addr", &format!("127.0.0.1:{}", s.port), "-c", "2", "-d", "2", "--duration-secs", "2"])
        .args(["--rate", "1000000", "--no-progress", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("BEHIND SCHEDULE"), "{stdout}");
    let r = json_of(&json);
    let o = &r["open_loop"];
    assert_eq!(o["behind_schedule"], true);
    let (scheduled, sent, missed) = (o["scheduled"].as_u64().unwrap(), o["sent"].as_u64().unwrap(), o["missed"].as_u64().unwrap());
    assert!(scheduled > 1_500_000 && missed > 0 && sent + missed >= scheduled - 2, "{o}");
    // Every scheduled request is in the latency: the answered ones and the missed ones.
    assert_eq!(r["latency_us"]["append"]["count"].as_u64().unwrap(), r["ok"].as_u64().unwrap() + missed);
    assert!(r["latency_us"]["append"]["p99"].as_u64().unwrap() > 100_000, "missed sends waited most of the run");
    assert!(r["run"]["cpus"].as_u64().unwrap() >= 1 && r["series"].as_array().is_some());
    assert_eq!(r["run"]["server_version"], env!("CARGO_PKG_VERSION"), "starcite_build_info names the server's version");
}

/// A 30-second append run against `port`, writing `json`, given 1.5 s to get going.
fn long_append(port: u16, json: &std::path::Path, extra: &str) -> std::process::Child {
    let child = bench()
        .args(["append", "--addr", &format!("127.0.0.1:{port}"), "-c", "2", "--duration-secs", "30", extra])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child
}

#[test]
fn a_server_killed_mid_run_still_yields_the_report_and_the_json() {
    let mut s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let child = long_append(s.port, &json, "--verify");
    s.kill9();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("STOPPED     server unreachable"), "{stdout}");
    let r = json_of(&json);
    assert!(r["ok"].as_u64().unwrap() > 0, "what was measured before the kill is reported");
    assert_eq!(r["verification"]["violations"]["verify_incomplete"], 1);
    assert!(r["stopped"].as_str().unwrap().starts_with("server unreachable"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ok/s"), "live progress once a second: {stderr}");
}

#[test]
fn ctrl_c_stops_the_run_and_still_reports_it() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("r.json");
    let child = long_append(s.port, &json, "--no-progress");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&json);
    assert!(r["stopped"].as_str().unwrap().starts_with("interrupted"));
    assert!(r["elapsed_secs"].as_f64().unwrap() < 10.0 && r["ok"].as_u64().unwrap() > 0);
}

#[test]
fn thresholds_and_minimums_turn_into_clear_exit_statuses() {
    let s = Server::start();
    let addr = format!("127.0.0.1:{}", s.port);
    let out = bench()
        .args(["append", "--addr", &addr, "--requests", "200", "--no-progress", "--max-p99-ms", "0.001", "--min-ops", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert!(stdout.contains("threshold   FAIL max_p99_ms") && stdout.contains("threshold   PASS min_ops"), "{stdout}");
    let ok = bench().args(["append", "--addr", &addr, "--requests", "50", "--no-progress", "--min-ops", "1"]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
    for bad in [
        vec!["append", "--payload-bytes", "10"],
        vec!["append", "-c", "0"],
        vec!["tail", "--rate", "0"],
        vec!["append", "--rate", "500", "--rate-ramp", "100,200,2"],
        vec!["tail", "--rate", "500", "--rate-ramp", "100,200,2"],
        vec!["tail", "--rate-ramp", "0.4,100,3"],
    ] {
        let out = bench().args(&bad).args(["--addr", &addr]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Run `args` (a scenario and its options) as a ramp against `port` with `--plot` and
/// `--json` into `dir` (named after `name`); it must exit 0. Returns the report's stdout,
/// its JSON and the plot.
fn ramp(port: u16, dir: &std::path::Path, name: &str, args: &[&str]) -> (String, serde_json::Value, String) {
    let (json, svg) = (dir.join(format!("{name}.json")), dir.join(format!("{name}.svg")));
    let out = bench()
        .args(args)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--step-secs", "1", "--no-progress"])
        .args(["--plot", svg.to_str().unwrap(), "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (stdout, json_of(&json), std::fs::read_to_string(&svg).unwrap())
}

#[test]
fn a_rate_ramp_finds_a_knee_and_plots_it_and_compare_puts_two_runs_side_by_side() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, r, plot) =
        ramp(s.port, tmp.path(), "ramp", &["append", "-c", "2", "-d", "4", "--sessions", "4", "--rate-ramp", "200,800,3"]);
    let json = tmp.path().join("ramp.json");
    let steps = r["extra"]["steps"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["offered_per_sec"].as_f64().unwrap()).collect::<Vec<_>>(), vec![200.0, 400.0, 800.0]);
    // The whole machine's busy time over a step is reported next to the bench's own.
    assert!(r["cpu"]["machine_cpu_secs"].as_f64().is_some_and(|m| m > 0.0), "{}", r["cpu"]);
    assert!(stdout.contains("knee"), "{stdout}");
    assert!(plot.starts_with("<svg") && plot.contains("offered requests/s") && plot.contains("p99"), "an SVG plot");
    assert!(plot.contains("append: append latency"), "the title names the scenario and its operation");
    // Every request scenario ramps the same way: mix reports its slowest operation per step.
    let (_, r, plot) =
        ramp(s.port, tmp.path(), "mix", &["mix", "-c", "2", "-d", "2", "--sessions", "2", "--rate-ramp", "100,200,2", "--verify"]);
    assert_eq!(r["scenario"], "mix-ramp");
    let steps = r["extra"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s["op"] == "append" || s["op"] == "read"), "{steps:?}");
    assert!(plot.contains("mix: "), "the mix plot");
    // tail ramps its append rate; every step checks its tailers got every event.
    let tail = ["tail", "--tailers", "4", "--sessions", "2", "-c", "1", "-d", "4", "--rate-ramp", "50,100,2"];
    let (_, r, plot) = ramp(s.port, tmp.path(), "tail", &tail);
    assert_eq!(r["scenario"], "tail-ramp");
    let steps = r["extra"]["steps"].as_array().unwrap();
    assert_eq!(steps.iter().map(|s| s["offered_per_sec"].as_f64().unwrap()).collect::<Vec<_>>(), vec![50.0, 100.0]);
    let ops = ["append_ack", "send_to_delivery", "commit_to_delivery"];
    assert!(steps.iter().all(|s| ops.contains(&s["op"].as_str().unwrap())), "{steps:?}");
    assert_eq!(r["extra"]["tailers_incomplete"], 0, "the last step's tailers got every event");
    assert!(plot.contains("tail: "), "the tail plot");
    // compare: the ramp's last step against itself is 1.00× everywhere.
    let cmp = tmp.path().join("cmp.json");
    let out = bench().args(["compare", json.to_str().unwrap(), json.to_str().unwrap(), "--json", cmp.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("throughput ops/s") && stdout.contains("1.00×"), "{stdout}");
    assert_eq!(json_of(&cmp)["rows"][0]["ratio"], 1.0);
    let missing = bench().args(["compare", "/nonexistent.json", json.to_str().unwrap()]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn the_sse_tail_scenario_checks_every_delivery_like_the_websocket_one() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("sse.json");
    let out = bench()
        .args(["tail", "--addr", &format!("127.0.0.1:{}", s.port), "--transport", "sse", "--tailers", "6", "--sessions", "3"])
        .args(["--rate", "200", "--duration-secs", "1", "--no-progress", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r = json_of(&json);
    assert_eq!(r["params"]["transport"], "sse");
    assert_eq!(r["verification"]["passed"], true);
    let appended = r["ok"].as_u64().unwrap();
    assert!(appended >= 150, "{appended}");
    // Every tailer of a session received each of that session's events once.
    assert_eq!(r["extra"]["deliveries"].as_u64().unwrap(), appended * 2);
}

/// bench/README.md's "Examples against Starcite", run as written but shorter and smaller
/// (durations 1 s, fewer events, tailers and restarts, a tenth of the open-loop rate)
/// against a node of this test: every one must exit 0.
#[test]
fn the_readme_examples_run_as_written_against_a_real_node() {
    let s = Server::start();
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/README.md")).unwrap();
    let section = &readme[readme.find("## Examples against Starcite").unwrap()..];
    let block = &section[section.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("$B ")).collect();
    assert!(lines.len() >= 7, "{lines:?}");
    let shorter = [
        ("--duration-secs 5", "--duration-secs 1"),
        ("--events 100000", "--events 2000"),
        ("--events 50000", "--events 2000"),
        ("--restarts 3", "--restarts 1"),
        ("--tailers 1000", "--tailers 50"),
        ("--sessions 100", "--sessions 10"),
        ("--rate 10000", "--rate 1000"),
        ("--append-rate 2000", "--append-rate 500"),
        ("--warmup-secs 1", "--warmup-secs 0"),
    ];
    for line in lines {
        let mut cmd = line.to_string();
        for (from, to) in shorter {
            cmd = cmd.replace(from, to);
        }
        let recovery = cmd.contains(" recovery ");
        cmd = cmd
            .replace("$SP", &s.pid().to_string())
            .replace("$S", env!("CARGO_BIN_EXE_starcite"))
            .replace("target/bench-data/data-recovery", &tmp.path().join("recovery").display().to_string())
            .replace("--json append.json", &format!("--json {}", tmp.path().join("append.json").display()));
        let mut args: Vec<String> = cmd.split_whitespace().skip(1).map(String::from).collect();
        if !recovery {
            args.extend(["--addr".to_string(), format!("127.0.0.1:{}", s.port)]);
        }
        args.push("--no-progress".into());
        let out = bench().args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        // An open-loop line may fall behind its schedule (exit 4) when the tests running
        // beside it take the machine's CPUs: that is timing, not behaviour (CI once saw
        // 2 of 1,000 sends missed during a ~150 ms stall). Everything else about the run
        // must still hold: no failed request, and its verification passed.
        let open_loop = args.iter().any(|a| a == "--rate");
        let code = out.status.code();
        assert!(
            code == Some(0) || (open_loop && code == Some(4) && stdout.contains("verified    OK") && stdout.contains("errors      none")),
            "{line}: exit {code:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
