//! One non-blocking client connection on mio: a write buffer, a read buffer, and the FIFO of requests in flight, matched in order to the replies (HTTP/1.1 or RESP pipelining).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::{http, resp};

/// Read-buffer bound: a reply larger than this is a protocol error.
const RBUF_MAX: usize = http::BODY_BYTES_MAX + http::HEAD_BYTES_MAX;

/// A wire protocol whose replies arrive in request order.
pub trait Codec {
    type Reply<'a>;
    fn parse(buf: &[u8]) -> Result<Option<(Self::Reply<'_>, usize)>, String>;
    /// The reply says the connection is closed after it.
    fn closes(reply: &Self::Reply<'_>) -> bool;
}

pub struct HttpCodec;

impl Codec for HttpCodec {
    type Reply<'a> = http::Response<'a>;
    fn parse(buf: &[u8]) -> Result<Option<(http::Response<'_>, usize)>, String> {
        http::parse_response(buf).map_err(|e| e.to_string())
    }
    fn closes(reply: &http::Response<'_>) -> bool {
        reply.close
    }
}

pub struct RespCodec;

impl Codec for RespCodec {
    type Reply<'a> = resp::Reply<'a>;
    fn parse(buf: &[u8]) -> Result<Option<(resp::Reply<'_>, usize)>, String> {
        resp::parse_reply(buf).map_err(|e| e.to_string())
    }
    fn closes(_: &resp::Reply<'_>) -> bool {
        false
    }
}

/// A request in flight: when it was (scheduled to be) sent, and the caller's data.
pub struct Pending<M> {
    pub start: Instant,
    pub meta: M,
}

/// Why a connection ended: a short kind for error counts and a detail for the log.
#[derive(Debug, Clone)]
pub struct ConnError {
    pub kind: &'static str,
    pub detail: String,
}

impl ConnError {
    fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        ConnError { kind, detail: detail.into() }
    }
}

/// Open a TCP connection to a loopback address (blocking connect, then non-blocking use).
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(TcpStream::from_std(s))
}

pub struct Conn<M> {
    stream: Option<TcpStream>,
    token: Token,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    pub inflight: VecDeque<Pending<M>>,
}

impl<M> Conn<M> {
    pub fn connect(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<Self> {
        let mut c = Conn {
            stream: None,
            token,
            wbuf: Vec::with_capacity(16 * 1024),
            wpos: 0,
            rbuf: Vec::with_capacity(64 * 1024),
            inflight: VecDeque::new(),
        };
        c.reconnect(addr, registry)?;
        Ok(c)
    }

    pub fn reconnect(&mut self, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        let mut s = connect(addr, Duration::from_secs(2))?;
        registry.register(&mut s, self.token, Interest::READABLE | Interest::WRITABLE)?;
        self.stream = Some(s);
        self.wbuf.clear();
        self.wpos = 0;
        self.rbuf.clear();
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// The write buffer: append a whole request, then [`Conn::push`] its pending entry.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    pub fn push(&mut self, start: Instant, meta: M) {
        self.inflight.push_back(Pending { start, meta });
    }

    pub fn has_output(&self) -> bool {
        self.wpos < self.wbuf.len()
    }

    /// Write as much as the socket takes.
    pub fn flush(&mut self) -> Result<(), ConnError> {
        let Some(s) = self.stream.as_mut() else { return Ok(()) };
        while self.wpos < self.wbuf.len() {
            match s.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(ConnError::new("conn_write_closed", "write returned 0")),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::new("conn_write_error", e.to_string())),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > 1 << 20 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// Read until the socket is empty, handing each complete reply (with the time its bytes
    /// were read) and its pending entry to `on`. An `Err` means the connection is done: the
    /// caller closes it and fails what is still in flight.
    pub fn read<C: Codec>(&mut self, scratch: &mut [u8], mut on: impl FnMut(Pending<M>, &C::Reply<'_>, Instant)) -> Result<(), ConnError> {
        loop {
            let Some(s) = self.stream.as_mut() else { return Ok(()) };
            let n = match s.read(scratch) {
                Ok(0) => {
                    return Err(ConnError::new("conn_closed_by_peer", format!("EOF with {} requests in flight", self.inflight.len())));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::new("conn_read_error", e.to_string())),
            };
            let now = Instant::now();
            if self.rbuf.len() + n > RBUF_MAX {
                return Err(ConnError::new("reply_too_large", format!("over {RBUF_MAX} bytes buffered")));
            }
            self.rbuf.extend_from_slice(&scratch[..n]);
            let mut pos = 0;
            let mut close = false;
            while pos < self.rbuf.len() {
                match C::parse(&self.rbuf[pos..]) {
                    Ok(Some((reply, used))) => {
                        pos += used;
                        let Some(p) = self.inflight.pop_front() else {
                            return Err(ConnError::new("unsolicited_reply", "a reply arrived with no request in flight"));
                        };
                        close = C::closes(&reply);
                        on(p, &reply, now);
                        if close {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(ConnError::new("protocol_error", e)),
                }
            }
            if pos == self.rbuf.len() {
                self.rbuf.clear();
            } else if pos > 0 {
                self.rbuf.drain(..pos);
            }
            if close {
                return Err(ConnError::new("conn_closed_by_server", "the server answered Connection: close"));
            }
            if n < scratch.len() {
                // A short read emptied the socket; with edge-triggered epoll, later bytes
                // raise a new event, so skip the read that would only say EAGAIN.
                return Ok(());
            }
        }
    }

    /// Close the socket and hand back what was in flight.
    pub fn close(&mut self, registry: &Registry) -> VecDeque<Pending<M>> {
        if let Some(mut s) = self.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.rbuf.clear();
        std::mem::take(&mut self.inflight)
    }
}
