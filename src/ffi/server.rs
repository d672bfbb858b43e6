//! `wsb_server_*` and `wsb_server_config_*`: the embedded WebSocket server (the
//! Barracuda WSS/WSSCB model without its limits).

use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::handles::{release, Failure, Handles, Object, Owner, Userdata};
use super::poll_gate::PollGate;
use super::{bytes_arg, copy_out, guard, invalid, opt_str_arg, out_arg, plain, str_arg, wsb_result};
use crate::engine::PollError;
use crate::{Config, ConnId, Event, EventQueue, OverflowPolicy, OwnedEvent, Server, ServerHandle};

/// A connection id: unique in the process and never reused; 0 is never valid.
pub type wsb_conn_id = u64;

/// Server settings, built with `wsb_server_config_new` and the setters below.
/// Opaque.
pub struct wsb_server_config {
    cfg: Mutex<Config>,
}

impl Object for wsb_server_config {}

static CONFIGS: LazyLock<Handles<wsb_server_config>> = LazyLock::new(Handles::new);

/// A running server. Opaque; create with `wsb_server_new`, destroy with
/// `wsb_server_free`.
pub struct wsb_server {
    server: Mutex<Option<Server>>,
    handle: ServerHandle,
    queue: Option<Arc<EventQueue>>,
    polled: Mutex<Option<Polled>>,
    poll_gate: PollGate,
    last_error: Mutex<String>,
    /// Queue mode: the host's userdata, released by free.
    userdata: Mutex<Option<Userdata>>,
}

static SERVERS: LazyLock<Handles<wsb_server>> = LazyLock::new(Handles::new);

/// Event types. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_event_type {
    /// The upgrade completed. `remote_addr`, `path` (request target, with query)
    /// and `protocol` (selected subprotocol, `""` if none) are set.
    Open = 1,
    /// A complete message. `data`/`len` hold it (`data[len]` is always 0, binary
    /// included; `data` is never NULL); `is_text` tells text (valid UTF-8) from binary.
    Message = 2,
    /// A ping arrived; the pong has already been queued. `data`/`len` (≤ 125) hold
    /// its payload, NUL-terminated.
    Ping = 3,
    /// A pong arrived. `data`/`len` hold its payload, NUL-terminated.
    Pong = 4,
    /// The outbound buffer fell back under the soft limit after a write returned
    /// `WSB_RESULT_BACKPRESSURE`.
    Drain = 5,
    /// The connection has ended; its id is stale from now on. `close_status`:
    /// the peer's close code; 0 for a close frame without a code; the code
    /// wsbroker sent when it failed the connection (1002, 1007, 1008, 1009);
    /// the host's own code when `closed_by_host`; negative (-1) when the
    /// transport dropped without a close frame. `data`/`len` hold the reason
    /// (UTF-8, NUL-terminated).
    Close = 6,
}

/// One event. Every pointer in it is borrowed: in callback mode only until the
/// callback returns; in queue mode until the next `wsb_server_poll` on the same
/// server (or its free). Fields that do not apply to the type are 0/NULL.
#[repr(C)]
pub struct wsb_event {
    /// A `wsb_event_type` value.
    pub kind: u32,
    /// The connection the event is about.
    pub conn: wsb_conn_id,
    /// MESSAGE, PING, PONG: the payload; CLOSE: the reason. NUL-terminated.
    pub data: *const u8,
    /// Length of `data`, without the NUL.
    pub len: usize,
    /// MESSAGE: text (valid UTF-8) rather than binary.
    pub is_text: bool,
    /// CLOSE: the host closed the connection (`wsb_server_close` or free).
    pub closed_by_host: bool,
    /// CLOSE: the status (see `WSB_EVENT_TYPE_CLOSE`).
    pub close_status: i32,
    /// OPEN: the peer's address, `"ip:port"`.
    pub remote_addr: *const c_char,
    /// OPEN: the request target (path and query).
    pub path: *const c_char,
    /// OPEN: the selected subprotocol, `""` if none.
    pub protocol: *const c_char,
}

/// Server counters, filled by `wsb_server_stats`.
#[repr(C)]
#[derive(Default)]
pub struct wsb_stats {
    /// WebSocket connections open now.
    pub connections_open: u64,
    /// WebSocket connections opened since start.
    pub connections_total: u64,
    /// Messages received (complete, after reassembly).
    pub messages_in: u64,
    /// Bytes read from sockets (handshakes and framing included).
    pub bytes_in: u64,
    /// Messages queued by writes.
    pub messages_out: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Connections closed with 1008 because they did not read fast enough.
    pub slow_consumers_closed: u64,
    /// TCP connections whose upgrade failed, timed out, or ended before it
    /// completed (a refused TLS handshake included).
    pub handshakes_failed: u64,
}

/// The event callback (callback mode). Runs on an I/O thread; never two at
/// once for the same server. It must not block. It may call any `wsb_`
/// function except `wsb_server_free` on its own server.
pub type wsb_server_event_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, server: *mut wsb_server, event: *const wsb_event)>;

/// Called exactly once with the userdata when the registration is dropped.
pub type wsb_userdata_free_cb = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

const EMPTY: &[u8; 1] = b"\0";

fn empty_event() -> wsb_event {
    wsb_event {
        kind: 0,
        conn: 0,
        data: std::ptr::null(),
        len: 0,
        is_text: false,
        closed_by_host: false,
        close_status: 0,
        remote_addr: std::ptr::null(),
        path: std::ptr::null(),
        protocol: std::ptr::null(),
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Owned storage behind a polled event's pointers.
struct Polled {
    ev: OwnedEvent,
    remote: CString,
    path: CString,
    protocol: CString,
    reason: CString,
}

impl Polled {
    fn new(ev: OwnedEvent) -> Polled {
        let (remote, path, protocol, reason) = match &ev {
            OwnedEvent::Open {
                remote, path, protocol, ..
            } => (
                cstring(&remote.to_string()),
                cstring(path),
                cstring(protocol.as_deref().unwrap_or("")),
                CString::default(),
            ),
            OwnedEvent::Close { reason, .. } => (
                CString::default(),
                CString::default(),
                CString::default(),
                cstring(reason),
            ),
            _ => Default::default(),
        };
        Polled {
            ev,
            remote,
            path,
            protocol,
            reason,
        }
    }

    fn fill(&self, out: &mut wsb_event) {
        *out = empty_event();
        out.conn = self.ev.conn();
        match &self.ev {
            OwnedEvent::Open { .. } => {
                out.kind = wsb_event_type::Open as u32;
                out.remote_addr = self.remote.as_ptr();
                out.path = self.path.as_ptr();
                out.protocol = self.protocol.as_ptr();
            }
            OwnedEvent::Message { text, .. } => {
                out.kind = wsb_event_type::Message as u32;
                out.is_text = *text;
            }
            OwnedEvent::Ping { .. } => out.kind = wsb_event_type::Ping as u32,
            OwnedEvent::Pong { .. } => out.kind = wsb_event_type::Pong as u32,
            OwnedEvent::Drain { .. } => out.kind = wsb_event_type::Drain as u32,
            // Client-role events never reach a server.
            OwnedEvent::Sent { .. } | OwnedEvent::ConnectFailed { .. } => {}
            OwnedEvent::Close { status, by_host, .. } => {
                out.kind = wsb_event_type::Close as u32;
                out.close_status = *status;
                out.closed_by_host = *by_host;
                out.data = self.reason.as_ptr() as *const u8;
                out.len = self.reason.as_bytes().len();
            }
        }
        if let OwnedEvent::Message { data, .. } | OwnedEvent::Ping { data, .. } | OwnedEvent::Pong { data, .. } =
            &self.ev
        {
            // `data` carries a trailing NUL that is not part of the payload.
            out.data = data.as_ptr();
            out.len = data.len() - 1;
        }
    }
}

/// The callback-mode handler: turns engine events into `wsb_event`s.
struct CHandler {
    cb: unsafe extern "C" fn(*mut c_void, *mut wsb_server, *const wsb_event),
    userdata: Userdata,
    /// The `wsb_server*` handed to the callback.
    owner: Owner<wsb_server>,
}

impl CHandler {
    fn call(&self, ev: &wsb_event) {
        self.owner.enter(|server| {
            // SAFETY: the host registered `cb` for exactly this call shape; every
            // pointer in `ev` outlives the call.
            unsafe { (self.cb)(self.userdata.get(), server, ev) }
        });
    }
}

impl crate::Handler for CHandler {
    fn on_event(&mut self, _s: &ServerHandle, e: Event<'_>) {
        let mut ev = empty_event();
        match e {
            // The hot path first: nothing to allocate or copy.
            Event::Message { conn, data, text } => {
                // The engine guarantees a 0 byte right after `data`.
                ev.kind = wsb_event_type::Message as u32;
                ev.conn = conn;
                ev.data = if data.is_empty() { EMPTY.as_ptr() } else { data.as_ptr() };
                ev.len = data.len();
                ev.is_text = text;
                self.call(&ev);
            }
            Event::Open {
                conn,
                remote,
                path,
                protocol,
            } => {
                let strings = [
                    cstring(&remote.to_string()),
                    cstring(path),
                    cstring(protocol.unwrap_or("")),
                ];
                ev.kind = wsb_event_type::Open as u32;
                ev.conn = conn;
                ev.remote_addr = strings[0].as_ptr();
                ev.path = strings[1].as_ptr();
                ev.protocol = strings[2].as_ptr();
                self.call(&ev);
            }
            Event::Ping { conn, data } | Event::Pong { conn, data } => {
                // Control payloads are not NUL-terminated by the engine: copy
                // (at most 125 bytes) to add one.
                let mut small = [0u8; 126];
                let n = data.len().min(125);
                small[..n].copy_from_slice(&data[..n]);
                ev.kind = if matches!(e, Event::Ping { .. }) {
                    wsb_event_type::Ping as u32
                } else {
                    wsb_event_type::Pong as u32
                };
                ev.conn = conn;
                ev.data = small.as_ptr();
                ev.len = n;
                self.call(&ev);
            }
            Event::Drain { conn } => {
                ev.kind = wsb_event_type::Drain as u32;
                ev.conn = conn;
                self.call(&ev);
            }
            Event::Close {
                conn,
                status,
                reason,
                by_host,
            } => {
                let reason = cstring(reason);
                ev.kind = wsb_event_type::Close as u32;
                ev.conn = conn;
                ev.close_status = status;
                ev.closed_by_host = by_host;
                ev.data = reason.as_ptr() as *const u8;
                ev.len = reason.as_bytes().len();
                self.call(&ev);
            }
            // Client-role events never reach a server.
            Event::Sent { .. } | Event::ConnectFailed { .. } => {}
        }
    }
}

// ---- configuration ----

/// Creates a configuration with every default (see the README for the table:
/// 127.0.0.1:0, 1 I/O thread, 16 MiB messages, 10 s handshake timeout, 30 s
/// ping interval, 60 s idle timeout, 5 s close timeout, 100,000 connections,
/// outbound soft 1 MiB / hard 64 MiB with close-on-overflow, any origin, no
/// subprotocol, any path). Returns NULL only if out of memory. The caller
/// owns the result and must call `wsb_server_config_free` once.
#[no_mangle]
pub extern "C" fn wsb_server_config_new() -> *mut wsb_server_config {
    guard(std::ptr::null_mut(), || {
        let cfg = Arc::new(wsb_server_config {
            cfg: Mutex::new(Config::default()),
        });
        CONFIGS.add(cfg).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a configuration. `wsb_server_config_free(NULL)` is a no-op; so is a
/// pointer already freed or unknown (`wsb_last_error` then says so). A server
/// created from it keeps its own copy.
///
/// # Safety
/// `cfg` must be NULL or a pointer from `wsb_server_config_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_free(cfg: *mut wsb_server_config) {
    guard((), || {
        CONFIGS.free(cfg, "config");
    })
}

/// Applies `f` to the configuration behind `cfg`.
fn with_cfg(cfg: *mut wsb_server_config, f: impl FnOnce(&mut Config) -> Result<(), Failure>) -> wsb_result {
    super::with_config(&CONFIGS, cfg, |c| &c.cfg, f)
}

/// Sets the listen address, `"IP:PORT"` (`"0.0.0.0:8080"`, `"[::1]:0"`; port 0 =
/// ephemeral, see `wsb_server_port`). Default `"127.0.0.1:0"`.
///
/// # Safety
/// `cfg` must be a valid configuration; `addr` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_bind(cfg: *mut wsb_server_config, addr: *const c_char) -> wsb_result {
    with_cfg(cfg, |c| {
        let a = str_arg(addr, "addr")?;
        c.bind = a
            .parse()
            .map_err(|_| invalid(format!("not an IP:PORT address: {a:?}")))?;
        Ok(())
    })
}

/// Sets the number of I/O threads (1 to 64). Default 1. Callbacks of one
/// server never run two at once, whatever this number.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_threads(cfg: *mut wsb_server_config, threads: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        if threads == 0 || threads > 64 {
            return Err(invalid(format!("threads must be 1 to 64, not {threads}")));
        }
        c.threads = threads as usize;
        Ok(())
    })
}

/// Sets the largest message accepted after reassembly (bytes, > 0); larger
/// gets close 1009. Default 16 MiB. 65535 restores Barracuda's receive limit.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_max_message_size(
    cfg: *mut wsb_server_config,
    bytes: usize,
) -> wsb_result {
    with_cfg(cfg, |c| {
        if bytes == 0 {
            return Err(invalid("max message size must be positive"));
        }
        c.max_message_size = bytes;
        Ok(())
    })
}

/// Sets the largest single frame accepted (bytes, > 0); larger gets close 1009.
/// Default 16 MiB.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_max_frame_size(cfg: *mut wsb_server_config, bytes: usize) -> wsb_result {
    with_cfg(cfg, |c| {
        if bytes == 0 {
            return Err(invalid("max frame size must be positive"));
        }
        c.max_frame_size = bytes;
        Ok(())
    })
}

/// Sets the time allowed from TCP accept to a complete upgrade request (ms,
/// > 0). Default 10,000.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_handshake_timeout_ms(
    cfg: *mut wsb_server_config,
    ms: u32,
) -> wsb_result {
    with_cfg(cfg, |c| {
        if ms == 0 {
            return Err(invalid("handshake timeout must be positive"));
        }
        c.handshake_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Sets the time without traffic after which a ping is sent (ms; 0 disables).
/// Default 30,000.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_ping_interval_ms(cfg: *mut wsb_server_config, ms: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        c.ping_interval = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Sets the time after which a connection that received nothing (not even a
/// pong) is dropped (ms; 0 disables). Default 60,000.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_idle_timeout_ms(cfg: *mut wsb_server_config, ms: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        c.idle_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Sets how long to wait for the peer's close frame after sending one (ms).
/// Default 5,000.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_close_timeout_ms(cfg: *mut wsb_server_config, ms: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        c.close_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Sets the maximum number of connections (handshakes included; > 0); more are
/// refused with HTTP 503. Default 100,000.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_max_connections(cfg: *mut wsb_server_config, n: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        if n == 0 {
            return Err(invalid("max connections must be positive"));
        }
        c.max_connections = n as usize;
        Ok(())
    })
}

/// Sets the outbound buffer limits per connection (bytes, soft ≤ hard). Above
/// `soft`, writes return `WSB_RESULT_BACKPRESSURE` and a DRAIN event follows;
/// `hard` is never exceeded (see `wsb_server_config_set_refuse_on_overflow`).
/// Defaults 1 MiB and 64 MiB.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_outbound_limits(
    cfg: *mut wsb_server_config,
    soft: usize,
    hard: usize,
) -> wsb_result {
    with_cfg(cfg, |c| {
        if soft > hard {
            return Err(invalid(format!("soft limit {soft} is above hard limit {hard}")));
        }
        c.outbound_soft_limit = soft;
        c.outbound_hard_limit = hard;
        Ok(())
    })
}

/// Chooses what a write that would pass the hard limit does: false (default)
/// closes the connection with 1008 "slow consumer" and returns
/// `WSB_RESULT_SLOW_CONSUMER`; true refuses the write with
/// `WSB_RESULT_WOULD_OVERFLOW` and keeps the connection.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_refuse_on_overflow(
    cfg: *mut wsb_server_config,
    refuse: bool,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.overflow = if refuse {
            OverflowPolicy::Refuse
        } else {
            OverflowPolicy::Close
        };
        Ok(())
    })
}

/// Adds an allowed `Origin` (exact match). Once any is added, requests with
/// another or no Origin get HTTP 403. Default: any origin.
///
/// # Safety
/// `cfg` must be a valid configuration; `origin` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_add_allowed_origin(
    cfg: *mut wsb_server_config,
    origin: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.allowed_origins.push(str_arg(origin, "origin")?.to_owned());
        Ok(())
    })
}

/// Adds a subprotocol the server speaks; the first added that the client
/// offers is selected. Default: none, and none is ever selected.
///
/// # Safety
/// `cfg` must be a valid configuration; `protocol` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_add_subprotocol(
    cfg: *mut wsb_server_config,
    protocol: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.subprotocols.push(super::subprotocol_arg(protocol)?);
        Ok(())
    })
}

/// Accepts upgrades only on this path (query ignored); others get HTTP 404.
/// NULL restores the default: any path.
///
/// # Safety
/// `cfg` must be a valid configuration; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_path(cfg: *mut wsb_server_config, path: *const c_char) -> wsb_result {
    with_cfg(cfg, |c| {
        c.path = opt_str_arg(path, "path")?.map(str::to_owned);
        Ok(())
    })
}

/// Queue mode: socket reading pauses while this many events wait to be
/// polled (≥ 2), and resumes below half. Default 16,384.
///
/// # Safety
/// `cfg` must be a valid configuration.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_event_queue_capacity(cfg: *mut wsb_server_config, n: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        if n < 2 {
            return Err(invalid("event queue capacity must be at least 2"));
        }
        c.event_queue_capacity = n as usize;
        Ok(())
    })
}

/// The two path arguments of the TLS setters: both NULL means "no TLS",
/// one NULL is `WSB_RESULT_NULL_POINTER`.
///
/// # Safety
/// Both must be NULL or NUL-terminated strings.
pub(crate) unsafe fn tls_paths(
    cert_chain_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> Result<Option<(std::path::PathBuf, std::path::PathBuf)>, Failure> {
    if cert_chain_pem_path.is_null() && key_pem_path.is_null() {
        return Ok(None);
    }
    let cert = str_arg(cert_chain_pem_path, "cert_chain_pem_path")?;
    let key = str_arg(key_pem_path, "key_pem_path")?;
    Ok(Some((cert.into(), key.into())))
}

/// Reads the files `tls_paths` named (see `crate::tls::server_config`); a
/// file that cannot be used is `WSB_RESULT_INVALID_ARGUMENT`.
pub(crate) fn load_server_tls(
    paths: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<Option<Arc<rustls::ServerConfig>>, Failure> {
    paths
        .map(|(cert, key)| crate::tls::server_config(&cert, &key))
        .transpose()
        .map_err(invalid)
}

/// Serves `wss://` instead of `ws://`: TLS with the certificate chain (PEM,
/// leaf first) and its private key (PEM: PKCS#8, PKCS#1 or SEC1), both read
/// now. Returns `WSB_RESULT_INVALID_ARGUMENT` when a file cannot be read,
/// holds no certificate or no usable key, or the key does not belong to the
/// certificate (`wsb_last_error` names the file and the reason); the
/// configuration is then unchanged. Both paths NULL turn TLS off again.
/// Default: no TLS.
///
/// # Safety
/// `cfg` must be a valid configuration; each path NULL or a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_config_set_tls(
    cfg: *mut wsb_server_config,
    cert_chain_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.tls = load_server_tls(tls_paths(cert_chain_pem_path, key_pem_path)?)?;
        Ok(())
    })
}

// ---- the server ----

/// Binds and starts a server on its own I/O thread(s).
///
/// `cfg` may be NULL for every default; the server copies it. With `cb` set,
/// events go to `cb(userdata, server, event)` on an I/O thread (callback
/// mode); with `cb` NULL, they wait for `wsb_server_poll` (queue mode).
/// `userdata_free` (may be NULL) is called exactly once with `userdata` when
/// the server is freed — or before this function returns, if it fails.
///
/// On success the caller owns `*out` and must call `wsb_server_free` once.
/// On failure `*out` is untouched and `wsb_last_error` tells why (e.g. the
/// address is in use: `WSB_RESULT_ADDR_IN_USE`; a freed or unknown `cfg`:
/// `WSB_RESULT_NOT_FOUND`).
///
/// # Safety
/// `cfg` must be NULL or valid; `out` a valid pointer; `cb` and `userdata_free`
/// valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_new(
    cfg: *const wsb_server_config,
    cb: wsb_server_event_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
    out: *mut *mut wsb_server,
) -> wsb_result {
    plain(|| {
        // Whatever happens from here, dropping this releases the userdata
        // unless a handler or the server has taken it.
        let userdata = Userdata::new(userdata, userdata_free);
        let out = out_arg(out, "out")?;
        let config = if cfg.is_null() {
            Config::default()
        } else {
            CONFIGS.lookup(cfg, "config", |c| crate::lock(&c.cfg).clone())?
        };
        config.validate().map_err(invalid)?;
        *out = start(config, cb, userdata)?;
        Ok(wsb_result::Ok)
    })
}

#[cfg(test)]
thread_local! {
    /// A pause between the engine's start and the server's registration, to
    /// let a test's first event fall into that window.
    static START_DELAY: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

fn start(config: Config, cb: wsb_server_event_cb, userdata: Userdata) -> Result<*mut wsb_server, Failure> {
    let bind = config.bind;
    let io_err = |e: std::io::Error| {
        let r = if e.kind() == std::io::ErrorKind::AddrInUse {
            wsb_result::AddrInUse
        } else {
            wsb_result::Io
        };
        (r, format!("cannot listen on {bind}: {e}"))
    };
    // The token is drawn first: the handler knows its `wsb_server*` before
    // the first event can come, and an event that comes before the server
    // is registered waits for it.
    let reservation = SERVERS.reserve()?;
    let (server, queue, userdata) = match cb {
        Some(cb) => {
            let handler = CHandler {
                cb,
                userdata,
                owner: reservation.owner(),
            };
            (Server::start(config, handler).map_err(io_err)?, None, None)
        }
        None => {
            let (server, queue) = Server::start_queued(config).map_err(io_err)?;
            // Queue mode has no callback: userdata is only held until free.
            (server, Some(queue), Some(userdata))
        }
    };
    #[cfg(test)]
    std::thread::sleep(START_DELAY.with(|d| d.get()));
    Ok(reservation.commit(Arc::new(wsb_server {
        handle: server.handle().clone(),
        server: Mutex::new(Some(server)),
        queue,
        polled: Mutex::new(None),
        poll_gate: PollGate::new(),
        last_error: Mutex::new(String::new()),
        userdata: Mutex::new(userdata),
    })))
}

/// Stops and frees a server: every connection gets close 1001, closing
/// handshakes are given up to 2 s, the I/O threads are joined, then
/// `userdata_free` runs. No callback runs once this has begun.
/// `wsb_server_free(NULL)` is a no-op returning `WSB_RESULT_OK`; an unknown or
/// already freed pointer gives `WSB_RESULT_NOT_FOUND`; calling it from the
/// server's own callback gives `WSB_RESULT_REENTRANT` (nothing is freed).
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_free(server: *mut wsb_server) -> wsb_result {
    SERVERS.free(server, "server")
}

impl Object for wsb_server {
    fn last_error(&self) -> Option<&Mutex<String>> {
        Some(&self.last_error)
    }

    fn on_own_thread(&self) -> bool {
        self.handle.on_io_thread()
    }

    fn shutdown(&self) {
        let s = crate::lock(&self.server).take();
        if let Some(s) = s {
            s.shutdown();
        }
        release(&self.userdata);
    }
}

/// Runs `f` on the live server behind `s`, recording failures for
/// `wsb_server_last_error`.
#[inline]
fn with_server(s: *const wsb_server, f: impl FnOnce(&wsb_server) -> Result<wsb_result, Failure>) -> wsb_result {
    SERVERS.call(s, "server", f)
}

#[inline]
fn send_result(conn: ConnId, r: Result<crate::Sent, crate::SendError>) -> Result<wsb_result, (wsb_result, String)> {
    match r {
        Ok(_) => Ok(r.into()),
        Err(e) => Err((e.into(), format!("connection {conn}: {e}"))),
    }
}

/// The port the server listens on (the real one when port 0 was asked), or 0
/// if `server` is NULL or unknown. Safe to call from any thread.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_port(server: *const wsb_server) -> u16 {
    guard(0, || {
        SERVERS.with(server, |o| o.handle.local_addr().port()).unwrap_or(0)
    })
}

/// Sends one message: text (`is_text` true; must be valid UTF-8, else
/// `WSB_RESULT_INVALID_UTF8`) or binary, of any size. `data` is borrowed only
/// for the call (copied). Returns `WSB_RESULT_OK` once queued (it does not
/// wait for the socket); `WSB_RESULT_BACKPRESSURE` when queued but the
/// outbound buffer is above the soft limit (a DRAIN event follows);
/// `WSB_RESULT_SLOW_CONSUMER` or `WSB_RESULT_WOULD_OVERFLOW` at the hard
/// limit; `WSB_RESULT_CLOSED` after close; `WSB_RESULT_NOT_FOUND` for a stale
/// id. Safe to call from any thread; never blocks.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`; `data` must point
/// to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn wsb_server_write(
    server: *mut wsb_server,
    conn: wsb_conn_id,
    data: *const u8,
    len: usize,
    is_text: bool,
) -> wsb_result {
    with_server(server, |o| {
        send_result(conn, o.handle.send(conn, bytes_arg(data, len)?, is_text))
    })
}

/// Sends a ping with `len` ≤ 125 bytes of payload (else `WSB_RESULT_TOO_BIG`).
/// Same results as `wsb_server_write`. Safe to call from any thread; never blocks.
///
/// # Safety
/// As for `wsb_server_write`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_ping(
    server: *mut wsb_server,
    conn: wsb_conn_id,
    data: *const u8,
    len: usize,
) -> wsb_result {
    with_server(server, |o| {
        send_result(conn, o.handle.ping(conn, bytes_arg(data, len)?))
    })
}

/// Starts the closing handshake: sends a close frame with `code` (≤ 0, and
/// codes not allowed on the wire, are sent as 1000) and `reason` (NULL or
/// UTF-8 of at most 123 bytes, else `WSB_RESULT_TOO_BIG`). From then on
/// `wsb_server_is_valid` is false and writes return `WSB_RESULT_CLOSED`; the
/// CLOSE event (with `closed_by_host`) follows once the peer answers or 5 s
/// pass. Safe to call from any thread; never blocks.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`; `reason` NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_close(
    server: *mut wsb_server,
    conn: wsb_conn_id,
    code: i32,
    reason: *const c_char,
) -> wsb_result {
    with_server(server, |o| {
        let r = opt_str_arg(reason, "reason")?.unwrap_or("");
        match o.handle.close(conn, code, r) {
            Ok(()) => Ok(wsb_result::Ok),
            Err(e) => Err((e.into(), format!("connection {conn}: {e}"))),
        }
    })
}

/// True from the OPEN event until `wsb_server_close` or the end of the
/// connection; false for stale ids and unknown servers. Safe to call from any
/// thread; never blocks.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_is_valid(server: *const wsb_server, conn: wsb_conn_id) -> bool {
    guard(false, || {
        SERVERS.with(server, |o| o.handle.is_valid(conn)).unwrap_or(false)
    })
}

/// Queue mode: waits up to `timeout_ms` (negative = forever, 0 = just check)
/// for the next event and fills `*out`. Returns `WSB_RESULT_TIMEOUT` when none
/// came, `WSB_RESULT_INTERRUPTED` after `wsb_server_interrupt`,
/// `WSB_RESULT_INVALID_STATE` in callback mode. The event's pointers stay
/// valid until the next poll on this server (or its free), so poll from one
/// thread at a time: a poll that finds another one running on this server
/// waits for it within its own `timeout_ms`, then returns
/// `WSB_RESULT_TIMEOUT`. Safe to call from any thread.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_poll(server: *mut wsb_server, timeout_ms: i32, out: *mut wsb_event) -> wsb_result {
    with_server(server, |o| {
        let out = out_arg(out, "out")?;
        let Some(q) = &o.queue else {
            return Err((wsb_result::InvalidState, "the server is in callback mode".into()));
        };
        let Some((_turn, timeout)) = o.poll_gate.turn(timeout_ms) else {
            return Ok(wsb_result::Timeout);
        };
        let mut slot = crate::lock(&o.polled);
        // The previous event's storage is released now, as documented.
        *slot = None;
        match q.poll(timeout) {
            Ok(ev) => {
                slot.insert(Polled::new(ev)).fill(out);
                Ok(wsb_result::Ok)
            }
            Err(PollError::Timeout) => Ok(wsb_result::Timeout),
            Err(PollError::Interrupted) => Ok(wsb_result::Interrupted),
            Err(PollError::Closed) => Err((wsb_result::ShutDown, "the server has stopped".into())),
        }
    })
}

/// Queue mode: makes the current (or next) `wsb_server_poll` return
/// `WSB_RESULT_INTERRUPTED`, e.g. to stop a polling thread. Safe to call from
/// any thread, and from a signal-free context only.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_interrupt(server: *mut wsb_server) -> wsb_result {
    with_server(server, |o| match &o.queue {
        Some(q) => {
            q.interrupt();
            Ok(wsb_result::Ok)
        }
        None => Err((wsb_result::InvalidState, "the server is in callback mode".into())),
    })
}

/// Fills `*out` with the server's counters. Safe to call from any thread.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_stats(server: *const wsb_server, out: *mut wsb_stats) -> wsb_result {
    with_server(server, |o| {
        let out = out_arg(out, "out")?;
        let s = o.handle.stats();
        *out = wsb_stats {
            connections_open: s.connections_open,
            connections_total: s.connections_total,
            messages_in: s.messages_in,
            bytes_in: s.bytes_in,
            messages_out: s.messages_out,
            bytes_out: s.bytes_out,
            slow_consumers_closed: s.slow_consumers_closed,
            handshakes_failed: s.handshakes_failed,
        };
        Ok(wsb_result::Ok)
    })
}

/// Copies the detail of the last failed call on this server into `buf`
/// (NUL-terminated; `*needed` gets the size needed, NUL included; too small
/// gives `WSB_RESULT_BUFFER_TOO_SMALL` and writes `""` when `len` ≥ 1).
/// Safe to call from any thread.
///
/// # Safety
/// `server` must be NULL or a pointer from `wsb_server_new`; `buf` NULL or
/// `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_server_last_error(
    server: *const wsb_server,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_server(server, |o| {
        let msg = crate::lock(&o.last_error).clone();
        // SAFETY: forwarded caller contract.
        Ok(unsafe { copy_out(&msg, buf, len, needed) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN_SERVER: AtomicUsize = AtomicUsize::new(usize::MAX);
    static WRITE_RESULT: AtomicUsize = AtomicUsize::new(usize::MAX);

    unsafe extern "C" fn greet(_: *mut c_void, server: *mut wsb_server, ev: *const wsb_event) {
        let ev = &*ev;
        if ev.kind == wsb_event_type::Open as u32 {
            SEEN_SERVER.store(server as usize, Ordering::SeqCst);
            let r = wsb_server_write(server, ev.conn, b"hi".as_ptr(), 2, true);
            WRITE_RESULT.store(r as usize, Ordering::SeqCst);
        }
    }

    /// An OPEN that comes after the engine has started but before the server
    /// is registered (held open here for 500 ms) still gets the server's
    /// pointer, and a write made with it from the callback goes through.
    #[test]
    fn an_event_before_registration_sees_the_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let peer = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let tcp = loop {
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(t) => break t,
                    Err(e) if std::time::Instant::now() > deadline => panic!("connect: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (mut ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}/"), tcp).unwrap();
            ws.read().unwrap().into_text().unwrap().as_str().to_owned()
        });
        let addr = CString::new(format!("127.0.0.1:{port}")).unwrap();
        START_DELAY.with(|d| d.set(Duration::from_millis(500)));
        let mut s = std::ptr::null_mut();
        // SAFETY: valid arguments throughout.
        unsafe {
            let cfg = wsb_server_config_new();
            assert_eq!(wsb_server_config_set_bind(cfg, addr.as_ptr()), wsb_result::Ok);
            assert_eq!(
                wsb_server_new(cfg, Some(greet), std::ptr::null_mut(), None, &mut s),
                wsb_result::Ok
            );
            wsb_server_config_free(cfg);
        }
        START_DELAY.with(|d| d.set(Duration::ZERO));
        assert_eq!(peer.join().unwrap(), "hi");
        assert_eq!(SEEN_SERVER.load(Ordering::SeqCst), s as usize);
        assert_eq!(WRITE_RESULT.load(Ordering::SeqCst), wsb_result::Ok as usize);
        // SAFETY: from wsb_server_new.
        assert_eq!(unsafe { wsb_server_free(s) }, wsb_result::Ok);
    }
}
