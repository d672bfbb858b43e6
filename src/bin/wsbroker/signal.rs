//! SIGINT/SIGTERM as a self-pipe: the handler only does `write(2)`, which is
//! async-signal-safe, and the main thread blocks reading the other end.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte,
        // and one byte already waiting is enough to wake the reader.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// Receives SIGINT and SIGTERM once installed.
pub struct Signals {
    read_fd: libc::c_int,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Only the write end is non-blocking: the handler must never block,
        // the reader wants to.
        // SAFETY: fds[1] is the descriptor pipe2 just opened.
        unsafe {
            let fl = libc::fcntl(fds[1], libc::F_GETFL);
            libc::fcntl(fds[1], libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        WRITE_FD.store(fds[1], Ordering::SeqCst);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is valid; the handler is an
            // extern "C" fn(c_int) as sa_sigaction expects without SA_SIGINFO.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Signals { read_fd: fds[0] })
    }

    /// Blocks until a signal arrives; returns its number.
    pub fn wait(&self) -> io::Result<i32> {
        let mut b = 0u8;
        loop {
            // SAFETY: reads one byte into `b`, which outlives the call.
            let n = unsafe { libc::read(self.read_fd, (&mut b as *mut u8).cast(), 1) };
            match n {
                1 => return Ok(i32::from(b)),
                0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "signal pipe closed")),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }
}
