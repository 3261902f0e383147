//! Process logging through `tracing`: human-readable lines by default, one JSON object per
//! line with `STARCITE_LOG_FORMAT=json`; the level filter comes from `STARCITE_LOG`
//! (tracing-subscriber's EnvFilter syntax, default `info,openraft=warn`). Every line logged on a core
//! carries the node name and the core number (node.rs enters a `core` span per executor).
//!
//! Two lines stay plain `eprintln!` on purpose, because tools parse them: the startup line
//! (`starcite: listening http_port=…`, README "Startup line") and a fatal startup error
//! (`starcite: <one line naming the variable>`).

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// `STARCITE_LOG_FORMAT`: `human` (default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Calls `hook` for every stall report of glommio's stall detector (a `log` warning from
/// its `stall` module, forwarded into tracing), on the executor thread that stalled.
struct StallHook(fn());

impl<S: tracing::Subscriber> Layer<S> for StallHook {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target().starts_with("glommio::executor::stall") {
            (self.0)();
        }
    }
}

/// Install the process-wide subscriber (stderr), forwarding `log` records (glommio's) into
/// it; `on_stall` hears every executor stall. Idempotent: a second call keeps the first
/// subscriber (tests may start several nodes in one process).
pub fn init(format: LogFormat, filter: &str, on_stall: fn()) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(false);
    let registry = tracing_subscriber::registry().with(StallHook(on_stall)).with(filter);
    let _ = match format {
        LogFormat::Human => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().with_current_span(true).with_span_list(false)).try_init(),
    };
}
