//! A timerfd registered with mio, so the event loop can wake at µs precision (epoll's own timeout has ms granularity) for open-loop send schedules.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

pub struct Timer {
    fd: RawFd,
}

impl Timer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned by the returned Timer.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        Ok(Timer { fd })
    }

    /// Fire once after `after` (at least 1 µs; zero would disarm).
    pub fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec { tv_sec: after.as_secs() as libc::time_t, tv_nsec: after.subsec_nanos() as libc::c_long },
        };
        // SAFETY: valid fd and spec.
        unsafe {
            libc::timerfd_settime(self.fd, 0, &spec, std::ptr::null_mut());
        }
    }

    /// Consume the expiry count so the next expiry wakes the loop again.
    pub fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local buffer; EAGAIN is fine.
        unsafe {
            libc::read(self.fd, buf.as_mut_ptr() as *mut libc::c_void, 8);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe {
            libc::close(self.fd);
        }
    }
}
