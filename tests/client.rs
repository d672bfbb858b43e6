//! The client against the engine's own server: echo, flow control, send
//! results, TLS (with a CA made by openssl for the test), every connect
//! failure with its own kind, reconnection.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use wsbroker::client::{Client, ClientConfig, ClientEvent, OwnedClientEvent, Reconnect};
use wsbroker::engine::ConnectError;
use wsbroker::{Config, Event, Server, ServerHandle};

fn echo_server(cfg: Config) -> Server {
    Server::start(cfg, |s: &ServerHandle, e: Event<'_>| {
        if let Event::Message { conn, data, text } = e {
            if data == b"burst" {
                for i in 0..3 {
                    let _ = s.send(conn, format!("b{i}").as_bytes(), true);
                }
            } else {
                let _ = s.send(conn, data, text);
            }
        }
    })
    .unwrap()
}

fn next(c: &Client) -> OwnedClientEvent {
    c.poll(Some(Duration::from_secs(10))).expect("an event within 10 s")
}

/// The next message, skipping flow-control events (drain after a big send).
fn next_msg(c: &Client) -> OwnedClientEvent {
    loop {
        match next(c) {
            OwnedClientEvent::Drain | OwnedClientEvent::Sent => continue,
            e => return e,
        }
    }
}

fn connected(c: &Client) {
    match next(c) {
        OwnedClientEvent::Connected { .. } => {}
        e => panic!("expected Connected, got {e:?}"),
    }
}

#[test]
fn queue_mode_echo_of_all_sizes_and_close() {
    let s = echo_server(Config::default());
    let c = Client::connect_queued(ClientConfig::new(format!("ws://{}/x?y=1", s.local_addr()))).unwrap();
    connected(&c);
    for &n in &[0usize, 125, 126, 65535, 65536, 4 << 20] {
        let text = "a".repeat(n);
        c.send(text.as_bytes(), true).unwrap();
        match next_msg(&c) {
            OwnedClientEvent::Message { text: true, .. } => {}
            e => panic!("{e:?}"),
        }
        let bin: Vec<u8> = (0..n).map(|i| i as u8).collect();
        c.send(&bin, false).unwrap();
        let e = next_msg(&c);
        assert_eq!(e.payload(), &bin[..]);
    }
    c.close(4000, "bye").unwrap();
    match next(&c) {
        OwnedClientEvent::Closed { status, by_host, .. } => {
            assert_eq!(status, 4000);
            assert!(by_host);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn manual_flow_control_holds_messages_until_complete() {
    let s = echo_server(Config::default());
    let mut cfg = ClientConfig::new(format!("ws://{}/", s.local_addr()));
    cfg.manual_complete = true;
    cfg.send_results = true;
    let c = Client::connect_queued(cfg).unwrap();
    connected(&c);
    c.send(b"burst", true).unwrap();
    assert_eq!(next(&c), OwnedClientEvent::Sent);
    assert_eq!(next(&c).payload(), b"b0");
    // Nothing more until the host says it is done with b0.
    assert!(c.poll(Some(Duration::from_millis(300))).is_err());
    c.message_complete();
    assert_eq!(next(&c).payload(), b"b1");
    assert!(c.poll(Some(Duration::from_millis(300))).is_err());
    c.message_complete();
    assert_eq!(next(&c).payload(), b"b2");
}

#[test]
fn callback_mode_and_send_results() {
    let s = echo_server(Config::default());
    let (tx, rx) = mpsc::channel::<String>();
    let mut cfg = ClientConfig::new(format!("ws://{}/", s.local_addr()));
    cfg.send_results = true;
    let _c = Client::connect(
        cfg,
        move |c: &wsbroker::client::ClientHandle, e: ClientEvent<'_>| match e {
            ClientEvent::Connected { .. } => {
                for i in 0..5 {
                    c.send(format!("m{i}").as_bytes(), true).unwrap();
                }
            }
            ClientEvent::Sent => tx.send("sent".into()).unwrap(),
            ClientEvent::Message { data, .. } => tx.send(String::from_utf8_lossy(data).into_owned()).unwrap(),
            _ => {}
        },
    )
    .unwrap();
    let got: Vec<String> = (0..10)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got.iter().filter(|s| *s == "sent").count(), 5);
    let msgs: Vec<&String> = got.iter().filter(|s| *s != "sent").collect();
    assert_eq!(msgs, ["m0", "m1", "m2", "m3", "m4"]);
}

fn error_of(url: &str, tweak: impl FnOnce(&mut ClientConfig)) -> (ConnectError, String) {
    let mut cfg = ClientConfig::new(url);
    cfg.connect_timeout = Duration::from_secs(2);
    tweak(&mut cfg);
    let c = Client::connect_queued(cfg).unwrap();
    match c.poll(Some(Duration::from_secs(8))).expect("an event") {
        OwnedClientEvent::Error { error, message } => (error, message),
        e => panic!("expected an error, got {e:?}"),
    }
}

#[test]
fn connect_failures_each_have_their_own_kind() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let (e, m) = error_of(&format!("ws://127.0.0.1:{port}/"), |_| {});
    assert_eq!(e, ConnectError::Refused, "{m}");

    let (e, m) = error_of("ws://no-such-host.invalid/", |_| {});
    assert_eq!(e, ConnectError::Resolve, "{m}");
    assert!(m.contains("no-such-host.invalid"), "{m}");

    // A server that accepts TCP and never answers the upgrade.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t0 = std::time::Instant::now();
    let (e, m) = error_of(&format!("ws://{}/", silent.local_addr().unwrap()), |_| {});
    assert_eq!(e, ConnectError::Timeout, "{m}");
    assert!(t0.elapsed() < Duration::from_secs(4), "waited past the timeout");

    // A server that answers garbage.
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = garbage.accept() {
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let (e, m) = error_of(&format!("ws://{addr}/"), |_| {});
    assert_eq!(e, ConnectError::Handshake, "{m}");
}

/// A CA and a server certificate for `localhost`/127.0.0.1, made by openssl.
fn make_pki(dir: &Path, days: i32) -> (PathBuf, PathBuf, PathBuf) {
    make_pki_named(dir, days, "wsbroker test CA")
}

/// [`make_pki`] with a CA of another name.
fn make_pki_named(dir: &Path, days: i32, ca_name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_subject = format!("/CN={ca_name}");
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            st.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        &ca_subject,
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    // Negative days give a certificate that expired before it was issued.
    let days = days.to_string();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-extfile",
        "ext.cnf",
        "-days",
        &days,
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wsb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn tls_both_ends_and_certificate_failures() {
    let dir = tempdir("tls");
    let (ca, cert, key) = make_pki(&dir, 2);
    let cfg = Config {
        tls: Some(wsbroker::tls::server_config(&cert, &key).unwrap()),
        ..Config::default()
    };
    let s = echo_server(cfg);
    let port = s.local_addr().port();

    let mut cc = ClientConfig::new(format!("wss://localhost:{port}/secure"));
    cc.tls.ca_file = Some(ca.clone());
    let c = Client::connect_queued(cc).unwrap();
    connected(&c);
    let big = vec![7u8; 4 << 20];
    c.send(&big, false).unwrap();
    assert_eq!(next_msg(&c).payload(), &big[..]);
    c.send(b"hello", true).unwrap();
    assert_eq!(next_msg(&c).payload(), b"hello");
    drop(c);

    // Each rejection names the server certificate (subject, issuer,
    // validity) and says why, in words.
    let described = |m: &str| {
        m.contains("the server certificate for ")
            && m.contains("(subject CN=localhost, issued by CN=wsbroker test CA, valid ")
    };

    // Not trusted: no CA given (system roots do not know the test CA).
    let (e, m) = error_of(&format!("wss://localhost:{port}/"), |_| {});
    assert_eq!(e, ConnectError::Certificate, "{m}");
    assert!(described(&m), "{m}");
    assert!(
        m.contains(") is signed by an unknown issuer (not in the system roots)"),
        "{m}"
    );

    // Wrong name: the certificate is for localhost only, the URI says 127.0.0.1.
    let (e, m) = error_of(&format!("wss://127.0.0.1:{port}/"), |c| {
        c.tls.ca_file = Some(ca.clone())
    });
    assert_eq!(e, ConnectError::Certificate, "{m}");
    assert!(described(&m), "{m}");
    assert!(
        m.contains(") is not valid for the name \"127.0.0.1\": it is for localhost"),
        "{m}"
    );

    // The server counts both refused handshakes (the client's alert ends
    // them before any HTTP was read).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while s.handle().stats().handshakes_failed < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.handle().stats().handshakes_failed, 2);

    // The insecure switch accepts it anyway.
    let mut cc = ClientConfig::new(format!("wss://127.0.0.1:{port}/"));
    cc.tls.insecure = true;
    let c = Client::connect_queued(cc).unwrap();
    connected(&c);

    // Expired before it was issued: webpki calls it expired, the message
    // says what is wrong with it.
    let dir2 = tempdir("tls-expired");
    let (ca2, cert2, key2) = make_pki(&dir2, -1);
    let cfg2 = Config {
        tls: Some(wsbroker::tls::server_config(&cert2, &key2).unwrap()),
        ..Config::default()
    };
    let s2 = echo_server(cfg2);
    let (e, m) = error_of(&format!("wss://localhost:{}/", s2.local_addr().port()), |c| {
        c.tls.ca_file = Some(ca2)
    });
    assert_eq!(e, ConnectError::Certificate, "{m}");
    assert!(described(&m), "{m}");
    assert!(m.ends_with(") has a validity period that ends before it begins"), "{m}");
}

/// A server that requires a client certificate and refuses the one sent
/// says why in its alert: the client's message names its certificate.
#[test]
fn a_refused_client_certificate_is_named() {
    let dir = tempdir("refused-client-cert");
    let (ca, cert, key) = make_pki(&dir, 2);
    let other = tempdir("refused-client-cert-other");
    let (_, other_cert, other_key) = make_pki_named(&other, 2, "another CA");
    let s = echo_server(Config {
        tls: Some(requiring_client_certs(&ca, &cert, &key)),
        ..Config::default()
    });
    let (e, m) = error_of(&format!("wss://localhost:{}/", s.local_addr().port()), |c| {
        c.tls.ca_file = Some(ca.clone());
        c.tls.system_roots = false;
        c.tls.client_cert = Some((other_cert, other_key));
    });
    assert_eq!(e, ConnectError::Tls, "{m}");
    assert!(
        m.contains(
            "failed: the server refused the client certificate (subject CN=localhost, issued by CN=another CA, valid "
        ),
        "{m}"
    );
    assert!(
        m.ends_with("): the server does not trust its issuer (received fatal alert: UnknownCA)"),
        "{m}"
    );
}

#[test]
fn reconnects_after_the_server_restarts() {
    let s = echo_server(Config::default());
    let addr = s.local_addr();
    let mut cfg = ClientConfig::new(format!("ws://{addr}/"));
    cfg.reconnect = Some(Reconnect {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
        ..Reconnect::default()
    });
    let c = Client::connect_queued(cfg).unwrap();
    connected(&c);
    s.shutdown();
    let mut saw_reconnecting = 0;
    let mut restarted = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        match c.poll(Some(Duration::from_millis(200))) {
            Ok(OwnedClientEvent::Reconnecting { .. }) => {
                saw_reconnecting += 1;
                if saw_reconnecting == 2 && restarted.is_none() {
                    restarted = Some(echo_server(Config {
                        bind: addr,
                        ..Config::default()
                    }));
                }
            }
            Ok(OwnedClientEvent::Connected { .. }) => break,
            _ => {}
        }
    }
    assert!(saw_reconnecting >= 2, "every attempt is reported");
    assert!(c.is_connected(), "the client came back");
    c.send(b"again", true).unwrap();
    assert_eq!(next(&c).payload(), b"again");
}

#[test]
fn without_reconnect_a_lost_connection_stays_lost() {
    let s = echo_server(Config::default());
    let addr = s.local_addr();
    let c = Client::connect_queued(ClientConfig::new(format!("ws://{addr}/"))).unwrap();
    connected(&c);
    s.shutdown();
    assert!(matches!(next(&c), OwnedClientEvent::Closed { by_host: false, .. }));
    // The server comes back at once; a client that retried (the reconnect
    // default would be 500 ms ± 20 %) would be seen there within 1.5 s.
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = opened.clone();
    let _again = Server::start(
        Config {
            bind: addr,
            ..Config::default()
        },
        move |_: &ServerHandle, e: Event<'_>| {
            if let Event::Open { .. } = e {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        },
    )
    .unwrap();
    match c.poll(Some(Duration::from_millis(1500))) {
        Err(wsbroker::engine::PollError::Timeout) => {}
        other => panic!("expected no event, got {other:?}"),
    }
    assert_eq!(
        opened.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no attempt reached the server"
    );
    assert!(!c.is_connected());
}

#[test]
fn reconnect_gives_up_after_max_attempts_and_says_so() {
    let s = echo_server(Config::default());
    let mut cfg = ClientConfig::new(format!("ws://{}/", s.local_addr()));
    cfg.reconnect = Some(Reconnect {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(100),
        max_attempts: 2,
        ..Reconnect::default()
    });
    let c = Client::connect_queued(cfg).unwrap();
    connected(&c);
    s.shutdown();
    let mut kinds = Vec::new();
    loop {
        let e = next(&c);
        let end = matches!(e, OwnedClientEvent::GaveUp { .. });
        kinds.push(match e {
            OwnedClientEvent::Closed { .. } => "closed".to_string(),
            OwnedClientEvent::Reconnecting { attempt, .. } => format!("reconnecting {attempt}"),
            OwnedClientEvent::Error { error, .. } => format!("error {error:?}"),
            OwnedClientEvent::GaveUp { attempts } => format!("gave up {attempts}"),
            e => format!("{e:?}"),
        });
        if end {
            break;
        }
    }
    assert_eq!(
        kinds,
        [
            "closed",
            "reconnecting 1",
            "error Refused",
            "reconnecting 2",
            "error Refused",
            "gave up 2"
        ]
    );
    // Nothing follows.
    assert!(c.poll(Some(Duration::from_millis(500))).is_err());
    assert!(c.send(b"x", true).is_err());
}

// ---- server TLS through the C API ----

fn c_last_error() -> String {
    let mut buf = [0 as std::ffi::c_char; 512];
    unsafe { wsbroker::ffi::wsb_last_error(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.to_str().unwrap()).unwrap()
}

/// Calls `f` with the two paths as C strings (NULL for `None`).
fn with_paths<R>(
    c: Option<&Path>,
    k: Option<&Path>,
    f: impl FnOnce(*const std::ffi::c_char, *const std::ffi::c_char) -> R,
) -> R {
    let (c, k) = (c.map(cpath), k.map(cpath));
    let p = |s: &Option<std::ffi::CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    f(p(&c), p(&k))
}

/// A wss:// client trusting only `ca` sends `send`; returns the text of the
/// first message it gets (panics when it cannot connect or nothing comes).
fn wss_round_trip(url: &str, ca: &Path, send: &str) -> String {
    let mut cc = ClientConfig::new(url);
    cc.tls.ca_file = Some(ca.to_owned());
    cc.tls.system_roots = false;
    let c = Client::connect_queued(cc).unwrap();
    connected(&c);
    c.send(send.as_bytes(), true).unwrap();
    String::from_utf8(next_msg(&c).payload().to_vec()).unwrap()
}

/// Each way a certificate and key pair can be unusable, with the result and
/// the words `set_tls` reports; `set` is one of the C setters.
fn check_tls_file_errors(dir: &Path, set: &dyn Fn(Option<&Path>, Option<&Path>) -> wsbroker::ffi::wsb_result) {
    use wsbroker::ffi::wsb_result;
    std::fs::create_dir_all(dir).unwrap();
    let (_, cert, key) = make_pki(dir, 2);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, _, other_key) = make_pki(&other, 2);
    let bad_key = dir.join("bad.key");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let missing = dir.join("missing.pem");
    for (c, k, words) in [
        (&missing, &key, "cannot read"),
        (&key, &key, "no certificate found in"),
        (&cert, &cert, "no private key found in"),
        (&cert, &bad_key, "unusable private key in"),
        (&cert, &other_key, "does not belong to the certificate"),
    ] {
        assert_eq!(set(Some(c), Some(k)), wsb_result::InvalidArgument, "{c:?} {k:?}");
        let e = c_last_error();
        assert!(e.contains(words), "{c:?} {k:?}: {e}");
    }
    assert!(c_last_error().contains(other_key.to_str().unwrap()));
    assert_eq!(set(Some(&cert), None), wsb_result::NullPointer);
    assert_eq!(set(None, Some(&key)), wsb_result::NullPointer);
}

#[test]
fn c_server_serves_wss_and_explains_bad_files() {
    use wsbroker::ffi::server::*;
    use wsbroker::ffi::wsb_result;
    let dir = tempdir("c-server-tls");
    let cfg = wsb_server_config_new();
    let set =
        |c: Option<&Path>, k: Option<&Path>| with_paths(c, k, |c, k| unsafe { wsb_server_config_set_tls(cfg, c, k) });
    check_tls_file_errors(&dir.join("errors"), &set);
    let good = dir.join("good");
    std::fs::create_dir_all(&good).unwrap();
    let (ca, cert, key) = make_pki(&good, 2);
    assert_eq!(set(Some(&cert), Some(&key)), wsb_result::Ok);
    // A failed call leaves the configuration as it was: still TLS.
    assert_eq!(set(Some(&dir.join("nope")), Some(&key)), wsb_result::InvalidArgument);

    unsafe extern "C" fn echo(_: *mut std::ffi::c_void, s: *mut wsb_server, ev: *const wsb_event) {
        let ev = unsafe { &*ev };
        if ev.kind == wsb_event_type::Message as u32 {
            unsafe { wsb_server_write(s, ev.conn, ev.data, ev.len, ev.is_text) };
        }
    }
    let mut server = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_server_new(cfg, Some(echo), std::ptr::null_mut(), None, &mut server) },
        wsb_result::Ok
    );
    let port = unsafe { wsb_server_port(server) };
    assert_eq!(
        wss_round_trip(&format!("wss://localhost:{port}/"), &ca, "over tls"),
        "over tls"
    );
    // Plain ws:// gets no upgrade from a TLS listener.
    let (e, m) = error_of(&format!("ws://localhost:{port}/"), |_| {});
    assert_eq!(e, ConnectError::Handshake, "{m}");
    unsafe { wsb_server_free(server) };

    // Both NULL: plain ws:// again.
    assert_eq!(set(None, None), wsb_result::Ok);
    let mut server = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_server_new(cfg, Some(echo), std::ptr::null_mut(), None, &mut server) },
        wsb_result::Ok
    );
    let port = unsafe { wsb_server_port(server) };
    let c = Client::connect_queued(ClientConfig::new(format!("ws://127.0.0.1:{port}/"))).unwrap();
    connected(&c);
    unsafe {
        wsb_server_free(server);
        wsb_server_config_free(cfg);
    }
}

#[test]
fn c_app_service_and_broker_listeners_serve_wss() {
    use wsbroker::ffi::appws::*;
    use wsbroker::ffi::broker::*;
    use wsbroker::ffi::wsb_result;
    let dir = tempdir("c-listener-tls");
    let (ca, cert, key) = make_pki(&dir, 2);
    let (c, k) = (cpath(&cert), cpath(&key));

    // The app service, with its built-in echo.
    let scfg = wsb_appws_service_config_new();
    unsafe {
        assert_eq!(
            wsb_appws_service_config_add_app(scfg, c"demo".as_ptr(), c"pw".as_ptr()),
            wsb_result::Ok
        );
        assert_eq!(wsb_appws_service_config_set_echo(scfg, true), wsb_result::Ok);
    }
    let set = |c: Option<&Path>, k: Option<&Path>| {
        with_paths(c, k, |c, k| unsafe { wsb_appws_service_config_set_tls(scfg, c, k) })
    };
    check_tls_file_errors(&dir.join("errors"), &set);
    assert_eq!(
        unsafe { wsb_appws_service_config_set_tls(scfg, c.as_ptr(), k.as_ptr()) },
        wsb_result::Ok
    );
    let mut svc = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_appws_service_new(scfg, None, std::ptr::null_mut(), None, &mut svc) },
        wsb_result::Ok
    );
    let port = unsafe { wsb_appws_service_port(svc) };
    let mut ac = wsbroker::appws::AppClientConfig::new(format!("wss://localhost:{port}/"), "demo", "pw");
    ac.client.tls.ca_file = Some(ca.clone());
    ac.client.tls.system_roots = false;
    let app = wsbroker::appws::AppClient::connect_queued(ac).unwrap();
    let next_app = || app.poll(Some(Duration::from_secs(10))).expect("an event within 10 s");
    assert_eq!(next_app(), wsbroker::appws::OwnedAppClientEvent::Connected);
    app.send_json(r#"{"mt":"Ping","src":"s1"}"#).unwrap();
    match next_app() {
        wsbroker::appws::OwnedAppClientEvent::Message { mt, src, .. } => {
            assert_eq!((mt.as_deref(), src.as_deref()), (Some("PingResult"), Some("s1")))
        }
        e => panic!("{e:?}"),
    }
    drop(app);
    unsafe {
        wsb_appws_service_free(svc);
        wsb_appws_service_config_free(scfg);
    }

    // The broker: TLS per listener; the admin socket is plain TCP.
    let bcfg = wsb_broker_config_new();
    unsafe {
        assert_eq!(
            wsb_broker_config_set_listener(bcfg, wsb_listener::Wschat as u32, c"127.0.0.1:0".as_ptr()),
            wsb_result::Ok
        );
        assert_eq!(
            wsb_broker_config_set_listener_tls(bcfg, wsb_listener::WebtalkAdmin as u32, c.as_ptr(), k.as_ptr()),
            wsb_result::InvalidArgument
        );
        assert!(c_last_error().contains("plain TCP"), "{}", c_last_error());
        assert_eq!(
            wsb_broker_config_set_listener_tls(bcfg, 99, c.as_ptr(), k.as_ptr()),
            wsb_result::InvalidArgument
        );
    }
    let set = |c: Option<&Path>, k: Option<&Path>| {
        with_paths(c, k, |c, k| unsafe {
            wsb_broker_config_set_listener_tls(bcfg, wsb_listener::Achex as u32, c, k)
        })
    };
    check_tls_file_errors(&dir.join("errors2"), &set);
    assert_eq!(set(Some(&cert), Some(&key)), wsb_result::Ok);
    let mut broker = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_broker_new(bcfg, None, std::ptr::null_mut(), None, &mut broker) },
        wsb_result::Ok
    );
    let achex = unsafe { wsb_broker_port(broker, wsb_listener::Achex as u32) };
    let wschat = unsafe { wsb_broker_port(broker, wsb_listener::Wschat as u32) };
    // Achex greets each session with its SID.
    let reply = wss_round_trip(
        &format!("wss://localhost:{achex}/"),
        &ca,
        r#"{"setID":"alice","passwd":"a"}"#,
    );
    assert!(reply.starts_with(r#"{"SID":"#), "{reply}");
    // TLS is per listener: WSChat stays ws://.
    let c = Client::connect_queued(ClientConfig::new(format!("ws://127.0.0.1:{wschat}/"))).unwrap();
    connected(&c);
    let (e, m) = error_of(&format!("ws://127.0.0.1:{achex}/"), |_| {});
    assert_eq!(e, ConnectError::Handshake, "{m}");
    unsafe {
        wsb_broker_free(broker);
        wsb_broker_config_free(bcfg);
    }
}

/// Server TLS that asks for a client certificate signed by `ca`.
fn requiring_client_certs(ca: &Path, cert: &Path, key: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    std::sync::Arc::new(cfg)
}

#[test]
fn c_appws_client_tls_settings() {
    use wsbroker::ffi::appws::*;
    use wsbroker::ffi::wsb_result;
    let dir = tempdir("c-appws-client-tls");
    let (ca, cert, key) = make_pki(&dir, 2);
    let mut scfg = wsbroker::appws::AppServiceConfig::new();
    scfg.apps.push(("demo".into(), "demo".into()));
    scfg.echo = true;
    // The server certificate has no extended key usage, so it serves as a client certificate too.
    scfg.engine.tls = Some(requiring_client_certs(&ca, &cert, &key));
    let svc = wsbroker::appws::AppService::start_queued(scfg).unwrap();
    let url = std::ffi::CString::new(format!("wss://localhost:{}/", svc.local_addr().port())).unwrap();

    let config = || {
        let cfg = unsafe { wsb_appws_client_config_new(url.as_ptr(), c"demo".as_ptr(), c"demo".as_ptr()) };
        assert_eq!(
            unsafe { wsb_appws_client_config_set_system_roots(cfg, false) },
            wsb_result::Ok
        );
        cfg
    };
    let start = |cfg: *mut wsb_appws_client_config| {
        let mut c = std::ptr::null_mut();
        let r = unsafe { wsb_appws_client_new(cfg, None, std::ptr::null_mut(), None, &mut c) };
        unsafe { wsb_appws_client_config_free(cfg) };
        (r, c)
    };
    let first_event = |c: *mut wsb_appws_client| {
        let mut ev: wsb_appws_client_event = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { wsb_appws_client_poll(c, 10_000, &mut ev) }, wsb_result::Ok);
        unsafe { wsb_appws_client_free(c) };
        (ev.kind, ev.error)
    };

    // Without the system roots and without a CA file nothing is trusted.
    let (r, _) = start(config());
    assert_eq!(r, wsb_result::InvalidArgument);
    assert!(c_last_error().contains("no trusted root"), "{}", c_last_error());

    // A client certificate that cannot be read is named.
    let cfg = config();
    let missing = cpath(&dir.join("missing.pem"));
    let (ca_c, cert_c, key_c) = (cpath(&ca), cpath(&cert), cpath(&key));
    unsafe {
        assert_eq!(wsb_appws_client_config_set_ca_file(cfg, ca_c.as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_appws_client_config_set_client_cert(cfg, missing.as_ptr(), key_c.as_ptr()),
            wsb_result::Ok
        );
    }
    let (r, _) = start(cfg);
    assert_eq!(r, wsb_result::InvalidArgument);
    assert!(c_last_error().contains("missing.pem"), "{}", c_last_error());

    // The service asks for a certificate: with one the login goes through...
    let cfg = config();
    unsafe {
        assert_eq!(wsb_appws_client_config_set_ca_file(cfg, ca_c.as_ptr()), wsb_result::Ok);
        assert_eq!(
            wsb_appws_client_config_set_client_cert(cfg, cert_c.as_ptr(), key_c.as_ptr()),
            wsb_result::Ok
        );
    }
    let (r, c) = start(cfg);
    assert_eq!(r, wsb_result::Ok);
    assert_eq!(first_event(c), (wsb_appws_client_event_type::Connected as u32, 0));

    // ...and without one the connection never opens.
    let cfg = config();
    assert_eq!(
        unsafe { wsb_appws_client_config_set_ca_file(cfg, ca_c.as_ptr()) },
        wsb_result::Ok
    );
    let (r, c) = start(cfg);
    assert_eq!(r, wsb_result::Ok);
    let (kind, error) = first_event(c);
    assert_eq!(kind, wsb_appws_client_event_type::Closed as u32);
    assert_ne!(error, 0, "a failed attempt, not a closed connection");
    svc.shutdown();
}

#[test]
fn c_concurrent_client_polls_each_keep_their_own_timeout() {
    use wsbroker::ffi::client::*;
    use wsbroker::ffi::wsb_result;
    let s = echo_server(Config::default());
    let url = std::ffi::CString::new(format!("ws://{}/", s.local_addr())).unwrap();
    let cfg = unsafe { wsb_client_config_new(url.as_ptr()) };
    let mut c = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_client_new(cfg, None, std::ptr::null_mut(), None, &mut c) },
        wsb_result::Ok
    );
    let addr = c as usize;
    let poll = move |ms: i32| {
        let mut ev: wsb_client_event = unsafe { std::mem::zeroed() };
        let t0 = std::time::Instant::now();
        let r = unsafe { wsb_client_poll(addr as *mut wsb_client, ms, &mut ev) };
        (r, ev.kind, t0.elapsed())
    };
    assert_eq!(poll(10_000).1, wsb_client_event_type::Connected as u32);
    common::check_polls_keep_their_own_timeouts(
        poll,
        || assert_eq!(unsafe { wsb_client_send(c, b"x".as_ptr(), 1, true) }, wsb_result::Ok),
        wsb_client_event_type::Message as u32,
    );
    unsafe {
        assert_eq!(wsb_client_free(c), wsb_result::Ok);
        wsb_client_config_free(cfg);
    }
}

#[test]
fn c_concurrent_appws_client_polls_each_keep_their_own_timeout() {
    use wsbroker::ffi::appws::*;
    use wsbroker::ffi::wsb_result;
    let mut scfg = wsbroker::appws::AppServiceConfig::new();
    scfg.apps.push(("demo".into(), "demo".into()));
    scfg.echo = true;
    let svc = wsbroker::appws::AppService::start_queued(scfg).unwrap();
    let u = std::ffi::CString::new(format!("ws://{}/", svc.local_addr())).unwrap();
    let cfg = unsafe { wsb_appws_client_config_new(u.as_ptr(), c"demo".as_ptr(), c"demo".as_ptr()) };
    let mut c = std::ptr::null_mut();
    assert_eq!(
        unsafe { wsb_appws_client_new(cfg, None, std::ptr::null_mut(), None, &mut c) },
        wsb_result::Ok
    );
    let addr = c as usize;
    let poll = move |ms: i32| {
        let mut ev: wsb_appws_client_event = unsafe { std::mem::zeroed() };
        let t0 = std::time::Instant::now();
        let r = unsafe { wsb_appws_client_poll(addr as *mut wsb_appws_client, ms, &mut ev) };
        (r, ev.kind, t0.elapsed())
    };
    assert_eq!(poll(10_000).1, wsb_appws_client_event_type::Connected as u32);
    common::check_polls_keep_their_own_timeouts(
        poll,
        || {
            assert_eq!(
                unsafe { wsb_appws_client_send(c, cr#"{"mt":"Ping"}"#.as_ptr()) },
                wsb_result::Ok
            )
        },
        wsb_appws_client_event_type::Message as u32,
    );
    unsafe {
        assert_eq!(wsb_appws_client_free(c), wsb_result::Ok);
        wsb_appws_client_config_free(cfg);
    }
    svc.shutdown();
}
