//! WebSocket tail (RFC 6455 framing by tungstenite): one event per text frame, or a JSON
//! array of up to `batch_size` events per frame. Inbound data frames are ignored, pings
//! are answered by tungstenite, a close is answered and ends the tail.

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use openraft::AsyncRuntime;

use super::{count_sent, fetch, json_array, TailPlan};
use crate::limits::{WS_INBOUND_MESSAGE_BYTES_MAX, WS_READ_BUFFER_BYTES};
use crate::raft::runtime::GlommioRuntime;
use crate::runtime::api;
use crate::runtime::core::current;

pub async fn run(mut stream: glommio::net::TcpStream, plan: &TailPlan, first: Vec<Arc<str>>, handshake: Vec<u8>, leftover: Vec<u8>) {
    if stream.write_all(&handshake).await.is_err() {
        return;
    }
    // Small, bounded buffers: a tail only writes events (written through, no extra write
    // buffer) and reads control frames.
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(WS_INBOUND_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(WS_INBOUND_MESSAGE_BYTES_MAX));
    let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    let (mut sender, mut receiver) = ws.split();
    // Inbound: drive tungstenite's reader (pongs, close replies) until the client leaves.
    // A protocol violation by the client ends the tail with the RFC 6455 §7.4.1 code that
    // names it (1002 protocol error, 1007 invalid UTF-8 in a text frame, 1009 too big),
    // sent as a close frame before the connection closes.
    let (closed_tx, mut closed_rx) = futures::channel::oneshot::channel::<Option<(CloseCode, String)>>();
    let reader = glommio::spawn_local(async move {
        // After a close frame, the next read flushes tungstenite's queued close reply and
        // then ends the stream, so keep reading until it does.
        let violation = loop {
            match receiver.next().await {
                Some(Ok(_)) => {}
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_))) => break None,
                Some(Err(e)) => break Some(violation_close(&e)),
            }
        };
        let _ = closed_tx.send(violation);
    });
    let idle = Duration::from_millis(current().config.tail_idle_timeout_ms);
    let subscription = api::subscribe(&plan.session).await;
    let mut cursor = plan.cursor;
    let mut prefetched = Some(first);
    let close_reason = 'pump: loop {
        let events = match prefetched.take() {
            Some(events) => events,
            None => match fetch(&plan.session, cursor).await {
                Ok(events) => events,
                Err(e) => break Some((CloseCode::Error, e.message)),
            },
        };
        if events.is_empty() {
            futures::select! {
                _ = subscription.signal.wait_beyond(cursor).fuse() => continue,
                violation = (&mut closed_rx).fuse() => break violation.ok().flatten(),
                _ = current().draining.wait().fuse() => break Some(going_away()),
            }
        }
        for group in events.chunks(plan.batch_size) {
            let text = if plan.batch_size == 1 { group[0].to_string() } else { json_array(group) };
            match GlommioRuntime::timeout(idle, sender.send(Message::text(text))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break 'pump None,
                Err(_) => break 'pump Some((CloseCode::Policy, "client did not read within the tail idle timeout".to_string())),
            }
            cursor += group.len() as u64;
            count_sent(group.len());
            if let Ok(Some(violation)) = closed_rx.try_recv() {
                break 'pump violation;
            }
            if current().draining.is_set() {
                break 'pump Some(going_away());
            }
        }
    };
    if let Some((code, reason)) = close_reason {
        let frame = CloseFrame { code, reason: reason.chars().take(120).collect::<String>().into() };
        let _ = GlommioRuntime::timeout(Duration::from_secs(1), sender.close(Some(frame))).await;
    }
    drop(subscription);
    drop(sender);
    reader.cancel().await;
}

/// The close code and reason for a client's protocol violation (RFC 6455 §7.4.1).
fn violation_close(e: &WsError) -> (CloseCode, String) {
    let code = match e {
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Capacity(_) => CloseCode::Size,
        _ => CloseCode::Protocol,
    };
    (code, format!("WebSocket protocol violation: {e}"))
}

/// Graceful shutdown ends a tail with 1001 (RFC 6455 §7.4.1: "going away"); the client
/// resumes from its cursor on another node or after the restart.
fn going_away() -> (CloseCode, String) {
    (CloseCode::Away, "server shutting down".to_string())
}
