//! Helpers shared by the listener and C API tests: a tungstenite client with
//! bounded waits, raw frames, a webtalk admin client, and a check of
//! concurrent polls.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::{Message, WebSocket};

pub type Ws = WebSocket<TcpStream>;

/// Long enough for a loaded machine; a test that waits this long has failed.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn connect(addr: SocketAddr) -> Ws {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/some/path?q=1"), tcp).expect("handshake");
    ws
}

pub fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).expect("send");
}

pub fn send_binary(ws: &mut Ws, data: &[u8]) {
    ws.send(Message::binary(data.to_vec())).expect("send");
}

/// The next data message (pings and pongs skipped).
pub fn recv(ws: &mut Ws) -> Message {
    loop {
        match ws.read() {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(m) => return m,
            Err(e) => panic!("read: {e}"),
        }
    }
}

pub fn recv_text(ws: &mut Ws) -> String {
    match recv(ws) {
        Message::Text(t) => t.as_str().to_owned(),
        m => panic!("expected text, got {m:?}"),
    }
}

/// Reads the server's close frame (a data message first fails the test),
/// answers it and waits for the end of the connection; returns the code and
/// reason.
pub fn recv_close(ws: &mut Ws) -> (u16, String) {
    let got = recv_close_frame(ws);
    // Reading on answers the close; the server then drops the connection.
    while ws.read().is_ok() {}
    got
}

fn recv_close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.as_str().to_owned()),
            Ok(Message::Close(None)) => return (0, String::new()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(m) => panic!("expected close, got {m:?}"),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Nothing arrives for `d` (only for the few checks that cannot be made with
/// a following request whose answer must come first).
pub fn expect_silence(ws: &mut Ws, d: Duration) {
    ws.get_mut().set_read_timeout(Some(d)).unwrap();
    match ws.read() {
        Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    ws.get_mut().set_read_timeout(Some(WAIT)).unwrap();
}

/// A masked client frame with any opcode and payload (for input tungstenite
/// will not produce, such as text that is not UTF-8).
pub fn raw_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

pub fn send_raw(ws: &mut Ws, bytes: &[u8]) {
    ws.get_mut().write_all(bytes).expect("raw write");
}

/// The HTTP status line the server answers a raw request with.
pub fn http_status(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// A client of the webtalk admin protocol.
pub struct Admin {
    pub stream: TcpStream,
}

impl Admin {
    pub fn connect(addr: SocketAddr) -> Admin {
        let stream = TcpStream::connect(addr).expect("admin connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Admin { stream }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("admin write");
    }

    /// One framed reply (`None` at end of stream), header included.
    pub fn read_reply(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 5];
        if !read_full(&mut self.stream, &mut header) {
            return None;
        }
        let len: usize = std::str::from_utf8(&header).ok()?.parse().expect("reply header");
        let mut frame = header.to_vec();
        frame.resize(5 + len, 0);
        assert!(read_full(&mut self.stream, &mut frame[5..]), "reply cut short");
        Some(frame)
    }

    /// Sends one body framed with its byte length and returns the reply.
    pub fn cmd(&mut self, body: &[u8]) -> Vec<u8> {
        self.write(&frame(body));
        self.read_reply().expect("a reply")
    }

    /// Same, as text for readable assertions.
    pub fn cmd_text(&mut self, body: &str) -> String {
        String::from_utf8(self.cmd(body.as_bytes())).expect("UTF-8 reply")
    }

    /// True when the server closed the connection (end of stream or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = format!("{:05}", body.len()).into_bytes();
    f.extend_from_slice(body);
    f
}

/// Fills `buf`; false at end of stream before the first byte.
fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return false,
            Ok(0) => panic!("end of stream inside a reply"),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if got == 0 && e.kind() == ErrorKind::ConnectionReset => return false,
            Err(e) => panic!("admin read: {e}"),
        }
    }
    true
}

/// A small deterministic generator, so a failing random test can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One `poll(timeout_ms) -> (result, event kind, time taken)` waits long on
/// another thread; a second poll must time out after its own timeout (and
/// one of 0 at once), and the first must still get the event `send` causes.
pub fn check_polls_keep_their_own_timeouts(
    poll: impl Fn(i32) -> (wsbroker::ffi::wsb_result, u32, Duration) + Sync,
    send: impl FnOnce(),
    message: u32,
) {
    use wsbroker::ffi::wsb_result;
    std::thread::scope(|scope| {
        let long = scope.spawn(|| poll(8_000));
        std::thread::sleep(Duration::from_millis(200));
        let (r, _, took) = poll(300);
        assert_eq!(r, wsb_result::Timeout);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(2000),
            "{took:?}"
        );
        let (r, _, took) = poll(0);
        assert_eq!(r, wsb_result::Timeout);
        assert!(took < Duration::from_millis(200), "0 just checks: {took:?}");
        send();
        let (r, kind, took) = long.join().unwrap();
        assert_eq!((r, kind), (wsb_result::Ok, message));
        assert!(took < Duration::from_secs(5), "{took:?}");
    });
}
