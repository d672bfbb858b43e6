//! Reading and writing a connection's socket, in the clear or through TLS.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;

use super::out::OutBuf;

pub(crate) fn recv(fd: RawFd, buf: *mut u8, len: usize) -> io::Result<usize> {
    loop {
        // SAFETY: the caller passes a pointer to at least `len` writable bytes.
        let r = unsafe { libc::recv(fd, buf as *mut libc::c_void, len, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A TLS failure: rustls's error (which decides the result code) and, for
/// a certificate this end rejected, the verifier's sentence naming it.
#[derive(Debug)]
struct TlsFailure {
    error: rustls::Error,
    detail: Option<String>,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => f.write_str(d),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for TlsFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Wraps a TLS failure so its rustls error survives for reporting, with the
/// description of the certificate the verifier rejected, if it did.
fn tls_error(error: rustls::Error) -> io::Error {
    let detail = match error {
        rustls::Error::InvalidCertificate(_) => crate::tls::take_rejection(),
        _ => None,
    };
    io::Error::new(io::ErrorKind::InvalidData, TlsFailure { error, detail })
}

/// The rustls error inside an I/O error made by this module, if any.
pub(crate) fn as_tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|x| x.downcast_ref::<TlsFailure>())
        .map(|f| &f.error)
}

fn write_tls_pending(tls: &mut rustls::Connection, sock: &mut TcpStream) -> io::Result<usize> {
    let mut total = 0;
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Reads decrypted bytes. `Ok(0)` is the end of the stream; `WouldBlock`
/// means nothing more for now.
pub(crate) fn tls_recv(tls: &mut rustls::Connection, sock: &mut TcpStream, out: &mut [u8]) -> io::Result<usize> {
    loop {
        match tls.reader().read(out) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(sock) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                if tls.is_handshaking() {
                    // Nothing stale may be taken for this connection's failure.
                    let _ = crate::tls::take_rejection();
                }
                if let Err(e) = tls.process_new_packets() {
                    // Send the alert that tells the peer why, then fail.
                    let _ = write_tls_pending(tls, sock);
                    return Err(tls_error(e));
                }
                write_tls_pending(tls, sock)?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes the outbound buffer: with `writev` in the clear, or through the TLS
/// session (which holds a bounded amount of plaintext).
pub(crate) fn flush(tls: Option<&mut rustls::Connection>, sock: &mut TcpStream, out: &mut OutBuf) -> io::Result<usize> {
    match tls {
        None => out.flush(sock.as_raw_fd()),
        Some(tls) => {
            let mut total = 0;
            loop {
                let before = out.len();
                out.write_with(|b| tls.writer().write(b))?;
                let n = write_tls_pending(tls, sock)?;
                total += n;
                if out.is_empty() || (n == 0 && out.len() == before) || tls.wants_write() {
                    break;
                }
            }
            Ok(total)
        }
    }
}

/// Bytes a TLS session still holds for the socket.
pub(crate) fn tls_pending(tls: &rustls::Connection) -> bool {
    tls.wants_write()
}
