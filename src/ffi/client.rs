//! `wsb_client_*` and `wsb_client_config_*`: the WebSocket client (the Achex
//! C++ client and innovaphone IAppWebsocketClient models).

use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::handles::{release, Failure, Handles, Object, Owner, Userdata};
use super::poll_gate::PollGate;
use super::server::wsb_userdata_free_cb;
use super::{bytes_arg, copy_out, guard, invalid, opt_str_arg, out_arg, plain, str_arg, wsb_result};
use crate::client::{Client, ClientConfig, ClientEvent, ClientHandle, OwnedClientEvent, Reconnect};
use crate::engine::PollError;

/// Client settings, built with `wsb_client_config_new` and the setters below.
/// Opaque.
pub struct wsb_client_config {
    cfg: Mutex<ClientConfig>,
}

impl Object for wsb_client_config {}

static CONFIGS: LazyLock<Handles<wsb_client_config>> = LazyLock::new(Handles::new);

/// A client. Opaque; create with `wsb_client_new`, destroy with `wsb_client_free`.
pub struct wsb_client {
    client: Mutex<Option<Client>>,
    handle: ClientHandle,
    polled: Mutex<Option<(OwnedClientEvent, CString)>>,
    poll_gate: PollGate,
    last_error: Mutex<String>,
    /// Queue mode: the host's userdata, released by free.
    userdata: Mutex<Option<Userdata>>,
}

static CLIENTS: LazyLock<Handles<wsb_client>> = LazyLock::new(Handles::new);

/// Client event types. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_client_event_type {
    /// The upgrade completed; `protocol` is the subprotocol the server chose (`""` if none).
    Connected = 1,
    /// A complete message in `data`/`len` (`data[len]` is always 0, binary
    /// included; never NULL); `is_text` tells text (valid UTF-8) from binary.
    Message = 2,
    /// A pong arrived; its payload is in `data`/`len`.
    Pong = 3,
    /// One message sent with `wsb_client_send` has been written to the socket
    /// (only with `wsb_client_config_set_send_results`; one event per message, in order).
    Sent = 4,
    /// The outbound buffer fell back under the soft limit after a send returned
    /// `WSB_RESULT_BACKPRESSURE`.
    Drain = 5,
    /// The connection ended. `close_status`: the server's close code, 0 for a
    /// close frame without one, the code wsbroker sent when it failed the
    /// connection (1002, 1007, 1009…), the host's own code when
    /// `closed_by_host`, or -1 when the transport dropped. `data`/`len`: the reason.
    Closed = 6,
    /// A connection attempt failed before it opened. `error` tells why
    /// (`WSB_RESULT_CONNECTION_REFUSED`, `WSB_RESULT_CERTIFICATE_INVALID`…);
    /// `data`/`len` hold a message saying what failed and why.
    Error = 7,
    /// Auto-reconnect: attempt number `attempt` starts in `delay_ms`.
    Reconnecting = 8,
    /// Auto-reconnect has stopped: `attempt` attempts in a row failed (the
    /// `max_attempts` of `wsb_client_config_set_reconnect`), the last one
    /// reported by the ERROR or CLOSED just before. No further attempt is
    /// made: the client stays disconnected (sends give
    /// `WSB_RESULT_NOT_CONNECTED`) until freed.
    GaveUp = 9,
}

/// One client event. Every pointer is borrowed: in callback mode until the
/// callback returns; in queue mode until the next `wsb_client_poll` on the same
/// client (or its free). Fields that do not apply to the type are 0/NULL.
#[repr(C)]
pub struct wsb_client_event {
    /// A `wsb_client_event_type` value.
    pub kind: u32,
    /// Message, pong payload, close reason or error message (NUL-terminated).
    pub data: *const u8,
    /// Length of `data`, without the NUL.
    pub len: usize,
    /// MESSAGE: text (true) or binary.
    pub is_text: bool,
    /// CLOSED: the host closed the connection.
    pub closed_by_host: bool,
    /// CLOSED: the close status (see the event type).
    pub close_status: i32,
    /// ERROR: why the attempt failed (a `wsb_result` value).
    pub error: u32,
    /// RECONNECTING: attempt number, from 1; GAVE_UP: the attempts made.
    pub attempt: u32,
    /// RECONNECTING: delay before the attempt, in ms.
    pub delay_ms: u32,
    /// CONNECTED: the chosen subprotocol, `""` if none.
    pub protocol: *const c_char,
}

/// The client event callback (callback mode). Runs on the client's engine
/// thread; never two at once for the same client. It must not block. It may
/// call any `wsb_` function except `wsb_client_free` on its own client.
pub type wsb_client_event_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, client: *mut wsb_client, event: *const wsb_client_event)>;

const EMPTY: &[u8; 1] = b"\0";

fn blank() -> wsb_client_event {
    wsb_client_event {
        kind: 0,
        data: EMPTY.as_ptr(),
        len: 0,
        is_text: false,
        closed_by_host: false,
        close_status: 0,
        error: 0,
        attempt: 0,
        delay_ms: 0,
        protocol: EMPTY.as_ptr() as *const c_char,
    }
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

/// Fills `out` from an event; `text` holds the NUL-terminated string the
/// event points at (reason, message or protocol) and must outlive `out`.
fn fill(out: &mut wsb_client_event, ev: &ClientEvent<'_>, text: &CString) {
    *out = blank();
    match *ev {
        ClientEvent::Connected { .. } => {
            out.kind = wsb_client_event_type::Connected as u32;
            out.protocol = text.as_ptr();
        }
        ClientEvent::Message { data, text: t } => {
            out.kind = wsb_client_event_type::Message as u32;
            if !data.is_empty() {
                out.data = data.as_ptr();
            }
            out.len = data.len();
            out.is_text = t;
        }
        ClientEvent::Pong { data } => {
            out.kind = wsb_client_event_type::Pong as u32;
            if !data.is_empty() {
                out.data = data.as_ptr();
            }
            out.len = data.len();
        }
        ClientEvent::Sent => out.kind = wsb_client_event_type::Sent as u32,
        ClientEvent::Drain => out.kind = wsb_client_event_type::Drain as u32,
        ClientEvent::Closed { status, by_host, .. } => {
            out.kind = wsb_client_event_type::Closed as u32;
            out.close_status = status;
            out.closed_by_host = by_host;
            out.data = text.as_ptr() as *const u8;
            out.len = text.as_bytes().len();
        }
        ClientEvent::Error { error, .. } => {
            out.kind = wsb_client_event_type::Error as u32;
            out.error = wsb_result::from(error) as u32;
            out.data = text.as_ptr() as *const u8;
            out.len = text.as_bytes().len();
        }
        ClientEvent::Reconnecting { attempt, delay } => {
            out.kind = wsb_client_event_type::Reconnecting as u32;
            out.attempt = attempt;
            out.delay_ms = delay.as_millis().min(u32::MAX as u128) as u32;
        }
        ClientEvent::GaveUp { attempts } => {
            out.kind = wsb_client_event_type::GaveUp as u32;
            out.attempt = attempts;
        }
    }
}

fn event_text(ev: &ClientEvent<'_>) -> CString {
    match ev {
        ClientEvent::Connected { protocol } => cstring(protocol.unwrap_or("")),
        ClientEvent::Closed { reason, .. } => cstring(reason),
        ClientEvent::Error { message, .. } => cstring(message),
        _ => CString::default(),
    }
}

/// Borrows an owned event as a `ClientEvent` (its payload without the NUL).
fn as_event(e: &OwnedClientEvent) -> ClientEvent<'_> {
    match e {
        OwnedClientEvent::Connected { protocol } => ClientEvent::Connected {
            protocol: protocol.as_deref(),
        },
        OwnedClientEvent::Message { text, .. } => ClientEvent::Message {
            data: e.payload(),
            text: *text,
        },
        OwnedClientEvent::Pong { .. } => ClientEvent::Pong { data: e.payload() },
        OwnedClientEvent::Sent => ClientEvent::Sent,
        OwnedClientEvent::Drain => ClientEvent::Drain,
        OwnedClientEvent::Closed {
            status,
            reason,
            by_host,
        } => ClientEvent::Closed {
            status: *status,
            reason,
            by_host: *by_host,
        },
        OwnedClientEvent::Error { error, message } => ClientEvent::Error { error: *error, message },
        OwnedClientEvent::Reconnecting { attempt, delay } => ClientEvent::Reconnecting {
            attempt: *attempt,
            delay: *delay,
        },
        OwnedClientEvent::GaveUp { attempts } => ClientEvent::GaveUp { attempts: *attempts },
    }
}

struct CClientHandler {
    cb: unsafe extern "C" fn(*mut c_void, *mut wsb_client, *const wsb_client_event),
    userdata: Userdata,
    owner: Owner<wsb_client>,
}

impl crate::client::ClientHandler for CClientHandler {
    fn on_event(&mut self, _c: &ClientHandle, ev: ClientEvent<'_>) {
        let text = event_text(&ev);
        let mut out = blank();
        fill(&mut out, &ev, &text);
        self.owner.enter(|p| {
            // SAFETY: the host registered `cb` for this call shape; `out` and
            // everything it points at outlive the call.
            unsafe { (self.cb)(self.userdata.get(), p, &out) }
        });
    }
}

// ---- configuration ----

/// Creates a client configuration for `url` (`ws://` or `wss://`, host, port,
/// path, query; checked by `wsb_client_new`). Defaults: 10 s connect timeout,
/// system root certificates, proxy from the environment (`https_proxy`,
/// `http_proxy`, `no_proxy`; never for loopback hosts), no reconnection,
/// automatic flow control, no send results, 16 MiB messages, 30 s pings.
/// Returns NULL if `url` is NULL or not UTF-8. The caller owns the result and
/// must call `wsb_client_config_free` once.
///
/// # Safety
/// `url` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_new(url: *const c_char) -> *mut wsb_client_config {
    guard(std::ptr::null_mut(), || {
        let Ok(u) = str_arg(url, "url") else {
            return std::ptr::null_mut();
        };
        let cfg = Arc::new(wsb_client_config {
            cfg: Mutex::new(ClientConfig::new(u)),
        });
        CONFIGS.add(cfg).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a client configuration; NULL is a no-op, and so is a pointer already
/// freed or unknown (`wsb_last_error` then says so). A client keeps its own
/// copy.
///
/// # Safety
/// `cfg` must be NULL or a pointer from `wsb_client_config_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_free(cfg: *mut wsb_client_config) {
    guard((), || {
        CONFIGS.free(cfg, "config");
    })
}

fn with_cfg(cfg: *mut wsb_client_config, f: impl FnOnce(&mut ClientConfig) -> Result<(), Failure>) -> wsb_result {
    super::with_config(&CONFIGS, cfg, |c| &c.cfg, f)
}

/// Adds a request header (name: token characters; value without CR/LF).
///
/// # Safety
/// `cfg` must be valid; `name` and `value` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_add_header(
    cfg: *mut wsb_client_config,
    name: *const c_char,
    value: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let (n, v) = (str_arg(name, "name")?, str_arg(value, "value")?);
        add_header(c, n, v)
    })
}

/// `wsb_client_config_add_header` and `wsb_appws_client_config_add_header`.
pub(crate) fn add_header(c: &mut ClientConfig, name: &str, value: &str) -> Result<(), Failure> {
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7F) {
        return Err(invalid(format!("invalid header name {name:?}")));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(invalid(format!("header {name} has a line break in its value")));
    }
    c.headers.push((name.to_owned(), value.to_owned()));
    Ok(())
}

/// Offers a subprotocol (in the order added).
///
/// # Safety
/// `cfg` must be valid; `protocol` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_add_subprotocol(
    cfg: *mut wsb_client_config,
    protocol: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.protocols.push(super::subprotocol_arg(protocol)?);
        Ok(())
    })
}

/// Sets the time allowed for TCP connect, proxy, TLS and upgrade (ms, > 0).
/// Default 10,000.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_connect_timeout_ms(cfg: *mut wsb_client_config, ms: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        if ms == 0 {
            return Err(invalid("connect timeout must be positive"));
        }
        c.connect_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Also trusts the CA certificates in this PEM file (read by `wsb_client_new`).
///
/// # Safety
/// `cfg` must be valid; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_ca_file(cfg: *mut wsb_client_config, path: *const c_char) -> wsb_result {
    with_cfg(cfg, |c| {
        c.tls.ca_file = Some(PathBuf::from(str_arg(path, "path")?));
        Ok(())
    })
}

/// Trusts the operating system's root certificates (default true).
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_system_roots(cfg: *mut wsb_client_config, enable: bool) -> wsb_result {
    with_cfg(cfg, |c| {
        c.tls.system_roots = enable;
        Ok(())
    })
}

/// Presents this client certificate chain and private key (PEM files) when
/// the server asks for one.
///
/// # Safety
/// `cfg` must be valid; both paths NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_client_cert(
    cfg: *mut wsb_client_config,
    cert_chain_path: *const c_char,
    key_path: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let a = PathBuf::from(str_arg(cert_chain_path, "cert_chain_path")?);
        let b = PathBuf::from(str_arg(key_path, "key_path")?);
        c.tls.client_cert = Some((a, b));
        Ok(())
    })
}

/// Accepts any server certificate when true. For development only: it
/// removes the protection TLS exists for. Default false.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_insecure(cfg: *mut wsb_client_config, insecure: bool) -> wsb_result {
    with_cfg(cfg, |c| {
        c.tls.insecure = insecure;
        Ok(())
    })
}

/// Tunnels through this HTTP proxy (`[http://][user:password@]host[:port]`;
/// no scheme means `http://`, no port 80) with CONNECT. Other schemes and a
/// bad port give `WSB_RESULT_INVALID_ARGUMENT`. NULL restores the default
/// (the environment decides, read the same way); `""` disables proxies, the
/// environment's included.
///
/// # Safety
/// `cfg` must be valid; `proxy` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_proxy(cfg: *mut wsb_client_config, proxy: *const c_char) -> wsb_result {
    with_cfg(cfg, |c| set_proxy(c, opt_str_arg(proxy, "proxy")?))
}

/// `wsb_client_config_set_proxy` and `wsb_appws_client_config_set_proxy`:
/// `None` = the environment decides, `""` = no proxy at all.
pub(crate) fn set_proxy(c: &mut ClientConfig, proxy: Option<&str>) -> Result<(), Failure> {
    match proxy {
        None => {
            c.proxy = None;
            c.no_env_proxy = false;
        }
        Some("") => {
            c.proxy = None;
            c.no_env_proxy = true;
        }
        Some(p) => {
            crate::client::parse_proxy(p).map_err(invalid)?;
            c.proxy = Some(p.to_owned());
        }
    }
    Ok(())
}

/// Turns automatic reconnection on or off. Delays start at `initial_ms`,
/// double each attempt up to `max_ms`, with ±20 % jitter; `max_attempts` in a
/// row (0 = no limit). Every attempt is reported with a RECONNECTING event;
/// when `max_attempts` have failed, a GAVE_UP event says that no more will
/// come. Default off: a connection that ends or fails is not retried.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_reconnect(
    cfg: *mut wsb_client_config,
    enable: bool,
    initial_ms: u32,
    max_ms: u32,
    max_attempts: u32,
) -> wsb_result {
    with_cfg(cfg, |c| {
        if !enable {
            c.reconnect = None;
            return Ok(());
        }
        if initial_ms == 0 || max_ms < initial_ms {
            return Err(invalid(format!(
                "reconnect delays must satisfy 0 < initial ({initial_ms}) <= max ({max_ms})"
            )));
        }
        c.reconnect = Some(Reconnect {
            initial: Duration::from_millis(initial_ms as u64),
            max: Duration::from_millis(max_ms as u64),
            max_attempts,
            ..Reconnect::default()
        });
        Ok(())
    })
}

/// Manual flow control when true: after each MESSAGE no further message is
/// delivered (and the socket is not read) until `wsb_client_message_complete`.
/// Default false: each message completes when its callback returns or when it
/// is polled.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_manual_complete(
    cfg: *mut wsb_client_config,
    manual: bool,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.manual_complete = manual;
        Ok(())
    })
}

/// Reports a SENT event for each message once it is written to the socket.
/// Default false.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_send_results(cfg: *mut wsb_client_config, enable: bool) -> wsb_result {
    with_cfg(cfg, |c| {
        c.send_results = enable;
        Ok(())
    })
}

/// Sets the largest message accepted (bytes, > 0); larger gets close 1009.
/// Default 16 MiB.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_max_message_size(
    cfg: *mut wsb_client_config,
    bytes: usize,
) -> wsb_result {
    with_cfg(cfg, |c| {
        if bytes == 0 {
            return Err(invalid("max message size must be positive"));
        }
        c.engine.max_message_size = bytes;
        c.engine.max_frame_size = c.engine.max_frame_size.max(bytes);
        Ok(())
    })
}

/// Sets the time without traffic after which a ping is sent (ms; 0 disables).
/// Default 30,000.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_config_set_ping_interval_ms(cfg: *mut wsb_client_config, ms: u32) -> wsb_result {
    with_cfg(cfg, |c| {
        c.engine.ping_interval = Duration::from_millis(ms as u64);
        Ok(())
    })
}

// ---- the client ----

/// Creates a client and starts connecting in the background (it never blocks
/// on the network). With `cb` set, events go to `cb(userdata, client, event)`
/// on the client's thread (callback mode); with `cb` NULL they wait for
/// `wsb_client_poll` (queue mode). `userdata_free` (may be NULL) is called
/// exactly once with `userdata` when the client is freed, or before this
/// function returns if it fails.
///
/// Returns `WSB_RESULT_INVALID_ARGUMENT` for a bad URL or an unreadable CA or
/// certificate file (`wsb_last_error` says which and why). Connection failures
/// come later, as an ERROR event. On success the caller owns `*out` and must
/// call `wsb_client_free` once. A freed or unknown `cfg` gives
/// `WSB_RESULT_NOT_FOUND`.
///
/// # Safety
/// `cfg` must be a valid configuration; `out` a valid pointer; `cb` and
/// `userdata_free` valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_new(
    cfg: *const wsb_client_config,
    cb: wsb_client_event_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
    out: *mut *mut wsb_client,
) -> wsb_result {
    plain(|| {
        // Dropping this on any failure releases the userdata.
        let userdata = Userdata::new(userdata, userdata_free);
        let out = out_arg(out, "out")?;
        let config = CONFIGS.lookup(cfg, "config", |c| crate::lock(&c.cfg).clone())?;
        // The token is drawn first, so the handler knows its `wsb_client*`
        // before the first event (which waits for the registration).
        let reservation = CLIENTS.reserve()?;
        let (client, userdata) = match cb {
            Some(cb) => {
                let h = CClientHandler {
                    cb,
                    userdata,
                    owner: reservation.owner(),
                };
                (Client::connect(config, h), None)
            }
            None => (Client::connect_queued(config), Some(userdata)),
        };
        let client = client.map_err(invalid)?;
        *out = reservation.commit(Arc::new(wsb_client {
            handle: client.handle().clone(),
            client: Mutex::new(Some(client)),
            polled: Mutex::new(None),
            poll_gate: PollGate::new(),
            last_error: Mutex::new(String::new()),
            userdata: Mutex::new(userdata),
        }));
        Ok(wsb_result::Ok)
    })
}

/// Closes the connection (1000) if open, stops the client's thread, then
/// calls `userdata_free`. No callback runs once this has begun. NULL is a
/// no-op; an unknown or freed pointer gives `WSB_RESULT_NOT_FOUND`; from the
/// client's own callback `WSB_RESULT_REENTRANT`.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_free(client: *mut wsb_client) -> wsb_result {
    CLIENTS.free(client, "client")
}

impl Object for wsb_client {
    fn last_error(&self) -> Option<&Mutex<String>> {
        Some(&self.last_error)
    }

    fn shutdown(&self) {
        let c = crate::lock(&self.client).take();
        if let Some(c) = c {
            c.shutdown();
        }
        release(&self.userdata);
    }
}

fn with_client(c: *const wsb_client, f: impl FnOnce(&wsb_client) -> Result<wsb_result, Failure>) -> wsb_result {
    CLIENTS.call(c, "client", f)
}

fn send_outcome(r: Result<crate::Sent, crate::SendError>) -> Result<wsb_result, (wsb_result, String)> {
    match r {
        Ok(_) => Ok(r.into()),
        Err(crate::SendError::Closed) => Err((wsb_result::NotConnected, "the client is not connected".into())),
        Err(e) => Err((e.into(), e.to_string())),
    }
}

/// Sends one message: text (valid UTF-8, else `WSB_RESULT_INVALID_UTF8`) or
/// binary. `data` is borrowed only for the call. Returns `WSB_RESULT_OK` once
/// queued, `WSB_RESULT_BACKPRESSURE` when queued above the soft limit (DRAIN
/// follows), `WSB_RESULT_NOT_CONNECTED` before CONNECTED or after CLOSED.
/// Safe to call from any thread; never blocks.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`; `data` must point
/// to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn wsb_client_send(
    client: *mut wsb_client,
    data: *const u8,
    len: usize,
    is_text: bool,
) -> wsb_result {
    with_client(client, |o| send_outcome(o.handle.send(bytes_arg(data, len)?, is_text)))
}

/// Sends a ping (`len` ≤ 125, else `WSB_RESULT_TOO_BIG`). Same results as
/// `wsb_client_send`. Safe to call from any thread; never blocks.
///
/// # Safety
/// As for `wsb_client_send`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_ping(client: *mut wsb_client, data: *const u8, len: usize) -> wsb_result {
    with_client(client, |o| send_outcome(o.handle.ping(bytes_arg(data, len)?)))
}

/// Closes the connection (code ≤ 0, or not allowed on the wire: 1000; reason
/// NULL or ≤ 123 bytes of UTF-8) and stops any reconnection. CLOSED follows.
/// Safe to call from any thread; never blocks.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`; `reason` NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_close(client: *mut wsb_client, code: i32, reason: *const c_char) -> wsb_result {
    with_client(client, |o| {
        let r = opt_str_arg(reason, "reason")?.unwrap_or("");
        match o.handle.close(code, r) {
            Ok(()) => Ok(wsb_result::Ok),
            Err(crate::SendError::Closed) => Err((wsb_result::NotConnected, "the client is not connected".into())),
            Err(e) => Err((e.into(), e.to_string())),
        }
    })
}

/// Manual flow control: the host is done with the last MESSAGE; the next may
/// be delivered. Harmless in automatic mode. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_message_complete(client: *mut wsb_client) -> wsb_result {
    with_client(client, |o| {
        o.handle.message_complete();
        Ok(wsb_result::Ok)
    })
}

/// True between CONNECTED and the end of that connection. Safe to call from
/// any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_is_connected(client: *const wsb_client) -> bool {
    guard(false, || {
        CLIENTS.with(client, |o| o.handle.is_connected()).unwrap_or(false)
    })
}

/// Queue mode: waits up to `timeout_ms` (negative = forever, 0 = just check)
/// for the next event and fills `*out`. `WSB_RESULT_TIMEOUT` when none came,
/// `WSB_RESULT_INTERRUPTED` after `wsb_client_interrupt`,
/// `WSB_RESULT_INVALID_STATE` in callback mode. The event's pointers stay
/// valid until the next poll on this client, so poll from one thread at a
/// time: a poll that finds another one running on this client waits for it
/// within its own `timeout_ms`, then returns `WSB_RESULT_TIMEOUT`. In
/// automatic flow control, polling a MESSAGE completes it.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_poll(
    client: *mut wsb_client,
    timeout_ms: i32,
    out: *mut wsb_client_event,
) -> wsb_result {
    with_client(client, |o| {
        let out = out_arg(out, "out")?;
        if !o.handle.is_queued() {
            return Err((wsb_result::InvalidState, "the client is in callback mode".into()));
        }
        let Some((_turn, timeout)) = o.poll_gate.turn(timeout_ms) else {
            return Ok(wsb_result::Timeout);
        };
        let mut slot = crate::lock(&o.polled);
        *slot = None;
        let r = o.handle.poll(timeout);
        match r {
            Ok(ev) => {
                let text = event_text(&as_event(&ev));
                let stored = slot.insert((ev, text));
                // The event's storage lives in `o.polled` until the next poll.
                fill(out, &as_event(&stored.0), &stored.1);
                Ok(wsb_result::Ok)
            }
            Err(PollError::Timeout) => Ok(wsb_result::Timeout),
            Err(PollError::Interrupted) => Ok(wsb_result::Interrupted),
            Err(PollError::Closed) => Err((wsb_result::ShutDown, "the client has stopped".into())),
        }
    })
}

/// Queue mode: makes the current (or next) `wsb_client_poll` return
/// `WSB_RESULT_INTERRUPTED`. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_interrupt(client: *mut wsb_client) -> wsb_result {
    with_client(client, |o| {
        if !o.handle.is_queued() {
            return Err((wsb_result::InvalidState, "the client is in callback mode".into()));
        }
        o.handle.interrupt();
        Ok(wsb_result::Ok)
    })
}

/// Copies the detail of the last failed call on this client into `buf`
/// (NUL-terminated; `*needed` gets the size needed, NUL included; too small
/// gives `WSB_RESULT_BUFFER_TOO_SMALL`). Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_client_new`; `buf` NULL or
/// `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_client_last_error(
    client: *const wsb_client,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_client(client, |o| {
        let msg = crate::lock(&o.last_error).clone();
        // SAFETY: forwarded caller contract.
        Ok(unsafe { copy_out(&msg, buf, len, needed) })
    })
}
