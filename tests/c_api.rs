//! The C boundary's promises: results, never crashes, for misuse of every kind.

use std::ffi::{c_void, CStr};
use std::net::TcpStream;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tungstenite::Message;
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
