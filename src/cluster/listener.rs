//! The accepting side of the cluster transport on one core: authenticate each connection
//! (nothing a peer sends is acted on before its handshake proof verified), then answer its
//! RPCs with the node's handler until it closes.
//!
//! A connection that fails the handshake (wrong secret, garbage, a replayed transcript, a
//! truncated or oversized frame, too slow) is closed and reported to `on_rejected` (the
//! node counts it in `starcite_cluster_handshake_rejections_total`); the listener keeps
//! serving everyone else. Memory per connection is bounded by the frame decoder (one
//! maximal frame plus one read buffer).

use std::future::Future;
use std::rc::Rc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::handshake::{ClusterKey, Peer, Shape};
use super::peer::serve;
use super::rpc::{Request, Response};
use super::session::{self, SessionError};

/// A future that resolves when the node leaves the cluster (a graceful shutdown).
pub type Closing = Rc<dyn Fn() -> LocalBoxFuture<'static, ()>>;

/// Accept cluster connections from `listener` on this core until `closing` resolves; then
/// stop accepting, and tell every open connection's dialer GOODBYE (it sends nothing more
/// there; what it sent before is still answered while the process lives).
pub fn start<H, F>(
    listener: glommio::net::TcpListener,
    me: Peer,
    key: ClusterKey,
    shape: Shape,
    handler: H,
    on_rejected: Rc<dyn Fn(&SessionError)>,
    closing: Closing,
) where
    H: Fn(u32, Request) -> F + Clone + 'static,
    F: Future<Output = Response> + 'static,
{
    glommio::spawn_local(async move {
        loop {
            let accepted = futures::select! {
                accepted = listener.accept().fuse() => accepted,
                _ = closing().fuse() => return,
            };
            let stream = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cluster accept failed: {e}");
                    glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (me, key, handler, on_rejected, closing) = (me.clone(), key.clone(), handler.clone(), on_rejected.clone(), closing.clone());
            glommio::spawn_local(async move {
                let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                match session::accept(stream, key, &me, shape).await {
                    Ok((framed, peer)) => {
                        tracing::debug!(peer = %peer.name, node_id = peer.node_id, %remote, "cluster peer connected");
                        let (stream, leftover) = framed.into_parts();
                        let why = serve(stream, leftover, handler, closing()).await;
                        tracing::debug!(peer = %peer.name, "cluster connection ended: {why}");
                    }
                    Err(e) => {
                        if e.is_rejection() {
                            tracing::warn!(%remote, "cluster peer refused: {e}");
                        }
                        on_rejected(&e);
                    }
                }
            })
            .detach();
        }
    })
    .detach();
}
