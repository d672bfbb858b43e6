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
