//! The AppWebsocket listener over real sockets: every row of PROTOCOLS.md
//! §5.3, the §5.5 transcript, configured apps, a host in place of the echo,
//! and the crate's own client logging in through the socket.

mod common;

use std::collections::VecDeque;
use std::sync::mpsc;

use common::*;
use tungstenite::Message;
use wsbroker::appws::{self, Client, ClientEvent, Credentials};
use wsbroker::dialect::appws::{AppMessage, Login, Service};
use wsbroker::dialect::SessionId;
use wsbroker::listeners::appws::{self as listener, AppHost, AppWsConfig, AppWsHandle, AppWsListener, Echo};
use wsbroker::listeners::{loopback, ListenerConfig};

const CH: &str = "5802914736501248";
const GOOD: &str = "61e967938b756f7d5362a8ba449ff17d30b404e5ad57c53add7fb0d97c065ef0";
const WRONG: &str = "42043ba6410ab17798e8f8336cea1068af466142c5b19d1fdbab74f6a0bbec6a";
const FAILED: &str = r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#;
const LOGGED_IN: &str = r#"{"mt":"AppLoginResult","ok":true}"#;

/// The demo app with challenges taken from `challenges`, then the CSPRNG's.
fn fixed_service(challenges: &[&str]) -> Service {
    let mut s = AppWsConfig::default().service();
    let mut queue: VecDeque<String> = challenges.iter().map(|c| c.to_string()).collect();
    s.set_challenge_source(move || match queue.pop_front() {
        Some(c) => Ok(c),
        None => appws::challenge(),
    });
    s
}

fn start_fixed(challenges: &[&str]) -> AppWsListener {
    listener::start_with(
        ListenerConfig::new(loopback(0)),
        fixed_service(challenges),
        Box::new(Echo),
    )
    .unwrap()
}

fn login_frame(digest: &str) -> String {
    format!(
        r#"{{"mt":"AppLogin","app":"demo","domain":"","sip":"demo","guid":"00000000000000000000000000000000","dn":"Admin","digest":"{digest}","pbxObj":"demo"}}"#
    )
}

/// A session logged in to `demo` with the fixed challenge.
fn logged_in(l: &AppWsListener) -> Ws {
    let mut ws = connect(l.local_addr());
    send(&mut ws, r#"{"mt":"AppChallenge"}"#);
    assert_eq!(
        recv_text(&mut ws),
        format!(r#"{{"mt":"AppChallengeResult","challenge":"{CH}"}}"#)
    );
    send(&mut ws, &login_frame(GOOD));
    assert_eq!(recv_text(&mut ws), LOGGED_IN);
    ws
}

/// Proves nothing else is pending: an AppInfo answer must come next.
fn sync_logged_in(ws: &mut Ws) {
    send(ws, r#"{"mt":"AppInfo","src":"sync"}"#);
    assert_eq!(
        recv_text(ws),
        r#"{"mt":"AppInfoResult","app":"demo","info":{"hidden":false,"apis":{}},"src":"sync"}"#
    );
}

fn sync_not_logged_in(ws: &mut Ws) {
    send(ws, r#"{"mt":"Sync","src":"s"}"#);
    assert_eq!(
        recv_text(ws),
        r#"{"mt":"SyncResult","error":"not logged in","src":"s"}"#
    );
}

#[test]
fn transcript_section_5_5() {
    let l = start_fixed(&[CH]);
    let mut ws = connect(l.local_addr());
    let steps: &[(&str, Option<&str>)] = &[
        (
            r#"{"mt":"GetObject","api":"PbxAdminApi","src":"a1"}"#,
            Some(r#"{"mt":"GetObjectResult","error":"not logged in","src":"a1"}"#),
        ),
        (
            r#"{"mt":"AppChallenge"}"#,
            Some(r#"{"mt":"AppChallengeResult","challenge":"5802914736501248"}"#),
        ),
        (&login_frame(GOOD), Some(LOGGED_IN)),
        (
            r#"{"mt":"AppInfo","app":"demo","src":"s1"}"#,
            Some(r#"{"mt":"AppInfoResult","app":"demo","info":{"hidden":false,"apis":{}},"src":"s1"}"#),
        ),
        (
            r#"{"mt":"Hello","src":"x7","text":"hi"}"#,
            Some(r#"{"mt":"HelloResult","src":"x7","text":"hi"}"#),
        ),
        (r#"{"mt":"KeepAlive"}"#, None),
    ];
    for (c2s, s2c) in steps {
        send(&mut ws, c2s);
        if let Some(want) = s2c {
            assert_eq!(recv_text(&mut ws), *want, "after {c2s}");
        }
    }
    sync_logged_in(&mut ws);
    assert_eq!(l.stats().names, 1);
}

#[test]
fn challenges_are_fresh_digits_and_the_latest_counts() {
    let l = listener::start(ListenerConfig::new(loopback(0)), &AppWsConfig::default()).unwrap();
    let mut ws = connect(l.local_addr());
    let mut challenges = Vec::new();
    for _ in 0..2 {
        send(&mut ws, r#"{"mt":"AppChallenge","src":"c"}"#);
        let t = recv_text(&mut ws);
        let ch = t
            .strip_prefix(r#"{"mt":"AppChallengeResult","challenge":""#)
            .and_then(|r| r.strip_suffix(r#"","src":"c"}"#))
            .unwrap_or_else(|| panic!("{t}"));
        assert_eq!(ch.len(), 16);
        assert!(ch.bytes().all(|b| b.is_ascii_digit()));
        challenges.push(ch.to_owned());
    }
    assert_ne!(challenges[0], challenges[1]);
    let digest = |ch: &str| {
        appws::digest(
            "demo",
            "",
            "demo",
            "00000000000000000000000000000000",
            "Admin",
            None,
            ch,
            "demo",
        )
    };
    // The first challenge was replaced.
    send(&mut ws, &login_frame(&digest(&challenges[0])));
    assert_eq!(recv_text(&mut ws), FAILED);
    send(&mut ws, &login_frame(&digest(&challenges[1]).to_uppercase()));
    assert_eq!(recv_text(&mut ws), LOGGED_IN);
}

#[test]
fn login_failures_then_4001() {
    let l = start_fixed(&[CH, CH, CH]);
    // No challenge yet, no digest, unknown app, wrong password: each fails and
    // the connection stays open until the third failure.
    let mut ws = connect(l.local_addr());
    send(&mut ws, &login_frame(GOOD));
    assert_eq!(recv_text(&mut ws), FAILED);
    send(&mut ws, r#"{"mt":"AppChallenge"}"#);
    recv_text(&mut ws);
    send(&mut ws, r#"{"mt":"AppLogin","app":"demo","src":"l2"}"#);
    assert_eq!(
        recv_text(&mut ws),
        r#"{"mt":"AppLoginResult","ok":false,"error":"login failed","src":"l2"}"#
    );
    sync_not_logged_in(&mut ws);
    send(&mut ws, &login_frame(WRONG));
    assert_eq!(recv_text(&mut ws), FAILED);
    assert_eq!(recv_close(&mut ws), (4001, "login failed".into()));

    let mut ws = connect(l.local_addr());
    send(&mut ws, r#"{"mt":"AppChallenge"}"#);
    recv_text(&mut ws);
    send(
        &mut ws,
        &login_frame(GOOD).replace(r#""app":"demo""#, r#""app":"other""#),
    );
    assert_eq!(recv_text(&mut ws), FAILED);
    // A good login after failures still works (below three).
    send(&mut ws, &login_frame(GOOD));
    assert_eq!(recv_text(&mut ws), LOGGED_IN);
}

#[test]
fn before_login() {
    let l = start_fixed(&[CH]);
    let mut ws = connect(l.local_addr());
    send(&mut ws, r#"{"mt":"X","src":"a1","x":1}"#);
    assert_eq!(
        recv_text(&mut ws),
        r#"{"mt":"XResult","error":"not logged in","src":"a1"}"#
    );
    send(&mut ws, r#"{"mt":"AppInfo"}"#);
    assert_eq!(recv_text(&mut ws), r#"{"mt":"AppInfoResult","error":"not logged in"}"#);
    // Ignored: KeepAlive, no mt, not an object, binary.
    for ignored in [
        r#"{"mt":"KeepAlive","src":"k"}"#,
        r#"{"src":"a"}"#,
        r#"{"mt":7}"#,
        "[1]",
        "nope",
        "",
    ] {
        send(&mut ws, ignored);
    }
    send_binary(&mut ws, b"\x00\x01");
    sync_not_logged_in(&mut ws);
}

#[test]
fn after_login() {
    let l = start_fixed(&[CH]);
    let mut ws = logged_in(&l);
    // Challenge and login are ignored, KeepAlive too.
    send(&mut ws, r#"{"mt":"AppChallenge","src":"c"}"#);
    send(&mut ws, &login_frame(WRONG));
    send(&mut ws, r#"{"mt":"KeepAlive"}"#);
    send(&mut ws, r#"{"nomt":1}"#);
    send(&mut ws, "not json");
    sync_logged_in(&mut ws);
    // AppInfo names the requested app, else the logged-in one.
    send(&mut ws, r#"{"mt":"AppInfo","app":"other"}"#);
    assert_eq!(
        recv_text(&mut ws),
        r#"{"mt":"AppInfoResult","app":"other","info":{"hidden":false,"apis":{}}}"#
    );
    // The echo keeps member order, src, number text and unescaped text.
    send(&mut ws, r#"{"n":1E5,"mt":"PbxInfo","x":"a\/é","src":"p","m":-0.50}"#);
    assert_eq!(
        recv_text(&mut ws),
        r#"{"n":1E5,"mt":"PbxInfoResult","x":"a/é","src":"p","m":-0.50}"#
    );
    send(&mut ws, r#"{"mt":"NoSrc"}"#);
    assert_eq!(recv_text(&mut ws), r#"{"mt":"NoSrcResult"}"#);
    // Binary frames come back as they are.
    send_binary(&mut ws, b"\x00\xffbin");
    assert_eq!(recv(&mut ws), Message::binary(b"\x00\xffbin".to_vec()));
    // Messages are answered in arrival order.
    for i in 0..200 {
        send(&mut ws, &format!(r#"{{"mt":"M","src":"{i}"}}"#));
    }
    for i in 0..200 {
        assert_eq!(recv_text(&mut ws), format!(r#"{{"mt":"MResult","src":"{i}"}}"#));
    }
}

#[test]
fn configured_apps_and_domain_passwords() {
    let cfg = AppWsConfig {
        apps: vec![listener::parse_app("myapp:pw:with:colons").unwrap()],
        domain_passwords: vec![("example.com".into(), "dompw".into())],
    };
    let l = listener::start(ListenerConfig::new(loopback(0)), &cfg).unwrap();
    let challenge = |ws: &mut Ws| {
        send(ws, r#"{"mt":"AppChallenge"}"#);
        let t = recv_text(ws);
        t[t.len() - 18..t.len() - 2].to_owned()
    };
    // demo is not configured any more.
    let mut ws = connect(l.local_addr());
    let ch = challenge(&mut ws);
    let d = appws::digest(
        "demo",
        "",
        "demo",
        "00000000000000000000000000000000",
        "Admin",
        None,
        &ch,
        "demo",
    );
    send(&mut ws, &login_frame(&d));
    assert_eq!(recv_text(&mut ws), FAILED);
    // The app's password, with missing fields counting as "".
    let ch = challenge(&mut ws);
    let d = appws::digest("myapp", "", "", "", "", None, &ch, "pw:with:colons");
    send(&mut ws, &format!(r#"{{"mt":"AppLogin","app":"myapp","digest":"{d}"}}"#));
    assert_eq!(recv_text(&mut ws), LOGGED_IN);
    // The domain password, with info.
    let mut ws = connect(l.local_addr());
    let ch = challenge(&mut ws);
    let info = r#"{"cn":"Test User","u":"http://x/"}"#;
    let d = appws::digest("myapp", "example.com", "alice", "g", "Alice", Some(info), &ch, "dompw");
    send(
        &mut ws,
        &format!(
            r#"{{"mt":"AppLogin","app":"myapp","domain":"example.com","sip":"alice","guid":"g","dn":"Alice","info":{},"digest":"{d}"}}"#,
            info.replace('/', "\\/")
        ),
    );
    assert_eq!(recv_text(&mut ws), LOGGED_IN);
}

/// A host that reports to the test and answers from another thread.
struct Forward(mpsc::Sender<String>);

impl AppHost for Forward {
    fn on_login(&mut self, _app: &AppWsHandle, sid: SessionId, login: &Login) {
        let _ = self
            .0
            .send(format!("login {sid} {} {}", login.app, login.session_key.len()));
    }

    fn on_message(&mut self, app: &AppWsHandle, msg: &AppMessage) {
        let _ = self.0.send(format!("msg {} {:?} {}", msg.mt, msg.src, msg.json));
        let (app, sid, src) = (app.clone(), msg.sid, msg.src.clone());
        std::thread::spawn(move || {
            app.reply(sid, src.as_deref(), r#"{"mt":"Answer","n":2.50}"#).unwrap();
            assert!(app.reply(sid, None, "[not an object]").is_err());
        });
    }

    fn on_binary(&mut self, app: &AppWsHandle, sid: SessionId, data: &[u8]) {
        let _ = self.0.send(format!("bin {}", data.len()));
        app.send_text(sid, "raw text").unwrap();
    }

    fn on_close(&mut self, _app: &AppWsHandle, sid: SessionId) {
        let _ = self.0.send(format!("close {sid}"));
    }
}

#[test]
fn a_host_receives_messages_instead_of_the_echo() {
    let (tx, rx) = mpsc::channel();
    let l = listener::start_with(
        ListenerConfig::new(loopback(0)),
        fixed_service(&[CH, CH]),
        Box::new(Forward(tx)),
    )
    .unwrap();
    let mut ws = logged_in(&l);
    let got = rx.recv_timeout(WAIT).unwrap();
    assert!(got.starts_with("login ") && got.ends_with(" demo 64"), "{got}");
    send(&mut ws, r#"{"mt":"Ask","src":"q1","v":1E3}"#);
    assert_eq!(recv_text(&mut ws), r#"{"mt":"Answer","n":2.50,"src":"q1"}"#);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        r#"msg Ask Some("q1") {"mt":"Ask","src":"q1","v":1E3}"#
    );
    send_binary(&mut ws, b"abc");
    assert_eq!(recv_text(&mut ws), "raw text");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "bin 3");
    // AppInfo is still answered by the endpoint.
    sync_logged_in(&mut ws);
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    assert!(rx.recv_timeout(WAIT).unwrap().starts_with("close "));
    // A session that never logged in is not reported.
    let ws = connect(l.local_addr());
    drop(ws);
    let _ = logged_in(&l);
    assert!(rx.recv_timeout(WAIT).unwrap().starts_with("login "));
}

#[test]
fn the_crate_client_logs_in_through_the_socket() {
    let l = listener::start(ListenerConfig::new(loopback(0)), &AppWsConfig::default()).unwrap();
    let mut ws = connect(l.local_addr());
    let mut c = Client::new("demo", Credentials::password_login("demo", "demo")).unwrap();
    send(&mut ws, c.on_open());
    let mut connected = false;
    for _ in 0..2 {
        match c.on_text(&recv_text(&mut ws)) {
            ClientEvent::Send(f) => send(&mut ws, &f),
            ClientEvent::Connected => connected = true,
            e => panic!("{e:?}"),
        }
    }
    assert!(connected);
    send(&mut ws, &appws::message("Ping", None, Some("z"), Default::default()));
    assert_eq!(
        c.on_text(&recv_text(&mut ws)),
        ClientEvent::Message {
            json: r#"{"mt":"PingResult","src":"z"}"#.into(),
            mt: Some("PingResult".into()),
            src: Some("z".into())
        }
    );
    // The wrong password fails on the first try.
    let mut ws = connect(l.local_addr());
    let mut c = Client::new("demo", Credentials::password_login("demo", "wrong")).unwrap();
    send(&mut ws, c.on_open());
    let ClientEvent::Send(f) = c.on_text(&recv_text(&mut ws)) else {
        panic!()
    };
    send(&mut ws, &f);
    assert_eq!(
        c.on_text(&recv_text(&mut ws)),
        ClientEvent::LoginFailed("login failed".into())
    );
}

#[test]
fn size_limit_stats_and_shutdown() {
    let l = start_fixed(&[CH, CH]);
    let mut ws = logged_in(&l);
    let mut other = connect(l.local_addr());
    sync_not_logged_in(&mut other);
    let st = l.stats();
    assert_eq!((st.sessions, st.names), (2, 1));
    let pad = "a".repeat(65_536 - r#"{"mt":"Big","p":""}"#.len());
    send(&mut ws, &format!(r#"{{"mt":"Big","p":"{pad}"}}"#));
    assert!(recv_text(&mut ws).starts_with(r#"{"mt":"BigResult""#));
    send(&mut ws, &format!(r#"{{"mt":"Big","p":"{pad}a"}}"#));
    assert_eq!(recv_close(&mut ws).0, 1009);
    let t = std::thread::spawn(move || l.shutdown());
    assert_eq!(recv_close(&mut other).0, 1001);
    t.join().unwrap();
}
