//! The command line as a user first meets it. (Its presence also makes `cargo test
//! --workspace` build the `starcite-bench` binary, which the repository's tests/bench.rs
//! drives against a real node.)

use std::process::Command;

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_starcite-bench"))
}

#[test]
fn help_lists_every_command_and_every_exit_status() {
    let out = bench().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["append", "mix", "retry-storm", "tail", "replay", "recovery", "redis-xadd", "http-get", "compare"] {
        assert!(help.contains(command), "{command} missing from --help:\n{help}");
    }
    for status in [
        "1 verification failed",
        "2 setup or usage error",
        "3 requests failed",
        "4 an open-loop run",
        "5 a --max-p99-ms",
        "130 interrupted",
    ] {
        assert!(help.contains(status), "exit status {status:?} missing from --help:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2_with_a_clear_line() {
    let out = bench().args(["append", "--addr", "10.0.0.1:4000"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    let out = bench().args(["compare", "/nonexistent-a.json", "/nonexistent-b.json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
