//! The C boundary's promises: results, never crashes, for misuse of every kind.

mod common;

use std::ffi::{c_void, CStr};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tungstenite::Message;
use wsbroker::ffi::appws::*;
use wsbroker::ffi::broker::*;
use wsbroker::ffi::client::*;
use wsbroker::ffi::server::*;
use wsbroker::ffi::{wsb_last_error, wsb_result};

fn last_error() -> String {
    let mut buf = [0i8; 256];
    unsafe { wsb_last_error(buf.as_mut_ptr(), buf.len(), null_mut()) };
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

fn connect(port: u16) -> tungstenite::WebSocket<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tungstenite::client(format!("ws://127.0.0.1:{port}/p?q=1"), tcp)
        .unwrap()
        .0
}

fn poll(s: *mut wsb_server) -> wsb_event {
    let mut ev: wsb_event = unsafe { std::mem::zeroed() };
    let r = unsafe { wsb_server_poll(s, 5000, &mut ev) };
    assert_eq!(r, wsb_result::Ok);
    ev
}

#[test]
fn null_and_unknown_pointers_give_results() {
    unsafe {
        assert_eq!(wsb_server_free(null_mut()), wsb_result::Ok);
        wsb_server_config_free(null_mut());
        let fake = 0x1000 as *mut wsb_server;
        assert_eq!(wsb_server_free(fake), wsb_result::NotFound);
        assert_eq!(wsb_server_write(fake, 1, b"x".as_ptr(), 1, true), wsb_result::NotFound);
        assert_eq!(
            wsb_server_write(null_mut(), 1, b"x".as_ptr(), 1, true),
            wsb_result::NullPointer
        );
        assert!(!wsb_server_is_valid(fake, 1));
        assert_eq!(wsb_server_port(null()), 0);
        assert_eq!(
            wsb_server_new(null(), None, null_mut(), None, null_mut()),
            wsb_result::NullPointer
        );
        let cfg = wsb_server_config_new();
        assert_eq!(
            wsb_server_config_set_bind(cfg, c"nonsense".as_ptr()),
            wsb_result::InvalidArgument
        );
        assert!(last_error().contains("nonsense"), "{}", last_error());
        assert_eq!(wsb_server_config_set_bind(cfg, null()), wsb_result::NullPointer);
        assert_eq!(wsb_server_config_set_threads(cfg, 0), wsb_result::InvalidArgument);
        assert_eq!(
            wsb_server_config_set_outbound_limits(cfg, 10, 5),
            wsb_result::InvalidArgument
        );
        assert_eq!(wsb_server_config_set_threads(null_mut(), 1), wsb_result::NullPointer);
        wsb_server_config_free(cfg);
    }
}

static FREED: AtomicU32 = AtomicU32::new(0);
unsafe extern "C" fn count_free(_: *mut c_void) {
    FREED.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn bind_failure_reports_addr_in_use_and_releases_userdata() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std::ffi::CString::new(taken.local_addr().unwrap().to_string()).unwrap();
    unsafe {
        let cfg = wsb_server_config_new();
        assert_eq!(wsb_server_config_set_bind(cfg, addr.as_ptr()), wsb_result::Ok);
        let mut s = null_mut();
        let before = FREED.load(Ordering::SeqCst);
        assert_eq!(
            wsb_server_new(cfg, None, null_mut(), Some(count_free), &mut s),
            wsb_result::AddrInUse
        );
        assert!(s.is_null());
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1);
        assert!(last_error().contains("in use"), "{}", last_error());
        wsb_server_config_free(cfg);
    }
}

#[test]
fn queue_mode_events_stale_ids_and_writes_after_close() {
    let mut s = null_mut();
    unsafe {
        assert_eq!(wsb_server_new(null(), None, null_mut(), None, &mut s), wsb_result::Ok);
        let mut ev: wsb_event = std::mem::zeroed();
        assert_eq!(wsb_server_poll(s, 0, &mut ev), wsb_result::Timeout);
    }
    let port = unsafe { wsb_server_port(s) };
    let mut ws = connect(port);
    let open = poll(s);
    assert_eq!(open.kind, wsb_event_type::Open as u32);
    let path = unsafe { CStr::from_ptr(open.path) }.to_str().unwrap().to_owned();
    assert_eq!(path, "/p?q=1");
    let id = open.conn;
    assert!(unsafe { wsb_server_is_valid(s, id) });

    ws.send(Message::binary(vec![0u8, 1, 0])).unwrap();
    let m = poll(s);
    assert_eq!(m.kind, wsb_event_type::Message as u32);
    assert!(!m.is_text);
    let data = unsafe { std::slice::from_raw_parts(m.data, m.len + 1) };
    assert_eq!(data, &[0, 1, 0, 0], "binary data is NUL-terminated too");

    unsafe {
        // Invalid UTF-8 as text is refused; the connection stays usable.
        assert_eq!(
            wsb_server_write(s, id, [0xFFu8].as_ptr(), 1, true),
            wsb_result::InvalidUtf8
        );
        assert_eq!(wsb_server_ping(s, id, [0u8; 126].as_ptr(), 126), wsb_result::TooBig);
        assert_eq!(
            wsb_server_write(s, id + 1000, b"x".as_ptr(), 1, true),
            wsb_result::NotFound
        );
        assert_eq!(wsb_server_write(s, id, b"hi".as_ptr(), 2, true), wsb_result::Ok);
    }
    assert_eq!(ws.read().unwrap(), Message::text("hi"));
    unsafe {
        assert_eq!(wsb_server_close(s, id, 0, c"done".as_ptr()), wsb_result::Ok);
        assert!(!wsb_server_is_valid(s, id));
        assert_eq!(wsb_server_write(s, id, b"x".as_ptr(), 1, true), wsb_result::Closed);
        assert_eq!(wsb_server_close(s, id, 1000, null()), wsb_result::Closed);
    }
    match ws.read().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 1000, "code <= 0 is sent as 1000");
            assert_eq!(f.reason.as_str(), "done");
        }
        m => panic!("{m:?}"),
    }
    while ws.read().is_ok() {}
    let close = poll(s);
    assert_eq!(close.kind, wsb_event_type::Close as u32);
    assert!(close.closed_by_host);
    assert_eq!(close.close_status, 1000);
    unsafe {
        // Now the id is stale.
        assert_eq!(wsb_server_write(s, id, b"x".as_ptr(), 1, true), wsb_result::NotFound);
        assert_eq!(wsb_server_interrupt(s), wsb_result::Ok);
        let mut ev: wsb_event = std::mem::zeroed();
        assert_eq!(wsb_server_poll(s, 5000, &mut ev), wsb_result::Interrupted);
        assert_eq!(wsb_server_free(s), wsb_result::Ok);
        assert_eq!(wsb_server_free(s), wsb_result::NotFound);
    }
}

static REENTRANT_RESULT: AtomicU32 = AtomicU32::new(u32::MAX);
static PEER_STATUS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn try_free_inside(_: *mut c_void, server: *mut wsb_server, ev: *const wsb_event) {
    let ev = &*ev;
    if ev.kind == wsb_event_type::Message as u32 {
        REENTRANT_RESULT.store(wsb_server_free(server) as u32, Ordering::SeqCst);
        let _ = wsb_server_write(server, ev.conn, ev.data, ev.len, ev.is_text);
    } else if ev.kind == wsb_event_type::Close as u32 {
        PEER_STATUS.store(
            ev.close_status as u64 | ((ev.closed_by_host as u64) << 32),
            Ordering::SeqCst,
        );
    }
}

#[test]
fn freeing_inside_the_callback_is_refused_and_callback_mode_cannot_poll() {
    let mut s = null_mut();
    unsafe {
        assert_eq!(
            wsb_server_new(null(), Some(try_free_inside), null_mut(), None, &mut s),
            wsb_result::Ok
        );
        let mut ev: wsb_event = std::mem::zeroed();
        assert_eq!(wsb_server_poll(s, 0, &mut ev), wsb_result::InvalidState);
    }
    let mut ws = connect(unsafe { wsb_server_port(s) });
    ws.send(Message::text("x")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("x"));
    assert_eq!(REENTRANT_RESULT.load(Ordering::SeqCst), wsb_result::Reentrant as u32);
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: 4321.into(),
        reason: "bye".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while PEER_STATUS.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(PEER_STATUS.load(Ordering::SeqCst), 4321, "peer close code, not by host");
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

fn poll_for(s: *mut wsb_server, ms: i32) -> Result<wsb_event, wsb_result> {
    let mut ev: wsb_event = unsafe { std::mem::zeroed() };
    match unsafe { wsb_server_poll(s, ms, &mut ev) } {
        wsb_result::Ok => Ok(ev),
        r => Err(r),
    }
}

/// A queue-mode server with `setup` applied to its configuration.
fn queue_server(setup: impl FnOnce(*mut wsb_server_config)) -> (*mut wsb_server, SocketAddr) {
    let mut s = null_mut();
    unsafe {
        let cfg = wsb_server_config_new();
        setup(cfg);
        assert_eq!(wsb_server_new(cfg, None, null_mut(), None, &mut s), wsb_result::Ok);
        wsb_server_config_free(cfg);
    }
    let port = unsafe { wsb_server_port(s) };
    (s, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The next event of `kind` (others skipped), within 10 s.
fn next(s: *mut wsb_server, kind: wsb_event_type) -> wsb_event {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(ev) = poll_for(s, 200) {
            if ev.kind == kind as u32 {
                return ev;
            }
        }
    }
    panic!("no {kind:?} event");
}

#[test]
fn freeing_a_config_twice_or_using_it_afterwards_gives_results_for_every_kind() {
    unsafe {
        // Server: the freed configuration is unknown to setters and to _new;
        // a newer configuration (likely at the same address) is untouched by
        // the stale pointer.
        let a = wsb_server_config_new();
        wsb_server_config_free(a);
        wsb_server_config_free(a);
        assert!(last_error().contains("unknown config"), "{}", last_error());
        assert_eq!(wsb_server_config_set_threads(a, 2), wsb_result::NotFound);
        let mut s = null_mut();
        assert_eq!(wsb_server_new(a, None, null_mut(), None, &mut s), wsb_result::NotFound);
        assert!(s.is_null());
        let b = wsb_server_config_new();
        assert_ne!(a, b);
        wsb_server_config_free(a);
        assert_eq!(wsb_server_config_set_max_connections(b, 7), wsb_result::Ok);
        assert_eq!(wsb_server_new(b, None, null_mut(), None, &mut s), wsb_result::Ok);
        assert_eq!(wsb_server_free(s), wsb_result::Ok);
        wsb_server_config_free(b);

        let a = wsb_client_config_new(c"ws://127.0.0.1:9/".as_ptr());
        wsb_client_config_free(a);
        wsb_client_config_free(a);
        assert_eq!(wsb_client_config_set_insecure(a, true), wsb_result::NotFound);
        let mut c = null_mut();
        assert_eq!(wsb_client_new(a, None, null_mut(), None, &mut c), wsb_result::NotFound);
        let b = wsb_client_config_new(c"ws://127.0.0.1:9/".as_ptr());
        wsb_client_config_free(a);
        assert_eq!(wsb_client_config_set_insecure(b, true), wsb_result::Ok);
        wsb_client_config_free(b);

        let a = wsb_appws_client_config_new(c"ws://127.0.0.1:9/".as_ptr(), c"app".as_ptr(), c"pw".as_ptr());
        wsb_appws_client_config_free(a);
        wsb_appws_client_config_free(a);
        assert_eq!(wsb_appws_client_config_set_insecure(a, true), wsb_result::NotFound);
        let mut ac = null_mut();
        assert_eq!(
            wsb_appws_client_new(a, None, null_mut(), None, &mut ac),
            wsb_result::NotFound
        );
        let b = wsb_appws_client_config_new(c"ws://127.0.0.1:9/".as_ptr(), c"app".as_ptr(), c"pw".as_ptr());
        wsb_appws_client_config_free(a);
        assert_eq!(wsb_appws_client_config_set_insecure(b, true), wsb_result::Ok);
        wsb_appws_client_config_free(b);

        let a = wsb_appws_service_config_new();
        wsb_appws_service_config_free(a);
        wsb_appws_service_config_free(a);
        assert_eq!(wsb_appws_service_config_set_echo(a, true), wsb_result::NotFound);
        let mut svc = null_mut();
        assert_eq!(
            wsb_appws_service_new(a, None, null_mut(), None, &mut svc),
            wsb_result::NotFound
        );
        let b = wsb_appws_service_config_new();
        wsb_appws_service_config_free(a);
        assert_eq!(wsb_appws_service_config_set_echo(b, true), wsb_result::Ok);
        wsb_appws_service_config_free(b);

        let a = wsb_broker_config_new();
        wsb_broker_config_free(a);
        wsb_broker_config_free(a);
        assert_eq!(wsb_broker_config_set_achex_quiet(a, true), wsb_result::NotFound);
        let mut br = null_mut();
        assert_eq!(wsb_broker_new(a, None, null_mut(), None, &mut br), wsb_result::NotFound);
        let b = wsb_broker_config_new();
        wsb_broker_config_free(a);
        assert_eq!(wsb_broker_config_set_achex_quiet(b, true), wsb_result::Ok);
        wsb_broker_config_free(b);
    }
}

#[test]
fn a_stale_server_pointer_never_reaches_a_newer_server() {
    let (a, _) = queue_server(|_| {});
    assert_eq!(unsafe { wsb_server_free(a) }, wsb_result::Ok);
    // New servers are the same size as the freed one, so the allocator
    // hands its memory out again; the stale pointer must still name nothing.
    for _ in 0..20 {
        let (b, addr) = queue_server(|_| {});
        assert_ne!(a, b, "a freed server's pointer was handed out again");
        unsafe {
            assert_eq!(wsb_server_free(a), wsb_result::NotFound);
            assert_eq!(wsb_server_write(a, 1, b"x".as_ptr(), 1, true), wsb_result::NotFound);
        }
        // b still serves.
        let mut ws = common::connect(addr);
        let open = next(b, wsb_event_type::Open);
        unsafe {
            assert_eq!(
                wsb_server_write(b, open.conn, b"alive".as_ptr(), 5, true),
                wsb_result::Ok
            );
        }
        assert_eq!(common::recv_text(&mut ws), "alive");
        // Gone first, so that free need not wait for its closing handshake.
        drop(ws);
        assert_eq!(unsafe { wsb_server_free(b) }, wsb_result::Ok);
    }
}

/// What a queue-mode server's `userdata_free` frees: another queue-mode
/// server and a queue-mode client.
struct Others {
    server: usize,
    client: usize,
    done: std::sync::mpsc::Sender<(wsb_result, wsb_result)>,
}

unsafe extern "C" fn free_others(ud: *mut c_void) {
    let o = Box::from_raw(ud as *mut Others);
    let r = (
        wsb_server_free(o.server as *mut wsb_server),
        wsb_client_free(o.client as *mut wsb_client),
    );
    let _ = o.done.send(r);
}

#[test]
fn a_userdata_free_that_frees_other_queue_mode_objects_does_not_deadlock() {
    let (other, _) = queue_server(|_| {});
    let mut client = null_mut();
    unsafe {
        let cfg = wsb_client_config_new(c"ws://127.0.0.1:9/".as_ptr());
        assert_eq!(wsb_client_new(cfg, None, null_mut(), None, &mut client), wsb_result::Ok);
        wsb_client_config_free(cfg);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let ud = Box::into_raw(Box::new(Others {
        server: other as usize,
        client: client as usize,
        done: tx,
    }));
    let mut s = null_mut();
    unsafe {
        assert_eq!(
            wsb_server_new(null(), None, ud as *mut c_void, Some(free_others), &mut s),
            wsb_result::Ok
        );
    }
    let s = s as usize;
    let freeing = std::thread::spawn(move || unsafe { wsb_server_free(s as *mut wsb_server) });
    let freed = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("userdata_free did not finish: wsb_server_free deadlocked");
    assert_eq!(freed, (wsb_result::Ok, wsb_result::Ok));
    assert_eq!(freeing.join().unwrap(), wsb_result::Ok);
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn past_max_connections_the_upgrade_gets_503_until_one_goes() {
    let (s, addr) = queue_server(|c| unsafe {
        assert_eq!(wsb_server_config_set_max_connections(c, 2), wsb_result::Ok);
    });
    let mut first = common::connect(addr);
    let _second = common::connect(addr);
    let a = next(s, wsb_event_type::Open).conn;
    next(s, wsb_event_type::Open);
    assert_eq!(common::http_status(addr, UPGRADE), "HTTP/1.1 503 Service Unavailable");
    let mut st = wsb_stats::default();
    unsafe { assert_eq!(wsb_server_stats(s, &mut st), wsb_result::Ok) };
    assert_eq!((st.connections_open, st.handshakes_failed), (2, 1));
    // Once one connection has ended, a new one is accepted.
    first.close(None).unwrap();
    while first.read().is_ok() {}
    assert_eq!(next(s, wsb_event_type::Close).conn, a);
    let mut third = common::connect(addr);
    let c = next(s, wsb_event_type::Open).conn;
    unsafe { assert_eq!(wsb_server_write(s, c, b"in".as_ptr(), 2, true), wsb_result::Ok) };
    assert_eq!(common::recv_text(&mut third), "in");
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

/// A masked client frame with the FIN bit as given.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = common::raw_frame(opcode, payload);
    if !fin {
        f[0] &= 0x7F;
    }
    f
}

#[test]
fn a_frame_over_max_frame_size_gets_1009_while_a_larger_fragmented_message_passes() {
    let (s, addr) = queue_server(|c| unsafe {
        assert_eq!(wsb_server_config_set_max_frame_size(c, 1000), wsb_result::Ok);
    });
    let mut ws = common::connect(addr);
    let conn = next(s, wsb_event_type::Open).conn;
    // 1,800 bytes in frames of 600: every frame is under the limit.
    let part = vec![b'a'; 600];
    let mut bytes = frame(false, 0x1, &part);
    bytes.extend(frame(false, 0x0, &part));
    bytes.extend(frame(true, 0x0, &part));
    common::send_raw(&mut ws, &bytes);
    let m = next(s, wsb_event_type::Message);
    assert_eq!((m.conn, m.len, m.is_text), (conn, 1800, true));
    // One frame of 1,001 bytes is not.
    common::send_raw(&mut ws, &frame(true, 0x2, &[0u8; 1001]));
    let (code, _) = common::recv_close(&mut ws);
    assert_eq!(code, 1009);
    let close = next(s, wsb_event_type::Close);
    assert_eq!(
        (close.conn, close.close_status, close.closed_by_host),
        (conn, 1009, false)
    );
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

/// Closes `conn` from the host while its peer does not read (so never
/// answers), and returns how long the CLOSE event took.
fn close_unanswered(s: *mut wsb_server, conn: wsb_conn_id, first_wait_ms: i32) -> Duration {
    let start = Instant::now();
    unsafe { assert_eq!(wsb_server_close(s, conn, 4000, c"bye".as_ptr()), wsb_result::Ok) };
    if first_wait_ms > 0 {
        assert_eq!(
            poll_for(s, first_wait_ms).err(),
            Some(wsb_result::Timeout),
            "CLOSE before the peer's close frame could come"
        );
    }
    let close = next(s, wsb_event_type::Close);
    assert_eq!(
        (close.conn, close.close_status, close.closed_by_host),
        (conn, 4000, true)
    );
    start.elapsed()
}

/// The peer's raw socket, after the handshake: reads the close frame the
/// server sent, then end of stream (the server closed TCP on its own).
fn read_to_end(mut tcp: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).expect("the server ends the stream");
    got
}

#[test]
fn close_waits_for_the_peers_close_frame_up_to_the_configured_timeout() {
    let (s, addr) = queue_server(|c| unsafe {
        assert_eq!(wsb_server_config_set_close_timeout_ms(c, 400), wsb_result::Ok);
    });
    let peer = common::connect(addr).into_inner();
    let conn = next(s, wsb_event_type::Open).conn;
    let took = close_unanswered(s, conn, 250);
    assert!(
        took < Duration::from_secs(4),
        "took {took:?} with a 400 ms close timeout"
    );
    let got = read_to_end(peer);
    assert_eq!(&got[..4], &[0x88, 5, 0x0F, 0xA0], "close frame 4000 \"bye\"");
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

#[test]
fn close_waits_five_seconds_by_default() {
    let (s, addr) = queue_server(|_| {});
    let peer = common::connect(addr).into_inner();
    let conn = next(s, wsb_event_type::Open).conn;
    let took = close_unanswered(s, conn, 4000);
    assert!(took < Duration::from_secs(9), "took {took:?} with the 5 s default");
    assert_eq!(read_to_end(peer)[0], 0x88);
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

#[test]
fn backpressure_then_drain_through_the_c_api_and_every_byte_arrives() {
    let (s, addr) = queue_server(|c| unsafe {
        assert_eq!(
            wsb_server_config_set_outbound_limits(c, 64 << 10, 64 << 20),
            wsb_result::Ok
        );
    });
    let mut ws = common::connect(addr);
    let conn = next(s, wsb_event_type::Open).conn;
    // The peer does not read: write 16 KiB messages until the buffer passes
    // the soft limit.
    let chunk = vec![b'x'; 16 << 10];
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "never reported backpressure");
        let r = unsafe { wsb_server_write(s, conn, chunk.as_ptr(), chunk.len(), false) };
        match r {
            wsb_result::Ok => sent += 1,
            wsb_result::Backpressure => {
                sent += 1;
                break;
            }
            r => panic!("write: {r:?}"),
        }
    }
    // The peer reads everything; DRAIN follows, and writing is plain OK again.
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        while n < sent {
            match ws.read().expect("read") {
                Message::Binary(b) => {
                    assert_eq!(b.len(), 16 << 10);
                    n += 1;
                }
                m => panic!("unexpected {m:?}"),
            }
        }
        let last = ws.read().expect("read");
        (n, last)
    });
    assert_eq!(next(s, wsb_event_type::Drain).conn, conn);
    unsafe { assert_eq!(wsb_server_write(s, conn, b"after".as_ptr(), 5, true), wsb_result::Ok) };
    let (n, last) = reader.join().unwrap();
    assert_eq!(n, sent);
    assert_eq!(last, Message::text("after"));
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

#[test]
fn with_refuse_on_overflow_a_stalled_peer_gets_would_overflow_and_stays_open() {
    let (s, addr) = queue_server(|c| unsafe {
        assert_eq!(
            wsb_server_config_set_outbound_limits(c, 16 << 10, 256 << 10),
            wsb_result::Ok
        );
        assert_eq!(wsb_server_config_set_refuse_on_overflow(c, true), wsb_result::Ok);
    });
    let _peer = common::connect(addr).into_inner();
    let conn = next(s, wsb_event_type::Open).conn;
    let chunk = vec![0u8; 16 << 10];
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        assert!(Instant::now() < deadline, "the hard limit was never reached");
        let r = unsafe { wsb_server_write(s, conn, chunk.as_ptr(), chunk.len(), false) };
        if !matches!(r, wsb_result::Ok | wsb_result::Backpressure) {
            break r;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    assert_eq!(refused, wsb_result::WouldOverflow);
    assert!(unsafe { wsb_server_is_valid(s, conn) }, "refusal keeps the connection");
    assert!(last_error().contains(&format!("connection {conn}")), "{}", last_error());
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

#[test]
fn concurrent_server_polls_each_keep_their_own_timeout() {
    let (s, addr) = queue_server(|_| {});
    let mut ws = common::connect(addr);
    next(s, wsb_event_type::Open);
    let addr = s as usize;
    let poll = move |ms: i32| {
        let mut ev: wsb_event = unsafe { std::mem::zeroed() };
        let t0 = Instant::now();
        let r = unsafe { wsb_server_poll(addr as *mut wsb_server, ms, &mut ev) };
        (r, ev.kind, t0.elapsed())
    };
    common::check_polls_keep_their_own_timeouts(poll, || common::send(&mut ws, "x"), wsb_event_type::Message as u32);
    unsafe { assert_eq!(wsb_server_free(s), wsb_result::Ok) };
}

#[test]
fn concurrent_app_service_polls_each_keep_their_own_timeout() {
    use wsbroker::appws::{AppClient, AppClientConfig, OwnedAppClientEvent};
    let mut svc = null_mut();
    unsafe {
        let cfg = wsb_appws_service_config_new();
        assert_eq!(
            wsb_appws_service_config_add_app(cfg, c"demo".as_ptr(), c"demo".as_ptr()),
            wsb_result::Ok
        );
        assert_eq!(
            wsb_appws_service_new(cfg, None, null_mut(), None, &mut svc),
            wsb_result::Ok
        );
        wsb_appws_service_config_free(cfg);
    }
    let port = unsafe { wsb_appws_service_port(svc) };
    let client =
        AppClient::connect_queued(AppClientConfig::new(format!("ws://127.0.0.1:{port}/"), "demo", "demo")).unwrap();
    let addr = svc as usize;
    let poll = move |ms: i32| {
        let mut ev: wsb_appws_service_event = unsafe { std::mem::zeroed() };
        let t0 = Instant::now();
        let r = unsafe { wsb_appws_service_poll(addr as *mut wsb_appws_service, ms, &mut ev) };
        (r, ev.kind, t0.elapsed())
    };
    let (r, kind, _) = poll(10_000);
    assert_eq!((r, kind), (wsb_result::Ok, wsb_appws_service_event_type::Login as u32));
    assert_eq!(
        client.poll(Some(Duration::from_secs(10))).unwrap(),
        OwnedAppClientEvent::Connected
    );
    common::check_polls_keep_their_own_timeouts(
        poll,
        || {
            client.send_text(r#"{"mt":"Ping"}"#).unwrap();
        },
        wsb_appws_service_event_type::Message as u32,
    );
    drop(client);
    unsafe { assert_eq!(wsb_appws_service_free(svc), wsb_result::Ok) };
}
