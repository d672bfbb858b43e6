//! The broker's C API: login modes (open, table, host callback), in-process
//! services sending to names, sessions, groups and hubs, events, errors.

use std::ffi::{c_char, c_void, CStr};
use std::net::TcpStream;
use std::ptr::{null, null_mut};
use std::sync::Mutex;
use std::time::Duration;

use tungstenite::Message;
use wsbroker::ffi::broker::*;
use wsbroker::ffi::wsb_result;

type Ws = tungstenite::WebSocket<TcpStream>;

fn connect(port: u16) -> Ws {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ws = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).unwrap().0;
    let sid = text(&mut ws);
    assert!(sid.starts_with("{\"SID\":"), "{sid}");
    ws
}

fn text(ws: &mut Ws) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            m => panic!("{m:?}"),
        }
    }
}

fn call(ws: &mut Ws, msg: &str) -> String {
    ws.send(Message::text(msg)).unwrap();
    text(ws)
}

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn record(_: *mut c_void, broker: *mut wsb_broker, ev: *const wsb_broker_event) {
    let ev = &*ev;
    let s = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
    let line = match ev.kind {
        1 => {
            let data = std::str::from_utf8(std::slice::from_raw_parts(ev.data, ev.len)).unwrap();
            // Answer from inside the callback: allowed, and delivered in order.
            let reply = format!("{{\"reply_to\":{}}}", ev.sid);
            let r = wsb_broker_send_to_session(broker, ev.service, ev.sid, reply.as_ptr(), reply.len());
            assert_eq!(r, wsb_result::Ok);
            format!("msg {} {} {}", ev.sid, s(ev.name), data)
        }
        2 => format!("login {} {} {}", ev.sid, s(ev.name), ev.is_service),
        3 => format!("logout {} {}", ev.sid, s(ev.name)),
        4 => format!("join {} {} {} {}", ev.sid, s(ev.name), s(ev.place), ev.is_hub),
        5 => format!("leave {} {} {}", ev.sid, s(ev.place), ev.is_hub),
        k => format!("unknown {k}"),
    };
    EVENTS.lock().unwrap().push(line);
}

#[test]
fn services_send_everywhere_and_hear_everything() {
    let mut b = null_mut();
    unsafe {
        assert_eq!(
            wsb_broker_new(null(), Some(record), null_mut(), None, &mut b),
            wsb_result::Ok
        );
        assert_eq!(wsb_broker_set_events(b, true), wsb_result::Ok);
    }
    let port = unsafe { wsb_broker_port(b, wsb_listener::Achex as u32) };
    assert_ne!(port, 0);
    assert_eq!(
        unsafe { wsb_broker_port(b, wsb_listener::Wschat as u32) },
        0,
        "off by default"
    );
    let mut svc = 0u64;
    unsafe {
        assert_eq!(
            wsb_broker_register_service(b, c"svc".as_ptr(), &mut svc),
            wsb_result::Ok
        );
        let mut again = 0u64;
        assert_eq!(
            wsb_broker_register_service(b, c"svc".as_ptr(), &mut again),
            wsb_result::InvalidState
        );
    }
    let mut alice = connect(port);
    assert_eq!(
        call(&mut alice, r#"{"setID":"alice","passwd":"a"}"#),
        r#"{"auth":"ok"}"#
    );
    // To the service by name: it answers from its callback.
    assert_eq!(
        call(&mut alice, r#"{"to":"svc","x":1}"#),
        r#"{"reply_to":2,"FROM":"svc","sID":1}"#
    );
    unsafe {
        let hi = br#"{"hi":1}"#;
        assert_eq!(
            wsb_broker_send(
                b,
                svc,
                wsb_target::Name as u32,
                c"alice".as_ptr(),
                hi.as_ptr(),
                hi.len()
            ),
            wsb_result::Ok
        );
        assert_eq!(text(&mut alice), r#"{"hi":1,"FROM":"svc","sID":1}"#);
        assert_eq!(
            wsb_broker_send(
                b,
                svc,
                wsb_target::Name as u32,
                c"nobody".as_ptr(),
                hi.as_ptr(),
                hi.len()
            ),
            wsb_result::NotFound
        );
        assert_eq!(
            wsb_broker_send(b, svc, wsb_target::Name as u32, c"alice".as_ptr(), b"[1]".as_ptr(), 3),
            wsb_result::InvalidArgument
        );
        assert_eq!(
            wsb_broker_send(
                b,
                999,
                wsb_target::Name as u32,
                c"alice".as_ptr(),
                hi.as_ptr(),
                hi.len()
            ),
            wsb_result::NotFound
        );
        // Groups: alice registers, the service broadcasts.
        alice
            .send(Message::text(r#"{"cmd":"register_broadcast","bid":"room"}"#))
            .unwrap();
        assert_eq!(
            call(&mut alice, r#"{"echo":true}"#),
            r#"{"echo":true,"FROM":"alice","sID":2}"#
        );
        let g = br#"{"g":1}"#;
        assert_eq!(
            wsb_broker_send(b, svc, wsb_target::Group as u32, c"room".as_ptr(), g.as_ptr(), g.len()),
            wsb_result::Ok
        );
        assert_eq!(text(&mut alice), r#"{"g":1,"FROM":"svc","sID":1}"#);
        // Hubs: the service joins; alice's toH reaches it; its leave is announced.
        assert_eq!(wsb_broker_join(b, svc, true, c"T1".as_ptr()), wsb_result::Ok);
        assert_eq!(call(&mut alice, r#"{"joinHub":"T1"}"#), r#"{"joinHub":"OK"}"#);
        assert_eq!(
            call(&mut alice, r#"{"toH":"T1","m":1}"#),
            r#"{"reply_to":2,"FROM":"svc","sID":1}"#
        );
        assert_eq!(wsb_broker_leave(b, svc, true, c"T1".as_ptr()), wsb_result::Ok);
        assert_eq!(text(&mut alice), r#"{"leftHub":"T1","user":"svc","sID":1}"#);
        let mut st = wsb_broker_counts::default();
        assert_eq!(wsb_broker_stats(b, &mut st), wsb_result::Ok);
        assert_eq!((st.sessions, st.users, st.groups, st.hubs), (1, 2, 1, 1));
    }
    alice.close(None).unwrap();
    while alice.read().is_ok() {}
    std::thread::sleep(Duration::from_millis(300));
    let ev = EVENTS.lock().unwrap().clone();
    assert!(ev.contains(&"login 1 svc true".to_owned()), "{ev:?}");
    assert!(ev.contains(&"login 2 alice false".to_owned()), "{ev:?}");
    assert!(
        ev.iter().any(|e| e.starts_with("msg 2 alice {\"to\":\"svc\",\"x\":1")),
        "{ev:?}"
    );
    assert!(ev.contains(&"join 2 alice room false".to_owned()), "{ev:?}");
    assert!(ev.contains(&"join 2 alice T1 true".to_owned()), "{ev:?}");
    assert!(ev.contains(&"logout 2 alice".to_owned()), "{ev:?}");
    unsafe {
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
        assert_eq!(wsb_broker_free(b), wsb_result::NotFound);
    }
}

unsafe extern "C" fn only_bob(
    _: *mut c_void,
    name: *const c_char,
    password: *const c_char,
    reason: *mut c_char,
    reason_len: usize,
) -> bool {
    let n = CStr::from_ptr(name).to_str().unwrap();
    let p = CStr::from_ptr(password).to_str().unwrap();
    if n == "bob" && p == "pw" {
        return true;
    }
    let msg = b"only bob\0";
    assert!(reason_len >= msg.len());
    std::ptr::copy_nonoverlapping(msg.as_ptr() as *const c_char, reason, msg.len());
    false
}

unsafe extern "C" fn refuse_silently(
    _: *mut c_void,
    _: *const c_char,
    _: *const c_char,
    _: *mut c_char,
    _: usize,
) -> bool {
    false
}

#[test]
fn table_and_callback_login_modes() {
    unsafe {
        let cfg = wsb_broker_config_new();
        assert_eq!(
            wsb_broker_config_add_credentials(cfg, c"carol".as_ptr(), c"secret".as_ptr()),
            wsb_result::Ok
        );
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        let mut ws = connect(wsb_broker_port(b, 1));
        assert_eq!(
            call(&mut ws, r#"{"setID":"carol","passwd":"nope"}"#),
            r#"{"auth":"failed","error":"invalid credentials"}"#
        );
        assert_eq!(
            call(&mut ws, r#"{"setID":"carol","passwd":"secret"}"#),
            r#"{"auth":"ok"}"#
        );
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);

        assert_eq!(
            wsb_broker_config_set_auth_callback(cfg, Some(only_bob), null_mut(), None),
            wsb_result::Ok
        );
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        let mut ws = connect(wsb_broker_port(b, 1));
        assert_eq!(
            call(&mut ws, r#"{"setID":"eve","passwd":"pw"}"#),
            r#"{"auth":"failed","error":"only bob"}"#
        );
        assert_eq!(
            call(&mut ws, r#"{"auth":"bob","passwd":"pw"}"#),
            r#"{"auth":"OK","SID":1}"#
        );
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);

        // A refusal without a reason reads `rejected`.
        assert_eq!(
            wsb_broker_config_set_auth_callback(cfg, Some(refuse_silently), null_mut(), None),
            wsb_result::Ok
        );
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        wsb_broker_config_free(cfg);
        let mut ws = connect(wsb_broker_port(b, 1));
        for login in [r#"{"setID":"eve","passwd":"pw"}"#, r#"{"auth":"eve"}"#] {
            assert_eq!(call(&mut ws, login), r#"{"auth":"failed","error":"rejected"}"#);
        }
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}

#[test]
fn webtalk_from_c_and_listener_errors() {
    unsafe {
        let cfg = wsb_broker_config_new();
        assert_eq!(wsb_broker_config_set_listener(cfg, 1, c"off".as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_broker_config_set_listener(cfg, 9, c"off".as_ptr()),
            wsb_result::InvalidArgument
        );
        assert_eq!(
            wsb_broker_config_set_listener(cfg, 4, c"127.0.0.1:0".as_ptr()),
            wsb_result::Ok
        );
        let mut b = null_mut();
        // The admin socket without the webtalk listener is refused.
        assert_eq!(
            wsb_broker_new(cfg, None, null_mut(), None, &mut b),
            wsb_result::InvalidArgument
        );
        assert_eq!(
            wsb_broker_config_set_listener(cfg, 3, c"127.0.0.1:0".as_ptr()),
            wsb_result::Ok
        );
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        wsb_broker_config_free(cfg);
        assert_ne!(wsb_broker_port(b, 4), 0);
        let mut svc = 0;
        assert_eq!(
            wsb_broker_register_service(b, c"x".as_ptr(), &mut svc),
            wsb_result::InvalidState,
            "achex is off"
        );

        let mut user = 0u64;
        let mut salt = [0 as c_char; 21];
        let mut small = [0 as c_char; 20];
        assert_eq!(
            wsb_broker_webtalk_create_user(b, &mut user, small.as_mut_ptr(), small.len()),
            wsb_result::BufferTooSmall
        );
        assert_eq!(
            wsb_broker_webtalk_create_user(b, &mut user, salt.as_mut_ptr(), salt.len()),
            wsb_result::Ok
        );
        assert_eq!(user, 1);
        let salt = CStr::from_ptr(salt.as_ptr()).to_str().unwrap().to_owned();
        assert_eq!(salt.len(), 20);
        assert_eq!(
            wsb_broker_webtalk_whisper(b, 99, b"x".as_ptr(), 1),
            wsb_result::NotFound
        );
        assert_eq!(wsb_broker_webtalk_kill_channel(b, 1), wsb_result::InvalidArgument);
        // Queued while offline, delivered at login, in order.
        assert_eq!(wsb_broker_webtalk_whisper(b, user, b"one".as_ptr(), 3), wsb_result::Ok);
        let mut chan = 0;
        assert_eq!(wsb_broker_webtalk_create_channel(b, &mut chan), wsb_result::Ok);
        assert_eq!(chan, 2);
        assert_eq!(wsb_broker_webtalk_join(b, chan, user), wsb_result::Ok);
        assert_eq!(wsb_broker_webtalk_shout(b, chan, b"two".as_ptr(), 3), wsb_result::Ok);
        let port = wsb_broker_port(b, 3);
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ws = tungstenite::client(format!("ws://127.0.0.1:{port}/webtalk"), tcp)
            .unwrap()
            .0;
        ws.send(Message::text(format!("{user}!{salt}"))).unwrap();
        assert_eq!(text(&mut ws), "one");
        assert_eq!(text(&mut ws), "two");
        // The store.
        assert_eq!(
            wsb_broker_webtalk_store(b, c"k".as_ptr(), b"v1".as_ptr(), 2),
            wsb_result::Ok
        );
        let mut out = [0 as c_char; 8];
        let mut need = 0;
        assert_eq!(
            wsb_broker_webtalk_retrieve(b, c"k".as_ptr(), out.as_mut_ptr(), 8, &mut need),
            wsb_result::Ok
        );
        assert_eq!(CStr::from_ptr(out.as_ptr()).to_str().unwrap(), "v1");
        assert_eq!(need, 3);
        // Values are binary: NUL bytes and non-UTF-8 come back whole, their
        // length is needed - 1. Keys may hold '!', not invalid UTF-8.
        let bin = b"a\0b\xffc";
        assert_eq!(
            wsb_broker_webtalk_store(b, c"x!y".as_ptr(), bin.as_ptr(), bin.len()),
            wsb_result::Ok
        );
        assert_eq!(
            wsb_broker_webtalk_retrieve(b, c"x!y".as_ptr(), out.as_mut_ptr(), 8, &mut need),
            wsb_result::Ok
        );
        assert_eq!(need, bin.len() + 1);
        assert_eq!(
            std::slice::from_raw_parts(out.as_ptr() as *const u8, need),
            b"a\0b\xffc\0"
        );
        assert_eq!(
            wsb_broker_webtalk_retrieve(b, c"x!y".as_ptr(), out.as_mut_ptr(), 5, &mut need),
            wsb_result::BufferTooSmall
        );
        assert_eq!((out[0], need), (0, 6));
        assert_eq!(
            wsb_broker_webtalk_store(b, c"\xff".as_ptr(), bin.as_ptr(), 1),
            wsb_result::InvalidArgument
        );
        assert_eq!(wsb_broker_webtalk_store(b, c"e".as_ptr(), null(), 0), wsb_result::Ok);
        assert_eq!(
            wsb_broker_webtalk_retrieve(b, c"e".as_ptr(), out.as_mut_ptr(), 8, &mut need),
            wsb_result::Ok
        );
        assert_eq!((out[0], need), (0, 1));
        assert_eq!(wsb_broker_webtalk_clear(b, c"k".as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_broker_webtalk_retrieve(b, c"k".as_ptr(), out.as_mut_ptr(), 8, &mut need),
            wsb_result::NotFound
        );
        // killuser closes the browser with 4003.
        assert_eq!(wsb_broker_webtalk_kill_user(b, user), wsb_result::Ok);
        match ws.read().unwrap() {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 4003),
            m => panic!("{m:?}"),
        }
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}

fn last_error(b: *const wsb_broker) -> String {
    let mut buf = [0 as c_char; 256];
    unsafe {
        wsb_broker_last_error(b, buf.as_mut_ptr(), buf.len(), null_mut());
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

#[test]
fn without_a_callback_services_and_events_are_refused() {
    // With cb NULL nothing could ever take what reaches a service or an
    // event: both are refused rather than queued without bound.
    unsafe {
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(null(), None, null_mut(), None, &mut b), wsb_result::Ok);
        let mut svc = 0u64;
        assert_eq!(
            wsb_broker_register_service(b, c"svc".as_ptr(), &mut svc),
            wsb_result::InvalidState
        );
        assert!(last_error(b).contains("no event callback"), "{}", last_error(b));
        assert_eq!(wsb_broker_set_events(b, true), wsb_result::InvalidState);
        assert_eq!(wsb_broker_set_events(b, false), wsb_result::Ok);
        // The name was never taken: a client gets the unknown-user error.
        let mut ws = connect(wsb_broker_port(b, 1));
        assert_eq!(call(&mut ws, r#"{"setID":"alice"}"#), r#"{"auth":"ok"}"#);
        assert_eq!(
            call(&mut ws, r#"{"to":"svc","m":1}"#),
            r#"{"error":"no such user: svc"}"#
        );
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}

/// Reads until the peer closes; returns the close code.
fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return u16::from(f.code),
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn max_message_is_set_per_listener() {
    unsafe {
        let cfg = wsb_broker_config_new();
        assert_eq!(wsb_broker_config_set_max_message(cfg, 1, 1000), wsb_result::Ok);
        assert_eq!(
            wsb_broker_config_set_listener(cfg, 2, c"127.0.0.1:0".as_ptr()),
            wsb_result::Ok
        );
        for (listener, bytes) in [(1, 0), (4, 1000), (9, 1000), (1, (1 << 30) + 1)] {
            assert_eq!(
                wsb_broker_config_set_max_message(cfg, listener, bytes),
                wsb_result::InvalidArgument,
                "{listener} {bytes}"
            );
        }
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        wsb_broker_config_free(cfg);
        let mut ws = connect(wsb_broker_port(b, 1));
        assert_eq!(call(&mut ws, r#"{"setID":"alice"}"#), r#"{"auth":"ok"}"#);
        // Exactly 1000 bytes is accepted; 1001 closes with 1009.
        let echo = |n: usize| {
            let head = r#"{"echo":true,"p":""#;
            let pad = "x".repeat(n - head.len() - 2);
            format!("{head}{pad}\"}}")
        };
        let m = echo(1000);
        assert_eq!(m.len(), 1000);
        let reply = call(&mut ws, &m);
        assert!(reply.starts_with(r#"{"echo":true,"p":"xxx"#), "{reply}");
        ws.send(Message::text(echo(1001))).unwrap();
        assert_eq!(close_code(&mut ws), 1009);
        // The WSChat listener kept the 64 KiB default.
        let port = wsb_broker_port(b, 2);
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut chat = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).unwrap().0;
        assert!(text(&mut chat).contains("\"init\""));
        let big = format!(r#"{{"command":"identify","name":"{}"}}"#, "n".repeat(5000));
        assert_eq!(
            call(&mut chat, &big),
            r#"{"type":"outcome","success":false,"message":"Invalid 'name' field!","code":400}"#
        );
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}

static EVENTS2: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "C" fn record_only(_: *mut c_void, _: *mut wsb_broker, ev: *const wsb_broker_event) {
    let ev = &*ev;
    let s = |p: *const c_char| CStr::from_ptr(p).to_string_lossy().into_owned();
    let line = match ev.kind {
        1 => {
            let data = std::str::from_utf8(std::slice::from_raw_parts(ev.data, ev.len)).unwrap();
            format!("msg {} {} {} {}", ev.service, ev.sid, s(ev.name), data)
        }
        2 => format!("login {} {}", ev.sid, s(ev.name)),
        3 => format!("logout {} {}", ev.sid, s(ev.name)),
        4 => format!("join {} {} {} {}", ev.sid, s(ev.name), s(ev.place), ev.is_hub),
        5 => format!("leave {} {} {} {}", ev.sid, s(ev.name), s(ev.place), ev.is_hub),
        k => format!("unknown {k}"),
    };
    EVENTS2.lock().unwrap().push(line);
}

fn wait_event(want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if EVENTS2.lock().unwrap().iter().any(|e| e == want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no event {want:?} in {:?}", EVENTS2.lock().unwrap());
}

#[test]
fn leave_events_name_who_left_and_services_use_groups_and_hubs() {
    unsafe {
        let mut b = null_mut();
        assert_eq!(
            wsb_broker_new(null(), Some(record_only), null_mut(), None, &mut b),
            wsb_result::Ok
        );
        assert_eq!(wsb_broker_set_events(b, true), wsb_result::Ok);
        let mut svc = 0u64;
        assert_eq!(
            wsb_broker_register_service(b, c"svc".as_ptr(), &mut svc),
            wsb_result::Ok
        );
        let port = wsb_broker_port(b, 1);
        let mut alice = connect(port);
        let mut bob = connect(port);
        assert_eq!(call(&mut alice, r#"{"setID":"alice"}"#), r#"{"auth":"ok"}"#);
        assert_eq!(call(&mut bob, r#"{"setID":"bob"}"#), r#"{"auth":"ok"}"#);
        assert_eq!(call(&mut alice, r#"{"joinHub":"T1"}"#), r#"{"joinHub":"OK"}"#);
        assert_eq!(call(&mut bob, r#"{"joinHub":"T1"}"#), r#"{"joinHub":"OK"}"#);
        bob.send(Message::text(r#"{"cmd":"register_broadcast","bid":"g2"}"#))
            .unwrap();
        assert_eq!(call(&mut bob, r#"{"echo":1}"#), r#"{"echo":1,"FROM":"bob","sID":3}"#);

        // To a hub the service is not in: every member gets it.
        let h = br#"{"h":1}"#;
        assert_eq!(
            wsb_broker_send(b, svc, wsb_target::Hub as u32, c"T1".as_ptr(), h.as_ptr(), h.len()),
            wsb_result::Ok
        );
        assert_eq!(text(&mut alice), r#"{"h":1,"FROM":"svc","sID":1}"#);
        assert_eq!(text(&mut bob), r#"{"h":1,"FROM":"svc","sID":1}"#);
        // A hub nobody is in reaches nobody, and that is not an error.
        assert_eq!(
            wsb_broker_send(b, svc, wsb_target::Hub as u32, c"empty".as_ptr(), h.as_ptr(), h.len()),
            wsb_result::Ok
        );
        // Once the service is in the hub, it is left out of its own sends
        // and hears the members' toH.
        assert_eq!(wsb_broker_join(b, svc, true, c"T1".as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_broker_send(b, svc, wsb_target::Hub as u32, c"T1".as_ptr(), h.as_ptr(), h.len()),
            wsb_result::Ok
        );
        assert_eq!(text(&mut alice), r#"{"h":1,"FROM":"svc","sID":1}"#);
        assert_eq!(text(&mut bob), r#"{"h":1,"FROM":"svc","sID":1}"#);
        alice.send(Message::text(r#"{"toH":"T1","t":1}"#)).unwrap();
        assert_eq!(text(&mut bob), r#"{"toH":"T1","t":1,"FROM":"alice","sID":2}"#);
        wait_event(r#"msg 1 2 alice {"toH":"T1","t":1,"FROM":"alice","sID":2}"#);

        // Groups (is_hub false): joined, a bc reaches the service; left, it no longer does.
        assert_eq!(wsb_broker_join(b, svc, false, c"room".as_ptr()), wsb_result::Ok);
        alice.send(Message::text(r#"{"bc":"room","n":1}"#)).unwrap();
        assert_eq!(
            call(&mut alice, r#"{"echo":2}"#),
            r#"{"echo":2,"FROM":"alice","sID":2}"#
        );
        wait_event(r#"msg 1 2 alice {"bc":"room","n":1,"FROM":"alice","sID":2}"#);
        assert_eq!(wsb_broker_leave(b, svc, false, c"room".as_ptr()), wsb_result::Ok);
        alice.send(Message::text(r#"{"bc":"room","n":2}"#)).unwrap();
        assert_eq!(
            call(&mut alice, r#"{"echo":3}"#),
            r#"{"echo":3,"FROM":"alice","sID":2}"#
        );
        assert!(
            !EVENTS2.lock().unwrap().iter().any(|e| e.contains(r#""n":2"#)),
            "{:?}",
            EVENTS2.lock().unwrap()
        );
        // Leaving a group tells no one; leaving a hub tells its members.
        assert_eq!(wsb_broker_leave(b, svc, true, c"T1".as_ptr()), wsb_result::Ok);
        assert_eq!(text(&mut alice), r#"{"leftHub":"T1","user":"svc","sID":1}"#);
        assert_eq!(text(&mut bob), r#"{"leftHub":"T1","user":"svc","sID":1}"#);

        // A leave by request and one by disconnect both name who left.
        assert_eq!(call(&mut alice, r#"{"leaveHub":"T1"}"#), r#"{"leaveHub":"OK"}"#);
        assert_eq!(text(&mut bob), r#"{"leftHub":"T1","user":"alice","sID":2}"#);
        bob.close(None).unwrap();
        while bob.read().is_ok() {}
        wait_event("logout 3 bob");
        let ev = EVENTS2.lock().unwrap().clone();
        for want in [
            "join 1 svc room false",
            "leave 1 svc room false",
            "join 1 svc T1 true",
            "leave 1 svc T1 true",
            "join 2 alice T1 true",
            "leave 2 alice T1 true",
            "join 3 bob g2 false",
            "leave 3 bob g2 false",
            "leave 3 bob T1 true",
        ] {
            assert!(ev.iter().any(|e| e == want), "{want:?} not in {ev:?}");
        }
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}

/// A broker without a callback, its listeners set as given (`wsb_listener`, address).
fn broker_with(listeners: &[(u32, &CStr)]) -> *mut wsb_broker {
    unsafe {
        let cfg = wsb_broker_config_new();
        for (l, addr) in listeners {
            assert_eq!(wsb_broker_config_set_listener(cfg, *l, addr.as_ptr()), wsb_result::Ok);
        }
        let mut b = null_mut();
        assert_eq!(wsb_broker_new(cfg, None, null_mut(), None, &mut b), wsb_result::Ok);
        wsb_broker_config_free(cfg);
        b
    }
}

#[test]
fn wschat_listener_through_the_c_api() {
    unsafe {
        let b = broker_with(&[(1, c"off"), (2, c"127.0.0.1:0")]);
        assert_eq!(wsb_broker_port(b, 1), 0);
        let port = wsb_broker_port(b, 2);
        assert_ne!(port, 0);
        let chat = || {
            let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut ws = tungstenite::client(format!("ws://127.0.0.1:{port}/wschat"), tcp)
                .unwrap()
                .0;
            assert_eq!(
                text(&mut ws),
                r#"{"type":"init","message":"Please identify to recieve messages."}"#
            );
            ws
        };
        let (mut a, mut c) = (chat(), chat());
        let ok = r#"{"type":"outcome","success":true,"message":"Identified successfully!","code":300}"#;
        assert_eq!(call(&mut a, r#"{"command":"identify","name":"alice"}"#), ok);
        assert_eq!(call(&mut c, r#"{"command":"identify","name":"carol"}"#), ok);
        a.send(Message::text(
            r#"{"command":"message","to":"carol","message":{"pos":1}}"#,
        ))
        .unwrap();
        assert_eq!(text(&mut c), r#"{"type":"message","from":"alice","message":{"pos":1}}"#);
        a.close(None).unwrap();
        while a.read().is_ok() {}
        assert_eq!(text(&mut c), r#"{"type":"quit","who":"alice"}"#);
        assert_eq!(wsb_broker_free(b), wsb_result::Ok);
    }
}
