//! The `--http` listener: `/` a live status page, `/stats` JSON, `/metrics`
//! Prometheus text. Low-volume by nature, so it is a plain HTTP/1.1 server: one
//! thread accepts (and samples the message rates once a second), each request
//! gets a short-lived thread, and every connection closes after one response.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{json, Value};
use wsbroker::Stats;

use crate::listeners::Listener;
use crate::log::{debug, warning};

/// Largest request head read; more gets 431.
const MAX_REQUEST: usize = 8 << 10;
/// Requests served at once; more get 503 at once.
const MAX_ACTIVE: usize = 32;
/// A client gets this long to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries listed per listing (names, groups, hubs); the counts stay exact.
const LIST_LIMIT: usize = 1000;
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("status.html");

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// Per-second rates from the last two samples of a listener's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub messages_in: f64,
    pub messages_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
}

/// What the pages show: the running listeners and their recent rates.
pub struct Status {
    listeners: Vec<Arc<dyn Listener>>,
    started: Instant,
    http_addr: Mutex<Option<SocketAddr>>,
    /// Per listener (by index): the last sample and the rates it gave.
    samples: Mutex<HashMap<usize, (Instant, Stats, Rates)>>,
}

impl Status {
    pub fn new(listeners: Vec<Arc<dyn Listener>>) -> Status {
        Status {
            listeners,
            started: Instant::now(),
            http_addr: Mutex::new(None),
            samples: Mutex::new(HashMap::new()),
        }
    }

    fn sample(&self, now: Instant) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(cur) = l.engine_stats() else { continue };
            let rates = match samples.get(&i) {
                Some((t, prev, _)) => {
                    let dt = now.saturating_duration_since(*t).as_secs_f64();
                    if dt <= 0.0 {
                        continue;
                    }
                    let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
                    Rates {
                        messages_in: r(cur.messages_in, prev.messages_in),
                        messages_out: r(cur.messages_out, prev.messages_out),
                        bytes_in: r(cur.bytes_in, prev.bytes_in),
                        bytes_out: r(cur.bytes_out, prev.bytes_out),
                    }
                }
                None => Rates::default(),
            };
            samples.insert(i, (now, cur, rates));
        }
    }

    fn rates(&self, i: usize) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.get(&i).map(|s| s.2).unwrap_or_default()
    }

    /// The `/stats` document.
    pub fn json(&self) -> Value {
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), json!(l.kind().name()));
                o.insert("address".into(), json!(l.local_addr().to_string()));
                if let Some(s) = l.engine_stats() {
                    let r = self.rates(i);
                    o.insert("connections_open".into(), json!(s.connections_open));
                    o.insert("connections_total".into(), json!(s.connections_total));
                    o.insert("messages_in".into(), json!(s.messages_in));
                    o.insert("messages_out".into(), json!(s.messages_out));
                    o.insert("bytes_in".into(), json!(s.bytes_in));
                    o.insert("bytes_out".into(), json!(s.bytes_out));
                    o.insert("slow_consumers_closed".into(), json!(s.slow_consumers_closed));
                    o.insert("handshakes_failed".into(), json!(s.handshakes_failed));
                    o.insert(
                        "rates".into(),
                        json!({
                            "messages_in_per_s": round1(r.messages_in),
                            "messages_out_per_s": round1(r.messages_out),
                            "bytes_in_per_s": round1(r.bytes_in),
                            "bytes_out_per_s": round1(r.bytes_out),
                        }),
                    );
                }
                if let Some(b) = l.broker(LIST_LIMIT) {
                    o.insert("sessions".into(), json!(b.sessions));
                    o.insert("users".into(), json!(b.users));
                    o.insert("groups".into(), json!(b.groups));
                    o.insert("hubs".into(), json!(b.hubs));
                    let names: Vec<Value> = b
                        .name_list
                        .iter()
                        .map(|(n, role, k)| json!({"name": n, "role": role, "sessions": k}))
                        .collect();
                    o.insert("names".into(), Value::Array(names));
                    o.insert("group_list".into(), members(&b.group_list));
                    o.insert("hub_list".into(), members(&b.hub_list));
                }
                Value::Object(o)
            })
            .collect();
        let http = self
            .http_addr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|a| a.to_string());
        json!({
            "version": concat!("wsbroker/", env!("CARGO_PKG_VERSION")),
            "uptime_s": self.started.elapsed().as_secs(),
            "http": http,
            "listeners": listeners,
        })
    }

    /// The `/metrics` document (Prometheus text format 0.0.4).
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        metric(
            &mut out,
            "wsbroker_build_info",
            "gauge",
            "Always 1; the version is a label.",
            |o| line(o, "wsbroker_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0),
        );
        let up = self.started.elapsed().as_secs_f64();
        metric(
            &mut out,
            "wsbroker_uptime_seconds",
            "gauge",
            "Seconds since start.",
            |o| line(o, "wsbroker_uptime_seconds", &[], up.floor()),
        );
        let engines: Vec<(&'static str, Stats)> = self
            .listeners
            .iter()
            .filter_map(|l| l.engine_stats().map(|s| (l.kind().name(), s)))
            .collect();
        type Get = fn(&Stats) -> u64;
        let engine_metrics: [(&str, &str, &str, Get); 8] = [
            (
                "wsbroker_connections_open",
                "gauge",
                "Open WebSocket connections.",
                |s| s.connections_open,
            ),
            (
                "wsbroker_connections_total",
                "counter",
                "WebSocket connections opened.",
                |s| s.connections_total,
            ),
            (
                "wsbroker_messages_received_total",
                "counter",
                "Messages received.",
                |s| s.messages_in,
            ),
            ("wsbroker_messages_sent_total", "counter", "Messages sent.", |s| {
                s.messages_out
            }),
            (
                "wsbroker_received_bytes_total",
                "counter",
                "Payload bytes received.",
                |s| s.bytes_in,
            ),
            ("wsbroker_sent_bytes_total", "counter", "Payload bytes sent.", |s| {
                s.bytes_out
            }),
            (
                "wsbroker_slow_consumers_closed_total",
                "counter",
                "Connections closed with 1008 for not reading fast enough.",
                |s| s.slow_consumers_closed,
            ),
            (
                "wsbroker_handshakes_failed_total",
                "counter",
                "Connections whose upgrade failed or timed out.",
                |s| s.handshakes_failed,
            ),
        ];
        for (name, kind, help, get) in engine_metrics {
            metric(&mut out, name, kind, help, |o| {
                for (l, s) in &engines {
                    line(o, name, &[("listener", l)], get(s) as f64);
                }
            });
        }
        let brokers: Vec<(&'static str, crate::listeners::BrokerView)> = self
            .listeners
            .iter()
            .filter_map(|l| l.broker(0).map(|b| (l.kind().name(), b)))
            .collect();
        type GetB = fn(&crate::listeners::BrokerView) -> usize;
        let broker_metrics: [(&str, &str, GetB); 4] = [
            ("wsbroker_sessions", "Sessions the dialect knows.", |b| b.sessions),
            ("wsbroker_users", "Distinct logged-in names, services included.", |b| {
                b.users
            }),
            ("wsbroker_groups", "Groups with members.", |b| b.groups),
            ("wsbroker_hubs", "Hubs with members.", |b| b.hubs),
        ];
        for (name, help, get) in broker_metrics {
            metric(&mut out, name, "gauge", help, |o| {
                for (l, b) in &brokers {
                    line(o, name, &[("listener", l)], get(b) as f64);
                }
            });
        }
        let rates: Vec<(&'static str, Rates)> = self
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.engine_stats().is_some())
            .map(|(i, l)| (l.kind().name(), self.rates(i)))
            .collect();
        metric(
            &mut out,
            "wsbroker_message_rate",
            "gauge",
            "Messages per second over the last second, by direction.",
            |o| {
                for (l, r) in &rates {
                    line(
                        o,
                        "wsbroker_message_rate",
                        &[("listener", l), ("direction", "in")],
                        r.messages_in,
                    );
                    line(
                        o,
                        "wsbroker_message_rate",
                        &[("listener", l), ("direction", "out")],
                        r.messages_out,
                    );
                }
            },
        );
        out
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn members(list: &[(String, usize)]) -> Value {
    Value::Array(list.iter().map(|(n, k)| json!({"name": n, "members": k})).collect())
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, body: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    body(out);
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let val = val.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{val}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {v}");
}

/// A running status server.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(bind: SocketAddr, status: Arc<Status>) -> io::Result<HttpServer> {
        let mut listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        *status.http_addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wsbroker-http".into())
            .spawn(move || serve(poll, listener, status, s))?;
        Ok(HttpServer {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; requests being answered finish on their own threads.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut poll: Poll, listener: TcpListener, status: Arc<Status>, stop: Arc<AtomicBool>) {
    let mut events = Events::with_capacity(16);
    let active = Arc::new(AtomicUsize::new(0));
    let mut next_sample = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next_sample {
            status.sample(now);
            next_sample = now + SAMPLE_EVERY;
        }
        if let Err(e) = poll.poll(&mut events, Some(next_sample.saturating_duration_since(now))) {
            if e.kind() != io::ErrorKind::Interrupted {
                warning!("http: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let stream = TcpStream::from(stream);
                    if active.load(Ordering::SeqCst) >= MAX_ACTIVE {
                        let _ = stream.set_nonblocking(true);
                        let _ = respond(&stream, 503, "text/plain", b"busy\n", false);
                        continue;
                    }
                    active.fetch_add(1, Ordering::SeqCst);
                    let (status, active2) = (status.clone(), active.clone());
                    let spawned = std::thread::Builder::new()
                        .name("wsbroker-http-conn".into())
                        .spawn(move || {
                            if let Err(e) = handle(stream, &status) {
                                debug!("http: {peer}: {e}");
                            }
                            active2.fetch_sub(1, Ordering::SeqCst);
                        });
                    if let Err(e) = spawned {
                        active.fetch_sub(1, Ordering::SeqCst);
                        warning!("http: cannot spawn a thread: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors, usually: back off instead of spinning.
                    warning!("http: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

fn handle(stream: TcpStream, status: &Status) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (method, path) = loop {
        let n = (&stream).read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method.unwrap_or("").to_owned(), req.path.unwrap_or("").to_owned())
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST => continue,
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return respond(&stream, 431, "text/plain", b"request header too large\n", true);
            }
            Err(_) => return respond(&stream, 400, "text/plain", b"bad request\n", true),
        }
    };
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(&stream, 405, "text/plain", b"only GET and HEAD\n", true);
    }
    let route = path.split(['?', '#']).next().unwrap_or("");
    match route {
        "/" | "/index.html" => respond(&stream, 200, "text/html; charset=utf-8", PAGE.as_bytes(), !head),
        "/stats" => {
            let body = serde_json::to_vec(&status.json()).unwrap_or_default();
            respond(&stream, 200, "application/json", &body, !head)
        }
        "/metrics" => {
            let body = status.metrics();
            respond(
                &stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
                !head,
            )
        }
        _ => respond(&stream, 404, "text/plain", b"not found\n", !head),
    }
}

fn respond(mut stream: &TcpStream, code: u16, ctype: &str, body: &[u8], with_body: bool) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let allow = if code == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    if with_body {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;
    use crate::listeners::BrokerView;

    /// Reports `messages_in` of 7 plus whatever the test adds.
    #[derive(Default)]
    struct Fake(std::sync::atomic::AtomicU64);

    impl Listener for Fake {
        fn kind(&self) -> Kind {
            Kind::Achex
        }
        fn local_addr(&self) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], 4010))
        }
        fn engine_stats(&self) -> Option<Stats> {
            Some(Stats {
                connections_open: 2,
                messages_in: 7 + self.0.load(Ordering::SeqCst),
                ..Stats::default()
            })
        }
        fn broker(&self, limit: usize) -> Option<BrokerView> {
            let mut names = vec![("a\"<b>".to_owned(), "user", 2)];
            names.truncate(limit);
            Some(BrokerView {
                sessions: 2,
                users: 1,
                groups: 0,
                hubs: 0,
                name_list: names,
                ..BrokerView::default()
            })
        }
        fn stop(&self) {}
    }

    fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn routes_and_bad_requests() {
        let status = Arc::new(Status::new(vec![Arc::new(Fake::default())]));
        let h = HttpServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), status).unwrap();
        let a = h.local_addr();
        let r = get(a, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["listeners"][0]["connections_open"], 2);
        assert_eq!(v["listeners"][0]["names"][0]["name"], "a\"<b>");
        assert_eq!(v["http"], a.to_string());
        let r = get(a, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(r.contains("# TYPE wsbroker_messages_received_total counter\n"), "{r}");
        assert!(
            r.contains("wsbroker_messages_received_total{listener=\"achex\"} 7\n"),
            "{r}"
        );
        assert!(r.contains("wsbroker_users{listener=\"achex\"} 1\n"), "{r}");
        let r = get(a, b"GET / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200") && r.contains("<html"), "{r}");
        let r = get(a, b"HEAD / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200") && !r.contains("<html"), "{r}");
        assert!(get(a, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(a, b"POST /stats HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(a, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
        let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 20_000));
        assert!(get(a, &huge).starts_with("HTTP/1.1 431"));
        // Still serving after all that.
        assert!(get(a, b"GET /stats HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        h.stop();
    }

    #[test]
    fn rates_come_from_successive_samples() {
        let fake = Arc::new(Fake::default());
        let status = Status::new(vec![fake.clone()]);
        let t = Instant::now();
        status.sample(t);
        assert_eq!(status.rates(0), Rates::default());
        fake.0.store(30, Ordering::SeqCst);
        // A sample at the same instant is skipped rather than divided by zero.
        status.sample(t);
        assert_eq!(status.rates(0), Rates::default());
        status.sample(t + Duration::from_secs(2));
        assert_eq!(status.rates(0).messages_in, 15.0);
        status.sample(t + Duration::from_secs(3));
        assert_eq!(status.rates(0).messages_in, 0.0);
        assert_eq!(status.json()["listeners"][0]["rates"]["messages_in_per_s"], 0.0);
    }
}
