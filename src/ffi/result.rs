//! Result codes. Values are explicit and append-only; a retired value stays
//! as a comment and is never reused.

use std::ffi::c_char;

/// The result of every fallible `wsb_` function. `WSB_RESULT_OK` is 0.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_result {
    /// Success.
    Ok = 0,
    /// A panic inside the library was caught at the boundary (a bug: please report it).
    Panic = 1,
    /// A required pointer argument was NULL.
    NullPointer = 2,
    /// An argument is out of range or malformed (see `wsb_last_error`).
    InvalidArgument = 3,
    /// No such connection (stale or never valid id), or an unknown handle (already freed).
    NotFound = 4,
    /// The connection is closing or closed; nothing was sent.
    Closed = 5,
    /// Queued, but the outbound buffer is above the soft limit: a DRAIN event follows.
    Backpressure = 6,
    /// Refused: the outbound buffer would pass its hard limit (overflow policy "refuse").
    WouldOverflow = 7,
    /// Text that is not valid UTF-8.
    InvalidUtf8 = 8,
    /// A payload over its limit (ping > 125 bytes, close reason > 123 bytes).
    TooBig = 9,
    /// The wait ended without an event.
    Timeout = 10,
    /// Not allowed from inside this object's own callback (e.g. freeing it).
    Reentrant = 11,
    /// The call does not fit the object's mode or state (e.g. polling a server in callback mode).
    InvalidState = 12,
    /// An operating-system I/O error (see `wsb_last_error`).
    Io = 13,
    /// The address is already in use.
    AddrInUse = 14,
    /// The output buffer is too small; the size needed was reported.
    BufferTooSmall = 15,
    /// The connection did not read fast enough and is being closed with 1008 (overflow policy "close").
    SlowConsumer = 16,
    /// The server or client is shutting down.
    ShutDown = 17,
    /// A wait was cut short by an interrupt call.
    Interrupted = 18,
    /// The host name did not resolve.
    ResolveFailed = 19,
    /// The server refused the TCP connection.
    ConnectionRefused = 20,
    /// No route to the server (or every address failed).
    Unreachable = 21,
    /// Connect, TLS or upgrade did not finish within the connect timeout.
    ConnectTimeout = 22,
    /// The server's TLS certificate was rejected (untrusted, expired, wrong
    /// name); `wsb_client_last_error` and the ERROR event say which and why.
    CertificateInvalid = 23,
    /// Another TLS failure (protocol error, alert, client certificate refused).
    TlsFailed = 24,
    /// The server did not upgrade to WebSocket (HTTP status, bad accept key, garbage).
    HandshakeFailed = 25,
    /// The HTTP proxy refused or failed the CONNECT.
    ProxyFailed = 26,
    /// The client is not connected (yet, or any more).
    NotConnected = 27,
}

impl wsb_result {
    pub(crate) fn text(self) -> &'static str {
        match self {
            wsb_result::Ok => "ok\0",
            wsb_result::Panic => "internal panic caught at the C boundary\0",
            wsb_result::NullPointer => "a required pointer was NULL\0",
            wsb_result::InvalidArgument => "invalid argument\0",
            wsb_result::NotFound => "not found (stale id or unknown handle)\0",
            wsb_result::Closed => "connection closed or closing\0",
            wsb_result::Backpressure => "queued; outbound buffer above the soft limit\0",
            wsb_result::WouldOverflow => "refused: outbound buffer would pass its hard limit\0",
            wsb_result::InvalidUtf8 => "text is not valid UTF-8\0",
            wsb_result::TooBig => "payload too big\0",
            wsb_result::Timeout => "timed out\0",
            wsb_result::Reentrant => "not allowed from inside this object's callback\0",
            wsb_result::InvalidState => "not allowed in this mode or state\0",
            wsb_result::Io => "I/O error\0",
            wsb_result::AddrInUse => "address already in use\0",
            wsb_result::BufferTooSmall => "buffer too small\0",
            wsb_result::SlowConsumer => "slow consumer: connection closed with 1008\0",
            wsb_result::ShutDown => "shutting down\0",
            wsb_result::Interrupted => "interrupted\0",
            wsb_result::ResolveFailed => "host name did not resolve\0",
            wsb_result::ConnectionRefused => "connection refused\0",
            wsb_result::Unreachable => "server unreachable\0",
            wsb_result::ConnectTimeout => "connect timed out\0",
            wsb_result::CertificateInvalid => "server certificate rejected\0",
            wsb_result::TlsFailed => "TLS handshake failed\0",
            wsb_result::HandshakeFailed => "WebSocket upgrade failed\0",
            wsb_result::ProxyFailed => "proxy CONNECT failed\0",
            wsb_result::NotConnected => "not connected\0",
        }
    }
}

impl From<crate::SendError> for wsb_result {
    fn from(e: crate::SendError) -> Self {
        use crate::SendError as E;
        match e {
            E::NotFound => wsb_result::NotFound,
            E::Closed => wsb_result::Closed,
            E::InvalidUtf8 => wsb_result::InvalidUtf8,
            E::TooBig => wsb_result::TooBig,
            E::WouldOverflow => wsb_result::WouldOverflow,
            E::SlowConsumer => wsb_result::SlowConsumer,
            E::ShutDown => wsb_result::ShutDown,
        }
    }
}

impl From<crate::engine::ConnectError> for wsb_result {
    fn from(e: crate::engine::ConnectError) -> Self {
        use crate::engine::ConnectError as E;
        match e {
            E::Resolve => wsb_result::ResolveFailed,
            E::Refused => wsb_result::ConnectionRefused,
            E::Unreachable => wsb_result::Unreachable,
            E::Timeout => wsb_result::ConnectTimeout,
            E::Certificate => wsb_result::CertificateInvalid,
            E::Tls => wsb_result::TlsFailed,
            E::Handshake => wsb_result::HandshakeFailed,
            E::Proxy => wsb_result::ProxyFailed,
            E::Io => wsb_result::Io,
        }
    }
}

impl From<Result<crate::Sent, crate::SendError>> for wsb_result {
    fn from(r: Result<crate::Sent, crate::SendError>) -> Self {
        match r {
            Ok(crate::Sent::Queued) => wsb_result::Ok,
            Ok(crate::Sent::Backpressure) => wsb_result::Backpressure,
            Err(e) => e.into(),
        }
    }
}

impl wsb_result {
    /// Every result code, in value order (`ffi::tests` checks it against the
    /// enum's declaration).
    pub(crate) const ALL: [wsb_result; 28] = [
        wsb_result::Ok,
        wsb_result::Panic,
        wsb_result::NullPointer,
        wsb_result::InvalidArgument,
        wsb_result::NotFound,
        wsb_result::Closed,
        wsb_result::Backpressure,
        wsb_result::WouldOverflow,
        wsb_result::InvalidUtf8,
        wsb_result::TooBig,
        wsb_result::Timeout,
        wsb_result::Reentrant,
        wsb_result::InvalidState,
        wsb_result::Io,
        wsb_result::AddrInUse,
        wsb_result::BufferTooSmall,
        wsb_result::SlowConsumer,
        wsb_result::ShutDown,
        wsb_result::Interrupted,
        wsb_result::ResolveFailed,
        wsb_result::ConnectionRefused,
        wsb_result::Unreachable,
        wsb_result::ConnectTimeout,
        wsb_result::CertificateInvalid,
        wsb_result::TlsFailed,
        wsb_result::HandshakeFailed,
        wsb_result::ProxyFailed,
        wsb_result::NotConnected,
    ];
}

/// A static, NUL-terminated description of a result code (never NULL; do not
/// free). Unknown values give "unknown result". Safe to call from any thread.
#[no_mangle]
pub extern "C" fn wsb_result_str(r: u32) -> *const c_char {
    super::guard(c"unknown result".as_ptr(), || {
        let s = wsb_result::ALL
            .iter()
            .find(|x| **x as u32 == r)
            .map(|x| x.text())
            .unwrap_or("unknown result\0");
        s.as_ptr() as *const c_char
    })
}
