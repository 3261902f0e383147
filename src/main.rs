//! The `starcite` server binary: read the configuration, then run every core.

/// mimalloc instead of glibc malloc: the append path makes ~90 small allocations per
/// event and glibc's allocator was ~27 % of its instructions (PERF.md, "Where the time
/// goes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = match starcite::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starcite: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = starcite::runtime::run(config) {
        eprintln!("starcite: {e}");
        std::process::exit(1);
    }
}
