//! The composition root: owns the process around the cores — the data dir (its lock and
//! manifest), resource limits, the listening ports, the executors, signals and graceful
//! shutdown — and wires the layers together: the HTTP front (server/) on top of the shard
//! runtime (runtime/), which sits on Raft and sessions, which sit on the log.
//!
//! `main.rs` only reads the configuration and calls [`bind`], [`shutdown_on_signals`] and
//! [`run`]; everything a test or an embedding needs is here, with the ports already bound
//! (so `PORT=0` resolves before anything prints or listens) and shutdown in the caller's
//! hands.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{Full, MeshBuilder};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::cluster::handshake::{ClusterKey, Peer, Shape};
use crate::cluster::links::Member;
use crate::config::Config;
use crate::limits::{
    CLUSTER_GOODBYE_GRACE_MS, LEADERSHIP_HANDOFF_MS, LISTEN_WAIT_MS, MESH_CHANNEL_DEPTH, SHUTDOWN_GRACE_MS, SHUTDOWN_POLL_MS,
};
use crate::listen::{reserve_port, Reservation};
use crate::runtime::core::{CoreMsg, Op};
use crate::runtime::shutdown::Shutdown;
use crate::runtime::ClusterPlan;

/// Why a node could not start (or a core could not finish starting). One line each, naming
/// the variable, file or limit to look at.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data dir is locked by another process, unreadable, or belongs to another layout.
    #[error("{0}")]
    DataDir(String),
    /// A port is taken or cannot be bound.
    #[error("{0}")]
    Port(String),
    /// The signal handlers could not be installed.
    #[error("installing the SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
    /// glommio refused to start the executors (usually locked memory).
    #[error("starting {cores} executors (io memory {io_memory} bytes each; see STARCITE_IO_MEMORY_BYTES and `ulimit -l`): {reason}")]
    Executors { cores: usize, io_memory: usize, reason: String },
    /// A core failed during startup: log recovery, state machines, Raft groups.
    #[error("core {core}: {source}")]
    Core {
        core: usize,
        #[source]
        source: crate::runtime::OpenError,
    },
    /// The archive thread could not be made (the URL was checked by config.rs already).
    #[error("archive: {0}")]
    Archive(String),
    /// An executor thread ended abnormally.
    #[error("core {core} stopped: {reason}")]
    CoreStopped { core: usize, reason: String },
    /// io_uring is blocked or cannot get its memory (`probe_io_uring`).
    #[error("{0}")]
    IoUring(String),
}

/// `struct io_uring_params` (linux/io_uring.h): 120 bytes, zeroed for a default ring.
const IO_URING_PARAMS_BYTES: usize = 120;
/// `struct io_uring_probe` with room for 256 ops: 16 bytes of header, 8 per op.
const IO_URING_PROBE_BYTES: usize = 16 + 256 * 8;
/// `IORING_REGISTER_PROBE` (linux/io_uring.h).
const IORING_REGISTER_PROBE: libc::c_uint = 8;

/// Probe the three io_uring syscalls glommio needs (setup, register, enter) on a tiny
/// ring, before any executor starts: a container whose seccomp profile blocks them, or a
/// memlock limit too small for the rings (kernels before 5.12 charge them to it), gets one
/// line naming the option to add — instead of a panic inside a core thread (glommio's).
fn probe_io_uring() -> Result<(), StartupError> {
    let mut params = [0u8; IO_URING_PARAMS_BYTES];
    // SAFETY: io_uring_setup(2) with a valid, zeroed params struct of the kernel's size.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4 as libc::c_uint, params.as_mut_ptr()) };
    let result = if fd < 0 {
        Err(("io_uring_setup", std::io::Error::last_os_error()))
    } else {
        let fd = fd as libc::c_int;
        let mut probe = [0u8; IO_URING_PROBE_BYTES];
        // SAFETY: io_uring_register(2) on the ring just made, with a buffer of the probe's size.
        let registered =
            unsafe { libc::syscall(libc::SYS_io_uring_register, fd, IORING_REGISTER_PROBE, probe.as_mut_ptr(), 256 as libc::c_uint) };
        let registered = if registered < 0 { Err(("io_uring_register", std::io::Error::last_os_error())) } else { Ok(()) };
        // SAFETY: io_uring_enter(2) submitting and waiting for nothing.
        let entered = registered.and_then(|_| {
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    fd,
                    0 as libc::c_uint,
                    0 as libc::c_uint,
                    0 as libc::c_uint,
                    std::ptr::null::<u8>(),
                    0usize,
                )
            };
            if r < 0 {
                Err(("io_uring_enter", std::io::Error::last_os_error()))
            } else {
                Ok(())
            }
        });
        // SAFETY: closing the ring's own descriptor.
        unsafe { libc::close(fd) };
        entered
    };
    let Err((call, err)) = result else { return Ok(()) };
    let hint = match err.raw_os_error() {
        Some(libc::ENOMEM) => {
            "io_uring cannot lock its rings in memory: raise the memlock limit (Docker: --ulimit memlock=-1:-1; systemd: LimitMEMLOCK=infinity; a shell: ulimit -l unlimited)"
        }
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS) => {
            "io_uring is blocked: under Docker add --security-opt seccomp=deploy/docker/seccomp.json (Docker's default seccomp profile blocks io_uring since Engine 25; do not use seccomp=unconfined for this); elsewhere check sysctl kernel.io_uring_disabled and the kernel (5.8 or later)"
        }
        _ => "io_uring is unavailable (a kernel of 5.8 or later with io_uring enabled is required)",
    };
    Err(StartupError::IoUring(format!("{hint} ({call}: {err})")))
}

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
/// core and shard counts, and a node keeps its name and its Raft node id across restarts.
/// The node id is this data dir's incarnation: random at first start, so a node that comes
/// back with an empty data dir is a new Raft member under its old name (runtime/membership.rs
/// has the rule). Data dirs written before the id was recorded use the id derived from the
/// name, which is what they were initialized with. Returns (node name, node id).
fn prepare_data_dir(config: &Config) -> Result<(String, u64), String> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("STARCITE_RAFT_DATA_DIR={}: cannot create: {e}", dir.display()))?;
    let path = dir.join(MANIFEST);
    let fresh_id = (rand::random::<u64>() >> 1).max(1);
    let wanted = |name: &str| {
        format!("version={MANIFEST_VERSION}\ncores={}\nshards={}\nnode_name={name}\nnode_id={fresh_id}\n", config.cores, config.shards)
    };
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
            let node_id = match field("node_id") {
                f if f.is_empty() => crate::runtime::placement::node_id(&stored),
                f => f.parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| format!("{}: invalid node_id={f}", path.display()))?,
            };
            if config.node_name_generated {
                Ok((stored, node_id))
            } else if stored != config.node_name {
                Err(format!("NODE_NAME={} but the data dir {} belongs to node {stored}", config.node_name, dir.display()))
            } else {
                Ok((stored, node_id))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join(format!("{MANIFEST}.tmp"));
            std::fs::write(&tmp, wanted(&config.node_name)).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
            std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))?;
            std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| format!("syncing {}: {e}", dir.display()))?;
            Ok((config.node_name.clone(), fresh_id))
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

/// The node's exclusive resources, claimed before anything else: the data dir's lock first
/// (a second process on the same dir must name the dir, not a port), then the listening
/// sockets, so a taken port fails fast and `PORT=0` becomes a concrete port that the
/// startup line can name.
pub struct Listeners {
    lock: DataDirLock,
    http: Reservation,
    /// The intra-cluster port, for a multi-node `CLUSTER_NODES`.
    cluster: Option<Reservation>,
}

impl Listeners {
    /// The HTTP port actually bound (the configured one, or the kernel's pick for 0).
    pub fn http_port(&self) -> u16 {
        self.http.port
    }
}

/// This node's intra-cluster port: its own `CLUSTER_NODES` entry's, which defaults to
/// `STARCITE_CLUSTER_PORT` (SPEC §4). None for a single node.
fn cluster_port(config: &Config) -> Option<u16> {
    if config.cluster_nodes.len() <= 1 {
        return None;
    }
    config.cluster_nodes.iter().find(|n| n.name == config.node_name).map(|n| n.port)
}

/// Lock the data dir, then bind the node's ports (HTTP, and the cluster port in a cluster;
/// one owner per port, see `listen::reserve_port`).
pub fn bind(config: &Config) -> Result<Listeners, StartupError> {
    let lock = lock_data_dir(&config.data_dir).map_err(StartupError::DataDir)?;
    let http = reserve_port("PORT", config.port).map_err(StartupError::Port)?;
    let cluster = match cluster_port(config) {
        Some(port) => Some(reserve_port("STARCITE_CLUSTER_PORT", port).map_err(StartupError::Port)?),
        None => None,
    };
    Ok(Listeners { lock, http, cluster })
}

/// The cluster as this node sees it (a single node: itself alone).
fn cluster_plan(config: &Config, node_id: u64) -> ClusterPlan {
    let me = Peer { name: config.node_name.clone(), node_id };
    let members = if config.cluster_nodes.len() > 1 {
        config.cluster_nodes.iter().map(|n| Member { name: n.name.clone(), addr: format!("{}:{}", n.host, n.port) }).collect()
    } else {
        vec![Member { name: config.node_name.clone(), addr: String::new() }]
    };
    // A single node never authenticates anyone; config requires the secret for a cluster.
    let key = ClusterKey::derive(config.secret_key_base.as_deref().unwrap_or("single node").as_bytes());
    let names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    ClusterPlan { me, members, key, shape: Shape::new(config.shards, &names) }
}

/// A [`Shutdown`] that SIGTERM or SIGINT triggers; a second signal exits the process at
/// once with status 128 + the signal number.
pub fn shutdown_on_signals() -> Result<Shutdown, StartupError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let shutdown = Shutdown::new();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(StartupError::Signals)?;
    let requested = shutdown.clone();
    std::thread::Builder::new()
        .name("starcite-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if requested.is_requested() {
                    tracing::warn!(signal, "second signal: exiting at once");
                    std::process::exit(128 + signal);
                }
                tracing::info!(signal, grace_ms = SHUTDOWN_GRACE_MS, "draining (a second signal exits at once)");
                requested.trigger();
            }
        })
        .map_err(StartupError::Signals)?;
    Ok(shutdown)
}

/// Run a node on already-bound `listeners` until `shutdown` is triggered and every core has
/// drained and flushed its log. Returns once the process may exit 0.
pub fn run(mut config: Config, listeners: Listeners, shutdown: Shutdown) -> Result<(), StartupError> {
    let Listeners { lock: _lock, http, cluster } = listeners;
    let (node_name, node_id) = prepare_data_dir(&config).map_err(StartupError::DataDir)?;
    config.node_name = node_name;
    raise_limits();
    probe_io_uring()?;
    config.port = http.port;
    let config = Arc::new(config);
    let plan = cluster_plan(&config, node_id);
    let cluster_port = cluster.as_ref().map(|c| c.port);
    if config.pubsub_adapter == crate::config::PubsubAdapter::Redis {
        tracing::warn!("STARCITE_PUBSUB_ADAPTER=redis is set, but this build fans out locally only (no Redis connection is made)");
    }
    let (archive, archive_worker) = match (&config.database_url, config.archiver_enabled) {
        (Some(url), true) => {
            let (archive, worker) = crate::archive::channel(url, config.db_pool_size).map_err(StartupError::Archive)?;
            (Some(archive), Some(worker))
        }
        _ => (None, None),
    };
    // Each core reports the CPU it is pinned to, so the archive thread can take a free one.
    let core_cpus = Arc::new(std::sync::Mutex::new(Vec::new()));
    let cpus_of_cores = core_cpus.clone();
    let mesh: MeshBuilder<CoreMsg, Full> = MeshBuilder::full(config.cores, MESH_CHANNEL_DEPTH);
    let (cores, io_memory) = (config.cores, config.io_memory_bytes);
    let listening = Arc::new(AtomicUsize::new(0));
    let core_config = config.clone();
    let cores_listening = listening.clone();
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(cores, allowed_cpus()))
        .io_memory(io_memory)
        .name("starcite-core")
        .detect_stalls(match config.stall_threshold_ms {
            0 => None,
            ms => Some(Box::new(move || Box::new(StallAlarm(Duration::from_millis(ms))))),
        })
        .on_all_shards(move || async move {
            // SAFETY: sched_getcpu has no preconditions; an executor is pinned, so its
            // answer stays true.
            let cpu = unsafe { libc::sched_getcpu() };
            if let Ok(cpu) = usize::try_from(cpu) {
                cpus_of_cores.lock().unwrap_or_else(|e| e.into_inner()).push(cpu);
            }
            if let Err(e) = core_main(core_config, plan, cluster_port, mesh, shutdown, cores_listening, archive).await {
                // A fatal startup error: the same one plain line as main's (logging.rs).
                eprintln!("starcite: {e}");
                std::process::exit(1);
            }
        })
        .map_err(|e| StartupError::Executors { cores, io_memory, reason: e.to_string() })?;
    // The startup line promises a port that accepts connections: wait until every core
    // listens (a core that fails exits the process), then print it; the reservation held
    // the port until then, so nothing else could take it in between.
    let deadline = Instant::now() + Duration::from_millis(LISTEN_WAIT_MS);
    while listening.load(Ordering::SeqCst) < cores && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The startup line is a stable, machine-readable contract (README, "Startup line"):
    // `key=value` fields, `data_dir` last because a path may contain spaces.
    eprintln!(
        "starcite: listening http_port={} cluster_port={} node={} node_id={node_id} cores={} shards={} pid={} data_dir={}",
        config.port,
        cluster_port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        config.node_name,
        config.cores,
        config.shards,
        std::process::id(),
        config.data_dir.display()
    );
    drop(http);
    drop(cluster);
    if let Some(worker) = archive_worker {
        let used = core_cpus.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let free = allowed_cpus().and_then(|set| set.into_iter().map(|l| l.cpu).find(|cpu| !used.contains(cpu)));
        match free {
            Some(cpu) => tracing::info!(cpu, "archive thread pinned to a CPU of its own"),
            None => tracing::info!("archive thread shares the executors' CPUs (no free CPU: STARCITE_CORES uses them all)"),
        }
        worker.spawn(free).map_err(|e| StartupError::Archive(format!("starting its thread: {e}")))?;
    }
    for (core, r) in handles.join_all().into_iter().enumerate() {
        r.map_err(|e| StartupError::CoreStopped { core, reason: e.to_string() })?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The CPUs this process may run on — its affinity mask, as `taskset`, a cgroup cpuset or
/// Docker's `--cpuset-cpus` set it — for pinning the executors (glommio would otherwise
/// pin to the first online CPUs whatever the mask: several nodes on one host would all
/// share CPU 0, and a container's executors would pin outside its cpuset). None when the
/// mask cannot be read (glommio's default then).
fn allowed_cpus() -> Option<glommio::CpuSet> {
    // SAFETY: sched_getaffinity fills a zeroed cpu_set_t of the size it is given.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) } != 0 {
        return None;
    }
    let online = glommio::CpuSet::online().ok()?;
    // SAFETY: CPU_ISSET reads the mask filled above; ids beyond its size are never set.
    let allowed = online.filter(|l| l.cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(l.cpu, &mask) });
    (!allowed.is_empty()).then_some(allowed)
}

/// glommio's stall detector on every executor: a task that runs past its budget without
/// yielding delays every other connection of its core. glommio logs each stall (with the
/// task queue, the overage and a backtrace) through the `log` crate, which the subscriber
/// forwards (logging.rs); [`count_stall`] counts it in `starcite_executor_stalls_total`.
/// (glommio 0.9 does not export the type its `stall` callback takes, so the count hooks the
/// log line instead of overriding the callback.)
#[derive(Debug)]
struct StallAlarm(Duration);

impl glommio::StallDetectionHandler for StallAlarm {
    fn threshold(&self, _queue: glommio::TaskQueueHandle, _max_expected: Duration) -> Option<Duration> {
        Some(self.0)
    }
}

/// Count one executor stall on the core it happened on (called by the logging layer).
pub fn count_stall() {
    crate::runtime::core::with_current(|core| core.metrics.counters.executor_stalls.inc());
}

/// One core's life: join the mesh, listen, recover and open its shards, serve; on shutdown
/// drain (runtime/shutdown.rs has the sequence) and flush.
async fn core_main(
    config: Arc<Config>,
    plan: ClusterPlan,
    cluster_port: Option<u16>,
    mesh: MeshBuilder<CoreMsg, Full>,
    shutdown: Shutdown,
    listening: Arc<AtomicUsize>,
    archive: Option<crate::archive::Archive>,
) -> Result<(), StartupError> {
    use futures::FutureExt;
    let core = crate::runtime::join_mesh(config.clone(), &plan, mesh).await.map_err(|source| StartupError::Core { core: 0, source })?;
    if let Some(archive) = &archive {
        let _ = core.archive.set(archive.clone());
    }
    let id = core.id;
    // Every line logged on this core names the node and the core (logging.rs).
    let _core_span = tracing::info_span!("core", node = %config.node_name, core = id).entered();
    {
        // The signal thread cannot wake an executor: each core looks at the request.
        let (core, shutdown) = (core.clone(), shutdown.clone());
        glommio::spawn_local(async move {
            while !shutdown.is_requested() {
                glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_MS)).await;
            }
            core.draining.set();
        })
        .detach();
    }
    crate::server::start_listener(config.port, config.max_connections_per_core).map_err(StartupError::Port)?;
    if let Some(port) = cluster_port {
        start_cluster_listener(&config, &plan, port)?;
    }
    listening.fetch_add(1, Ordering::SeqCst);
    futures::select! {
        opened = crate::runtime::open_shards(&core).fuse() => opened.map_err(|source| StartupError::Core { core: id, source })?,
        _ = core.draining.wait().fuse() => {}
    }
    if let (Some(archive), true) = (archive, core.started.get()) {
        glommio::spawn_local(crate::runtime::archiver::run(core.clone(), archive)).detach();
        // Trimming after the archive is what lets the log shrink (runtime/compactor.rs).
        glommio::spawn_local(crate::runtime::compactor::run(core.clone())).detach();
    }
    core.draining.wait().await;
    // Leaders first hand their groups to followers, so writes move on at once.
    crate::runtime::membership::hand_off_leadership(&core, Duration::from_millis(LEADERSHIP_HANDOFF_MS)).await;
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_GRACE_MS);
    let tick = Duration::from_millis(SHUTDOWN_POLL_MS);
    while core.metrics.counters.open_connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(tick).await;
    }
    // Requests of other cores' connections may still need this core's shards.
    shutdown.core_drained();
    while shutdown.drained_cores() < config.cores && Instant::now() < deadline {
        glommio::timer::sleep(tick).await;
    }
    crate::runtime::stop_shards(&core).await;
    if cluster_port.is_some() {
        // Peers stop sending here at GOODBYE; what they sent before it gets answered (as
        // "not leader": the groups are stopped) before the process exits, so no forwarded
        // write is left without an answer.
        core.leaving.set();
        glommio::timer::sleep(Duration::from_millis(CLUSTER_GOODBYE_GRACE_MS)).await;
    }
    Ok(())
}

/// Accept peers on this core's socket of the cluster port: each RPC goes to the core that
/// owns its shard (the shard's Raft group and replica live there).
fn start_cluster_listener(config: &Config, plan: &ClusterPlan, port: u16) -> Result<(), StartupError> {
    let listener = crate::listen::listen_on_core("STARCITE_CLUSTER_PORT", port).map_err(StartupError::Port)?;
    let cores = config.cores;
    let handler = move |shard: u32, request: crate::cluster::rpc::Request| async move {
        let core = crate::runtime::core::current();
        let owner = crate::runtime::placement::owner_core(shard, cores);
        core.call(owner, |reply| Op::Peer(shard, Box::new(request), reply)).await.unwrap_or(crate::cluster::rpc::Response::NotHosted)
    };
    let on_rejected = std::rc::Rc::new(|e: &crate::cluster::session::SessionError| {
        if e.is_rejection() {
            crate::runtime::core::with_current(|core| core.metrics.counters.cluster_rejections.inc());
        }
    });
    let closing: crate::cluster::listener::Closing = std::rc::Rc::new(|| {
        use futures::FutureExt;
        let core = crate::runtime::core::current();
        async move { core.leaving.wait().await }.boxed_local()
    });
    crate::cluster::listener::start(listener, plan.me.clone(), plan.key.clone(), plan.shape, handler, on_rejected, closing);
    Ok(())
}
