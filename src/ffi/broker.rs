//! `wsb_broker_*`: the message broker with its Achex listener, in-process
//! services and login/logout/join/leave events.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::{Arc, LazyLock, Mutex};

use super::handles::{Failure, Handles, Object, Owner, Userdata};
use super::server::{load_server_tls, tls_paths, wsb_userdata_free_cb};
use super::{bytes_arg, copy_out, guard, invalid, opt_str_arg, out_arg, plain, str_arg, wsb_result};
use crate::broker::AuthMode;
use crate::dialect::achex::{AchexConfig, AchexEvent, HostError, HostItem, HostTarget, Membership, ServiceHandle};
use crate::dialect::webtalk::WebtalkError;
use crate::listeners::achex::AchexListener;
use crate::listeners::appws::{AppWsConfig, AppWsListener};
use crate::listeners::webtalk::{AdminConfig, WebtalkHandle, WebtalkListener};
use crate::listeners::wschat::WsChatListener;
use crate::listeners::{ListenerConfig, MAX_MESSAGE_LIMIT};

/// The host's login check (callback authentication mode). Return true to
/// accept `name`/`password`; to refuse, return false and optionally write a
/// reason (NUL-terminated, at most `reason_len` bytes) that the client sees as
/// `{"auth":"failed","error":reason}` (default "rejected"). Called on an I/O
/// thread; it must not block. `name` and `password` are borrowed only until it
/// returns.
pub type wsb_auth_cb = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        name: *const c_char,
        password: *const c_char,
        reason: *mut c_char,
        reason_len: usize,
    ) -> bool,
>;

/// Broker settings. Opaque; built with `wsb_broker_config_new` and the setters below.
pub struct wsb_broker_config {
    cfg: Mutex<BrokerSettings>,
}

impl Object for wsb_broker_config {}

static CONFIGS: LazyLock<Handles<wsb_broker_config>> = LazyLock::new(Handles::new);

/// What a `wsb_broker_config` holds.
#[derive(Clone)]
struct BrokerSettings {
    achex_bind: Option<std::net::SocketAddr>,
    wschat_bind: Option<std::net::SocketAddr>,
    webtalk_bind: Option<std::net::SocketAddr>,
    webtalk_admin_bind: Option<std::net::SocketAddr>,
    webtalk_admin_secret: Option<Vec<u8>>,
    appws_bind: Option<std::net::SocketAddr>,
    appws_apps: Vec<(String, String)>,
    quiet: bool,
    services: Vec<(String, String)>,
    credentials: HashMap<String, String>,
    auth: Option<Arc<AuthCallbackHolder>>,
    /// Per WebSocket listener (indexed by `wsb_listener`): the message limit
    /// when not the 64 KiB default.
    max_message: [Option<usize>; 6],
    /// TLS of each WebSocket listener, indexed by `wsb_listener` value.
    tls: [Option<Arc<rustls::ServerConfig>>; 6],
}

impl Default for BrokerSettings {
    fn default() -> BrokerSettings {
        BrokerSettings {
            achex_bind: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            wschat_bind: None,
            webtalk_bind: None,
            webtalk_admin_bind: None,
            webtalk_admin_secret: None,
            appws_bind: None,
            appws_apps: Vec::new(),
            quiet: false,
            services: Vec::new(),
            credentials: HashMap::new(),
            auth: None,
            max_message: [None; 6],
            tls: Default::default(),
        }
    }
}

struct AuthCallbackHolder {
    cb: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char, *mut c_char, usize) -> bool,
    userdata: Userdata,
}

/// A running broker. Opaque; create with `wsb_broker_new`, destroy with `wsb_broker_free`.
pub struct wsb_broker {
    achex: Option<AchexListener>,
    wschat: Mutex<Option<WsChatListener>>,
    webtalk: Mutex<Option<WebtalkListener>>,
    webtalk_handle: Option<WebtalkHandle>,
    appws: Mutex<Option<AppWsListener>>,
    ports: [u16; 6],
    services: Mutex<HashMap<u64, ServiceHandle>>,
    last_error: Mutex<String>,
}

static BROKERS: LazyLock<Handles<wsb_broker>> = LazyLock::new(Handles::new);

/// Which listener of a broker.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_listener {
    /// The Achex relay (PROTOCOLS.md §2).
    Achex = 1,
    /// The WSChat relay (§3).
    Wschat = 2,
    /// webtalk's browser listener (§4.5).
    Webtalk = 3,
    /// webtalk's admin TCP socket (§4.1–4.3); needs the webtalk listener.
    WebtalkAdmin = 4,
    /// The AppWebsocket app-service endpoint with its built-in echo (§5.3).
    Appws = 5,
}

/// Where an in-process service sends (`wsb_broker_send`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_target {
    /// Every session holding the name.
    Name = 1,
    /// Every member of the group (`bc`).
    Group = 2,
    /// Every member of the hub but the sending service (`toH`).
    Hub = 3,
}

/// Broker event types. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_broker_event_type {
    /// A message reached an in-process service: `service` is its SID, `sid` and
    /// `name` the sender's, `data`/`len` the stamped JSON (as a socket would get it).
    ServiceMessage = 1,
    /// A session logged in (`is_service` for a service login).
    Login = 2,
    /// A session gave up its name (re-login or disconnect).
    Logout = 3,
    /// A session joined a group or hub (`place`, `is_hub`).
    Join = 4,
    /// A session left a group or hub (`place`, `is_hub`).
    Leave = 5,
}

/// One broker event. Every pointer is borrowed until the callback returns.
#[repr(C)]
pub struct wsb_broker_event {
    /// A `wsb_broker_event_type` value.
    pub kind: u32,
    /// SERVICE_MESSAGE: the receiving service's SID.
    pub service: u64,
    /// The sender's (SERVICE_MESSAGE) or the session's Achex SID.
    pub sid: u64,
    /// The sender's or the session's name (NUL-terminated; `""` for a session
    /// without one). LEAVE carries the name the session held when it left,
    /// also when it left by disconnecting.
    pub name: *const c_char,
    /// JOIN/LEAVE: the group or hub (NUL-terminated); `""` otherwise.
    pub place: *const c_char,
    /// JOIN/LEAVE: a hub rather than a group.
    pub is_hub: bool,
    /// LOGIN: a service login.
    pub is_service: bool,
    /// SERVICE_MESSAGE: the JSON message (NUL-terminated).
    pub data: *const u8,
    /// Length of `data`, without the NUL.
    pub len: usize,
}

/// Broker counters, filled by `wsb_broker_stats`.
#[repr(C)]
#[derive(Default)]
pub struct wsb_broker_counts {
    /// Open Achex connections.
    pub sessions: u64,
    /// Distinct logged-in names, services included.
    pub users: u64,
    /// Groups with members.
    pub groups: u64,
    /// Hubs with members.
    pub hubs: u64,
    /// Messages received by the Achex listener.
    pub messages_in: u64,
    /// Messages sent by the Achex listener.
    pub messages_out: u64,
}

/// The broker event callback. Runs on the thread that caused the event (an
/// I/O thread, or the host's thread inside a `wsb_broker_*` call), never two at
/// once for one broker. It must not block. It may call the broker's service
/// functions (an answer from inside the callback is delivered in order), but
/// not `wsb_broker_free`.
pub type wsb_broker_event_cb =
    Option<unsafe extern "C" fn(userdata: *mut c_void, broker: *mut wsb_broker, event: *const wsb_broker_event)>;

// ---- configuration ----

/// Creates a broker configuration: the Achex listener on `127.0.0.1:0`, the
/// others off; open login (the first session to claim a name sets its
/// password), errors on, no service credentials, AppWebsocket app `demo`
/// with password `demo` when that listener is on. Returns NULL only if out of
/// memory. The caller owns the result and must call `wsb_broker_config_free`
/// once.
#[no_mangle]
pub extern "C" fn wsb_broker_config_new() -> *mut wsb_broker_config {
    guard(std::ptr::null_mut(), || {
        let cfg = Arc::new(wsb_broker_config {
            cfg: Mutex::new(BrokerSettings::default()),
        });
        CONFIGS.add(cfg).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a broker configuration; NULL is a no-op, and so is a pointer already
/// freed or unknown (`wsb_last_error` then says so). A broker keeps its own
/// copy (the auth callback's `userdata_free` runs when the last of them goes).
///
/// # Safety
/// `cfg` must be NULL or a pointer from `wsb_broker_config_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_free(cfg: *mut wsb_broker_config) {
    guard((), || {
        CONFIGS.free(cfg, "config");
    })
}

fn with_cfg(cfg: *mut wsb_broker_config, f: impl FnOnce(&mut BrokerSettings) -> Result<(), Failure>) -> wsb_result {
    super::with_config(&CONFIGS, cfg, |c| &c.cfg, f)
}

/// Sets a listener's address, `"IP:PORT"` (port 0 = ephemeral, see
/// `wsb_broker_port`), or `"off"` to disable it.
///
/// # Safety
/// `cfg` must be valid; `addr` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_listener(
    cfg: *mut wsb_broker_config,
    listener: u32,
    addr: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let a = str_arg(addr, "addr")?;
        let bind = if a == "off" {
            None
        } else {
            Some(
                a.parse()
                    .map_err(|_| invalid(format!("not an IP:PORT address or \"off\": {a:?}")))?,
            )
        };
        let slot = match listener {
            1 => &mut c.achex_bind,
            2 => &mut c.wschat_bind,
            3 => &mut c.webtalk_bind,
            4 => &mut c.webtalk_admin_bind,
            5 => &mut c.appws_bind,
            _ => return Err(invalid(format!("unknown listener {listener}"))),
        };
        *slot = bind;
        Ok(())
    })
}

/// The largest message a WebSocket listener accepts (`bytes`, after
/// reassembly, 1 to 1073741824 = 1 GiB); a larger one gets close
/// 1009 (PROTOCOLS.md §1). Default 65536 on every listener. The webtalk
/// admin socket is not a WebSocket listener (its bodies are at most 99999
/// bytes by construction): it gives `WSB_RESULT_INVALID_ARGUMENT`, as do an
/// unknown listener and a size out of range.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_max_message(
    cfg: *mut wsb_broker_config,
    listener: u32,
    bytes: usize,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let l = websocket_listener(listener, "has no message limit to set (it is not a WebSocket)")?;
        if bytes == 0 || bytes > MAX_MESSAGE_LIMIT {
            return Err(invalid(format!(
                "max message must be 1 to {MAX_MESSAGE_LIMIT} bytes, not {bytes}"
            )));
        }
        c.max_message[l] = Some(bytes);
        Ok(())
    })
}

/// The index of a WebSocket listener (`wsb_listener` value); the webtalk
/// admin socket, which `admin` says why is refused, and unknown values are
/// `WSB_RESULT_INVALID_ARGUMENT`.
fn websocket_listener(listener: u32, admin: &str) -> Result<usize, Failure> {
    match listener {
        1 | 2 | 3 | 5 => Ok(listener as usize),
        4 => Err(invalid(format!("the webtalk admin socket {admin}"))),
        _ => Err(invalid(format!("unknown listener {listener}"))),
    }
}

/// Makes a WebSocket listener (`WSB_LISTENER_ACHEX`, `_WSCHAT`, `_WEBTALK`
/// or `_APPWS`) serve `wss://`: TLS with the certificate chain (PEM, leaf
/// first) and its private key (PEM), both read now. Returns
/// `WSB_RESULT_INVALID_ARGUMENT` for the webtalk admin socket (plain TCP), an
/// unknown listener, or when a file cannot be read, holds no certificate or
/// no usable key, or the key does not belong to the certificate
/// (`wsb_last_error` names the file and the reason); the configuration is
/// then unchanged. Both paths NULL turn TLS off again. Default: no TLS.
///
/// # Safety
/// `cfg` must be valid; each path NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_listener_tls(
    cfg: *mut wsb_broker_config,
    listener: u32,
    cert_chain_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let l = websocket_listener(listener, "is plain TCP: it has no TLS")?;
        c.tls[l] = load_server_tls(tls_paths(cert_chain_pem_path, key_pem_path)?)?;
        Ok(())
    })
}

/// Requires `[auth] SECRET` as the first frame of every webtalk admin
/// connection (compared in constant time). NULL removes the requirement.
///
/// # Safety
/// `cfg` must be valid; `secret` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_webtalk_admin_secret(
    cfg: *mut wsb_broker_config,
    secret: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        c.webtalk_admin_secret = opt_str_arg(secret, "secret")?.map(|s| s.as_bytes().to_vec());
        Ok(())
    })
}

/// Adds an AppWebsocket app and its password (the first one replaces the
/// default `demo`/`demo`).
///
/// # Safety
/// `cfg` must be valid; `name` and `password` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_add_appws_app(
    cfg: *mut wsb_broker_config,
    name: *const c_char,
    password: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let (n, p) = name_and_password(name, password)?;
        if n.is_empty() {
            return Err(invalid("app name is empty"));
        }
        c.appws_apps.push((n, p));
        Ok(())
    })
}

/// Two string arguments, copied.
///
/// # Safety
/// Both must be NULL or valid NUL-terminated strings.
unsafe fn name_and_password(name: *const c_char, password: *const c_char) -> Result<(String, String), Failure> {
    Ok((
        str_arg(name, "name")?.to_owned(),
        str_arg(password, "password")?.to_owned(),
    ))
}

/// Achex quiet mode: no `{"error":…}` replies (`{"auth":"failed",…}` is still sent).
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_achex_quiet(cfg: *mut wsb_broker_config, quiet: bool) -> wsb_result {
    with_cfg(cfg, |c| {
        c.quiet = quiet;
        Ok(())
    })
}

/// Adds credentials for Achex `serviceID` logins (clients acting as services).
///
/// # Safety
/// `cfg` must be valid; `name` and `password` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_add_service_credentials(
    cfg: *mut wsb_broker_config,
    name: *const c_char,
    password: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let (n, p) = name_and_password(name, password)?;
        if n.is_empty() {
            return Err(invalid("service name is empty"));
        }
        c.services.push((n, p));
        Ok(())
    })
}

/// Adds a user to the credentials table. Once any is added, logins are
/// checked against the table only (`invalid credentials` otherwise).
///
/// # Safety
/// `cfg` must be valid; `name` and `password` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_add_credentials(
    cfg: *mut wsb_broker_config,
    name: *const c_char,
    password: *const c_char,
) -> wsb_result {
    with_cfg(cfg, |c| {
        let (n, p) = name_and_password(name, password)?;
        if n.is_empty() {
            return Err(invalid("user name is empty"));
        }
        c.credentials.insert(n, p);
        Ok(())
    })
}

/// Lets the host decide every user login (see `wsb_auth_cb`); takes
/// precedence over a credentials table. `userdata_free` (may be NULL) runs
/// exactly once: when neither this configuration nor a broker made from it
/// needs the callback any more, or before this function returns when `cb`
/// is NULL or the call fails.
///
/// # Safety
/// `cfg` must be valid; `cb` a valid function or NULL (NULL restores open mode).
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_config_set_auth_callback(
    cfg: *mut wsb_broker_config,
    cb: wsb_auth_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
) -> wsb_result {
    plain(|| {
        // Released exactly once: by whatever holds the callback last, or
        // right here when `cb` is NULL or the call fails.
        let userdata = Userdata::new(userdata, userdata_free);
        let auth = cb.map(|cb| Arc::new(AuthCallbackHolder { cb, userdata }));
        // The callback it replaces is released after the configuration's lock.
        let mut replaced = None;
        let r = with_cfg(cfg, |c| {
            replaced = std::mem::replace(&mut c.auth, auth);
            Ok(())
        });
        drop(replaced);
        Ok(r)
    })
}

fn auth_mode(c: &BrokerSettings) -> AuthMode {
    if let Some(h) = &c.auth {
        let h = h.clone();
        return AuthMode::Callback(Box::new(move |name: &str, password: &str| {
            let n = CString::new(name.replace('\0', "")).unwrap_or_default();
            let p = CString::new(password.replace('\0', "")).unwrap_or_default();
            let mut reason = [0 as c_char; 256];
            // SAFETY: the host registered `cb` for this call shape; all
            // pointers outlive the call, and `reason` has its stated length.
            let ok = unsafe {
                (h.cb)(
                    h.userdata.get(),
                    n.as_ptr(),
                    p.as_ptr(),
                    reason.as_mut_ptr(),
                    reason.len() - 1,
                )
            };
            if ok {
                return Ok(());
            }
            // SAFETY: the last byte is never written by the host (len - 1), so
            // the buffer is NUL-terminated.
            let r = unsafe { std::ffi::CStr::from_ptr(reason.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            Err(if r.is_empty() { "rejected".to_owned() } else { r })
        }));
    }
    if !c.credentials.is_empty() {
        return AuthMode::Table(c.credentials.clone());
    }
    AuthMode::Open
}

// ---- the broker ----

struct EventSink {
    cb: unsafe extern "C" fn(*mut c_void, *mut wsb_broker, *const wsb_broker_event),
    userdata: Userdata,
    owner: Owner<wsb_broker>,
}

impl EventSink {
    fn deliver(&self, item: HostItem) {
        let empty = c"".as_ptr();
        let mut ev = wsb_broker_event {
            kind: 0,
            service: 0,
            sid: 0,
            name: empty,
            place: empty,
            is_hub: false,
            is_service: false,
            data: empty as *const u8,
            len: 0,
        };
        let cs = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let data = match &item {
            HostItem::Message { json, .. } => cs(&String::from_utf8_lossy(json)),
            HostItem::Event(_) => CString::default(),
        };
        let (name, place);
        match item {
            HostItem::Message {
                service,
                from_name,
                from_sid,
                json,
            } => {
                let _ = json;
                name = cs(&from_name);
                place = CString::default();
                ev.kind = wsb_broker_event_type::ServiceMessage as u32;
                ev.service = service.sid();
                ev.sid = from_sid;
                ev.data = data.as_ptr() as *const u8;
                ev.len = data.as_bytes().len();
            }
            HostItem::Event(e) => match e {
                AchexEvent::Login {
                    sid, name: n, service, ..
                } => {
                    ev.kind = wsb_broker_event_type::Login as u32;
                    ev.sid = sid;
                    ev.is_service = service;
                    name = cs(&n);
                    place = CString::default();
                }
                AchexEvent::Logout { sid, name: n, .. } => {
                    ev.kind = wsb_broker_event_type::Logout as u32;
                    ev.sid = sid;
                    name = cs(&n);
                    place = CString::default();
                }
                AchexEvent::Join {
                    sid,
                    kind,
                    place: p,
                    name: n,
                    ..
                } => {
                    ev.kind = wsb_broker_event_type::Join as u32;
                    ev.sid = sid;
                    ev.is_hub = kind == Membership::Hub;
                    name = cs(&n);
                    place = cs(&p);
                }
                AchexEvent::Leave {
                    sid,
                    kind,
                    place: p,
                    name: n,
                    ..
                } => {
                    ev.kind = wsb_broker_event_type::Leave as u32;
                    ev.sid = sid;
                    ev.is_hub = kind == Membership::Hub;
                    name = cs(&n);
                    place = cs(&p);
                }
            },
        }
        ev.name = name.as_ptr();
        ev.place = place.as_ptr();
        self.owner.enter(|b| {
            // SAFETY: the host registered `cb`; `ev` and its strings outlive the call.
            unsafe { (self.cb)(self.userdata.get(), b, &ev) }
        });
    }
}

/// Starts a broker: its listeners bind and serve at once. With `cb` set, the
/// host receives SERVICE_MESSAGE events (and LOGIN/LOGOUT/JOIN/LEAVE after
/// `wsb_broker_set_events`). With `cb` NULL nothing is kept for the host:
/// `wsb_broker_register_service` and `wsb_broker_set_events(true)` give
/// `WSB_RESULT_INVALID_STATE`. `userdata_free` (may be NULL) is called exactly
/// once with `userdata` when the broker is freed, or before this function
/// returns if it fails. On success the caller owns `*out` and must call
/// `wsb_broker_free` once. `WSB_RESULT_ADDR_IN_USE` and `WSB_RESULT_IO` tell
/// why a listener could not bind (`wsb_last_error` says which); a freed or
/// unknown `cfg` gives `WSB_RESULT_NOT_FOUND`.
///
/// # Safety
/// `cfg` must be NULL (defaults) or valid; `out` a valid pointer; `cb` and
/// `userdata_free` valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_new(
    cfg: *const wsb_broker_config,
    cb: wsb_broker_event_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
    out: *mut *mut wsb_broker,
) -> wsb_result {
    plain(|| {
        // Dropping this on any failure (or when nothing will call `cb`)
        // releases the userdata.
        let userdata = Userdata::new(userdata, userdata_free);
        let out = out_arg(out, "out")?;
        let c = if cfg.is_null() {
            BrokerSettings::default()
        } else {
            CONFIGS.lookup(cfg, "config", |c| crate::lock(&c.cfg).clone())?
        };
        let achex = match c.achex_bind {
            None => None,
            Some(bind) => {
                let ac = AchexConfig {
                    quiet: c.quiet,
                    auth: auth_mode(&c),
                    services: c.services.clone(),
                    ..AchexConfig::default()
                };
                let l = AchexListener::start(listener_config(&c, wsb_listener::Achex, bind).engine, ac)
                    .map_err(|e| listen_failure("achex", bind, e))?;
                Some(l)
            }
        };
        let (wschat, webtalk, appws) = start_others(&c)?;
        let mut ports = [0u16; 6];
        ports[1] = achex.as_ref().map(|l| l.local_addr().port()).unwrap_or(0);
        ports[2] = wschat.as_ref().map(|l| l.local_addr().port()).unwrap_or(0);
        ports[3] = webtalk.as_ref().map(|l| l.local_addr().port()).unwrap_or(0);
        ports[4] = webtalk
            .as_ref()
            .and_then(|l| l.admin_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        ports[5] = appws.as_ref().map(|l| l.local_addr().port()).unwrap_or(0);
        let obj = Arc::new(wsb_broker {
            webtalk_handle: webtalk.as_ref().map(|l| l.handle().clone()),
            wschat: Mutex::new(wschat),
            webtalk: Mutex::new(webtalk),
            appws: Mutex::new(appws),
            ports,
            achex,
            services: Mutex::new(HashMap::new()),
            last_error: Mutex::new(String::new()),
        });
        let reservation = BROKERS.reserve()?;
        let owner = reservation.owner();
        *out = reservation.commit(obj.clone());
        // Events need the Achex listener; without it the userdata goes now.
        if let (Some(cb), Some(l)) = (cb, &obj.achex) {
            let sink = EventSink { cb, userdata, owner };
            l.set_host_sink(Some(Box::new(move |item| sink.deliver(item))));
        }
        Ok(wsb_result::Ok)
    })
}

/// Stops every listener (close 1001 to each client), then releases the
/// callback's userdata. NULL is a no-op; an unknown or freed pointer gives
/// `WSB_RESULT_NOT_FOUND`; from the broker's own callback `WSB_RESULT_REENTRANT`.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_free(broker: *mut wsb_broker) -> wsb_result {
    BROKERS.free(broker, "broker")
}

impl Object for wsb_broker {
    fn last_error(&self) -> Option<&Mutex<String>> {
        Some(&self.last_error)
    }

    fn shutdown(&self) {
        if let Some(l) = &self.achex {
            l.shutdown();
            l.set_host_sink(None);
        }
        if let Some(l) = take(&self.wschat) {
            WsChatListener::shutdown(l);
        }
        if let Some(l) = take(&self.webtalk) {
            WebtalkListener::shutdown(l);
        }
        if let Some(l) = take(&self.appws) {
            AppWsListener::shutdown(l);
        }
    }
}

fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    crate::lock(m).take()
}

/// A WebSocket listener's settings on `bind`: its message limit and TLS, if configured.
fn listener_config(c: &BrokerSettings, which: wsb_listener, bind: std::net::SocketAddr) -> ListenerConfig {
    let mut lc = ListenerConfig::new(bind);
    if let Some(n) = c.max_message[which as usize] {
        lc = lc.max_message_size(n);
    }
    lc.engine.tls = c.tls[which as usize].clone();
    lc
}

type Others = (Option<WsChatListener>, Option<WebtalkListener>, Option<AppWsListener>);

fn listen_failure(what: &str, bind: std::net::SocketAddr, e: std::io::Error) -> Failure {
    let r = if e.kind() == std::io::ErrorKind::AddrInUse {
        wsb_result::AddrInUse
    } else {
        wsb_result::Io
    };
    (r, format!("{what}: cannot listen on {bind}: {e}"))
}

/// Starts the WSChat, webtalk and AppWebsocket listeners the configuration asks for.
fn start_others(c: &BrokerSettings) -> Result<Others, Failure> {
    let fail = listen_failure;
    let wschat = match c.wschat_bind {
        Some(b) => Some(
            crate::listeners::wschat::start(listener_config(c, wsb_listener::Wschat, b))
                .map_err(|e| fail("wschat", b, e))?,
        ),
        None => None,
    };
    if c.webtalk_admin_bind.is_some() && c.webtalk_bind.is_none() {
        return Err((
            wsb_result::InvalidArgument,
            "the webtalk admin socket needs the webtalk listener on".into(),
        ));
    }
    let webtalk = match c.webtalk_bind {
        Some(b) => {
            let admin = c.webtalk_admin_bind.map(|a| AdminConfig {
                bind: a,
                secret: c.webtalk_admin_secret.clone(),
                ..AdminConfig::default()
            });
            Some(
                crate::listeners::webtalk::start(listener_config(c, wsb_listener::Webtalk, b), admin)
                    .map_err(|e| fail("webtalk", b, e))?,
            )
        }
        None => None,
    };
    let appws = match c.appws_bind {
        Some(b) => {
            let apps = AppWsConfig {
                apps: c.appws_apps.clone(),
                domain_passwords: Vec::new(),
            };
            Some(
                crate::listeners::appws::start(listener_config(c, wsb_listener::Appws, b), &apps)
                    .map_err(|e| fail("appws", b, e))?,
            )
        }
        None => None,
    };
    Ok((wschat, webtalk, appws))
}

fn with_broker(b: *const wsb_broker, f: impl FnOnce(&wsb_broker) -> Result<wsb_result, Failure>) -> wsb_result {
    BROKERS.call(b, "broker", f)
}

fn achex(b: &wsb_broker) -> Result<&AchexListener, (wsb_result, String)> {
    b.achex
        .as_ref()
        .ok_or((wsb_result::InvalidState, "the Achex listener is off".into()))
}

fn host_error(e: HostError) -> (wsb_result, String) {
    let r = match e {
        HostError::UnknownService | HostError::NoSuchUser | HostError::NoSuchSession => wsb_result::NotFound,
        HostError::NotAnObject => wsb_result::InvalidArgument,
        HostError::Login(_) => wsb_result::InvalidState,
        HostError::NoReceiver => return no_callback(),
    };
    (r, e.to_string())
}

fn no_callback() -> (wsb_result, String) {
    (
        wsb_result::InvalidState,
        "the broker has no event callback (cb was NULL): nothing would receive it".into(),
    )
}

fn service_of(b: &wsb_broker, sid: u64) -> Result<ServiceHandle, (wsb_result, String)> {
    crate::lock(&b.services)
        .get(&sid)
        .copied()
        .ok_or((wsb_result::NotFound, format!("no in-process service with SID {sid}")))
}

/// The port a listener serves on (the real one when 0 was asked), or 0 if it
/// is off or `broker` is unknown. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_port(broker: *const wsb_broker, listener: u32) -> u16 {
    guard(0, || {
        BROKERS
            .with(broker, |b| b.ports.get(listener as usize).copied().unwrap_or(0))
            .unwrap_or(0)
    })
}

/// Registers an in-process service under an exclusive Achex name. What
/// clients send to it (`to` the name, `toS` its SID, groups and hubs it
/// joins) arrives as SERVICE_MESSAGE events. On success `*out_sid` receives
/// the service's SID, which names it in the other service calls. A name
/// already held gives `WSB_RESULT_INVALID_STATE` ("name in use"), and so does
/// a broker created without an event callback (`cb` NULL): nothing could
/// receive the service's messages. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `name` a
/// NUL-terminated string; `out_sid` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_register_service(
    broker: *mut wsb_broker,
    name: *const c_char,
    out_sid: *mut u64,
) -> wsb_result {
    with_broker(broker, |b| {
        let n = str_arg(name, "name")?;
        let out_sid = out_arg(out_sid, "out_sid")?;
        let h = achex(b)?.register_service(n).map_err(host_error)?;
        crate::lock(&b.services).insert(h.sid(), h);
        *out_sid = h.sid();
        Ok(wsb_result::Ok)
    })
}

/// Removes an in-process service as if it had disconnected (its hubs are
/// told). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_unregister_service(broker: *mut wsb_broker, service: u64) -> wsb_result {
    with_broker(broker, |b| {
        let h = service_of(b, service)?;
        achex(b)?.unregister_service(h).map_err(host_error)?;
        crate::lock(&b.services).remove(&service);
        Ok(wsb_result::Ok)
    })
}

/// Sends a JSON object (`json`/`len`) from an in-process service to a name,
/// a group or a hub (`wsb_target`), stamped like a client's message
/// (`"FROM":service,"sID":sid` appended). `json` is borrowed only for the
/// call. Not an object gives `WSB_RESULT_INVALID_ARGUMENT`; an unknown name
/// `WSB_RESULT_NOT_FOUND`. Safe to call from any thread; never blocks. The
/// event callback may call it too.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `target` a
/// NUL-terminated string; `json` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_send(
    broker: *mut wsb_broker,
    service: u64,
    target_kind: u32,
    target: *const c_char,
    json: *const u8,
    len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let t = str_arg(target, "target")?.to_owned();
        let data = bytes_arg(json, len)?;
        let target = match target_kind {
            1 => HostTarget::Name(t),
            2 => HostTarget::Group(t),
            3 => HostTarget::Hub(t),
            k => return Err((wsb_result::InvalidArgument, format!("unknown target kind {k}"))),
        };
        let h = service_of(b, service)?;
        achex(b)?.service_send(h, &target, data).map_err(host_error)?;
        Ok(wsb_result::Ok)
    })
}

/// Sends a JSON object from an in-process service to the session with Achex
/// SID `sid` (like `toS`). `json` is borrowed only for the call. Same results
/// as `wsb_broker_send`. Safe to call from any thread; never blocks.
///
/// # Safety
/// As for `wsb_broker_send`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_send_to_session(
    broker: *mut wsb_broker,
    service: u64,
    sid: u64,
    json: *const u8,
    len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let data = bytes_arg(json, len)?;
        let h = service_of(b, service)?;
        achex(b)?
            .service_send(h, &HostTarget::Session(sid), data)
            .map_err(host_error)?;
        Ok(wsb_result::Ok)
    })
}

/// Adds an in-process service to a group (`is_hub` false) or hub. Idempotent.
/// Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `place` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_join(
    broker: *mut wsb_broker,
    service: u64,
    is_hub: bool,
    place: *const c_char,
) -> wsb_result {
    with_broker(broker, |b| {
        let p = str_arg(place, "place")?;
        let h = service_of(b, service)?;
        let kind = if is_hub { Membership::Hub } else { Membership::Group };
        achex(b)?.service_join(h, kind, p).map_err(host_error)?;
        Ok(wsb_result::Ok)
    })
}

/// Removes an in-process service from a group or hub (hub members are told).
/// Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `place` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_leave(
    broker: *mut wsb_broker,
    service: u64,
    is_hub: bool,
    place: *const c_char,
) -> wsb_result {
    with_broker(broker, |b| {
        let p = str_arg(place, "place")?;
        let h = service_of(b, service)?;
        let kind = if is_hub { Membership::Hub } else { Membership::Group };
        achex(b)?.service_leave(h, kind, p).map_err(host_error)?;
        Ok(wsb_result::Ok)
    })
}

/// Turns LOGIN/LOGOUT/JOIN/LEAVE events on or off (default off). Turning
/// them on needs the event callback: a broker created with `cb` NULL gives
/// `WSB_RESULT_INVALID_STATE` (nothing would receive them). Safe to call from
/// any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_set_events(broker: *mut wsb_broker, on: bool) -> wsb_result {
    with_broker(broker, |b| {
        let l = achex(b)?;
        if on && !l.has_host_sink() {
            return Err(no_callback());
        }
        l.set_events(on);
        Ok(wsb_result::Ok)
    })
}

/// Fills `*out` with the broker's counters. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_stats(broker: *const wsb_broker, out: *mut wsb_broker_counts) -> wsb_result {
    with_broker(broker, |b| {
        let out = out_arg(out, "out")?;
        let mut s = wsb_broker_counts::default();
        if let Some(l) = &b.achex {
            let a = l.stats();
            let e = l.engine_stats();
            s.sessions = a.sessions as u64;
            s.users = a.users as u64;
            s.groups = a.groups as u64;
            s.hubs = a.hubs as u64;
            s.messages_in = e.messages_in;
            s.messages_out = e.messages_out;
        }
        *out = s;
        Ok(wsb_result::Ok)
    })
}

/// Copies the detail of the last failed call on this broker into `buf`
/// (NUL-terminated; `*needed` gets the size needed, NUL included; too small
/// gives `WSB_RESULT_BUFFER_TOO_SMALL`). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `buf` NULL or
/// `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_last_error(
    broker: *const wsb_broker,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let msg = crate::lock(&b.last_error).clone();
        // SAFETY: forwarded caller contract.
        Ok(unsafe { copy_out(&msg, buf, len, needed) })
    })
}

// ---- webtalk, driven without a socket ----

fn webtalk(b: &wsb_broker) -> Result<&WebtalkHandle, (wsb_result, String)> {
    b.webtalk_handle
        .as_ref()
        .ok_or((wsb_result::InvalidState, "the webtalk listener is off".into()))
}

fn webtalk_error(e: WebtalkError) -> (wsb_result, String) {
    let r = match e {
        WebtalkError::UnknownUser(_) | WebtalkError::UnknownChannel(_) => wsb_result::NotFound,
        WebtalkError::QueueFull(_) => wsb_result::WouldOverflow,
        WebtalkError::GlobalChannel => wsb_result::InvalidArgument,
        WebtalkError::NoRandomness => wsb_result::Io,
    };
    (r, e.to_string())
}

/// webtalk `[newuser]`: creates a user (who joins channel 1). On success
/// `*out_user` receives its id and `salt` the 20-digit salt the browser logs in
/// with as `ID!SALT` (NUL-terminated: `salt_len` must be at least 21, else
/// `WSB_RESULT_BUFFER_TOO_SMALL` and no user is created). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `out_user` valid;
/// `salt` `salt_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_create_user(
    broker: *mut wsb_broker,
    out_user: *mut u64,
    salt: *mut c_char,
    salt_len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let out_user = out_arg(out_user, "out_user")?;
        if salt.is_null() {
            return Err((wsb_result::NullPointer, "salt is NULL".into()));
        }
        if salt_len < 21 {
            return Err((wsb_result::BufferTooSmall, "salt needs 21 bytes".into()));
        }
        let (id, s) = webtalk(b)?.create_user().map_err(webtalk_error)?;
        *out_user = id;
        // SAFETY: checked non-NULL; the buffer holds at least 21 bytes.
        unsafe { copy_out(&s, salt, salt_len, std::ptr::null_mut()) };
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[killuser]`: closes the user's browser (4003 "user killed"),
/// removes it from every channel and forgets it. Unknown user:
/// `WSB_RESULT_NOT_FOUND`. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_kill_user(broker: *mut wsb_broker, user: u64) -> wsb_result {
    with_broker(broker, |b| {
        webtalk(b)?.kill_user(user).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[whisper]`: sends `message` to one user's browser as one frame
/// (text, or binary if not UTF-8), or queues a copy while the user is
/// offline. `message` is borrowed only for the call. A full queue gives
/// `WSB_RESULT_WOULD_OVERFLOW` (the message is dropped for that user). Safe
/// to call from any thread; never blocks.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `message` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_whisper(
    broker: *mut wsb_broker,
    user: u64,
    message: *const u8,
    len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let m = bytes_arg(message, len)?;
        webtalk(b)?.whisper(user, m).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[newchannel]`: creates a channel; `*out_channel` receives its id
/// (2, 3, …). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `out_channel` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_create_channel(
    broker: *mut wsb_broker,
    out_channel: *mut u64,
) -> wsb_result {
    with_broker(broker, |b| {
        let out_channel = out_arg(out_channel, "out_channel")?;
        *out_channel = webtalk(b)?.create_channel();
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[killchannel]`. Channel 1 gives `WSB_RESULT_INVALID_ARGUMENT`, an
/// unknown one `WSB_RESULT_NOT_FOUND`. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_kill_channel(broker: *mut wsb_broker, channel: u64) -> wsb_result {
    with_broker(broker, |b| {
        webtalk(b)?.kill_channel(channel).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[shout]`: sends `message` to every member of the channel;
/// `message` is borrowed only for the call. If a member's offline queue is
/// full, the others still get it and the call returns
/// `WSB_RESULT_WOULD_OVERFLOW` naming the first full member in
/// `wsb_last_error`. Safe to call from any thread; never blocks.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `message` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_shout(
    broker: *mut wsb_broker,
    channel: u64,
    message: *const u8,
    len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let m = bytes_arg(message, len)?;
        webtalk(b)?.shout(channel, m).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[join]` (idempotent). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_join(broker: *mut wsb_broker, channel: u64, user: u64) -> wsb_result {
    with_broker(broker, |b| {
        webtalk(b)?.join(channel, user).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[leave]` (also fine for a non-member). Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_leave(broker: *mut wsb_broker, channel: u64, user: u64) -> wsb_result {
    with_broker(broker, |b| {
        webtalk(b)?.leave(channel, user).map_err(webtalk_error)?;
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[store]`: keeps a copy of `value` under `key`, replacing any
/// earlier value; `value` is borrowed only for the call. The key is the bytes of `key` before
/// its NUL, which must be UTF-8 (else `WSB_RESULT_INVALID_ARGUMENT`): the
/// same key as the admin socket's `[store] KEY!VALUE` with those bytes.
/// Keys are shared with the admin socket but not every key is reachable from
/// both: a key holding a NUL byte or invalid UTF-8 (which the socket can
/// store) cannot be named here, and one holding `!` (fine here) cannot be
/// stored over the socket, where the first `!` ends the key. The value is
/// `len` arbitrary bytes: NUL bytes and non-UTF-8 are kept as they are.
/// Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `key` a
/// NUL-terminated string; `value` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_store(
    broker: *mut wsb_broker,
    key: *const c_char,
    value: *const u8,
    len: usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let (k, v) = (str_arg(key, "key")?, bytes_arg(value, len)?);
        webtalk(b)?.store(k.as_bytes(), v);
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[clear]` (also fine when absent). `key` names the key as for
/// `wsb_broker_webtalk_store`. Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `key` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_clear(broker: *mut wsb_broker, key: *const c_char) -> wsb_result {
    with_broker(broker, |b| {
        let k = str_arg(key, "key")?;
        webtalk(b)?.clear(k.as_bytes());
        Ok(wsb_result::Ok)
    })
}

/// webtalk `[retrieve]`: copies the value under `key` (named as for
/// `wsb_broker_webtalk_store`) into `buf`, followed by a NUL. The value is
/// binary: it may itself hold NUL bytes and need not be UTF-8, so its length
/// is `*needed - 1`, not `strlen(buf)`; pass `needed` to learn it. `*needed`
/// gets the value's length plus 1 whenever a value exists (1 for an empty
/// value). A `buf` shorter than that gives `WSB_RESULT_BUFFER_TOO_SMALL` and
/// `""` in `buf` (when `len` ≥ 1); no value gives `WSB_RESULT_NOT_FOUND`
/// (unlike the admin socket's `[ok] `, an empty value and no value differ).
/// Safe to call from any thread.
///
/// # Safety
/// `broker` must be NULL or a pointer from `wsb_broker_new`; `key` a
/// NUL-terminated string; `buf` NULL or `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_broker_webtalk_retrieve(
    broker: *mut wsb_broker,
    key: *const c_char,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_broker(broker, |b| {
        let k = str_arg(key, "key")?;
        let v = webtalk(b)?
            .retrieve(k.as_bytes())
            .ok_or((wsb_result::NotFound, "no value under this key".into()))?;
        let need = v.len() + 1;
        if !needed.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *needed = need };
        }
        if buf.is_null() || len < need {
            if !buf.is_null() && len > 0 {
                // SAFETY: at least one writable byte.
                unsafe { *buf = 0 };
            }
            return Ok(wsb_result::BufferTooSmall);
        }
        // SAFETY: `buf` has `len` ≥ `need` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr(), buf as *mut u8, v.len());
            *buf.add(v.len()) = 0;
        }
        Ok(wsb_result::Ok)
    })
}
