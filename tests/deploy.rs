//! deploy/ (issue #12 item 5): the Prometheus configuration and alerting rules pass
//! `promtool check`, and every `starcite_*` metric that the alerting rules and the Grafana
//! dashboard use exists in a live node's /metrics; the Kubernetes manifest keeps the
//! settings the cluster depends on.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `starcite_…` name in `text` (PromQL expressions, JSON, YAML).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("starcite_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if !tail[..end].ends_with('_') {
            out.insert(tail[..end].to_string()); // (not the prose "starcite_*")
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alerting_rules() {
    if Command::new("promtool").arg("--version").output().is_err() {
        eprintln!("skipped: promtool is not installed (Debian package prometheus; .ci/run installs it)");
        return;
    }
    for args in [["check", "rules", "deploy/prometheus/alerts.yml"], ["check", "config", "deploy/prometheus/prometheus.yml"]] {
        let out = Command::new("promtool").args(args).current_dir(repo()).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_exists_on_a_live_node() {
    let s = Server::start();
    // A few requests, so the per-route HTTP counters have series.
    s.create("d");
    assert_eq!(s.append("d", event(0)).status, 201);
    assert_eq!(s.req("GET", "/v1/sessions/nope/events", "").status, 404);
    let exposition = s.req("GET", "/metrics", "").text();
    let live: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let used: BTreeSet<String> = [read("deploy/prometheus/alerts.yml"), read("deploy/grafana/starcite-dashboard.json")]
        .iter()
        .flat_map(|t| metric_names(t))
        .collect();
    assert!(used.len() >= 15, "the dashboard and alerts use {} metrics: {used:?}", used.len());
    let missing: Vec<&String> = used.iter().filter(|name| !live.contains(*name)).collect();
    assert!(missing.is_empty(), "used by deploy/ but not exported: {missing:?}\nexported: {live:?}");
    // The dashboard is JSON Grafana can import: panels with PromQL targets.
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/starcite-dashboard.json")).unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(!panel["targets"].as_array().unwrap().is_empty(), "panel {} has no query", panel["title"]);
    }
}

#[test]
fn the_kubernetes_manifest_keeps_what_the_cluster_depends_on() {
    let k8s = read("deploy/kubernetes/starcite.yaml");
    for needle in [
        "kind: StatefulSet",
        "podManagementPolicy: Parallel",
        "clusterIP: None",
        "publishNotReadyAddresses: true",
        "kind: PodDisruptionBudget",
        "path: /health/ready",
        "path: /health/live",
        "starcite-0@starcite-0.starcite-peers:4100,starcite-1@starcite-1.starcite-peers:4100,starcite-2@starcite-2.starcite-peers:4100",
        "fieldPath: metadata.name",
        "secretKeyRef: {name: starcite, key: SECRET_KEY_BASE}",
        "runAsUser: 10001",
    ] {
        assert!(k8s.contains(needle), "deploy/kubernetes/starcite.yaml lacks {needle:?}");
    }
    // Every document parses as YAML (python3's yaml, where it is installed).
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; docs = list(yaml.safe_load_all(open(sys.argv[1]))); print(len(docs))",
            "deploy/kubernetes/starcite.yaml",
        ])
        .current_dir(repo())
        .output();
    match parsed {
        Ok(out) if out.status.success() => assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "4"),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") => {
            eprintln!("YAML parse skipped: no python3 yaml")
        }
        Ok(out) => panic!("the manifest does not parse: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => eprintln!("YAML parse skipped: {e}"),
    }
    let unit = read("deploy/starcite.service");
    for needle in [
        "LimitMEMLOCK=infinity",
        "LimitNOFILE=",
        "Restart=on-failure",
        "StateDirectory=starcite",
        "STARCITE_RAFT_DATA_DIR=/var/lib/starcite",
        "User=starcite",
    ] {
        assert!(unit.contains(needle), "deploy/starcite.service lacks {needle:?}");
    }
}
