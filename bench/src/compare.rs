//! `compare A.json B.json`: two results side by side (throughput, latency percentiles,
//! CPU per operation) with ratios B / A; `--json PATH` writes the table as JSON.

use serde::Serialize;
use serde_json::Value;

use crate::cli::CompareArgs;

#[derive(Debug, Serialize)]
struct Row {
    metric: String,
    a: f64,
    b: f64,
    ratio: Option<f64>,
}

fn load(path: &std::path::Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a starcite-bench --json result: {e}", path.display()))
}

fn rows(a: &Value, b: &Value) -> Vec<Row> {
    let mut out = Vec::new();
    let mut push = |metric: String, x: Option<f64>, y: Option<f64>| {
        if let (Some(a), Some(b)) = (x, y) {
            out.push(Row { metric, a, b, ratio: (a != 0.0).then(|| b / a) });
        }
    };
    push("throughput ops/s".into(), a["throughput_ops_per_sec"].as_f64(), b["throughput_ops_per_sec"].as_f64());
    if let Some(hists) = a["latency_us"].as_object() {
        for (name, l) in hists {
            for q in ["p50", "p99", "p999", "max"] {
                push(format!("{name} {q} µs"), l[q].as_f64(), b["latency_us"][name][q].as_f64());
            }
        }
    }
    let per_op = |r: &Value, key: &str| {
        let ok = r["ok"].as_f64().filter(|ok| *ok > 0.0)?;
        r["cpu"][key].as_f64().map(|secs| secs * 1e6 / ok)
    };
    push("server CPU µs per ok op".into(), per_op(a, "server_cpu_secs"), per_op(b, "server_cpu_secs"));
    push("bench CPU µs per ok op".into(), per_op(a, "cpu_secs"), per_op(b, "cpu_secs"));
    push("errors".into(), a["errors_total"].as_f64(), b["errors_total"].as_f64());
    out
}

/// Print the comparison; the exit status (0, or 2 when a file cannot be read).
pub fn run(args: &CompareArgs) -> i32 {
    let (a, b) = match (load(&args.a), load(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("starcite-bench: error: {e}");
            return 2;
        }
    };
    println!("== starcite-bench compare ==");
    println!(
        "A           {} ({}, commit {})",
        args.a.display(),
        a["scenario"].as_str().unwrap_or("?"),
        a["run"]["git_commit"].as_str().unwrap_or("?")
    );
    println!(
        "B           {} ({}, commit {})",
        args.b.display(),
        b["scenario"].as_str().unwrap_or("?"),
        b["run"]["git_commit"].as_str().unwrap_or("?")
    );
    println!("{:<34} {:>14} {:>14} {:>9}", "metric", "A", "B", "B / A");
    let table = rows(&a, &b);
    for r in &table {
        let ratio = r.ratio.map_or("–".to_string(), |x| format!("{x:.2}×"));
        println!("{:<34} {:>14.1} {:>14.1} {:>9}", r.metric, r.a, r.b, ratio);
    }
    if let Some(path) = &args.common.json {
        let doc = serde_json::json!({"a": args.a, "b": args.b, "rows": table});
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n") {
            eprintln!("starcite-bench: error: write {}: {e}", path.display());
            return 2;
        }
        println!("json        {}", path.display());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_compare_throughput_latency_and_cpu_per_op() {
        let a = json!({"throughput_ops_per_sec": 100.0, "ok": 1000, "errors_total": 0,
                       "latency_us": {"append": {"p50": 10, "p99": 20, "p999": 30, "max": 40}},
                       "cpu": {"cpu_secs": 0.1, "server_cpu_secs": 0.02}});
        let b = json!({"throughput_ops_per_sec": 150.0, "ok": 1500, "errors_total": 0,
                       "latency_us": {"append": {"p50": 5, "p99": 40, "p999": 30, "max": 40}},
                       "cpu": {"cpu_secs": 0.1, "server_cpu_secs": 0.015}});
        let r = rows(&a, &b);
        let get = |m: &str| r.iter().find(|x| x.metric == m).unwrap().ratio.unwrap();
        assert!((get("throughput ops/s") - 1.5).abs() < 1e-9);
        assert!((get("append p99 µs") - 2.0).abs() < 1e-9);
        assert!((get("server CPU µs per ok op") - 0.5).abs() < 1e-9);
    }
}
