//! `starcite-bench`: a single-threaded load generator and verifier for the Starcite event-log server (and Redis / plain HTTP baselines). See README.md for the command line.

mod api;
mod cli;
mod conn;
mod driver;
mod http;
mod resp;
mod scenarios;
mod server;
mod stats;
mod sys;
mod timer;
mod verify;
mod ws;

use clap::Parser;

/// Exit statuses (also in `--help`).
const EXIT_VERIFY_FAILED: i32 = 1;
const EXIT_SETUP: i32 = 2;
const EXIT_REQUEST_ERRORS: i32 = 3;

fn main() {
    let cli = cli::Cli::parse();
    let common = cli.command.common().clone();
    let summary = match scenarios::run(&cli.command) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("starcite-bench: error: {e}");
            std::process::exit(EXIT_SETUP);
        }
    };
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
    if summary.errors_total > 0 && !common.allow_errors {
        eprintln!("starcite-bench: {} requests failed ({:?}); pass --allow-errors to accept that", summary.errors_total, summary.errors);
        std::process::exit(EXIT_REQUEST_ERRORS);
    }
}
