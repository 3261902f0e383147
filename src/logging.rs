//! Process logging through `tracing`: human-readable lines by default, one JSON object per
//! line with `STARCITE_LOG_FORMAT=json`; the level filter comes from `STARCITE_LOG`
//! (tracing-subscriber's EnvFilter syntax, default `info,openraft=warn`). Every line logged on a core
//! carries the node name and the core number (node.rs enters a `core` span per executor).
//!
//! Two lines stay plain `eprintln!` on purpose, because tools parse them: the startup line
//! (`starcite: listening http_port=…`, README "Startup line") and a fatal startup error
//! (`starcite: <one line naming the variable>`).

use tracing_log::NormalizeEvent;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `STARCITE_LOG_FORMAT`: `human` (default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Whether `event` is a stall report of glommio's stall detector: a `log` warning from its
/// `stall` module, forwarded into tracing (the real target is in the normalized metadata).
fn is_stall_report(event: &tracing::Event<'_>) -> bool {
    let normalized = event.normalized_metadata();
    let target = normalized.as_ref().map_or(event.metadata().target(), |m| m.target());
    target.starts_with("glommio::executor::stall")
}

/// The report's first part ("task queue … went over-budget: 31ms (budget: 10ms)"), without
/// the ~14 KB backtrace glommio appends.
struct Summary(String);

impl tracing::field::Visit for Summary {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let text = format!("{value:?}");
            self.0 = text.split(". Backtrace").next().unwrap_or_default().chars().take(300).collect();
        }
    }
}

/// Counts every executor stall with `hook` (on the executor thread that stalled) and logs
/// one concise line for it in place of glommio's multi-kilobyte report.
struct StallHook(fn());

impl<S: tracing::Subscriber> Layer<S> for StallHook {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if is_stall_report(event) {
            (self.0)();
            let mut summary = Summary(String::new());
            event.record(&mut summary);
            tracing::warn!(target: "starcite::stall", "executor stall: {}", summary.0);
        }
    }
}

/// Keeps glommio's raw stall reports (with their backtraces) out of the log lines; the
/// StallHook logs their summary.
struct WithoutRawStallReports;

impl<S> tracing_subscriber::layer::Filter<S> for WithoutRawStallReports {
    fn enabled(&self, _meta: &tracing::Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        !is_stall_report(event)
    }
}

/// Install the process-wide subscriber (stderr), forwarding `log` records (glommio's) into
/// it; `on_stall` hears every executor stall. Idempotent: a second call keeps the first
/// subscriber (tests may start several nodes in one process).
pub fn init(format: LogFormat, filter: &str, on_stall: fn()) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter).with(StallHook(on_stall));
    let _ = match format {
        LogFormat::Human => registry.with(fmt.with_filter(WithoutRawStallReports)).try_init(),
        LogFormat::Json => {
            registry.with(fmt.json().with_current_span(true).with_span_list(false).with_filter(WithoutRawStallReports)).try_init()
        }
    };
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    static STALLS: AtomicUsize = AtomicUsize::new(0);

    fn count() {
        STALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_glommio_stall_report_is_counted_once_and_other_warnings_are_not() {
        // glommio reports stalls through the `log` crate; forward `log` into tracing as
        // `init` does, with the hook installed for this thread only.
        let _ = tracing_log::LogTracer::init();
        let subscriber = tracing_subscriber::registry().with(StallHook(count));
        tracing::subscriber::with_default(subscriber, || {
            log::warn!(target: "glommio::executor::stall", "[stall-detector -- executor 1] task queue default went over-budget: 31ms (budget: 10ms). Backtrace: …");
            log::warn!(target: "glommio::reactor", "something else");
            tracing::warn!("and a tracing warning");
        });
        assert_eq!(STALLS.load(Ordering::SeqCst), 1);
    }
}
