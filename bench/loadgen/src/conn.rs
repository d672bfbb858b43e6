//! Client connections: non-blocking connect, HTTP upgrade, and the output
//! queue that replays pre-built frames without copying them.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::frame::{self, Event, Parser};

/// RFC 6455's sample key; its accept value is known, so no SHA-1 is needed to
/// check that the peer really speaks WebSocket.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MAX_RESPONSE: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Connecting,
    Handshaking,
    Open,
    /// Our close frame is queued or sent; waiting for the server's.
    Closing,
    Closed,
}

/// A replayable byte stream of identical frames, `frames` copies back to back,
/// so any run of up to `frames - 1` whole frames starting at any offset inside
/// a frame is one contiguous slice.
pub struct Pattern {
    pub bytes: Vec<u8>,
    pub flen: usize,
}

impl Pattern {
    pub fn new(one: &[u8], frames: usize) -> Pattern {
        let mut bytes = Vec::with_capacity(one.len() * (frames + 1));
        for _ in 0..frames + 1 {
            bytes.extend_from_slice(one);
        }
        Pattern { bytes, flen: one.len() }
    }
}

#[derive(Default)]
pub struct Out {
    /// Verbatim bytes (handshake, control frames, one-off data frames).
    buf: Vec<u8>,
    off: usize,
    /// Bytes still owed from the pattern, and where inside a frame we are.
    pub owed: usize,
    pat_pos: usize,
}

impl Out {
    /// Queues whole frames; they go out at the next frame boundary of the pattern.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.off == self.buf.len() {
            self.buf.clear();
            self.off = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn queue_frames(&mut self, pat: &Pattern, n: usize) {
        self.owed += n * pat.flen;
    }

    /// Whether a flush is due now: enough owed frames to be worth a write
    /// syscall, a pattern frame half-written, or control frames waiting.
    pub fn wants_flush(&self, pat: &Pattern, min_frames: usize) -> bool {
        self.owed >= min_frames * pat.flen || self.pat_pos != 0 || self.off < self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.off == self.buf.len() && self.owed == 0
    }
}

pub struct Conn {
    pub sock: TcpStream,
    pub state: State,
    pub parser: Parser,
    pub out: Out,
    resp: Vec<u8>,
    /// Frames that arrived in the same read as the upgrade response.
    pub early: Vec<u8>,
}

#[derive(Default, Debug)]
pub struct Failures {
    pub connect: u64,
    pub handshake: u64,
    pub timeout: u64,
    /// Open connections lost later (EOF, reset, close frame, protocol error).
    pub dropped: u64,
    pub first_error: Option<String>,
}

impl Failures {
    pub fn note(&mut self, what: String) {
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    pub fn total(&self) -> u64 {
        self.connect + self.handshake + self.timeout + self.dropped
    }
}

pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("URL must name an IP:port, got {hostport:?}"))?;
    // Load is only ever aimed at this machine.
    if !addr.ip().is_loopback() {
        return Err(format!("refusing non-loopback target {addr}"));
    }
    Ok(Target {
        addr,
        host: hostport.to_string(),
        path: path.to_string(),
    })
}

/// All connections of one scenario, on one poller. Tokens are indices.
pub struct Pool {
    pub poll: Poll,
    pub events: Events,
    pub conns: Vec<Conn>,
    pub fail: Failures,
    /// Stop reading a socket after a read that did not fill the buffer instead
    /// of reading again until WouldBlock. Safe on Linux's edge-triggered epoll
    /// (every segment that arrives later raises a new edge) and halves the read
    /// syscalls when a thousand sockets each get one small message; the cost is
    /// that a FIN arriving together with data goes unnoticed until the close.
    pub short_read_drains: bool,
    scratch: Vec<u8>,
}

pub enum ReadOutcome {
    Ok,
    Closed,
}

impl Pool {
    pub fn new() -> io::Result<Pool> {
        Ok(Pool {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            fail: Failures::default(),
            short_read_drains: false,
            scratch: vec![0u8; 256 * 1024],
        })
    }

    pub fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.state == State::Open).count()
    }

    /// Opens `n` connections with at most `max_pending` connects/handshakes in
    /// flight at once, so the server sees a steady trickle, not a flood.
    pub fn connect(&mut self, t: &Target, n: usize, max_pending: usize, deadline: Instant, label: &str) {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            t.path, t.host
        );
        let max_pending = max_pending.max(1);
        let mut started = 0usize;
        let mut pending = 0usize;
        let mut last_report = Instant::now();
        let first = self.conns.len();
        while (started < n || pending > 0) && Instant::now() < deadline {
            while pending < max_pending && started < n {
                started += 1;
                match TcpStream::connect(t.addr) {
                    Ok(mut sock) => {
                        let idx = self.conns.len();
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if let Err(e) = self.poll.registry().register(&mut sock, Token(idx), interest) {
                            self.fail.connect += 1;
                            self.fail.note(format!("register: {e}"));
                            continue;
                        }
                        self.conns.push(Conn {
                            sock,
                            state: State::Connecting,
                            parser: Parser::default(),
                            out: Out::default(),
                            resp: Vec::new(),
                            early: Vec::new(),
                        });
                        pending += 1;
                    }
                    Err(e) => {
                        self.fail.connect += 1;
                        self.fail.note(format!("connect: {e}"));
                    }
                }
            }
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.fail.note(format!("poll: {e}"));
                    break;
                }
            }
            let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
            for idx in ready {
                let Some(c) = self.conns.get_mut(idx) else {
                    continue;
                };
                let before = c.state;
                if before == State::Open || before == State::Closed {
                    continue;
                }
                match advance_handshake(c, &request, &mut self.scratch) {
                    Ok(()) => {}
                    Err(e) => {
                        if before == State::Connecting {
                            self.fail.connect += 1;
                        } else {
                            self.fail.handshake += 1;
                        }
                        self.fail.note(e);
                        c.state = State::Closed;
                    }
                }
                let after = c.state;
                if after == State::Open || after == State::Closed {
                    pending -= 1;
                }
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                eprintln!(
                    "{label}: {} open, {pending} pending, {} failed",
                    self.conns[first..].iter().filter(|c| c.state == State::Open).count(),
                    self.fail.total()
                );
            }
        }
        // Whatever is still connecting or upgrading at the deadline is a failure.
        for c in &mut self.conns[first..] {
            if c.state == State::Connecting || c.state == State::Handshaking {
                c.state = State::Closed;
                self.fail.timeout += 1;
            }
        }
        let not_started = (n - started) as u64;
        if not_started > 0 {
            self.fail.timeout += not_started;
            self.fail.note(format!("{not_started} connections never started"));
        }
        if self.fail.timeout > 0 {
            self.fail.note("connect/handshake timed out".to_string());
        }
    }

    /// Drains the socket through the frame parser, calling `on` per event.
    /// Returns Closed (and marks the connection) on EOF, error or close frame.
    pub fn read(&mut self, idx: usize, mut on: impl FnMut(&mut Out, Event<'_>)) -> ReadOutcome {
        let Some(c) = self.conns.get_mut(idx) else {
            return ReadOutcome::Closed;
        };
        if c.state != State::Open && c.state != State::Closing {
            return ReadOutcome::Closed;
        }
        let mut closed = false;
        let mut err: Option<String> = None;
        let Conn {
            sock,
            parser,
            out,
            early,
            ..
        } = c;
        let mut handle = |data: &[u8], closed: &mut bool| -> Result<(), String> {
            parser
                .feed(data, |ev| {
                    match ev {
                        Event::Ping(p) => {
                            let pong = frame::frame(frame::OP_PONG, p);
                            out.push(&pong);
                        }
                        Event::Close => *closed = true,
                        Event::Message { .. } => {}
                    }
                    on(out, ev)
                })
                .map_err(|e| format!("protocol: {e}"))
        };
        if !early.is_empty() {
            let data = std::mem::take(early);
            if let Err(e) = handle(&data, &mut closed) {
                err = Some(e);
            }
        }
        while err.is_none() && !closed {
            match sock.read(&mut self.scratch) {
                Ok(0) => {
                    closed = true;
                    err = Some("server closed the connection".to_string());
                }
                Ok(n) => {
                    if let Err(e) = handle(&self.scratch[..n], &mut closed) {
                        err = Some(e);
                    }
                    if self.short_read_drains && n < self.scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => err = Some(format!("read: {e}")),
            }
        }
        if closed || err.is_some() {
            let expected = c.state == State::Closing;
            c.state = State::Closed;
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
            if expected {
                return ReadOutcome::Closed;
            }
            self.fail.dropped += 1;
            self.fail
                .note(err.unwrap_or_else(|| "server sent a close frame".to_string()));
            return ReadOutcome::Closed;
        }
        ReadOutcome::Ok
    }

    /// Writes as much queued output as the socket takes.
    pub fn flush(&mut self, idx: usize, pat: Option<&Pattern>) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.state != State::Open && c.state != State::Closing {
            return;
        }
        if let Err(e) = flush_out(&mut c.sock, &mut c.out, pat) {
            if c.state == State::Closing {
                c.state = State::Closed;
                return;
            }
            c.state = State::Closed;
            self.fail.dropped += 1;
            self.fail.note(format!("write: {e}"));
        }
    }

    /// Closing handshake for every open connection, bounded by `wait`, so
    /// servers see an orderly close rather than a storm of resets.
    pub fn close_all(&mut self, pat: Option<&Pattern>, wait: Duration) {
        let close = frame::frame(frame::OP_CLOSE, &1000u16.to_be_bytes());
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.state != State::Open {
                continue;
            }
            // Finish only the pattern frame already started, then close.
            c.out.owed = match pat {
                Some(p) => c.out.owed.min((p.flen - c.out.pat_pos) % p.flen),
                None => 0,
            };
            c.out.push(&close);
            c.state = State::Closing;
            self.flush(i, pat);
        }
        let deadline = Instant::now() + wait;
        let mut ready = Vec::new();
        while self.conns.iter().any(|c| c.state == State::Closing) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Err(e) = self
                .poll
                .poll(&mut self.events, Some(left.min(Duration::from_millis(50))))
            {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            ready.clear();
            ready.extend(self.events.iter().map(|e| e.token().0));
            for &idx in &ready {
                self.read(idx, |_, _| {});
                self.flush(idx, pat);
            }
        }
    }
}

fn flush_out(sock: &mut TcpStream, out: &mut Out, pat: Option<&Pattern>) -> io::Result<()> {
    loop {
        let pending_buf = out.off < out.buf.len();
        // One-off frames may only start between pattern frames.
        let use_buf = pending_buf && (out.off > 0 || out.pat_pos == 0 || out.owed == 0);
        let slice: &[u8] = if use_buf {
            &out.buf[out.off..]
        } else if out.owed > 0 {
            let Some(p) = pat else {
                out.owed = 0;
                continue;
            };
            let end = (out.pat_pos + out.owed).min(p.bytes.len());
            &p.bytes[out.pat_pos..end]
        } else {
            return Ok(());
        };
        match sock.write(slice) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                if use_buf {
                    out.off += n;
                    if out.off == out.buf.len() {
                        out.buf.clear();
                        out.off = 0;
                    }
                } else if let Some(p) = pat {
                    out.owed -= n;
                    out.pat_pos = (out.pat_pos + n) % p.flen;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn advance_handshake(c: &mut Conn, request: &str, scratch: &mut [u8]) -> Result<(), String> {
    if c.state == State::Connecting {
        if let Ok(Some(e)) | Err(e) = c.sock.take_error() {
            return Err(format!("connect: {e}"));
        }
        match c.sock.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(format!("connect: {e}")),
        }
        // Latency numbers must not include Nagle delays.
        c.sock.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        c.state = State::Handshaking;
        c.out.push(request.as_bytes());
        flush_out(&mut c.sock, &mut c.out, None).map_err(|e| format!("send upgrade: {e}"))?;
    }
    if !c.out.is_empty() {
        flush_out(&mut c.sock, &mut c.out, None).map_err(|e| format!("send upgrade: {e}"))?;
    }
    loop {
        match c.sock.read(scratch) {
            Ok(0) => return Err("server closed during handshake".to_string()),
            Ok(n) => {
                c.resp.extend_from_slice(&scratch[..n]);
                if let Some(end) = find_header_end(&c.resp) {
                    check_response(&c.resp[..end])?;
                    c.early = c.resp[end..].to_vec();
                    c.resp = Vec::new();
                    c.state = State::Open;
                    return Ok(());
                }
                if c.resp.len() > MAX_RESPONSE {
                    return Err("upgrade response too large".to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("handshake read: {e}")),
        }
    }
}

fn find_header_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn check_response(head: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let accepted = lines.any(|l| {
        l.split_once(':')
            .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == WS_ACCEPT)
    });
    if !accepted {
        return Err("missing or wrong Sec-WebSocket-Accept".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_check() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_response(ok).is_ok());
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_response(bad).is_err());
        assert!(check_response(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
        assert_eq!(find_header_end(b"ab\r\n\r\nxyz"), Some(6));
    }

    #[test]
    fn urls() {
        assert!(parse_url("ws://127.0.0.1:80").is_ok());
        assert_eq!(parse_url("ws://127.0.0.1:80/x").map(|t| t.path).ok(), Some("/x".into()));
        assert!(parse_url("ws://10.0.0.1:80").is_err());
        assert!(parse_url("http://127.0.0.1:80").is_err());
    }
}
