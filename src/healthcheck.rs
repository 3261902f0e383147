//! `starcite healthcheck [ready|live]`: the container HEALTHCHECK (and any probe without
//! curl in the image). Asks the node on this host, `127.0.0.1:$PORT` (default 4000), for
//! `GET /health/ready` (default) or `GET /health/live` over plain HTTP/1.1 and exits 0 on
//! `200`, 1 on any other answer or no answer within `HEALTHCHECK_TIMEOUT_MS` (one line on
//! stderr says which), 2 on a bad argument. SPEC §3 defines both endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::limits::{HEALTHCHECK_TIMEOUT_MS, PORT_DEFAULT};

/// Run the check for `args` (the words after `healthcheck`); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let path = match args.first().map(String::as_str) {
        None | Some("ready") => "/health/ready",
        Some("live") => "/health/live",
        Some(other) => {
            eprintln!("starcite healthcheck: unknown check {other:?} (use ready or live)");
            return 2;
        }
    };
    let port = match std::env::var("PORT") {
        Err(_) => PORT_DEFAULT,
        Ok(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                eprintln!("starcite healthcheck: PORT={p:?} is not a port number");
                return 2;
            }
        },
    };
    match probe(port, path) {
        Ok(200) => 0,
        Ok(status) => {
            eprintln!("starcite healthcheck: GET {path} on port {port} answered {status}");
            1
        }
        Err(e) => {
            eprintln!("starcite healthcheck: GET {path} on port {port}: {e}");
            1
        }
    }
}

/// The status code of `GET path` on `127.0.0.1:port`.
fn probe(port: u16, path: &str) -> std::io::Result<u16> {
    let timeout = Duration::from_millis(HEALTHCHECK_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    // The status line is in the first bytes; read at most a small head.
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = stream.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    parse_status(&head[..got]).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP/1.1 answer"))
}

/// `HTTP/1.1 200 …` → 200 (RFC 9112 §4: status-line = HTTP-version SP status-code SP).
fn parse_status(head: &[u8]) -> Option<u16> {
    let rest = head.strip_prefix(b"HTTP/1.1 ").or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_and_garbage_does_not() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 503 Service Unavailable"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(run(&["sideways".to_string()]), 2);
    }
}
