//! Listening sockets shared by a node's cores: every core accepts on its own SO_REUSEPORT
//! socket of the same port (the kernel spreads connections over them), and the process
//! first makes sure no *other* process shares the port.
//!
//! Used by the HTTP front (`PORT`) and the cluster transport (`STARCITE_CLUSTER_PORT`).

use std::net::SocketAddr;

use socket2::{Domain, Socket, Type};

/// A bound (not listening) SO_REUSEPORT socket that holds a port while the cores bind
/// theirs; resolves port 0 to a concrete port shared by every core.
pub struct Reservation {
    _socket: Socket,
    pub port: u16,
}

fn exclusive_probe(port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(socket)
}

/// A socket of `port` that the node's other cores may bind too.
pub fn reuseport_socket(port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(socket)
}

/// Reserve `port` (named `variable` in errors) for this process. First a probe bind
/// *without* SO_REUSEPORT: it fails while any other socket holds the port, including
/// another starcite whose per-core listeners use SO_REUSEPORT (which would otherwise
/// silently share the port with us). Then the SO_REUSEPORT reservation that this process's
/// cores join.
pub fn reserve_port(variable: &str, port: u16) -> Result<Reservation, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(crate::limits::PORT_RELEASE_WAIT_MS);
    let mut probe = exclusive_probe(port);
    // A previous process on this port may have exited a moment ago (a restart): its
    // io_uring may still hold the listening socket briefly. Wait for it, bounded.
    while matches!(&probe, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse) && port != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        probe = exclusive_probe(port);
    }
    let probe = probe.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("{variable}={port}: the port is already in use by another process (one owner per port)")
        } else {
            format!("{variable}={port}: cannot bind 0.0.0.0:{port}: {e}")
        }
    })?;
    let port = probe.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port()).unwrap_or(port);
    drop(probe);
    let socket = reuseport_socket(port).map_err(|e| format!("{variable}={port}: cannot bind 0.0.0.0:{port}: {e}"))?;
    let bound = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| format!("{variable}={port}: cannot read the bound port"))?;
    Ok(Reservation { _socket: socket, port: bound })
}

/// This core's listening socket on `port` (named `variable` in errors), as a glommio listener.
pub fn listen_on_core(variable: &str, port: u16) -> Result<glommio::net::TcpListener, String> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::io::FromRawFd;
    let socket = reuseport_socket(port).map_err(|e| format!("{variable}={port}: cannot bind on core: {e}"))?;
    socket.listen(1024).map_err(|e| format!("{variable}={port}: cannot listen: {e}"))?;
    // SAFETY: the fd comes from a socket we own and hand over exactly once.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) })
}
