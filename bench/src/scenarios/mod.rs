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

use crate::cli::{AppendArgs, Command, HttpGetArgs, MixArgs, RampArgs, RedisXaddArgs, RetryStormArgs, TailArgs};
use crate::stats::Summary;
use ramp::Ramped;

/// Scenarios with `LoadArgs` in `.load` ramp by setting its rate and duration; those with
/// `--verify` turn it off for the steps.
macro_rules! ramped_by_load {
    ($args:ty $(, $verify:ident)?) => {
        impl Ramped for $args {
            fn ramp(&mut self) -> &mut RampArgs {
                &mut self.load.ramp
            }
            fn set_step(&mut self, rate: f64, secs: f64) {
                self.load.rate = Some(rate);
                self.load.duration_secs = Some(secs);
                $(self.$verify = false;)?
            }
        }
    };
}
ramped_by_load!(AppendArgs, verify);
ramped_by_load!(MixArgs, verify);
ramped_by_load!(RetryStormArgs, verify);
ramped_by_load!(RedisXaddArgs, verify);
ramped_by_load!(HttpGetArgs);

/// `tail` ramps its append rate; each step opens and checks its tailers anew.
impl Ramped for TailArgs {
    fn ramp(&mut self) -> &mut RampArgs {
        &mut self.ramp
    }
    fn set_step(&mut self, rate: f64, secs: f64) {
        self.append_rate = rate;
        self.duration_secs = secs;
    }
}

/// Run the chosen scenario. `Err` is a setup or usage failure (exit status 2).
pub fn run(command: &Command) -> Result<Summary, String> {
    match command {
        Command::Append(a) if a.load.ramp.rate_ramp.is_some() => ramp::run(a, "append-ramp", append::run),
        Command::Append(a) => append::run(a),
        Command::Mix(a) if a.load.ramp.rate_ramp.is_some() => ramp::run(a, "mix-ramp", mix::run),
        Command::Mix(a) => mix::run(a),
        Command::RetryStorm(a) if a.load.ramp.rate_ramp.is_some() => ramp::run(a, "retry-storm-ramp", retry_storm::run),
        Command::RetryStorm(a) => retry_storm::run(a),
        Command::Tail(a) if a.ramp.rate_ramp.is_some() => ramp::run(a, "tail-ramp", tail::run),
        Command::Tail(a) => tail::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Recovery(a) => recovery::run(a),
        Command::RedisXadd(a) if a.load.ramp.rate_ramp.is_some() => ramp::run(a, "redis-xadd-ramp", redis_xadd::run),
        Command::RedisXadd(a) => redis_xadd::run(a),
        Command::HttpGet(a) if a.load.ramp.rate_ramp.is_some() => ramp::run(a, "http-get-ramp", http_get::run),
        Command::HttpGet(a) => http_get::run(a),
        Command::Compare(_) => Err("compare is handled before the scenarios".into()),
    }
}
