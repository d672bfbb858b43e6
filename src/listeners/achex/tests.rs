use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::Message;

use super::*;

type Ws = tungstenite::WebSocket<TcpStream>;

fn listener() -> AchexListener {
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    AchexListener::start(AchexListener::engine_config(bind), AchexConfig::default()).unwrap()
}

fn connect(l: &AchexListener) -> Ws {
    let addr = l.local_addr();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).unwrap();
    ws
}

fn recv_text(ws: &mut Ws) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn send(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).unwrap();
}

#[test]
fn sid_login_and_relay_between_two_clients() {
    let l = listener();
    let mut a = connect(&l);
    assert_eq!(recv_text(&mut a), r#"{"SID":1}"#);
    let mut b = connect(&l);
    assert_eq!(recv_text(&mut b), r#"{"SID":2}"#);
    send(&mut a, r#"{"setID":"alex","passwd":"free"}"#);
    assert_eq!(recv_text(&mut a), r#"{"auth":"ok"}"#);
    send(&mut b, r#"{"auth":"bob"}"#);
    assert_eq!(recv_text(&mut b), r#"{"auth":"OK","SID":2}"#);
    for i in 0..50 {
        send(&mut a, &format!(r#"{{"to":"bob","n":{i}}}"#));
    }
    for i in 0..50 {
        assert_eq!(
            recv_text(&mut b),
            format!(r#"{{"to":"bob","n":{i},"FROM":"alex","sID":1}}"#)
        );
    }
    let s = l.status(10);
    assert_eq!(s.stats.sessions, 2);
    assert_eq!(s.stats.users, 2);
    assert_eq!(s.names.len(), 2);
    assert_eq!(l.engine_stats().connections_open, 2);
}

#[test]
fn oversized_message_closes_with_1009() {
    let l = listener();
    let mut a = connect(&l);
    recv_text(&mut a);
    let big = "x".repeat(DIALECT_MAX_MESSAGE + 1);
    a.send(Message::text(big)).unwrap();
    loop {
        match a.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 1009);
                break;
            }
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn in_process_service_answers_from_its_sink() {
    let l = Arc::new(listener());
    let (tx, rx) = mpsc::channel::<String>();
    let weak = Arc::downgrade(&l);
    l.set_host_sink(Some(Box::new(move |item| {
        if let HostItem::Message {
            service,
            from_sid,
            json,
            ..
        } = item
        {
            let _ = tx.send(String::from_utf8_lossy(&json).into_owned());
            // Answering from inside the sink must not deadlock.
            if let Some(l) = weak.upgrade() {
                let _ = l.service_send(service, &HostTarget::Session(from_sid), br#"{"reply":true}"#);
            }
        }
    })));
    let svc = l.register_service("echo-svc").unwrap();
    let mut a = connect(&l);
    recv_text(&mut a);
    send(&mut a, r#"{"setID":"alex"}"#);
    assert_eq!(recv_text(&mut a), r#"{"auth":"ok"}"#);
    send(&mut a, r#"{"to":"echo-svc","q":1}"#);
    assert_eq!(
        recv_text(&mut a),
        format!(r#"{{"reply":true,"FROM":"echo-svc","sID":{}}}"#, svc.sid())
    );
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        r#"{"to":"echo-svc","q":1,"FROM":"alex","sID":2}"#
    );
    assert_eq!(l.stats().users, 2);
    l.unregister_service(svc).unwrap();
    assert_eq!(l.stats().users, 1);
    send(&mut a, r#"{"to":"echo-svc"}"#);
    assert_eq!(recv_text(&mut a), r#"{"error":"no such user: echo-svc"}"#);
}

#[test]
fn events_reach_the_sink_in_order() {
    let l = listener();
    let (tx, rx) = mpsc::channel();
    l.set_events(true);
    l.set_host_sink(Some(Box::new(move |item| {
        let _ = tx.send(item);
    })));
    let mut a = connect(&l);
    recv_text(&mut a);
    send(&mut a, r#"{"setID":"alex"}"#);
    recv_text(&mut a);
    send(&mut a, r#"{"joinHub":"T1"}"#);
    recv_text(&mut a);
    drop(a);
    let mut got = Vec::new();
    while got.len() < 4 {
        match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            HostItem::Event(e) => got.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    use crate::dialect::achex::AchexEvent as E;
    assert!(matches!(&got[0], E::Login { name, service: false, .. } if name == "alex"));
    assert!(matches!(&got[1], E::Join { kind: Membership::Hub, place, name, .. } if place == "T1" && name == "alex"));
    // The disconnect's leave still names who left.
    assert!(matches!(&got[2], E::Leave { kind: Membership::Hub, place, name, .. } if place == "T1" && name == "alex"));
    assert!(matches!(&got[3], E::Logout { name, .. } if name == "alex"));
}

#[test]
fn without_a_sink_nothing_is_queued_for_the_host() {
    let l = listener();
    // No sink: a service could never receive, so it cannot be registered,
    // and events are not recorded even when asked for.
    assert_eq!(l.register_service("svc").unwrap_err(), HostError::NoReceiver);
    l.set_events(true);
    let mut a = connect(&l);
    recv_text(&mut a);
    send(&mut a, r#"{"setID":"alex"}"#);
    assert_eq!(recv_text(&mut a), r#"{"auth":"ok"}"#);
    send(&mut a, r#"{"joinHub":"T1"}"#);
    assert_eq!(recv_text(&mut a), r#"{"joinHub":"OK"}"#);
    assert_eq!(l.inspect(|d| d.pending_host_items()), 0);

    // A service registered while a sink was set, then the sink removed:
    // messages to it are refused, not queued.
    l.set_host_sink(Some(Box::new(|_| {})));
    let svc = l.register_service("svc").unwrap();
    assert_eq!(l.service_join(svc, Membership::Hub, "T1"), Ok(true));
    l.set_host_sink(None);
    let big = "x".repeat(60_000);
    for _ in 0..50 {
        send(&mut a, &format!(r#"{{"to":"svc","m":"{big}"}}"#));
        assert_eq!(recv_text(&mut a), r#"{"error":"no such user: svc"}"#);
        send(&mut a, &format!(r#"{{"toS":{},"m":1}}"#, svc.sid()));
        assert_eq!(
            recv_text(&mut a),
            format!(r#"{{"error":"no such session: {}"}}"#, svc.sid())
        );
        send(&mut a, &format!(r#"{{"toH":"T1","m":"{big}"}}"#));
    }
    send(&mut a, r#"{"serverstat":true}"#);
    assert!(recv_text(&mut a).starts_with(r#"{"serverstat":"#));
    assert_eq!(l.inspect(|d| d.pending_host_items()), 0);
}

#[test]
fn shutdown_sends_1001() {
    let l = listener();
    let mut a = connect(&l);
    recv_text(&mut a);
    let t = std::thread::spawn(move || loop {
        match a.read() {
            Ok(Message::Close(f)) => return f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    });
    l.shutdown();
    assert_eq!(t.join().unwrap(), Some(1001));
    // A second shutdown is harmless.
    l.shutdown();
}
