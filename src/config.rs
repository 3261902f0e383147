//! Startup configuration from environment variables (SPEC §6 plus Starcite's own).
//!
//! Every variable is validated before anything starts; a bad value is one line naming
//! the variable and what it accepts, and the process exits non-zero. Defaults and bounds
//! live in [`crate::limits`].

use std::collections::HashMap;
use std::path::PathBuf;

use crate::limits::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadPlane {
    Legacy,
    DualWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailSource {
    Legacy,
    Ets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubsubAdapter {
    Local,
    Redis,
}

/// Default `STARCITE_LOG`: our own lines at info, openraft silenced: it logs every failed RPC of every group on every retry
/// (hundreds of lines a second per unreachable peer with 256 groups); the node logs one
/// line per peer that becomes unreachable or reachable again, and what it decides itself.
pub const LOG_FILTER_DEFAULT: &str = "info,openraft=off";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub node_name: String,
    /// True when NODE_NAME was not given (a stored or random name is used).
    pub node_name_generated: bool,
    pub cluster_nodes: Vec<NodeSpec>,
    pub cluster_port: u16,
    pub dns_cluster_query: Option<String>,
    pub dns_cluster_node_basename: String,
    pub dns_poll_interval_ms: u64,
    pub data_dir: PathBuf,
    pub payload_plane: PayloadPlane,
    pub tail_source: TailSource,
    pub archiver_enabled: bool,
    pub database_url: Option<String>,
    pub archive_flush_interval_ms: u64,
    pub db_pool_size: u32,
    pub pubsub_adapter: PubsubAdapter,
    pub redis_host: String,
    pub redis_port: u16,
    pub phx_host: String,
    pub secret_key_base: Option<String>,
    pub cores: usize,
    pub shards: u32,
    pub segment_bytes: u64,
    pub tail_keep: usize,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub tail_idle_timeout_ms: u64,
    pub max_connections_per_core: usize,
    pub io_memory_bytes: usize,
    /// Test-only failpoint, honoured by debug builds only: the log engine's n-th fdatasync
    /// (and every later one) fails with EIO (`STARCITE_TEST_FAIL_FDATASYNC_AFTER`).
    pub test_fail_fdatasync_after: Option<u64>,
    /// `STARCITE_STALL_THRESHOLD_MS`: glommio stall detector budget; 0 turns it off.
    pub stall_threshold_ms: u64,
    /// `STARCITE_LOG_FORMAT`: `human` (default) or `json`.
    pub log_format: crate::logging::LogFormat,
    /// `STARCITE_LOG`: a tracing EnvFilter directive (default [`LOG_FILTER_DEFAULT`]).
    pub log_filter: String,
}

/// One line: the variable, what was given, what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    fn number<T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy>(
        &self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.parse::<T>() {
                Ok(v) if v >= min && v <= max => Ok(v),
                _ => Err(ConfigError(format!("invalid {name}={raw:?}: expected an integer from {min} to {max}"))),
            },
        }
    }

    fn choice<T: Copy>(&self, name: &str, default: T, options: &[(&str, T)]) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => options.iter().find(|(k, _)| k.eq_ignore_ascii_case(raw)).map(|(_, v)| *v).ok_or_else(|| {
                let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
                ConfigError(format!("invalid {name}={raw:?}: accepted values: {}", names.join(", ")))
            }),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(false),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError(format!("invalid {name}={raw:?}: accepted values: true, 1, yes, on, false, 0, no, off"))),
            },
        }
    }
}

fn valid_node_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn parse_cluster_nodes(raw: &str, default_port: u16) -> Result<Vec<NodeSpec>, ConfigError> {
    let err = |why: &str| ConfigError(format!("invalid CLUSTER_NODES={raw:?}: {why}; expected comma-separated name@host[:port]"));
    let mut nodes: Vec<NodeSpec> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, addr) = part.split_once('@').ok_or_else(|| err(&format!("{part:?} has no '@'")))?;
        if !valid_node_name(name) {
            return Err(err(&format!("bad node name {name:?}")));
        }
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.ends_with(':') => (h, p.parse::<u16>().map_err(|_| err(&format!("bad port in {part:?}")))?),
            _ => (addr, default_port),
        };
        if host.is_empty() {
            return Err(err(&format!("empty host in {part:?}")));
        }
        if nodes.iter().any(|n| n.name == name) {
            return Err(err(&format!("node {name:?} listed twice")));
        }
        nodes.push(NodeSpec { name: name.to_string(), host: host.to_string(), port });
    }
    if nodes.is_empty() {
        return Err(err("no nodes"));
    }
    Ok(nodes)
}

/// CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Config::from_map(&vars)
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let env = Env(vars);
        let port = env.number("PORT", PORT_DEFAULT, 0, u16::MAX)?;
        let cluster_port = env.number("STARCITE_CLUSTER_PORT", CLUSTER_PORT_DEFAULT, 1, u16::MAX)?;
        let (node_name, node_name_generated) = match env.get("NODE_NAME") {
            Some(n) if valid_node_name(n) => (n.to_string(), false),
            Some(n) => return Err(ConfigError(format!("invalid NODE_NAME={n:?}: expected 1-255 characters of [A-Za-z0-9._-]"))),
            None => (format!("starcite-{}", fastrand::u32(..)), true),
        };
        let cluster_nodes = match env.get("CLUSTER_NODES") {
            Some(raw) => parse_cluster_nodes(raw, cluster_port)?,
            None => Vec::new(),
        };
        if !cluster_nodes.is_empty() && !cluster_nodes.iter().any(|n| n.name == node_name) {
            return Err(ConfigError(format!("invalid NODE_NAME={node_name:?}: it must be one of the names in CLUSTER_NODES")));
        }
        let payload_plane = env.choice(
            "STARCITE_PAYLOAD_PLANE",
            PayloadPlane::Legacy,
            &[("legacy", PayloadPlane::Legacy), ("dual_write", PayloadPlane::DualWrite)],
        )?;
        let tail_source =
            env.choice("STARCITE_TAIL_SOURCE", TailSource::Legacy, &[("legacy", TailSource::Legacy), ("ets", TailSource::Ets)])?;
        if tail_source == TailSource::Ets && payload_plane != PayloadPlane::DualWrite {
            return Err(ConfigError("invalid STARCITE_TAIL_SOURCE=\"ets\": requires STARCITE_PAYLOAD_PLANE=dual_write".into()));
        }
        let archiver_enabled = env.boolean("STARCITE_ARCHIVER_ENABLED")?;
        let database_url = env.get("DATABASE_URL").or_else(|| env.get("STARCITE_POSTGRES_URL")).map(str::to_string);
        if archiver_enabled && database_url.is_none() {
            return Err(ConfigError("STARCITE_ARCHIVER_ENABLED is on but neither DATABASE_URL nor STARCITE_POSTGRES_URL is set: accepted values: a postgres:// URL".into()));
        }
        if let Some(url) = &database_url {
            // The URL is not echoed: it may hold a password.
            let scheme = url.starts_with("postgres://") || url.starts_with("postgresql://");
            let parsed = if scheme { crate::archive::parse_url(url).map(drop) } else { Err("not a postgres:// URL".to_string()) };
            if let Err(reason) = parsed {
                return Err(ConfigError(format!(
                    "invalid DATABASE_URL/STARCITE_POSTGRES_URL: {reason}: expected a URL like postgres://user:password@host:5432/database"
                )));
            }
        }
        let secret_key_base = env.get("SECRET_KEY_BASE").map(str::to_string);
        if cluster_nodes.len() > 1 && secret_key_base.is_none() {
            return Err(ConfigError(
                "SECRET_KEY_BASE is required for a multi-node CLUSTER_NODES: accepted values: a shared secret of at least 32 bytes".into(),
            ));
        }
        if let Some(s) = &secret_key_base {
            if s.len() < 32 {
                return Err(ConfigError("invalid SECRET_KEY_BASE: accepted values: a shared secret of at least 32 bytes".into()));
            }
        }
        let pubsub_adapter = env.choice(
            "STARCITE_PUBSUB_ADAPTER",
            PubsubAdapter::Local,
            &[("local", PubsubAdapter::Local), ("redis", PubsubAdapter::Redis)],
        )?;
        let cores_max = available_cores();
        Ok(Config {
            port,
            node_name,
            node_name_generated,
            cluster_nodes,
            cluster_port,
            dns_cluster_query: env.get("DNS_CLUSTER_QUERY").map(str::to_string),
            dns_cluster_node_basename: env.get("DNS_CLUSTER_NODE_BASENAME").unwrap_or("starcite").to_string(),
            dns_poll_interval_ms: env.number("DNS_POLL_INTERVAL_MS", DNS_POLL_INTERVAL_MS_DEFAULT, 100, 3_600_000)?,
            data_dir: PathBuf::from(env.get("STARCITE_RAFT_DATA_DIR").unwrap_or("priv/raft")),
            payload_plane,
            tail_source,
            archiver_enabled,
            database_url,
            archive_flush_interval_ms: env.number(
                "STARCITE_ARCHIVE_FLUSH_INTERVAL_MS",
                ARCHIVE_FLUSH_INTERVAL_MS_DEFAULT,
                10,
                3_600_000,
            )?,
            db_pool_size: env.number("DB_POOL_SIZE", DB_POOL_SIZE_DEFAULT, 1, 1000)?,
            pubsub_adapter,
            redis_host: env.get("REDIS_HOST").unwrap_or("localhost").to_string(),
            redis_port: env.number("REDIS_PORT", 6379, 1, u16::MAX)?,
            phx_host: env.get("PHX_HOST").unwrap_or("example.com").to_string(),
            secret_key_base,
            cores: env.number("STARCITE_CORES", cores_max, 1, cores_max.max(1))?,
            shards: env.number("STARCITE_SHARDS", SHARDS_DEFAULT, 1, SHARDS_MAX)?,
            segment_bytes: {
                let v = env.number("STARCITE_SEGMENT_BYTES", SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX)?;
                if v % LOG_BLOCK_BYTES != 0 {
                    return Err(ConfigError(format!("invalid STARCITE_SEGMENT_BYTES={v}: must be a multiple of {LOG_BLOCK_BYTES}")));
                }
                v
            },
            tail_keep: env.number("STARCITE_TAIL_KEEP", TAIL_KEEP_DEFAULT, 1, TAIL_KEEP_MAX)?,
            max_body_bytes: env.number("STARCITE_MAX_BODY_BYTES", BODY_BYTES_MAX_DEFAULT, 1, BODY_BYTES_MAX_LIMIT)?,
            request_timeout_ms: env.number("STARCITE_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS_DEFAULT, 1, 600_000)?,
            tail_idle_timeout_ms: env.number("STARCITE_TAIL_IDLE_TIMEOUT_MS", TAIL_IDLE_TIMEOUT_MS_DEFAULT, 1, 86_400_000)?,
            max_connections_per_core: env.number("STARCITE_MAX_CONNECTIONS_PER_CORE", CONNECTIONS_PER_CORE_MAX_DEFAULT, 1, 1_000_000)?,
            stall_threshold_ms: env.number("STARCITE_STALL_THRESHOLD_MS", crate::limits::EXECUTOR_STALL_THRESHOLD_MS, 0, 60_000)?,
            log_format: env.choice(
                "STARCITE_LOG_FORMAT",
                crate::logging::LogFormat::Human,
                &[("human", crate::logging::LogFormat::Human), ("json", crate::logging::LogFormat::Json)],
            )?,
            log_filter: {
                let filter = env.get("STARCITE_LOG").unwrap_or(LOG_FILTER_DEFAULT);
                if let Err(e) = tracing_subscriber::EnvFilter::try_new(filter) {
                    return Err(ConfigError(format!(
                        "invalid STARCITE_LOG={filter:?} ({e}): expected tracing filter directives such as {LOG_FILTER_DEFAULT:?}"
                    )));
                }
                filter.to_string()
            },
            test_fail_fdatasync_after: match env.get("STARCITE_TEST_FAIL_FDATASYNC_AFTER") {
                None => None,
                Some(_) => Some(env.number("STARCITE_TEST_FAIL_FDATASYNC_AFTER", 1, 1, u64::MAX)?),
            },
            io_memory_bytes: env.number("STARCITE_IO_MEMORY_BYTES", IO_MEMORY_BYTES_DEFAULT, IO_MEMORY_BYTES_MIN, 1 << 30)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_map(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn empty_environment_gives_the_documented_defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 4000);
        assert_eq!(c.shards, 256);
        assert_eq!(c.tail_keep, 1000);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert_eq!(c.request_timeout_ms, 5000);
        assert_eq!(c.tail_idle_timeout_ms, 60_000);
        assert_eq!(c.payload_plane, PayloadPlane::Legacy);
        assert_eq!(c.data_dir, PathBuf::from("priv/raft"));
        assert!(c.node_name_generated);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_accepted_values() {
        let e = parse(&[("STARCITE_PAYLOAD_PLANE", "fast")]).unwrap_err().0;
        assert!(e.contains("STARCITE_PAYLOAD_PLANE") && e.contains("legacy, dual_write"), "{e}");
        let e = parse(&[("PORT", "eighty")]).unwrap_err().0;
        assert!(e.contains("PORT") && e.contains("0 to 65535"), "{e}");
        let e = parse(&[("STARCITE_TAIL_SOURCE", "ets")]).unwrap_err().0;
        assert!(e.contains("dual_write"), "{e}");
        let e = parse(&[("STARCITE_ARCHIVER_ENABLED", "yes")]).unwrap_err().0;
        assert!(e.contains("DATABASE_URL"), "{e}");
        let e = parse(&[("STARCITE_ARCHIVER_ENABLED", "maybe")]).unwrap_err().0;
        assert!(e.contains("STARCITE_ARCHIVER_ENABLED"), "{e}");
        assert!(parse(&[("STARCITE_SHARDS", "0")]).is_err());
        assert!(parse(&[("STARCITE_SEGMENT_BYTES", "4194305")]).is_err());
    }

    #[test]
    fn a_bad_database_url_is_one_clear_error_that_never_echoes_the_password() {
        for url in ["mysql://u:s3cret@h/db", "postgres://u:s3cret@h:port/db", "postgres://u:s3cret@h/db?sslmode=bogus"] {
            let e = parse(&[("STARCITE_ARCHIVER_ENABLED", "on"), ("DATABASE_URL", url)]).unwrap_err().0;
            assert!(e.starts_with("invalid DATABASE_URL/STARCITE_POSTGRES_URL") && !e.contains("s3cret"), "{url}: {e}");
        }
        let c = parse(&[("STARCITE_ARCHIVER_ENABLED", "on"), ("STARCITE_POSTGRES_URL", "postgresql://u:p@127.0.0.1:5432/db")]).unwrap();
        assert!(c.archiver_enabled && c.database_url.is_some());
    }

    #[test]
    fn cluster_nodes_accept_explicit_ports_and_require_a_secret() {
        let c = parse(&[
            ("CLUSTER_NODES", "starcite-1@127.0.0.1:4101,starcite-2@host2"),
            ("NODE_NAME", "starcite-1"),
            ("SECRET_KEY_BASE", &"x".repeat(40)),
        ])
        .unwrap();
        assert_eq!(c.cluster_nodes[0], NodeSpec { name: "starcite-1".into(), host: "127.0.0.1".into(), port: 4101 });
        assert_eq!(c.cluster_nodes[1].port, 4100);
        let e = parse(&[("CLUSTER_NODES", "a@h1,b@h2"), ("NODE_NAME", "a")]).unwrap_err().0;
        assert!(e.contains("SECRET_KEY_BASE"), "{e}");
        let e = parse(&[("CLUSTER_NODES", "a@h1"), ("NODE_NAME", "zz")]).unwrap_err().0;
        assert!(e.contains("NODE_NAME"), "{e}");
    }
}
