//! The `starcite` server binary: read the configuration, then run every core.

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
