//! SSE tail: `id: <seq>`, `event: event`, `data: <event JSON>` per message, chunked on
//! HTTP/1.1, with a `:` comment heartbeat at least every 15 s. The client leaving is
//! noticed by a reader task that sees EOF.

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use openraft::AsyncRuntime;

use super::{count_sent, fetch, TailPlan};
use crate::http::response::{sse_comment, sse_event, write_sse_end, write_sse_frame, write_sse_head};
use crate::limits::SSE_HEARTBEAT_MS;
use crate::raft::runtime::GlommioRuntime;
use crate::runtime::api;
use crate::runtime::core::current;

pub async fn run(stream: glommio::net::TcpStream, plan: &TailPlan, first: Vec<Arc<str>>, version_minor: u8) {
    let (mut rd, mut wr) = stream.split();
    let mut head = Vec::new();
    write_sse_head(&mut head, version_minor);
    if wr.write_all(&head).await.is_err() {
        return;
    }
    let (closed_tx, mut closed_rx) = futures::channel::oneshot::channel::<()>();
    let reader = glommio::spawn_local(async move {
        let mut sink = [0u8; 1024];
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let idle = Duration::from_millis(current().config.tail_idle_timeout_ms);
    let subscription = api::subscribe(&plan.session).await;
    let mut cursor = plan.cursor;
    let mut out = Vec::new();
    // A heartbeat goes out after SSE_HEARTBEAT_MS without any write, however the waiting is
    // done (here, or in a remote replica's long poll inside `fetch`).
    let heartbeat_every = Duration::from_millis(SSE_HEARTBEAT_MS);
    let mut next_heartbeat = std::time::Instant::now() + heartbeat_every;
    let mut prefetched = Some(first);
    loop {
        let events = match prefetched.take() {
            Some(events) => events,
            // A read failing mid-stream ends the stream; the client resumes with
            // Last-Event-ID and gets the failure as its status (tail/mod.rs `prepare`).
            None => match fetch(&plan.session, cursor).await {
                Ok(events) => events,
                Err(_) => break,
            },
        };
        out.clear();
        if events.is_empty() {
            let due = next_heartbeat.saturating_duration_since(std::time::Instant::now());
            if !due.is_zero() {
                futures::select! {
                    _ = subscription.signal.wait_beyond(cursor).fuse() => continue,
                    _ = (&mut closed_rx).fuse() => break,
                    // Graceful shutdown: end the stream cleanly (the client resumes with
                    // Last-Event-ID).
                    _ = current().draining.wait().fuse() => break,
                    _ = glommio::timer::sleep(due).fuse() => {}
                }
            }
            let mut msg = Vec::new();
            sse_comment(&mut msg, "heartbeat");
            write_sse_frame(&mut out, version_minor, &msg);
        } else {
            let mut msg = Vec::new();
            for (i, e) in events.iter().enumerate() {
                msg.clear();
                sse_event(&mut msg, cursor + 1 + i as u64, e);
                write_sse_frame(&mut out, version_minor, &msg);
            }
        }
        match GlommioRuntime::timeout(idle, wr.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        next_heartbeat = std::time::Instant::now() + heartbeat_every;
        cursor += events.len() as u64;
        count_sent(events.len());
        if current().draining.is_set() {
            break;
        }
    }
    out.clear();
    write_sse_end(&mut out, version_minor);
    let _ = GlommioRuntime::timeout(Duration::from_secs(1), wr.write_all(&out)).await;
    drop(subscription);
    reader.cancel().await;
}
