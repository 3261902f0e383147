//! `http-get`: plain pipelined GET load against any HTTP/1.1 server (e.g. nginx `return 200`), for the loopback HTTP ceiling on this machine.

use crate::cli::HttpGetArgs;
use crate::conn::HttpCodec;
use crate::driver::{self, Workload};
use crate::http::{self, Response};
use crate::stats::{Stats, Summary, Violations};

struct GetWl {
    request: Vec<u8>,
    bytes: u64,
}

impl Workload for GetWl {
    type Codec = HttpCodec;
    type Meta = ();
    const HIST: &'static str = "get";

    fn next(&mut self, _conn: usize, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(&self.request);
        Some(())
    }

    fn reply(&mut self, _conn: usize, _m: (), reply: &Response<'_>, lat: u64, stats: &mut Stats) {
        if (200..300).contains(&reply.status) {
            stats.ok += 1;
            self.bytes += reply.body.len() as u64;
            stats.record_us("get", lat);
        } else {
            stats.error(format!("http_{}", reply.status));
        }
    }

    fn lost(&mut self, _conn: usize, _m: ()) {}
}

pub fn run(args: &HttpGetArgs) -> Result<Summary, String> {
    if !args.path.starts_with('/') || args.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("--path {:?} must start with / and contain no spaces or control characters", args.path));
    }
    let spec = args.load.spec(args.addr, &args.common)?;
    let mut request = Vec::new();
    http::write_request(&mut request, "GET", &args.path, &args.addr.to_string(), None);
    let mut w = GetWl { request, bytes: 0 };
    let res = driver::run(&spec, &mut w)?;
    let v = Violations::default();
    let mut sum = Summary::new(
        "http-get",
        args,
        &res.stats,
        res.elapsed.as_secs_f64(),
        res.cpu.clone(),
        &v,
        vec!["status line, headers and Content-Length of every response".into()],
    );
    sum.extra("body_bytes", w.bytes);
    res.report(&mut sum, args.load.rate, 0);
    Ok(sum)
}
