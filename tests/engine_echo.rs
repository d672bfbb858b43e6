//! The engine against tungstenite's own client: echo, sizes, close codes.

use std::net::TcpStream;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;
use wsbroker::{Config, Event, Server, ServerHandle};

fn echo_server(cfg: Config) -> Server {
    Server::start(cfg, |s: &ServerHandle, e: Event<'_>| {
        if let Event::Message { conn, data, text } = e {
            if data == b"/close" {
                s.close(conn, 4000, "bye").unwrap();
            } else {
                s.send(conn, data, text).unwrap();
            }
        }
    })
    .unwrap()
}

fn connect(s: &Server) -> tungstenite::WebSocket<TcpStream> {
    let addr = s.local_addr();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/echo"), tcp).unwrap();
    ws
}

#[test]
fn echoes_text_and_binary_of_every_length_form() {
    let s = echo_server(Config::default());
    let mut ws = connect(&s);
    for &n in &[0usize, 1, 125, 126, 65535, 65536, 4 << 20] {
        let text: String = "é".repeat(n / 2) + if n % 2 == 1 { "a" } else { "" };
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text));
        let bin: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::binary(bin));
    }
    ws.close(Some(CloseFrame {
        code: CloseCode::Library(4001),
        reason: "done".into(),
    }))
    .unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4001);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let st = s.handle().stats();
    assert_eq!(st.connections_total, 1);
    assert_eq!(st.messages_in, 14);
    assert_eq!(st.messages_out, 14);
}

#[test]
fn host_close_reaches_the_client() {
    let s = echo_server(Config::default());
    let mut ws = connect(&s);
    ws.send(Message::text("/close")).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4000);
            assert_eq!(f.reason.as_str(), "bye");
        }
        m => panic!("{m:?}"),
    }
}

#[test]
fn pings_keep_a_live_peer_and_the_idle_timeout_drops_a_dead_one() {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, i32, String)>();
    let cfg = Config {
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(700),
        ..Config::default()
    };
    let s = Server::start(cfg, move |_s: &ServerHandle, e: Event<'_>| {
        if let Event::Close {
            conn, status, reason, ..
        } = e
        {
            let _ = tx.send((conn, status, reason.to_owned()));
        }
    })
    .unwrap();
    // The live peer reads, so tungstenite answers every ping with a pong.
    let mut live = connect(&s);
    live.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // The dead peer completes the handshake and then never reads nor answers.
    let _dead = connect(&s);
    let t0 = std::time::Instant::now();
    let mut pings = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        match live.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("the live peer was dropped: {e}"),
        }
    }
    assert!(pings >= 3, "a ping every 200 ms of silence, got {pings}");
    let (_, status, reason) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the dead peer is dropped");
    assert_eq!((status, reason.as_str()), (-1, "idle timeout"));
    assert!(rx.try_recv().is_err(), "only the dead peer was dropped");
    assert_eq!(s.handle().stats().connections_open, 1);
}
