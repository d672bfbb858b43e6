//! The WSChat listener over real sockets: every rule of PROTOCOLS.md §3, the
//! transcript, quit notifications, relayed JSON and the size limit.

mod common;

use common::*;
use tungstenite::Message;
use wsbroker::listeners::{wschat, ListenerConfig};

const INIT: &str = r#"{"type":"init","message":"Please identify to recieve messages."}"#;
const OK: &str = r#"{"type":"outcome","success":true,"message":"Identified successfully!","code":300}"#;

fn fail(message: &str, code: u16) -> String {
    format!(r#"{{"type":"outcome","success":false,"message":"{message}","code":{code}}}"#)
}

fn listener() -> wschat::WsChatListener {
    wschat::start(ListenerConfig::new(common_bind())).expect("start")
}

fn common_bind() -> std::net::SocketAddr {
    wsbroker::listeners::loopback(0)
}

/// A client past the init message.
fn client(l: &wschat::WsChatListener) -> Ws {
    let mut ws = connect(l.local_addr());
    assert_eq!(recv_text(&mut ws), INIT);
    ws
}

fn identified(l: &wschat::WsChatListener, name: &str) -> Ws {
    let mut ws = client(l);
    send(&mut ws, &format!(r#"{{"command":"identify","name":"{name}"}}"#));
    assert_eq!(recv_text(&mut ws), OK);
    ws
}

/// Proves nothing else is pending for `ws`: the answer to an unknown command
/// (or, unidentified, the identify prompt) must be the very next message.
fn sync(ws: &mut Ws, identified: bool) {
    send(ws, r#"{"command":"sync"}"#);
    let want = if identified {
        fail("Unknown command 'sync'!", 400)
    } else {
        fail("Please identify yourself!", 10)
    };
    assert_eq!(recv_text(ws), want);
}

#[test]
fn transcript_section_3() {
    let l = listener();
    let mut a = connect(l.local_addr());
    assert_eq!(recv_text(&mut a), INIT);
    send(&mut a, r#"{"command":"broadcast","message":"hi"}"#);
    assert_eq!(recv_text(&mut a), fail("Please identify yourself!", 10));
    send(&mut a, r#"{"command":"identify","name":"alice"}"#);
    assert_eq!(recv_text(&mut a), OK);
    let mut b = client(&l);
    send(&mut b, r#"{"command":"identify","name":"alice"}"#);
    assert_eq!(recv_text(&mut b), fail("Client with that name already exists!", 305));
    send(&mut b, r#"{"command":"identify","name":"bob"}"#);
    assert_eq!(recv_text(&mut b), OK);
    send(&mut a, r#"{"command":"message","to":"bob","message":{"pos":12.5}}"#);
    assert_eq!(
        recv_text(&mut b),
        r#"{"type":"message","from":"alice","message":{"pos":12.5}}"#
    );
    send(&mut a, r#"{"command":"message","to":"carol","message":1}"#);
    assert_eq!(
        recv_text(&mut a),
        fail("No client with that name is currently connected!", 404)
    );
    drop(b);
    assert_eq!(recv_text(&mut a), r#"{"type":"quit","who":"bob"}"#);
}

#[test]
fn rule_1_invalid_input_keeps_the_connection() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let want = fail("Invalid message: expected a JSON object!", 400);
    for bad in [
        "",
        "not json",
        "[1]",
        "\"s\"",
        "12",
        "null",
        "{",
        r#"{"a":1}x"#,
        "{\"a\":1,}",
    ] {
        send(&mut a, bad);
        assert_eq!(recv_text(&mut a), want, "input {bad:?}");
    }
    send_binary(&mut a, br#"{"command":"identify","name":"x"}"#);
    assert_eq!(recv_text(&mut a), want);
    sync(&mut a, true);
}

#[test]
fn rules_2_to_6_identify() {
    let l = listener();
    let mut a = client(&l);
    send(&mut a, r#"{"name":"alice"}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'command' field!", 400));
    send(&mut a, r#"{"command":"identify"}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'name' field!", 400));
    let long = "é".repeat(257);
    for bad in [
        "1".to_string(),
        "null".into(),
        "\"\"".into(),
        "[\"a\"]".into(),
        format!("\"{long}\""),
    ] {
        send(&mut a, &format!(r#"{{"command":"identify","name":{bad}}}"#));
        assert_eq!(recv_text(&mut a), fail("Invalid 'name' field!", 400), "name {bad}");
    }
    // 256 characters (512 bytes) is the longest name.
    let name = "é".repeat(256);
    send(&mut a, &format!(r#"{{"command":"identify","name":"{name}"}}"#));
    assert_eq!(recv_text(&mut a), OK);
    // Its own current name counts as taken.
    send(&mut a, &format!(r#"{{"command":"identify","name":"{name}"}}"#));
    assert_eq!(recv_text(&mut a), fail("Client with that name already exists!", 305));
    // Re-identifying releases the old name, without a quit.
    let mut w = identified(&l, "watcher");
    send(&mut a, r#"{"command":"identify","name":"alice"}"#);
    assert_eq!(recv_text(&mut a), OK);
    let mut b = identified(&l, &name);
    send(&mut b, r#"{"command":"message","to":"alice","message":"x"}"#);
    assert_eq!(
        recv_text(&mut a),
        format!(r#"{{"type":"message","from":"{name}","message":"x"}}"#)
    );
    sync(&mut w, true);
    assert_eq!(l.stats().names, 3);
}

#[test]
fn rule_7_identify_first() {
    let l = listener();
    let mut a = client(&l);
    for cmd in [
        r#"{"command":"broadcast","message":1}"#,
        r#"{"command":"message","to":"x","message":1}"#,
        r#"{"command":"bogus"}"#,
        r#"{"command":5}"#,
    ] {
        send(&mut a, cmd);
        assert_eq!(recv_text(&mut a), fail("Please identify yourself!", 10), "{cmd}");
    }
}

#[test]
fn rules_8_and_9_broadcast() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let mut b = identified(&l, "bob");
    let mut c = identified(&l, "carol");
    let mut anon = client(&l);
    send(&mut a, r#"{"command":"broadcast"}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'message' field!", 400));
    send(&mut a, r#"{"command":"broadcast","message":null}"#);
    let want = r#"{"type":"broadcast","from":"alice","message":null}"#;
    assert_eq!(recv_text(&mut b), want);
    assert_eq!(recv_text(&mut c), want);
    // Not to the sender, not to unidentified clients.
    sync(&mut a, true);
    sync(&mut anon, false);
}

#[test]
fn rules_10_to_12_private_messages() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let mut b = identified(&l, "bob");
    send(&mut a, r#"{"command":"message"}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'message' field!", 400));
    send(&mut a, r#"{"command":"message","to":"bob"}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'message' field!", 400));
    send(&mut a, r#"{"command":"message","message":1}"#);
    assert_eq!(recv_text(&mut a), fail("Missing 'to' field!", 400));
    for to in ["\"nobody\"", "1", "[\"bob\"]", "null"] {
        send(&mut a, &format!(r#"{{"command":"message","to":{to},"message":1}}"#));
        assert_eq!(
            recv_text(&mut a),
            fail("No client with that name is currently connected!", 404),
            "to {to}"
        );
    }
    send(&mut a, r#"{"command":"message","to":"bob","message":[true,"x"]}"#);
    assert_eq!(
        recv_text(&mut b),
        r#"{"type":"message","from":"alice","message":[true,"x"]}"#
    );
    sync(&mut a, true);
    send(&mut a, r#"{"command":"message","to":"alice","message":"me"}"#);
    assert_eq!(recv_text(&mut a), r#"{"type":"message","from":"alice","message":"me"}"#);
    sync(&mut b, true);
}

#[test]
fn rule_13_unknown_command() {
    let l = listener();
    let mut a = identified(&l, "alice");
    send(&mut a, r#"{"command":"X"}"#);
    assert_eq!(recv_text(&mut a), fail("Unknown command 'X'!", 400));
    send(&mut a, r#"{"command": {"a" : [1, 2.0E1]}}"#);
    assert_eq!(recv_text(&mut a), fail(r#"Unknown command '{\"a\":[1,2.0E1]}'!"#, 400));
}

#[test]
fn quit_reaches_other_identified_clients_only() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let b = identified(&l, "bob");
    let mut anon = client(&l);
    let quiet = client(&l);
    drop(quiet);
    drop(b);
    assert_eq!(recv_text(&mut a), r#"{"type":"quit","who":"bob"}"#);
    sync(&mut a, true);
    sync(&mut anon, false);
    // The name is free again.
    identified(&l, "bob");
}

#[test]
fn relayed_json_keeps_text_order_and_depth_128() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let mut b = identified(&l, "bob");
    send(
        &mut a,
        r#"{ "command":"message", "to":"bob", "message": {"z":1, "n":1E5, "u":"a\/b\u00e9€", "z":-0.10} }"#,
    );
    assert_eq!(
        recv_text(&mut b),
        r#"{"type":"message","from":"alice","message":{"z":-0.10,"n":1E5,"u":"a/bé€"}}"#
    );
    let nest = |levels: usize| format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
    send(&mut a, &format!(r#"{{"command":"broadcast","message":{}}}"#, nest(128)));
    assert_eq!(
        recv_text(&mut b),
        format!(r#"{{"type":"broadcast","from":"alice","message":{}}}"#, nest(128))
    );
    send(&mut a, &format!(r#"{{"command":"broadcast","message":{}}}"#, nest(129)));
    assert_eq!(recv_text(&mut a), fail("Invalid message: expected a JSON object!", 400));
    sync(&mut b, true);
}

#[test]
fn one_senders_messages_arrive_in_order() {
    let l = listener();
    let mut a = identified(&l, "alice");
    let mut b = identified(&l, "bob");
    for i in 0..500 {
        send(&mut a, &format!(r#"{{"command":"message","to":"bob","message":{i}}}"#));
    }
    for i in 0..500 {
        assert_eq!(
            recv_text(&mut b),
            format!(r#"{{"type":"message","from":"alice","message":{i}}}"#)
        );
    }
}

#[test]
fn size_limit_and_frame_rules() {
    let l = listener();
    let mut a = identified(&l, "alice");
    // Exactly 64 KiB is accepted (an outcome comes back) …
    let pad = 65536 - r#"{"command":"x","p":""}"#.len();
    let msg = format!(r#"{{"command":"x","p":"{}"}}"#, "a".repeat(pad));
    assert_eq!(msg.len(), 65536);
    send(&mut a, &msg);
    assert_eq!(recv_text(&mut a), fail("Unknown command 'x'!", 400));
    // … and one byte more closes with 1009.
    send(&mut a, &format!("{msg} "));
    assert_eq!(recv_close(&mut a).0, 1009);
    // Fragments are reassembled.
    let mut b = identified(&l, "bob");
    let mut first = raw_frame(0x1, br#"{"command":"#);
    first[0] &= 0x7f; // no FIN
    send_raw(&mut b, &first);
    send_raw(&mut b, &raw_frame(0x0, br#""frag"}"#));
    assert_eq!(recv_text(&mut b), fail("Unknown command 'frag'!", 400));
    // Text that is not UTF-8 closes with 1007.
    let mut c = identified(&l, "carol");
    send_raw(&mut c, &raw_frame(0x1, b"{\"command\":\"\xff\"}"));
    assert_eq!(recv_close(&mut c).0, 1007);
    // Pings get their payload back.
    let mut d = identified(&l, "dave");
    d.send(Message::Ping(b"p1".to_vec().into())).unwrap();
    match d.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"p1"),
        m => panic!("{m:?}"),
    }
}

#[test]
fn configurable_size_limit_handshake_rules_stats_and_shutdown() {
    let l = wschat::start(ListenerConfig::new(common_bind()).max_message_size(100)).unwrap();
    let addr = l.local_addr();
    assert!(http_status(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").contains(" 400 "));
    let v8 = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    assert!(http_status(addr, v8).contains(" 426 "));

    let mut b = identified(&l, "bob");
    let mut c = client(&l);
    send(&mut b, r#"{"command":"broadcast","message":1}"#);
    sync(&mut b, true);
    sync(&mut c, false);
    let st = l.stats();
    assert_eq!((st.sessions, st.names), (2, 1));
    assert!(st.messages_in >= 4 && st.messages_out >= 5, "{st:?}");
    let mut a = identified(&l, "alice");
    send(&mut a, &format!(r#"{{"command":"{}"}}"#, "x".repeat(100)));
    assert_eq!(recv_close(&mut a).0, 1009);
    l.shutdown();
    assert_eq!(recv_close(&mut b).0, 1001);
    assert_eq!(recv_close(&mut c).0, 1001);
}
