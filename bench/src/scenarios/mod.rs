//! The scenarios, one module each, and the dispatch from a parsed command line.

pub mod append;
pub mod common;
pub mod http_get;
pub mod mix;
pub mod ramp;
pub mod recovery;
pub mod redis_xadd;
pub mod replay;
pub mod retry_storm;
pub mod tail;

use crate::cli::Command;
use crate::stats::Summary;

/// Run the chosen scenario. `Err` is a setup or usage failure (exit status 2).
pub fn run(command: &Command) -> Result<Summary, String> {
    match command {
        Command::Append(a) if a.rate_ramp.is_some() => ramp::run(a),
        Command::Append(a) => append::run(a),
        Command::Mix(a) => mix::run(a),
        Command::RetryStorm(a) => retry_storm::run(a),
        Command::Tail(a) => tail::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Recovery(a) => recovery::run(a),
        Command::RedisXadd(a) => redis_xadd::run(a),
        Command::HttpGet(a) => http_get::run(a),
        Command::Compare(_) => Err("compare is handled before the scenarios".into()),
    }
}
