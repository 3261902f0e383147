//! One authenticated cluster connection, over any byte stream (glommio TCP in the node,
//! anything in tests): both sides run the handshake of [`super::handshake`] within
//! `CLUSTER_HANDSHAKE_TIMEOUT_MS` and get a connection ready for frames (then usually
//! handed to [`super::peer`]).
//!
//! Invariants:
//! - nothing a peer sends is handed on before its Proof verified; a failed handshake is
//!   returned as the reason and the caller drops (closes) the connection and counts it;
//! - reads are bounded: a peer can make us hold at most one maximal frame plus one read
//!   buffer (`wire::Decoder`), and a peer that stalls the handshake is cut off by time.

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handshake::{Acceptor, ClusterKey, Dialer, HandshakeError, Peer, Shape};
use super::wire::{self, Decoder, Frame, WireError};
use crate::limits::{CLUSTER_HANDSHAKE_TIMEOUT_MS, CLUSTER_READ_BYTES};

/// Frame kinds of the handshake (the transport's own kinds start at 16).
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const CHALLENGE: u8 = 2;
    pub const PROOF: u8 = 3;
}

/// Why a cluster connection ended or was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("expected handshake frame kind {expected}, got {got}")]
    UnexpectedKind { expected: u8, got: u8 },
    #[error("the peer did not finish the handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("the peer closed the connection")]
    Closed,
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// Whether the peer failed to authenticate (counted as a rejected peer), as opposed to
    /// the connection simply ending.
    pub fn is_rejection(&self) -> bool {
        !matches!(self, SessionError::Closed | SessionError::Io(_))
    }
}

/// A stream with its frame decoder.
pub struct Framed<S> {
    stream: S,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    pub fn new(stream: S) -> Self {
        Framed { stream, decoder: Decoder::default(), buf: vec![0; CLUSTER_READ_BYTES] }
    }

    /// The next frame; `SessionError::Closed` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Frame, SessionError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(frame);
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(SessionError::Closed);
            }
            self.decoder.push(&self.buf[..n]);
        }
    }

    pub async fn write_frame(&mut self, kind: u8, body: &[u8]) -> Result<(), SessionError> {
        let mut out = Vec::with_capacity(wire::FRAME_HEADER_BYTES + 1 + body.len());
        wire::encode(&mut out, kind, body);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    async fn expect(&mut self, expected: u8) -> Result<Vec<u8>, SessionError> {
        let frame = self.read_frame().await?;
        if frame.kind != expected {
            return Err(SessionError::UnexpectedKind { expected, got: frame.kind });
        }
        Ok(frame.body)
    }

    /// The stream and the bytes already read from it but not yet returned as frames.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.stream, self.decoder.into_buffered())
    }
}

async fn within<T>(f: impl std::future::Future<Output = Result<T, SessionError>>) -> Result<T, SessionError> {
    use futures::FutureExt;
    let limit = Duration::from_millis(CLUSTER_HANDSHAKE_TIMEOUT_MS);
    futures::select! {
        r = f.fuse() => r,
        _ = glommio::timer::sleep(limit).fuse() => Err(SessionError::HandshakeTimeout(limit)),
    }
}

/// Accept side: authenticate the dialer within `CLUSTER_HANDSHAKE_TIMEOUT_MS`; nothing it
/// sent is handed on before its proof verified. Returns the framed connection and who it is.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    key: ClusterKey,
    me: &Peer,
    shape: impl Into<Shape>,
) -> Result<(Framed<S>, Peer), SessionError> {
    let mut framed = Framed::new(stream);
    let shape = shape.into();
    let peer = within(async {
        let mut acceptor = Acceptor::new(key, me, shape);
        let hello = framed.expect(kind::HELLO).await?;
        let challenge = acceptor.on_hello(&hello)?;
        framed.write_frame(kind::CHALLENGE, &challenge).await?;
        let proof = framed.expect(kind::PROOF).await?;
        Ok(acceptor.on_proof(&proof)?)
    })
    .await?;
    Ok((framed, peer))
}

/// Dial side: authenticate over `stream` (the acceptor must prove the secret too) and
/// return the framed connection and who answered.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    key: ClusterKey,
    me: &Peer,
    shape: impl Into<Shape>,
) -> Result<(Framed<S>, Peer), SessionError> {
    let mut framed = Framed::new(stream);
    let shape = shape.into();
    let peer = within(async {
        let (dialer, hello) = Dialer::start(key, me, shape);
        framed.write_frame(kind::HELLO, &hello).await?;
        let challenge = framed.expect(kind::CHALLENGE).await?;
        let (proof, peer) = dialer.on_challenge(&challenge)?;
        framed.write_frame(kind::PROOF, &proof).await?;
        Ok(peer)
    })
    .await?;
    Ok((framed, peer))
}
