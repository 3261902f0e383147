//! Process logging through `tracing`: human-readable lines by default, one JSON object per
//! line with `STARCITE_LOG_FORMAT=json`; the level filter comes from `STARCITE_LOG`
//! (tracing-subscriber's EnvFilter syntax, default `info,openraft=off`). Every line logged on a core
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

/// Counts every executor stall with `on_stall` (on the executor thread that stalled) and
/// writes one concise line for it, in the configured format, in place of glommio's
/// multi-kilobyte report. The line is written directly: tracing drops events emitted from
/// inside a subscriber's callback, so a `tracing::warn!` here would never appear.
struct StallHook {
    on_stall: fn(),
    format: LogFormat,
    write_line: Box<dyn Fn(&str) + Send + Sync>,
}

impl StallHook {
    fn line(&self, summary: &str) -> String {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        let message = format!("executor stall: {summary}");
        match self.format {
            LogFormat::Human => format!("{now}  WARN thread={thread}: {message}"),
            LogFormat::Json => {
                serde_json::json!({"timestamp": now.to_string(), "level": "WARN", "fields": {"message": message}, "thread": thread})
                    .to_string()
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StallHook {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if is_stall_report(event) {
            (self.on_stall)();
            let mut summary = Summary(String::new());
            event.record(&mut summary);
            (self.write_line)(&self.line(&summary.0));
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
/// it; `on_stall` hears every executor stall (each also logged as one concise line). Idempotent: a second call keeps the first
/// subscriber (tests may start several nodes in one process).
pub fn init(format: LogFormat, filter: &str, on_stall: fn()) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    let hook = StallHook { on_stall, format, write_line: Box::new(|line| eprintln!("{line}")) };
    let registry = tracing_subscriber::registry().with(filter).with(hook);
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
        let hook = StallHook { on_stall: count, format: LogFormat::Human, write_line: Box::new(|_| {}) };
        let subscriber = tracing_subscriber::registry().with(hook);
        tracing::subscriber::with_default(subscriber, || {
            log::warn!(target: "glommio::executor::stall", "[stall-detector -- executor 1] task queue default went over-budget: 31ms (budget: 10ms). Backtrace: …");
            log::warn!(target: "glommio::reactor", "something else");
            tracing::warn!("and a tracing warning");
        });
        assert_eq!(STALLS.load(Ordering::SeqCst), 1);
    }

    /// A writer into a shared buffer, for reading back what the fmt layer printed.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stall_is_logged_as_one_concise_line_without_glommios_backtrace() {
        let _ = tracing_log::LogTracer::init();
        let out = Captured::default();
        let (writer, lines) = (out.clone(), out.clone());
        let fmt = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let write_line = Box::new(move |line: &str| {
            use std::io::Write;
            let _ = writeln!(lines.clone(), "{line}");
        });
        let hook = StallHook { on_stall: || {}, format: LogFormat::Human, write_line };
        let subscriber = tracing_subscriber::registry().with(hook).with(fmt.with_filter(WithoutRawStallReports));
        tracing::subscriber::with_default(subscriber, || {
            log::warn!(target: "glommio::executor::stall", "task queue default went over-budget: 31ms (budget: 10ms). Backtrace: frame 1\nframe 2");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("executor stall: task queue default went over-budget: 31ms (budget: 10ms)"), "{text}");
        assert!(!text.contains("Backtrace") && !text.contains("frame 1"), "{text}");
    }
}
