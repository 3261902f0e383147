//! The shard runtime: one pinned glommio executor per core, each owning the shards that
//! [`placement`] assigns it, its own log engine, and its own HTTP listener.
//!
//! Startup per core: join the channel mesh (the mesh peer id *is* the core id), start
//! answering cross-core messages, open the core's log (`<data dir>/<core>/`) and rebuild
//! each shard's log index, open every local shard's Raft group (openraft re-applies the
//! committed log into the state machine), initialize fresh groups, then mark the core
//! started. The HTTP listener is up from the beginning so `/health/live` answers and
//! `/health/ready` says "starting" during recovery.

pub mod api;
pub mod core;
pub mod placement;
pub mod shard;
pub mod watch;

use std::rc::Rc;
use std::sync::Arc;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use self::core::{Core, CoreMsg};
use crate::config::Config;
use crate::limits::{MESH_CHANNEL_DEPTH, RAFT_ELECTION_TIMEOUT_MAX_MS, RAFT_ELECTION_TIMEOUT_MIN_MS, RAFT_HEARTBEAT_MS};
use crate::raft::replay::open_core;
use crate::raft::{LogStore, StateMachine};

const MANIFEST: &str = "STARCITE_MANIFEST";
/// The lock file inside the data dir; its content is the holder's pid (informational:
/// the lock itself is the `flock`, which the kernel drops when the holder dies).
const LOCK_FILE: &str = "LOCK";

/// Holds the exclusive `flock` on the data dir for the life of the process. One process
/// per data dir: two writers of the same segment files lose acknowledged events.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Take the data dir's exclusive lock (creating the dir if needed), or say who holds it.
pub fn lock_data_dir(dir: &std::path::Path) -> Result<DataDirLock, String> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| format!("STARCITE_RAFT_DATA_DIR={}: cannot create: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("STARCITE_RAFT_DATA_DIR={}: cannot open {}: {e}", dir.display(), path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() { "another process".to_string() } else { format!("another process (pid {holder})") };
            return Err(format!(
                "STARCITE_RAFT_DATA_DIR={} is in use by {who}: one starcite process per data dir; stop it or choose another directory",
                dir.display()
            ));
        }
        return Err(format!("STARCITE_RAFT_DATA_DIR={}: cannot lock {}: {err}", dir.display(), path.display()));
    }
    let pid = std::process::id();
    let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| writeln!(file, "{pid}"));
    written.map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(DataDirLock { _file: file })
}
const MANIFEST_VERSION: u32 = 1;

/// Check (or write, on first start) the data dir's manifest: the layout depends on the
/// core and shard counts, and a node keeps its name (its Raft identity) across restarts.
/// Returns the node name to use.
fn prepare_data_dir(config: &Config) -> Result<String, String> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("STARCITE_RAFT_DATA_DIR={}: cannot create: {e}", dir.display()))?;
    let path = dir.join(MANIFEST);
    let wanted = |name: &str| format!("version={MANIFEST_VERSION}\ncores={}\nshards={}\nnode_name={name}\n", config.cores, config.shards);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("").to_string();
            if field("cores") != config.cores.to_string() {
                return Err(format!(
                    "STARCITE_CORES={} but the data dir {} was written with {} cores: start with STARCITE_CORES={} or use an empty STARCITE_RAFT_DATA_DIR",
                    config.cores,
                    dir.display(),
                    field("cores"),
                    field("cores")
                ));
            }
            if field("shards") != config.shards.to_string() {
                return Err(format!(
                    "STARCITE_SHARDS={} but the data dir {} was written with {} shards: the shard count is fixed for a cluster's life",
                    config.shards,
                    dir.display(),
                    field("shards")
                ));
            }
            let stored = field("node_name");
            if config.node_name_generated {
                Ok(stored)
            } else if stored != config.node_name {
                Err(format!("NODE_NAME={} but the data dir {} belongs to node {stored}", config.node_name, dir.display()))
            } else {
                Ok(stored)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join(format!("{MANIFEST}.tmp"));
            std::fs::write(&tmp, wanted(&config.node_name)).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))?;
            std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
            Ok(config.node_name.clone())
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Raise a soft resource limit to its hard limit (or to infinity when permitted).
fn raise_limit(resource: libc::__rlimit_resource_t, try_infinity: bool) {
    if try_infinity {
        let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: plain syscall with a valid pointer.
        if unsafe { libc::setrlimit(resource, &unlimited) } == 0 {
            return;
        }
    }
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::getrlimit(resource, &mut cur) } == 0 && cur.rlim_cur != cur.rlim_max {
        let raised = libc::rlimit { rlim_cur: cur.rlim_max, rlim_max: cur.rlim_max };
        // SAFETY: plain syscall with a valid pointer.
        unsafe { libc::setrlimit(resource, &raised) };
    }
}

/// glommio locks its io_uring buffers in memory (RLIMIT_MEMLOCK), and every client
/// connection is a file descriptor (RLIMIT_NOFILE: 10,000 open tails need more than the
/// usual soft limit of 1,024): lift both as far as this process may.
fn raise_limits() {
    raise_limit(libc::RLIMIT_MEMLOCK, true);
    raise_limit(libc::RLIMIT_NOFILE, false);
}

pub fn raft_config() -> Result<Arc<openraft::Config>, String> {
    let cfg = openraft::Config {
        cluster_name: "starcite".into(),
        heartbeat_interval: RAFT_HEARTBEAT_MS,
        election_timeout_min: RAFT_ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: RAFT_ELECTION_TIMEOUT_MAX_MS,
        // Events live in the Raft log; it is never compacted away under them.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    };
    cfg.validate().map(Arc::new).map_err(|e| format!("raft config: {e}"))
}

/// Start every core and serve until the process is killed.
pub fn run(mut config: Config) -> Result<(), String> {
    let _lock = lock_data_dir(&config.data_dir)?;
    config.node_name = prepare_data_dir(&config)?;
    raise_limits();
    let listener = crate::server::reserve_port(config.port)?;
    config.port = listener.port;
    let config = Arc::new(config);
    // The startup line is a stable, machine-readable contract (README, "Startup line"):
    // `key=value` fields, `data_dir` last because a path may contain spaces.
    eprintln!(
        "starcite: listening http_port={} node={} cores={} shards={} pid={} data_dir={}",
        config.port,
        config.node_name,
        config.cores,
        config.shards,
        std::process::id(),
        config.data_dir.display()
    );
    if config.archiver_enabled {
        eprintln!("starcite: STARCITE_ARCHIVER_ENABLED is set, but this build has no Postgres archive yet: events stay in the local log (nothing is lost or trimmed)");
    }
    let mesh: MeshBuilder<CoreMsg, _> = MeshBuilder::full(config.cores, MESH_CHANNEL_DEPTH);
    let io_memory = config.io_memory_bytes;
    let cores = config.cores;
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, None))
        .io_memory(io_memory)
        .name("starcite-core")
        .on_all_shards(move || async move {
            if let Err(e) = core_main(config, mesh).await {
                eprintln!("starcite: {e}");
                std::process::exit(1);
            }
        })
        .map_err(|e| {
            format!("starting {cores} executors (io memory {io_memory} bytes each; see STARCITE_IO_MEMORY_BYTES and `ulimit -l`): {e}")
        })?;
    drop(listener);
    for r in handles.join_all() {
        r.map_err(|e| format!("core stopped: {e}"))?;
    }
    Ok(())
}

async fn core_main(config: Arc<Config>, mesh: MeshBuilder<CoreMsg, glommio::channels::channel_mesh::Full>) -> Result<(), String> {
    let (senders, mut receivers) = mesh.join().await.map_err(|_| "joining the core mesh failed".to_string())?;
    let id = senders.peer_id();
    let node_id = placement::node_id(&config.node_name);
    let core = Rc::new(Core::new(id, config.clone(), node_id, senders));
    self::core::set_current(core.clone());

    // Answer other cores from the start (ops report "starting" until recovery is done).
    for (_peer, rx) in receivers.streams() {
        glommio::spawn_local(async move {
            while let Some(msg) = rx.recv().await {
                match msg {
                    CoreMsg::Request(op, reply) => {
                        glommio::spawn_local(async move {
                            let _ = reply.send(self::core::handle(op).await);
                        })
                        .detach();
                    }
                    CoreMsg::Notify { session, first_seq, last_seq, events } => {
                        self::core::current().watch.notify_local(&session, first_seq, last_seq, &events)
                    }
                }
            }
        })
        .detach();
    }
    crate::server::start_listener(config.port, config.max_connections_per_core)?;

    let dir = config.data_dir.join(id.to_string());
    let snapshots = dir.join("snapshots");
    let has_snapshot = |shard: u32| snapshots.join(format!("{shard}.snap")).exists();
    let (engine, mut logs, mut replayed) = open_core(&dir, config.segment_bytes, config.tail_keep, &|s| !has_snapshot(s)).await?;
    *core.engine.borrow_mut() = Some(engine.clone());
    let raft_config = raft_config()?;
    let local: Vec<u32> = (0..config.shards).filter(|s| placement::owner_core(*s, config.cores) == id).collect();
    for shard in local {
        let log = logs.remove(&shard).unwrap_or_default();
        let sm = match replayed.remove(&shard) {
            Some(r) => StateMachine::from_replayed(shard, r, snapshots.clone(), log.clone()),
            None => StateMachine::open(shard, config.tail_keep, snapshots.clone(), log.clone())?,
        };
        let store = LogStore::new(shard, engine.clone(), log);
        let opened = shard::Shard::open(shard, node_id, raft_config.clone(), store, sm).await?;
        opened.machine.borrow_mut().listener = Some(Rc::new(|_shard, appended, _bytes| {
            self::core::with_current(|c| {
                for (session, first, last) in appended {
                    c.announce(session, *first, *last);
                }
            });
        }));
        core.shards.borrow_mut().insert(shard, Rc::new(opened));
    }
    if !logs.is_empty() {
        let stray: Vec<u32> = logs.keys().copied().collect();
        return Err(format!("{} holds log records of shards {stray:?} that core {id} does not own", dir.display()));
    }
    core.started.set(true);
    // Park this task forever; the executor keeps serving the spawned tasks.
    futures::future::pending::<()>().await;
    Ok(())
}
