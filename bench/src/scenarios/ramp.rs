//! `--rate-ramp START,END,STEPS` (every request scenario: append, mix, retry-storm,
//! redis-xadd, http-get; and tail, whose offered rate is its append rate and whose slowest
//! operation is the send → delivery latency): open-loop steps at rising offered rates, to find the knee (the
//! first step whose schedule was not kept, whose throughput fell below 95 % of the offered
//! rate, or whose median passed 10× the first step's: the median, as one stall can move a
//! 3-second step's p99 tenfold), with an SVG of the latency percentiles against offered
//! load (`--plot`, plot.rs). A step's latency is its slowest operation's (highest p99:
//! `append` or `read` in mix, for instance), named in the step.

use serde::Serialize;

use crate::cli::RampArgs;
use crate::plot::Step;
use crate::stats::{Summary, Verification};

/// Whether a step is past the knee, given the first step.
fn past_knee(step: &Step, first: &Step) -> bool {
    step.missed > 0 || step.achieved_per_sec < 0.95 * step.offered_per_sec || step.p50_us > 10 * first.p50_us.max(1)
}

/// The step a scenario's summary makes at offered `rate`.
fn step_of(rate: f64, sum: &Summary) -> Step {
    let slowest = sum.latency_us.iter().max_by_key(|(_, l)| l.p99);
    Step {
        offered_per_sec: rate,
        achieved_per_sec: sum.throughput_ops_per_sec,
        op: slowest.map_or_else(String::new, |(op, _)| op.clone()),
        p50_us: slowest.map_or(0, |(_, l)| l.p50),
        p99_us: slowest.map_or(0, |(_, l)| l.p99),
        p999_us: slowest.map_or(0, |(_, l)| l.p999),
        missed: sum.open_loop.as_ref().map_or(0, |o| o.missed),
        errors: sum.errors_total,
        violations: sum.verification.violations_total,
    }
}

/// A scenario's arguments that can ramp.
pub trait Ramped: Clone + Serialize {
    /// The ramp options.
    fn ramp(&mut self) -> &mut RampArgs;
    /// Make these arguments one open-loop step: `rate` per second for `secs` seconds, with
    /// verification off where it is optional (a step past the knee is expected to fall behind).
    fn set_step(&mut self, rate: f64, secs: f64);
}

/// Run `scenario`'s ramp: each step runs `step` with the arguments [`Ramped::set_step`]
/// made and the ramp options cleared. The summary is the last step's, named
/// `<scenario>-ramp`, with every step and the knee.
pub fn run<A: Ramped>(args: &A, scenario: &'static str, step: fn(&A) -> Result<Summary, String>) -> Result<Summary, String> {
    let mut template = args.clone();
    let (ramp, step_secs, plot) = {
        let r = template.ramp();
        (r.rate_ramp.take().expect("ramp mode"), r.step_secs, r.plot.take())
    };
    let mut steps = Vec::new();
    let mut last = None;
    // Every step's verification counts (a tail step checks its tailers): a violation in
    // any step fails the ramp, not only one in the last.
    let mut verified = Verification::none();
    for (i, rate) in ramp.rates().into_iter().enumerate() {
        let mut step_args = template.clone();
        step_args.set_step(rate, step_secs);
        eprintln!("starcite-bench: ramp step {}/{}: {rate:.0} requests/s offered for {step_secs} s", i + 1, ramp.steps);
        let sum = step(&step_args)?;
        let step = step_of(rate, &sum);
        eprintln!(
            "starcite-bench: ramp step {}: {:.0}/s achieved, {} p50 {} µs, p99 {} µs, p99.9 {} µs{}",
            i + 1,
            step.achieved_per_sec,
            step.op,
            step.p50_us,
            step.p99_us,
            step.p999_us,
            if step.missed > 0 { format!(", {} never sent", step.missed) } else { String::new() }
        );
        steps.push(step);
        verified.merge(&format!("step {}", i + 1), &sum.verification);
        let interrupted = crate::sys::interrupted();
        last = Some(sum);
        if interrupted {
            break;
        }
    }
    let mut sum = last.ok_or("the ramp has no step")?;
    verified.performed = std::mem::take(&mut sum.verification.performed);
    sum.verification = verified;
    let knee = steps.iter().position(|s| past_knee(s, &steps[0]));
    let unit = sum.scenario;
    sum.scenario = scenario;
    sum.params = serde_json::to_value(args).unwrap_or_default();
    // Steps past the knee fall behind on purpose: the ramp itself does not fail for it.
    sum.open_loop = None;
    sum.headline = Some(match knee {
        Some(0) => format!("knee at or below the first step ({:.0}/s offered)", steps[0].offered_per_sec),
        Some(k) => format!(
            "knee between {:.0} and {:.0} requests/s offered (last good step: {:.0}/s achieved, {} p99 {} µs)",
            steps[k - 1].offered_per_sec,
            steps[k].offered_per_sec,
            steps[k - 1].achieved_per_sec,
            steps[k - 1].op,
            steps[k - 1].p99_us
        ),
        None => format!("no knee up to {:.0} requests/s offered", steps.last().map_or(0.0, |s| s.offered_per_sec)),
    });
    sum.extra("knee_step", knee);
    sum.extra("steps", &steps);
    if let Some(path) = &plot {
        crate::plot::latency_vs_load(path, unit, &steps, knee)?;
        sum.extra("plot", path.display().to_string());
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, p99: u64, missed: u64) -> Step {
        let op = "append".to_string();
        Step {
            offered_per_sec: offered,
            achieved_per_sec: achieved,
            op,
            p50_us: p99 / 2,
            p99_us: p99,
            p999_us: p99 * 2,
            missed,
            errors: 0,
            violations: 0,
        }
    }

    #[test]
    fn the_knee_is_the_first_step_that_breaks_schedule_throughput_or_latency() {
        let first = step(1000.0, 1000.0, 500, 0);
        assert!(!past_knee(&step(2000.0, 1990.0, 900, 0), &first));
        assert!(past_knee(&step(4000.0, 3000.0, 900, 0), &first), "throughput below 95 %");
        assert!(past_knee(&step(4000.0, 4000.0, 6000, 0), &first), "median beyond 10x");
        assert!(!past_knee(&step(4000.0, 4000.0, 4000, 0), &first), "a p99 spike alone is noise");
        assert!(past_knee(&step(4000.0, 4000.0, 900, 3), &first), "missed sends");
    }
}
