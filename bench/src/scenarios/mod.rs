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
        Command::Append(a) if a.load.rate_ramp.is_some() => ramp::run(a, "append-ramp", |a| &mut a.load, |a| a.verify = false, append::run),
        Command::Append(a) => append::run(a),
        Command::Mix(a) if a.load.rate_ramp.is_some() => ramp::run(a, "mix-ramp", |a| &mut a.load, |a| a.verify = false, mix::run),
        Command::Mix(a) => mix::run(a),
        Command::RetryStorm(a) if a.load.rate_ramp.is_some() => {
            ramp::run(a, "retry-storm-ramp", |a| &mut a.load, |a| a.verify = false, retry_storm::run)
        }
        Command::RetryStorm(a) => retry_storm::run(a),
        Command::Tail(a) => tail::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Recovery(a) => recovery::run(a),
        Command::RedisXadd(a) if a.load.rate_ramp.is_some() => {
            ramp::run(a, "redis-xadd-ramp", |a| &mut a.load, |a| a.verify = false, redis_xadd::run)
        }
        Command::RedisXadd(a) => redis_xadd::run(a),
        Command::HttpGet(a) if a.load.rate_ramp.is_some() => ramp::run(a, "http-get-ramp", |a| &mut a.load, |_| {}, http_get::run),
        Command::HttpGet(a) => http_get::run(a),
        Command::Compare(_) => Err("compare is handled before the scenarios".into()),
    }
}
