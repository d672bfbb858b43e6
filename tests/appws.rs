//! The AppWebsocket client against the app service (ours, in host and echo
//! mode, and a bare engine server playing the service to watch the wire):
//! login, messages with mt/src, the reply helper, crypto with the shared
//! session key, login failures, manual flow control, send results, keep-alive.

use std::sync::mpsc;
use std::time::Duration;

use wsbroker::appws::{
    self, AppClient, AppClientConfig, AppClientEvent, AppService, AppServiceConfig, AppServiceEvent, AppServiceHandle,
    Authentication, Credentials, OwnedAppClientEvent, OwnedAppServiceEvent,
};
use wsbroker::client::{Client, ClientConfig, OwnedClientEvent};
use wsbroker::dialect::appws::{HostEvent, Service};
use wsbroker::listeners::apply_actions;
use wsbroker::{Config, Event, Server, ServerHandle};

const WAIT: Duration = Duration::from_secs(10);

fn service_config() -> AppServiceConfig {
    let mut cfg = AppServiceConfig::new();
    cfg.apps.push(("demo".into(), "demo".into()));
    cfg
}

/// A service that answers each message with mt+"Result" through the reply
/// helper, and reports what it saw.
fn answering_service() -> (AppService, mpsc::Receiver<OwnedAppServiceEvent>) {
    let (tx, rx) = mpsc::channel();
    let s = AppService::start(service_config(), move |h: &AppServiceHandle, e: AppServiceEvent<'_>| {
        if let AppServiceEvent::Message { conn, mt, src, .. } = e {
            h.reply(conn, src, &format!(r#"{{"mt":"{mt}Result","ok":true}}"#))
                .unwrap();
        }
        let _ = tx.send(OwnedAppServiceEvent::from_event(&e));
    })
    .unwrap();
    (s, rx)
}

fn url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/")
}

fn next(c: &AppClient) -> OwnedAppClientEvent {
    c.poll(Some(WAIT)).expect("an event within 10 s")
}

/// The next event is Closed with 1000 sent by the client itself.
fn closed_by_host(c: &AppClient) {
    match next(c) {
        OwnedAppClientEvent::Closed {
            status: 1000,
            by_host: true,
            error: None,
            ..
        } => {}
        e => panic!("expected Closed 1000 by the client, got {e:?}"),
    }
}

#[test]
fn client_logs_in_and_talks_to_our_service() {
    let (s, rx) = answering_service();
    let c = AppClient::connect_queued(AppClientConfig::new(url(s.local_addr()), "demo", "demo")).unwrap();
    assert_eq!(next(&c), OwnedAppClientEvent::Connected);
    assert!(c.is_connected());
    let OwnedAppServiceEvent::Login { login, .. } = rx.recv_timeout(WAIT).unwrap() else {
        panic!("no login")
    };
    assert_eq!(
        (login.app.as_str(), login.sip.as_str(), login.dn.as_str()),
        ("demo", "demo", "Admin")
    );

    c.send_json(r#"{"mt":"Hello","src":"x7","text":"hi"}"#).unwrap();
    assert_eq!(
        next(&c),
        OwnedAppClientEvent::Message {
            json: r#"{"mt":"HelloResult","ok":true,"src":"x7"}"#.into(),
            mt: Some("HelloResult".into()),
            src: Some("x7".into()),
        }
    );
    match rx.recv_timeout(WAIT).unwrap() {
        OwnedAppServiceEvent::Message { mt, src, json, .. } => {
            assert_eq!((mt.as_str(), src.as_deref()), ("Hello", Some("x7")));
            assert_eq!(json, r#"{"mt":"Hello","src":"x7","text":"hi"}"#);
        }
        e => panic!("{e:?}"),
    }
    // Both ends hold the same session key.
    let secret = c.encrypt(b"seed", b"secret").unwrap();
    assert_eq!(appws::decrypt("seed", &secret, &login.session_key).unwrap(), b"secret");
    assert_eq!(c.hash(b"s", b"d").unwrap(), appws::hash("s", "d", &login.session_key));
    assert_eq!(c.send_json("{nope"), Err(appws::AppSendError::InvalidJson));

    c.close().unwrap();
    closed_by_host(&c);
    assert_eq!(c.poll(Some(WAIT)), Err(wsbroker::engine::PollError::Closed));
    assert!(c.encrypt(b"s", b"d").is_ok(), "the key of the last login stays usable");
    match rx.recv_timeout(WAIT).unwrap() {
        OwnedAppServiceEvent::Closed { status: 1000, .. } => {}
        e => panic!("{e:?}"),
    }
}

#[test]
fn client_with_info_logs_in_and_echo_mode_answers() {
    let s = AppService::start_echo(service_config()).unwrap();
    let creds = Credentials::Password {
        password: "demo".into(),
        domain: "example.com".into(),
        sip: "alice".into(),
        guid: "0123456789abcdef0123456789abcdef".into(),
        dn: "Alice".into(),
        info: Some(r#"{"u":"http://x/","n":1}"#.into()),
    };
    let (tx, rx) = mpsc::channel();
    let _c = AppClient::connect(
        AppClientConfig::with_credentials(url(s.local_addr()), "demo", creds),
        move |c: &appws::AppClientHandle, e: AppClientEvent<'_>| {
            if matches!(e, AppClientEvent::Connected) {
                c.send_text(r#"{"mt":"Ping","src":"1","n":1.50}"#).unwrap();
            }
            let _ = tx.send(format!("{e:?}"));
        },
    )
    .unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "Connected");
    let m = rx.recv_timeout(WAIT).unwrap();
    assert!(
        m.contains(r#"{\"mt\":\"PingResult\",\"src\":\"1\",\"n\":1.50}"#) && m.contains(r#"mt: Some("PingResult")"#),
        "{m}"
    );
}

#[test]
fn wrong_password_fails_cleanly() {
    let (s, rx) = answering_service();
    let c = AppClient::connect_queued(AppClientConfig::new(url(s.local_addr()), "demo", "wrong")).unwrap();
    assert_eq!(
        next(&c),
        OwnedAppClientEvent::LoginFailed {
            reason: "login failed".into()
        }
    );
    match next(&c) {
        OwnedAppClientEvent::Closed {
            status: 1000,
            by_host: true,
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    assert!(!c.is_connected());
    assert!(c.encrypt(b"s", b"d").is_err());
    assert_eq!(c.send_text("{}"), Err(appws::AppSendError::NotConnected));
    // The service reports only sessions that logged in.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn three_failures_get_4001_from_the_service() {
    let (s, _rx) = answering_service();
    let c = Client::connect_queued(ClientConfig::new(url(s.local_addr()))).unwrap();
    assert!(matches!(
        c.poll(Some(WAIT)).unwrap(),
        OwnedClientEvent::Connected { .. }
    ));
    c.send(br#"{"mt":"AppChallenge"}"#, true).unwrap();
    let bad = br#"{"mt":"AppLogin","app":"demo","digest":"00"}"#;
    let mut texts = Vec::new();
    for _ in 0..3 {
        c.send(bad, true).unwrap();
    }
    loop {
        match c.poll(Some(WAIT)).unwrap() {
            e @ OwnedClientEvent::Message { .. } => texts.push(String::from_utf8_lossy(e.payload()).into_owned()),
            OwnedClientEvent::Closed { status, reason, .. } => {
                assert_eq!((status, reason.as_str()), (4001, "login failed"));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert!(texts[0].contains("AppChallengeResult"));
    for t in &texts[1..] {
        assert_eq!(t, r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#);
    }
}

#[test]
fn connection_failure_is_one_closed_event() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let c = AppClient::connect_queued(AppClientConfig::new(url(addr), "demo", "demo")).unwrap();
    match next(&c) {
        OwnedAppClientEvent::Closed {
            status: -1,
            error: Some(wsbroker::engine::ConnectError::Refused),
            ..
        } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(c.poll(Some(Duration::ZERO)), Err(wsbroker::engine::PollError::Closed));
}

/// A service that sends three messages right after each login.
fn bursting_service(manual: bool) -> (AppService, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let mut cfg = service_config();
    cfg.manual_complete = manual;
    let s = AppService::start(cfg, move |h: &AppServiceHandle, e: AppServiceEvent<'_>| match e {
        AppServiceEvent::Login { conn, .. } => {
            for i in 0..3 {
                h.send(conn, format!(r#"{{"mt":"N","i":{i}}}"#).as_bytes(), true)
                    .unwrap();
            }
        }
        AppServiceEvent::Message { conn, mt, .. } => {
            let _ = tx.send(mt.to_owned());
            let _ = h.reply(conn, None, r#"{"mt":"Ack"}"#);
        }
        _ => {}
    })
    .unwrap();
    (s, rx)
}

#[test]
fn manual_flow_control_on_the_client() {
    let (s, _rx) = bursting_service(false);
    let mut cfg = AppClientConfig::new(url(s.local_addr()), "demo", "demo");
    cfg.manual_complete = true;
    let c = AppClient::connect_queued(cfg).unwrap();
    assert_eq!(next(&c), OwnedAppClientEvent::Connected);
    for i in 0..3 {
        match next(&c) {
            OwnedAppClientEvent::Message { json, .. } => assert_eq!(json, format!(r#"{{"mt":"N","i":{i}}}"#)),
            e => panic!("{e:?}"),
        }
        // Nothing more until the host completes this one.
        assert_eq!(
            c.poll(Some(Duration::from_millis(200))),
            Err(wsbroker::engine::PollError::Timeout)
        );
        c.message_complete();
    }
}

#[test]
fn manual_flow_control_on_the_service() {
    let (tx, rx) = mpsc::channel();
    let mut cfg = service_config();
    cfg.manual_complete = true;
    let s = AppService::start(cfg, move |_: &AppServiceHandle, e: AppServiceEvent<'_>| {
        if let AppServiceEvent::Message { conn, mt, .. } = e {
            let _ = tx.send((conn, mt.to_owned()));
        }
    })
    .unwrap();
    let c = AppClient::connect_queued(AppClientConfig::new(url(s.local_addr()), "demo", "demo")).unwrap();
    assert_eq!(next(&c), OwnedAppClientEvent::Connected);
    for mt in ["A", "B", "C"] {
        c.send_text(&format!(r#"{{"mt":"{mt}"}}"#)).unwrap();
    }
    for mt in ["A", "B", "C"] {
        let (conn, got) = rx.recv_timeout(WAIT).unwrap();
        assert_eq!(got, mt);
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "held until completed"
        );
        s.message_complete(conn);
    }
}

#[test]
fn queue_mode_service_and_send_results() {
    let mut scfg = service_config();
    scfg.apps.push(("other".into(), "pw2".into()));
    let s = AppService::start_queued(scfg).unwrap();
    let mut cfg = AppClientConfig::new(url(s.local_addr()), "other", "pw2");
    cfg.send_results = true;
    let c = AppClient::connect_queued(cfg).unwrap();
    assert_eq!(next(&c), OwnedAppClientEvent::Connected);
    let conn = match s.poll(Some(WAIT)).unwrap() {
        OwnedAppServiceEvent::Login { conn, login } => {
            assert_eq!(login.app, "other");
            conn
        }
        e => panic!("{e:?}"),
    };
    for i in 0..3 {
        c.send_text(&format!(r#"{{"mt":"M","src":"s{i}"}}"#)).unwrap();
    }
    // One Sent per host message, none for the login frames.
    for _ in 0..3 {
        assert_eq!(next(&c), OwnedAppClientEvent::Sent);
    }
    for i in 0..3 {
        match s.poll(Some(WAIT)).unwrap() {
            OwnedAppServiceEvent::Message { conn: c2, mt, src, .. } => {
                assert_eq!((c2, mt.as_str(), src), (conn, "M", Some(format!("s{i}"))));
                s.reply(conn, Some(&format!("s{i}")), r#"{"mt":"MResult"}"#).unwrap();
            }
            e => panic!("{e:?}"),
        }
    }
    for i in 0..3 {
        match next(&c) {
            OwnedAppClientEvent::Message { src, .. } => assert_eq!(src, Some(format!("s{i}"))),
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(
        c.poll(Some(Duration::from_millis(100))),
        Err(wsbroker::engine::PollError::Timeout)
    );
    s.close(conn, 4000, "bye").unwrap();
    match next(&c) {
        OwnedAppClientEvent::Closed {
            status: 4000,
            reason,
            by_host: false,
            ..
        } => assert_eq!(reason, "bye"),
        e => panic!("{e:?}"),
    }
    match s.poll(Some(WAIT)).unwrap() {
        OwnedAppServiceEvent::Closed { by_host: true, .. } => {}
        e => panic!("{e:?}"),
    }
}

/// A bare engine server playing the service with a fixed challenge, so the
/// test sees every frame the client sends.
fn watching_service() -> (Server, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let mut svc = Service::new();
    svc.add_app("demo", "demo");
    svc.set_challenge_source(|| Ok("5802914736501248".to_owned()));
    let server = Server::start(Config::default(), move |s: &ServerHandle, e: Event<'_>| match e {
        Event::Open { conn, .. } => {
            svc.on_open(conn);
        }
        Event::Message { conn, data, text } => {
            let _ = tx.send(String::from_utf8_lossy(data).into_owned());
            let out = svc.on_message(conn, data, text);
            apply_actions(s, out.actions);
            if let Some(HostEvent::LoggedIn { .. }) = out.host {
                let _ = s.send(conn, br#"{"mt":"KeepAlive"}"#, true);
                let _ = s.send(conn, br#"{"mt":"PbxInfo","src":"p"}"#, true);
            }
        }
        Event::Close { conn, .. } => {
            svc.on_close(conn);
        }
        _ => {}
    })
    .unwrap();
    (server, rx)
}

#[test]
fn wire_login_keep_alive_and_dropped_keep_alives() {
    let (s, rx) = watching_service();
    let mut cfg = AppClientConfig::new(url(s.local_addr()), "demo", "demo");
    cfg.keep_alive = Some(Duration::from_millis(300));
    let c = AppClient::connect_queued(cfg).unwrap();
    assert_eq!(next(&c), OwnedAppClientEvent::Connected);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), r#"{"mt":"AppChallenge"}"#);
    // The transcript's AppLogin (§5.5), without the session key.
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        r#"{"mt":"AppLogin","app":"demo","domain":"","sip":"demo","guid":"00000000000000000000000000000000","dn":"Admin","digest":"61e967938b756f7d5362a8ba449ff17d30b404e5ad57c53add7fb0d97c065ef0"}"#
    );
    // The service's KeepAlive is dropped; PbxInfo reaches the host.
    match next(&c) {
        OwnedAppClientEvent::Message { mt, src, .. } => {
            assert_eq!((mt.as_deref(), src.as_deref()), (Some("PbxInfo"), Some("p")))
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), r#"{"mt":"KeepAlive"}"#);
    assert_eq!(
        c.with_key(str::to_owned).unwrap(),
        "5e3c32a16b37ea7f7a843bff5bb924fb64d4924d9ff0e889b63d9122d926c6cf"
    );
}

#[test]
fn authenticator_mode_and_close_before_open() {
    let (s, rx) = answering_service();
    let (tx, events) = mpsc::channel();
    let _c = AppClient::connect(
        AppClientConfig::with_credentials(url(s.local_addr()), "demo", Credentials::Authenticator),
        move |c: &appws::AppClientHandle, e: AppClientEvent<'_>| {
            if let AppClientEvent::Challenge { challenge } = e {
                let (domain, sip, guid, dn, info) = ("d.com", "bob", "g", "Bob", r#"{"cn":"Bob"}"#);
                let auth = Authentication {
                    domain: domain.into(),
                    sip: sip.into(),
                    guid: guid.into(),
                    dn: dn.into(),
                    info: Some(info.into()),
                    digest: appws::digest("demo", domain, sip, guid, dn, Some(info), challenge, "demo"),
                    session_key: appws::session_key(challenge, "demo"),
                };
                c.authenticate(auth).unwrap();
            }
            let _ = tx.send(format!("{e:?}"));
        },
    )
    .unwrap();
    assert!(events.recv_timeout(WAIT).unwrap().starts_with("Challenge"));
    assert_eq!(events.recv_timeout(WAIT).unwrap(), "Connected");
    match rx.recv_timeout(WAIT).unwrap() {
        OwnedAppServiceEvent::Login { login, .. } => {
            assert_eq!(login.sip, "bob");
            assert_eq!(login.info.as_deref(), Some(r#"{"cn":"Bob"}"#));
        }
        e => panic!("{e:?}"),
    }

    // Close right after connect, before the WebSocket can have opened:
    // still exactly one Closed.
    let c2 = AppClient::connect_queued(AppClientConfig::new(url(s.local_addr()), "demo", "demo")).unwrap();
    c2.close().unwrap();
    match next(&c2) {
        OwnedAppClientEvent::Closed { .. } => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(c2.poll(Some(Duration::ZERO)), Err(wsbroker::engine::PollError::Closed));
}

/// A WebSocket server playing a service that stops answering: it never
/// answers at all, or (with `challenge`) answers AppChallenge and then
/// nothing more.
fn stalling_service(challenge: bool) -> Server {
    Server::start(Config::default(), move |s: &ServerHandle, e: Event<'_>| {
        if let Event::Message { conn, data, .. } = e {
            if challenge && data == br#"{"mt":"AppChallenge"}"# {
                let _ = s.send(conn, br#"{"mt":"AppChallengeResult","challenge":"1234"}"#, true);
            }
        }
    })
    .unwrap()
}

#[test]
fn login_that_gets_no_answer_times_out() {
    for (challenge, waiting) in [(false, "no AppChallengeResult"), (true, "no AppLoginResult")] {
        let s = stalling_service(challenge);
        let mut cfg = AppClientConfig::new(url(s.local_addr()), "demo", "demo");
        cfg.login_timeout = Duration::from_millis(300);
        let t0 = std::time::Instant::now();
        let c = AppClient::connect_queued(cfg).unwrap();
        match next(&c) {
            OwnedAppClientEvent::LoginFailed { reason } => {
                assert!(reason.contains(waiting) && reason.contains("300 ms"), "{reason}")
            }
            e => panic!("expected LoginFailed, got {e:?}"),
        }
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
        closed_by_host(&c);
        assert!(!c.is_connected());
        assert!(c.send_json("{}").is_err());
    }
}

#[test]
fn login_timeout_from_c() {
    use wsbroker::ffi::appws::*;
    use wsbroker::ffi::wsb_result;
    let s = stalling_service(false);
    let u = std::ffi::CString::new(url(s.local_addr())).unwrap();
    let cfg = unsafe { wsb_appws_client_config_new(u.as_ptr(), c"demo".as_ptr(), c"demo".as_ptr()) };
    unsafe {
        assert_eq!(
            wsb_appws_client_config_set_login_timeout_ms(cfg, 0),
            wsb_result::InvalidArgument
        );
        assert_eq!(wsb_appws_client_config_set_login_timeout_ms(cfg, 200), wsb_result::Ok);
    }
    let mut c = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_appws_client_new(cfg, None, std::ptr::null_mut(), None, &mut c) },
        wsb_result::Ok
    );
    let mut kinds = Vec::new();
    let t0 = std::time::Instant::now();
    while kinds.last() != Some(&(wsb_appws_client_event_type::Closed as u32)) {
        let mut ev: wsb_appws_client_event = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { wsb_appws_client_poll(c, 5000, &mut ev) }, wsb_result::Ok);
        kinds.push(ev.kind);
        if ev.kind == wsb_appws_client_event_type::LoginFailed as u32 {
            let text = unsafe { std::ffi::CStr::from_ptr(ev.text) }.to_string_lossy();
            assert!(text.contains("login timed out"), "{text}");
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(
        kinds,
        [
            wsb_appws_client_event_type::LoginFailed as u32,
            wsb_appws_client_event_type::Closed as u32
        ]
    );
    unsafe {
        assert_eq!(wsb_appws_client_free(c), wsb_result::Ok);
        wsb_appws_client_config_free(cfg);
    }
}

/// Reads an HTTP head byte by byte (so nothing after it is consumed).
fn read_head(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A one-connection HTTP CONNECT proxy: reports the CONNECT head, then the
/// head the client sends through the tunnel (a ws:// upgrade request), and
/// relays both ways.
fn connect_proxy() -> (std::net::SocketAddr, mpsc::Receiver<String>) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut down, _)) = l.accept() else { return };
        down.set_read_timeout(Some(WAIT)).unwrap();
        let connect = read_head(&mut down);
        let target = connect.split(' ').nth(1).unwrap_or("").to_owned();
        let _ = tx.send(connect);
        let Ok(mut up) = std::net::TcpStream::connect(target) else {
            return;
        };
        down.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
        let upgrade = read_head(&mut down);
        up.write_all(upgrade.as_bytes()).unwrap();
        let _ = tx.send(upgrade);
        let (mut d, mut u) = (down.try_clone().unwrap(), up.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut u, &mut d));
        let _ = std::io::copy(&mut down, &mut up);
    });
    (addr, rx)
}

#[test]
fn c_client_through_a_proxy_with_extra_headers() {
    use wsbroker::ffi::appws::*;
    use wsbroker::ffi::wsb_result;
    let (s, _events) = answering_service();
    let (proxy, seen) = connect_proxy();
    let u = std::ffi::CString::new(url(s.local_addr())).unwrap();
    let cfg = unsafe { wsb_appws_client_config_new(u.as_ptr(), c"demo".as_ptr(), c"demo".as_ptr()) };
    // No scheme: http://, as with curl.
    let p = std::ffi::CString::new(proxy.to_string()).unwrap();
    unsafe {
        assert_eq!(
            wsb_appws_client_config_set_proxy(cfg, c"socks5://h:1".as_ptr()),
            wsb_result::InvalidArgument
        );
        assert_eq!(wsb_appws_client_config_set_proxy(cfg, p.as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_appws_client_config_add_header(cfg, c"Bad Name".as_ptr(), c"x".as_ptr()),
            wsb_result::InvalidArgument
        );
        assert_eq!(
            wsb_appws_client_config_add_header(cfg, c"X-Pbx-Token".as_ptr(), c"t1".as_ptr()),
            wsb_result::Ok
        );
    }
    let mut c = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_appws_client_new(cfg, None, std::ptr::null_mut(), None, &mut c) },
        wsb_result::Ok
    );
    let mut ev: wsb_appws_client_event = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { wsb_appws_client_poll(c, 10_000, &mut ev) }, wsb_result::Ok);
    assert_eq!(ev.kind, wsb_appws_client_event_type::Connected as u32);
    let connect = seen.recv_timeout(WAIT).unwrap();
    assert!(
        connect.starts_with(&format!("CONNECT {} HTTP/1.1\r\n", s.local_addr())),
        "{connect}"
    );
    let upgrade = seen.recv_timeout(WAIT).unwrap();
    assert!(
        upgrade.starts_with("GET / HTTP/1.1\r\n") && upgrade.contains("\r\nX-Pbx-Token: t1\r\n"),
        "{upgrade}"
    );
    unsafe {
        assert_eq!(wsb_appws_client_free(c), wsb_result::Ok);
        wsb_appws_client_config_free(cfg);
    }
}
