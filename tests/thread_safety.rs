//! Four host threads write to 100 connections through the C API while the
//! connections echo: every message arrives exactly once, in order per writer.

use std::collections::HashMap;
use std::ffi::c_void;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::Message;
use wsbroker::ffi::server::*;
use wsbroker::ffi::wsb_result;

const CLIENTS: usize = 100;
const WRITERS: usize = 4;
const PER_WRITER: usize = 200;
const ECHOES: usize = 50;

#[derive(Default)]
struct Shared {
    opened: Mutex<Vec<u64>>,
}

unsafe extern "C" fn on_event(ud: *mut c_void, server: *mut wsb_server, ev: *const wsb_event) {
    let shared = &*(ud as *const Shared);
    let ev = &*ev;
    if ev.kind == wsb_event_type::Open as u32 {
        shared.opened.lock().unwrap().push(ev.conn);
    } else if ev.kind == wsb_event_type::Message as u32 {
        let r = wsb_server_write(server, ev.conn, ev.data, ev.len, ev.is_text);
        assert!(r == wsb_result::Ok || r == wsb_result::Backpressure, "{r:?}");
    }
}

unsafe extern "C" fn free_shared(ud: *mut c_void) {
    drop(Arc::from_raw(ud as *const Shared));
}

struct Srv(*mut wsb_server);
unsafe impl Send for Srv {}
unsafe impl Sync for Srv {}

#[test]
fn four_writers_and_echo_on_a_hundred_connections() {
    let shared = Arc::new(Shared::default());
    let mut server: *mut wsb_server = std::ptr::null_mut();
    let cfg = wsb_server_config_new();
    unsafe {
        assert_eq!(wsb_server_config_set_threads(cfg, 2), wsb_result::Ok);
        let ud = Arc::into_raw(shared.clone()) as *mut c_void;
        assert_eq!(
            wsb_server_new(cfg, Some(on_event), ud, Some(free_shared), &mut server),
            wsb_result::Ok
        );
        wsb_server_config_free(cfg);
    }
    let port = unsafe { wsb_server_port(server) };
    let srv = Arc::new(Srv(server));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).unwrap();
                for i in 0..ECHOES {
                    ws.send(Message::text(format!("e:{i}"))).unwrap();
                }
                let mut next: HashMap<String, usize> = HashMap::new();
                let want = WRITERS * PER_WRITER + ECHOES;
                let mut got = 0;
                while got < want {
                    let m = ws.read().unwrap();
                    let Message::Text(t) = m else { continue };
                    let (who, seq) = t.split_once(':').unwrap();
                    let seq: usize = seq.parse().unwrap();
                    let n = next.entry(who.to_owned()).or_insert(0);
                    assert_eq!(seq, *n, "out of order or duplicate from {who}");
                    *n += 1;
                    got += 1;
                }
                assert_eq!(next["e"], ECHOES);
                for w in 0..WRITERS {
                    assert_eq!(next[&format!("w{w}")], PER_WRITER);
                }
                ws.close(None).unwrap();
                // Drain until the close handshake completes.
                while ws.read().is_ok() {}
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(20);
    while shared.opened.lock().unwrap().len() < CLIENTS {
        assert!(Instant::now() < deadline, "clients did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ids = shared.opened.lock().unwrap().clone();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ids = ids.clone();
            let srv = srv.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_WRITER {
                    for &id in &ids {
                        let msg = format!("w{w}:{seq}");
                        let r = unsafe { wsb_server_write(srv.0, id, msg.as_ptr(), msg.len(), true) };
                        assert!(r == wsb_result::Ok || r == wsb_result::Backpressure, "{r:?}");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for c in clients {
        c.join().unwrap();
    }
    let mut st = wsb_stats::default();
    unsafe {
        assert_eq!(wsb_server_stats(server, &mut st), wsb_result::Ok);
        assert_eq!(st.messages_out as usize, CLIENTS * (WRITERS * PER_WRITER + ECHOES));
        assert_eq!(wsb_server_free(server), wsb_result::Ok);
        // Freeing twice is an error code, not a crash.
        assert_eq!(wsb_server_free(server), wsb_result::NotFound);
        assert_eq!(
            wsb_server_write(server, ids[0], b"x".as_ptr(), 1, true),
            wsb_result::NotFound
        );
    }
    // userdata_free released the test's reference.
    assert_eq!(Arc::strong_count(&shared), 1);
}
