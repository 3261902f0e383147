//! The HTTP/1.1 front: one SO_REUSEPORT listener per core; a connection is served
//! entirely on the core that accepted it (requests for shards owned elsewhere hop over the
//! mesh inside the runtime API, not here).

pub mod conn;
pub mod handlers;
pub mod tail;

use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;

use socket2::{Domain, Socket, Type};

use crate::runtime::core::current;

/// A bound (not listening) SO_REUSEPORT socket that holds the port while the cores bind
/// theirs; resolves `PORT=0` to a concrete port shared by every core.
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

fn reuseport_socket(port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(socket)
}

/// Reserve the HTTP port for this process. First a probe bind *without* SO_REUSEPORT:
/// it fails while any other socket holds the port, including another starcite whose
/// per-core listeners use SO_REUSEPORT (which would otherwise silently share the port
/// with us). Then the SO_REUSEPORT reservation that this process's cores join.
pub fn reserve_port(port: u16) -> Result<Reservation, String> {
    let probe = exclusive_probe(port).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("PORT={port}: the port is already in use by another process (one owner per port)")
        } else {
            format!("PORT={port}: cannot bind 0.0.0.0:{port}: {e}")
        }
    })?;
    let port = probe.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port()).unwrap_or(port);
    drop(probe);
    let socket = reuseport_socket(port).map_err(|e| format!("PORT={port}: cannot bind 0.0.0.0:{port}: {e}"))?;
    let bound = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .ok_or_else(|| format!("PORT={port}: cannot read the bound port"))?;
    Ok(Reservation { _socket: socket, port: bound })
}

/// Listen on `port` on this core and serve connections until the core starts draining.
pub fn start_listener(port: u16, max_connections: usize) -> Result<(), String> {
    let socket = reuseport_socket(port).map_err(|e| format!("PORT={port}: cannot bind on core: {e}"))?;
    socket.listen(1024).map_err(|e| format!("PORT={port}: cannot listen: {e}"))?;
    // SAFETY: the fd comes from a socket we own and hand over exactly once.
    let listener = unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) };
    glommio::spawn_local(async move {
        use futures::FutureExt;
        loop {
            let accepted = futures::select! {
                accepted = listener.accept().fuse() => accepted,
                // Graceful shutdown: stop accepting; dropping the listener closes it.
                _ = current().draining.wait().fuse() => return,
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let core = current();
            let open = core.metrics.counters.open_connections.get();
            if open as usize >= max_connections {
                core.metrics.counters.refused_connections.inc();
                glommio::spawn_local(conn::refuse(stream)).detach();
                continue;
            }
            core.metrics.counters.open_connections.inc();
            glommio::spawn_local(async move {
                conn::serve(stream).await;
                let core = current();
                core.metrics.counters.open_connections.dec();
            })
            .detach();
        }
    })
    .detach();
    Ok(())
}
