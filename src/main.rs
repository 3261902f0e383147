//! The `starcite` server binary: read the configuration, claim the data dir and ports,
//! install the signal handlers, and run the node (src/node.rs) until it has shut down.

/// mimalloc, counting allocations per thread (src/alloc.rs: why both).
#[global_allocator]
static GLOBAL: starcite::alloc::CountingMimalloc = starcite::alloc::CountingMimalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        // The container HEALTHCHECK: no curl needed in the image.
        Some("healthcheck") => std::process::exit(starcite::healthcheck::run(&args[1..])),
        Some(other) => {
            eprintln!("starcite: unknown argument {other:?}; the server is configured by environment variables (README), `starcite healthcheck [ready|live]` probes a running node");
            std::process::exit(2);
        }
    }
    let config = match starcite::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starcite: {e}");
            std::process::exit(2);
        }
    };
    starcite::logging::init(config.log_format, &config.log_filter, starcite::node::count_stall);
    let started = starcite::node::bind(&config)
        .and_then(|listeners| starcite::node::shutdown_on_signals().map(|shutdown| (listeners, shutdown)))
        .and_then(|(listeners, shutdown)| starcite::node::run(config, listeners, shutdown));
    if let Err(e) = started {
        eprintln!("starcite: {e}");
        std::process::exit(1);
    }
}
