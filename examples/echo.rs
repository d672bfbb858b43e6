//! The echo server written against the Rust API (the C example's twin), so
//! the benchmark can measure what the C boundary costs.
//!
//! `cargo run --release --example echo -- PORT` prints
//! `listening on 127.0.0.1:<port>` and echoes until SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsbroker::{Config, Event, Server, ServerHandle};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: echo PORT");
            std::process::exit(2);
        }
    };
    let cfg = Config {
        bind: ([127, 0, 0, 1], port).into(),
        ..Config::default()
    };
    let server = match Server::start(cfg, |s: &ServerHandle, e: Event<'_>| {
        if let Event::Message { conn, data, text } = e {
            let _ = s.send(conn, data, text);
        }
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: the handler only stores to an atomic, which is signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    println!("listening on {}", server.local_addr());
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown();
}
