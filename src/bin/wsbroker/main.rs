//! `wsbroker`: the daemon. One listener per dialect, each an address or `off`,
//! a status server, and a graceful shutdown on SIGINT/SIGTERM
//! (PROTOCOLS.md §1; flags in `config.rs`, `wsbroker --help`).

mod config;
mod http;
mod listeners;
mod log;
mod signal;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use config::{Command, Kind, Settings};
use listeners::Listener;
use log::{debug, error, info};

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    match config::parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", config::HELP);
            0
        }
        Ok(Command::Version) => {
            println!("wsbroker {}", wsbroker::VERSION);
            0
        }
        Ok(Command::Run(settings)) => serve(&settings),
        Err(e) => {
            eprintln!("wsbroker: {e}\nTry `wsbroker --help`.");
            2
        }
    }
}

/// The start-up line other tools wait for: on stdout, flushed at once, and in the log.
fn announce(kind: Kind, addr: SocketAddr) {
    let line = format!("{} listening on {addr}", kind.name());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    info!("{line}");
}

fn serve(settings: &Settings) -> i32 {
    log::set_level(settings.log);
    debug!("settings: {settings:?}");
    for note in &settings.notes {
        info!("{note}");
    }
    // Installed before anything binds, so a signal sent as soon as the
    // start-up lines appear is never lost.
    let signals = match signal::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let mut running: Vec<Arc<dyn Listener>> = Vec::new();
    let mut started = listeners::Started::default();
    for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Http) {
        let Some(bind) = settings.bind(kind) else {
            debug!("{} is off", kind.name());
            continue;
        };
        match listeners::start(kind, bind, settings, &mut started) {
            Ok(Some(l)) => {
                announce(kind, l.local_addr());
                running.push(Arc::from(l));
            }
            Ok(None) => debug!("{}: nothing to start", kind.name()),
            Err(e) => {
                error!("{}: cannot listen on {bind}: {e}", kind.name());
                stop_all(&running);
                return 1;
            }
        }
    }
    let mut http_server = None;
    if let Some(bind) = settings.bind(Kind::Http) {
        let status = Arc::new(http::Status::new(running.clone()));
        match http::HttpServer::start(bind, status) {
            Ok(h) => {
                announce(Kind::Http, h.local_addr());
                http_server = Some(h);
            }
            Err(e) => {
                error!("http: cannot listen on {bind}: {e}");
                stop_all(&running);
                return 1;
            }
        }
    }
    let code = match signals.wait() {
        Ok(sig) => {
            info!("signal {sig}: closing every client with 1001");
            0
        }
        Err(e) => {
            error!("waiting for signals failed: {e}");
            1
        }
    };
    if let Some(h) = http_server {
        h.stop();
    }
    stop_all(&running);
    info!("stopped");
    code
}

/// Stops every listener at once: each waits briefly for its closing handshakes.
fn stop_all(running: &[Arc<dyn Listener>]) {
    std::thread::scope(|s| {
        for l in running {
            s.spawn(move || l.stop());
        }
    });
}
