//! `starcite-bench`: a single-threaded load generator and verifier for the Starcite event-log server (and Redis / plain HTTP baselines). See README.md for the command line.

mod api;
mod cli;
mod compare;
mod conn;
mod driver;
mod http;
mod plot;
mod resp;
mod scenarios;
mod server;
mod sse;
mod stats;
mod sys;
mod timer;
mod verify;
mod ws;

use clap::Parser;

/// Exit statuses (also in `--help` and README.md).
const EXIT_VERIFY_FAILED: i32 = 1;
const EXIT_SETUP: i32 = 2;
const EXIT_REQUEST_ERRORS: i32 = 3;
const EXIT_BEHIND_SCHEDULE: i32 = 4;
const EXIT_THRESHOLD: i32 = 5;
const EXIT_INTERRUPTED: i32 = 130;

/// The version a Starcite node reports in `starcite_build_info` (None when it does not answer).
fn server_version(addr: std::net::SocketAddr) -> Option<String> {
    let mut client = http::BlockingClient::new(addr, std::time::Duration::from_secs(2));
    let metrics = client.request("GET", "/metrics", None).ok()?;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let line = text.lines().find(|l| l.starts_with("starcite_build_info{"))?;
    let start = line.find("version=\"")? + "version=\"".len();
    Some(line[start..start + line[start..].find('"')?].to_string())
}

fn main() {
    let cli = cli::Cli::parse();
    let common = cli.command.common().clone();
    if let cli::Command::Compare(args) = &cli.command {
        std::process::exit(compare::run(args));
    }
    sys::stop_on_signals();
    let summary = match scenarios::run(&cli.command) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("starcite-bench: error: {e}");
            std::process::exit(EXIT_SETUP);
        }
    };
    let mut summary = summary;
    summary.run.server_version = cli.command.starcite_addr().and_then(server_version);
    summary.judge(common.max_p99_ms, common.min_ops);
    print!("{}", summary.render());
    if let Some(path) = &common.json {
        if let Err(e) = summary.write_json(path) {
            eprintln!("starcite-bench: error: {e}");
            std::process::exit(EXIT_SETUP);
        }
        println!("json        {}", path.display());
    }
    if !summary.verification.passed {
        eprintln!(
            "starcite-bench: VERIFICATION FAILED: {} violations: {}",
            summary.verification.violations_total,
            summary.verification.samples.first().cloned().unwrap_or_default()
        );
        std::process::exit(EXIT_VERIFY_FAILED);
    }
    if sys::interrupted() {
        eprintln!("starcite-bench: interrupted: the report above holds what was measured until then");
        std::process::exit(EXIT_INTERRUPTED);
    }
    if summary.errors_total > 0 && !common.allow_errors {
        eprintln!("starcite-bench: {} requests failed ({:?}); pass --allow-errors to accept that", summary.errors_total, summary.errors);
        std::process::exit(EXIT_REQUEST_ERRORS);
    }
    if let Some(o) = summary.open_loop.as_ref().filter(|o| o.behind_schedule) {
        eprintln!(
            "starcite-bench: BEHIND SCHEDULE: {} of {} scheduled requests were never sent (the generator could not keep up with --rate {}); they count in the latency from their scheduled time",
            o.missed, o.scheduled, o.rate_per_sec
        );
        std::process::exit(EXIT_BEHIND_SCHEDULE);
    }
    if !summary.thresholds_passed() {
        let failed: Vec<String> = summary
            .thresholds
            .iter()
            .filter(|t| !t.passed)
            .map(|t| format!("{} (limit {}, actual {:.3})", t.name, t.limit, t.actual))
            .collect();
        eprintln!("starcite-bench: THRESHOLD FAILED: {}", failed.join(", "));
        std::process::exit(EXIT_THRESHOLD);
    }
}
