//! The OpenAPI 3.1 description (docs/openapi.yaml, served at GET /v1/openapi.json) matches
//! the live server: schemathesis (from PyPI; .ci/run installs it) generates requests from
//! it, and fails on any 5xx, any answer outside the document, any schema-valid request
//! refused or schema-violating request accepted; the node must still be serving after.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_served_document_is_docs_openapi_and_names_every_error_code() {
    let s = Server::start();
    let served = s.req("GET", "/v1/openapi.json", "");
    assert_eq!(served.status, 200);
    let served: serde_json::Value = served.json();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo().join("docs/openapi.json")).unwrap()).unwrap();
    assert_eq!(served, file);
    assert_eq!(served["openapi"], "3.1.0");
    // The YAML says the same (python3's yaml, where installed).
    let yaml = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))", "docs/openapi.yaml"])
        .current_dir(repo())
        .output()
        .unwrap();
    if yaml.status.success() {
        let from_yaml: serde_json::Value = serde_json::from_slice(&yaml.stdout).unwrap();
        assert_eq!(from_yaml, file, "docs/openapi.yaml and docs/openapi.json differ: run python3 scripts/openapi.py");
    } else {
        eprintln!("YAML comparison skipped: {}", String::from_utf8_lossy(&yaml.stderr));
    }
    // Every code the API can answer (session/error.rs) is in the Error schema.
    let source = std::fs::read_to_string(repo().join("src/session/error.rs")).unwrap();
    let as_str = &source[source.find("pub fn as_str").unwrap()..];
    let as_str = &as_str[..as_str.find("\n    }\n").unwrap()];
    let codes: BTreeSet<&str> = as_str.split("=> \"").skip(1).map(|c| &c[..c.find('"').unwrap()]).collect();
    let documented: BTreeSet<&str> = file["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(codes.len() >= 18, "{codes:?}");
    let missing: Vec<_> = codes.difference(&documented).collect();
    assert!(missing.is_empty(), "error codes not in docs/openapi.yaml: {missing:?}");
}

#[test]
fn schemathesis_finds_no_5xx_no_undocumented_answer_and_no_crash() {
    if Command::new("st").arg("--version").output().is_err() {
        eprintln!("skipped: schemathesis (`st`) is not installed (pip install schemathesis; .ci/run does)");
        return;
    }
    let s = Server::start();
    let base = format!("http://127.0.0.1:{}", s.port);
    // The tail is a WebSocket upgrade or an endless SSE stream: tests/tails.rs covers it.
    // Run in a scratch dir: schemathesis writes its cache (`.schemathesis/`) to the cwd.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("st")
        .current_dir(scratch.path())
        .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base, "--checks", "all", "--max-examples", "100"])
        .args(["--generation-deterministic", "--request-timeout", "10", "--exclude-path", "/v1/sessions/{id}/tail"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found problems:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains("passed"), "{report}");
    assert_eq!(s.req("GET", "/health/live", "").status, 200, "the node survived");
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
}
