//! Slow and stalled peers: backpressure, drain, and the hard limit (close
//! with 1008 "slow consumer", or refusal) keep memory bounded.

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsbroker::{Config, Event, OverflowPolicy, SendError, Sent, Server, ServerHandle};

fn server(policy: OverflowPolicy, events: mpsc::Sender<String>) -> Server {
    let cfg = Config {
        outbound_soft_limit: 64 << 10,
        outbound_hard_limit: 512 << 10,
        overflow: policy,
        ..Config::default()
    };
    Server::start(cfg, move |_s: &ServerHandle, e: Event<'_>| {
        let line = match e {
            Event::Open { conn, .. } => format!("open {conn}"),
            Event::Drain { conn } => format!("drain {conn}"),
            Event::Close {
                conn, status, reason, ..
            } => format!("close {conn} {status} {reason}"),
            _ => return,
        };
        let _ = events.send(line);
    })
    .unwrap()
}

/// A client that completes the handshake and then does not read.
fn stalled_client(s: &Server) -> TcpStream {
    let tcp = TcpStream::connect(s.local_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The handshake through tungstenite, then the raw socket is kept and not read.
    let (ws, _) = tungstenite::client(format!("ws://{}/", s.local_addr()), tcp).unwrap();
    ws.into_inner()
}

fn wait(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l.starts_with(prefix) {
                return l;
            }
        }
    }
    panic!("no {prefix:?} event");
}

#[test]
fn a_peer_that_never_reads_is_closed_with_1008_and_memory_stays_bounded() {
    let (tx, rx) = mpsc::channel();
    let s = server(OverflowPolicy::Close, tx);
    let _peer = stalled_client(&s);
    let conn: u64 = wait(&rx, "open").split(' ').nth(1).unwrap().parse().unwrap();
    let chunk = vec![7u8; 16 << 10];
    let mut backpressure = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        assert!(Instant::now() < deadline, "never hit the hard limit");
        match s.handle().send(conn, &chunk, false) {
            Ok(Sent::Queued) => {}
            Ok(Sent::Backpressure) => backpressure += 1,
            Err(e) => break e,
        }
        // Stay within what the engine has seen, so the socket and its buffers fill up.
        if let Some(b) = s.handle().buffered(conn) {
            assert!(b <= (512 << 10) + chunk.len() + 64, "buffer over the hard limit: {b}");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert_eq!(outcome, SendError::SlowConsumer);
    assert!(backpressure > 0, "backpressure was reported before the hard limit");
    assert_eq!(wait(&rx, "close"), format!("close {conn} 1008 slow consumer"));
    assert_eq!(s.handle().stats().slow_consumers_closed, 1);
    assert!(!s.handle().is_valid(conn));
}

#[test]
fn refuse_policy_keeps_the_connection_and_drain_follows_once_the_peer_reads() {
    let (tx, rx) = mpsc::channel();
    let s = server(OverflowPolicy::Refuse, tx);
    let mut peer = stalled_client(&s);
    let conn: u64 = wait(&rx, "open").split(' ').nth(1).unwrap().parse().unwrap();
    let chunk = vec![1u8; 16 << 10];
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "never refused");
        match s.handle().send(conn, &chunk, false) {
            Ok(_) => sent += 1,
            Err(SendError::WouldOverflow) => break,
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(s.handle().is_valid(conn), "refusing keeps the connection");
    // The peer now reads everything that was accepted: a drain event follows,
    // and every accepted message arrived whole.
    let want = sent * (chunk.len() + 4);
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while got < want {
        let n = peer.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got += n;
    }
    assert_eq!(got, want);
    wait(&rx, "drain");
    assert_eq!(s.handle().send(conn, b"again", true), Ok(Sent::Queued));
}
