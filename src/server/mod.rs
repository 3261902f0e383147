//! The HTTP/1.1 front: one SO_REUSEPORT listener per core; a connection is served
//! entirely on the core that accepted it (requests for shards owned elsewhere hop over the
//! mesh inside the runtime API, not here).

pub mod conn;
pub mod handlers;
pub mod tail;

use crate::runtime::core::current;

/// Listen on `port` on this core and serve connections until the core starts draining.
pub fn start_listener(port: u16, max_connections: usize) -> Result<(), String> {
    let listener = crate::listen::listen_on_core("PORT", port)?;
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
