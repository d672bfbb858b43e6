//! `wsb_appws_*`: the innovaphone AppWebsocket client (the
//! IAppWebsocketClient model), the app-service endpoint, and the §5 crypto.

use crate::lock;
use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::handles::{release, Failure, Handles, Object, Owner, Userdata};
use super::poll_gate::PollGate;
use super::server::{load_server_tls, tls_paths, wsb_conn_id, wsb_userdata_free_cb};
use super::{bytes_arg, guard, invalid, opt_str_arg as opt_str, out_arg, plain, str_arg, wsb_result};
use crate::appws::{
    self, AppClient, AppClientConfig, AppClientEvent, AppClientHandle, AppSendError, AppService, AppServiceConfig,
    AppServiceEvent, AppServiceHandle, Authentication, Credentials, OwnedAppClientEvent, OwnedAppServiceEvent,
};
use crate::engine::PollError;

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn send_failure(e: AppSendError) -> Failure {
    match e {
        AppSendError::NotConnected => (wsb_result::NotConnected, "not logged in".into()),
        AppSendError::InvalidJson => (wsb_result::InvalidArgument, "not a JSON value".into()),
        AppSendError::Send(e) => (e.into(), e.to_string()),
    }
}

fn poll_result<T>(r: Result<T, PollError>, what: &str) -> Result<Result<T, wsb_result>, Failure> {
    match r {
        Ok(e) => Ok(Ok(e)),
        Err(PollError::Timeout) => Ok(Err(wsb_result::Timeout)),
        Err(PollError::Interrupted) => Ok(Err(wsb_result::Interrupted)),
        Err(PollError::Closed) => Err((wsb_result::ShutDown, format!("the {what} has stopped"))),
    }
}

// ---- crypto without a connection ----

/// Writes a §5.2 result into a C buffer: `WSB_RESULT_BUFFER_TOO_SMALL`
/// (writing `""` when `out_len` ≥ 1) or `WSB_RESULT_INVALID_ARGUMENT` for
/// invalid hex.
fn crypto_out(r: Result<usize, appws::Error>) -> Result<wsb_result, Failure> {
    match r {
        Ok(_) => Ok(wsb_result::Ok),
        Err(appws::Error::BufferTooSmall { needed }) => Err((
            wsb_result::BufferTooSmall,
            format!("output buffer too small ({needed} bytes needed)"),
        )),
        Err(appws::Error::WrongState) => Err((wsb_result::NotConnected, "not logged in".into())),
        Err(e) => Err((wsb_result::InvalidArgument, e.to_string())),
    }
}

/// Borrows a C output buffer; `""` is written up front so every failure
/// leaves it empty.
///
/// # Safety
/// `out` must be NULL or point to `out_len` writable bytes.
unsafe fn out_buf<'a>(out: *mut c_char, out_len: usize) -> Result<&'a mut [u8], Failure> {
    if out.is_null() {
        return Err((wsb_result::NullPointer, "out is NULL".into()));
    }
    let b = std::slice::from_raw_parts_mut(out as *mut u8, out_len);
    if let Some(first) = b.first_mut() {
        *first = 0;
    }
    Ok(b)
}

/// The §5.1 login digest: lowercase hex SHA-256 of
/// `app:domain:sip:guid:dn[:info]:challenge:password`, with `info` (NULL for
/// none) taken as the exact JSON text that will be sent. Writes 64 hex
/// characters and a NUL into `out` (`out_len` ≥ 65, else
/// `WSB_RESULT_BUFFER_TOO_SMALL` and `""`). For authenticator hosts. Safe to
/// call from any thread.
///
/// # Safety
/// Every string must be a valid NUL-terminated string (`info` may be NULL);
/// `out` must point to `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_digest(
    app: *const c_char,
    domain: *const c_char,
    sip: *const c_char,
    guid: *const c_char,
    dn: *const c_char,
    info: *const c_char,
    challenge: *const c_char,
    password: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    plain(|| {
        let b = out_buf(out, out_len)?;
        let d = appws::digest(
            str_arg(app, "app")?,
            str_arg(domain, "domain")?,
            str_arg(sip, "sip")?,
            str_arg(guid, "guid")?,
            str_arg(dn, "dn")?,
            opt_str(info, "info")?,
            str_arg(challenge, "challenge")?,
            str_arg(password, "password")?,
        );
        crypto_out(copy_hex(&d, b))
    })
}

/// The §5.2 session key: lowercase hex SHA-256 of
/// `innovaphoneAppSessionKey:challenge:password`, 64 characters and a NUL
/// (`out_len` ≥ 65). Safe to call from any thread.
///
/// # Safety
/// `challenge` and `password` must be valid NUL-terminated strings; `out` must
/// point to `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_session_key(
    challenge: *const c_char,
    password: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    plain(|| {
        let b = out_buf(out, out_len)?;
        let k = appws::session_key(str_arg(challenge, "challenge")?, str_arg(password, "password")?);
        crypto_out(copy_hex(&k, b))
    })
}

fn copy_hex(hex: &str, out: &mut [u8]) -> Result<usize, appws::Error> {
    let needed = hex.len() + 1;
    if out.len() < needed {
        return Err(appws::Error::BufferTooSmall { needed });
    }
    out[..hex.len()].copy_from_slice(hex.as_bytes());
    out[hex.len()] = 0;
    Ok(hex.len())
}

/// §5.2 Encrypt with an explicit session key: lowercase hex of RC4 (key
/// `seed:session_key`) over `data`. `out_len` must be at least
/// 2·strlen(data)+1, else `WSB_RESULT_BUFFER_TOO_SMALL` and `""`. Safe to call
/// from any thread.
///
/// # Safety
/// `session_key`, `seed` and `data` must be valid NUL-terminated strings;
/// `out` must point to `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_encrypt(
    session_key: *const c_char,
    seed: *const c_char,
    data: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    plain(|| {
        let b = out_buf(out, out_len)?;
        let (k, s, d) = (
            str_arg(session_key, "session_key")?,
            str_arg(seed, "seed")?,
            str_arg(data, "data")?,
        );
        crypto_out(appws::encrypt_into(s, d, k, b))
    })
}

/// §5.2 Decrypt with an explicit session key: the bytes behind `hex` (either
/// case), NUL-terminated. `out_len` must be at least strlen(hex)/2+1, else
/// `WSB_RESULT_BUFFER_TOO_SMALL`; odd length or non-hex gives
/// `WSB_RESULT_INVALID_ARGUMENT`; both write `""`. The result may hold NULs
/// of its own. Safe to call from any thread.
///
/// # Safety
/// As for `wsb_appws_encrypt`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_decrypt(
    session_key: *const c_char,
    seed: *const c_char,
    hex: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    plain(|| {
        let b = out_buf(out, out_len)?;
        let (k, s, h) = (
            str_arg(session_key, "session_key")?,
            str_arg(seed, "seed")?,
            str_arg(hex, "hex")?,
        );
        crypto_out(appws::decrypt_into(s, h, k, b))
    })
}

/// §5.2 Hash with an explicit session key: lowercase hex SHA-256 of the exact
/// bytes of `seed:session_key:data`, 64 characters and a NUL (`out_len` ≥ 65,
/// else `WSB_RESULT_BUFFER_TOO_SMALL` and `""`). Safe to call from any thread.
///
/// # Safety
/// As for `wsb_appws_encrypt`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_hash(
    session_key: *const c_char,
    seed: *const c_char,
    data: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    plain(|| {
        let b = out_buf(out, out_len)?;
        let (k, s, d) = (
            str_arg(session_key, "session_key")?,
            str_arg(seed, "seed")?,
            str_arg(data, "data")?,
        );
        crypto_out(appws::hash_into(s, d, k, b))
    })
}

// ---- the client ----

/// AppWebsocket client settings, built with `wsb_appws_client_config_new`
/// and the setters below. Opaque.
pub struct wsb_appws_client_config {
    cfg: Mutex<AppClientConfig>,
}

impl Object for wsb_appws_client_config {}

static CLIENT_CONFIGS: LazyLock<Handles<wsb_appws_client_config>> = LazyLock::new(Handles::new);

/// An AppWebsocket client. Opaque; create with `wsb_appws_client_new`,
/// destroy with `wsb_appws_client_free`.
pub struct wsb_appws_client {
    client: Mutex<Option<AppClient>>,
    handle: AppClientHandle,
    polled: Mutex<Option<(OwnedAppClientEvent, ClientStrings)>>,
    poll_gate: PollGate,
    last_error: Mutex<String>,
    /// Queue mode: the host's userdata, released by free.
    userdata: Mutex<Option<Userdata>>,
}

static APP_CLIENTS: LazyLock<Handles<wsb_appws_client>> = LazyLock::new(Handles::new);

/// AppWebsocket client event types. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_appws_client_event_type {
    /// `AppLoginResult` with `ok:true` arrived (ConnectComplete): messages may
    /// be sent and the crypto functions work.
    Connected = 1,
    /// The login failed (refused, or no answer within the login timeout);
    /// `text` holds the reason. The client closes with 1000 and CLOSED follows.
    LoginFailed = 2,
    /// A message after login: `json`/`len` hold its JSON text (NUL-terminated),
    /// `mt` and `src` its `mt` and `src` members (`""` if absent or not strings).
    Message = 3,
    /// One message sent with `wsb_appws_client_send` or `_send_text` has been
    /// written to the socket (only with `wsb_appws_client_config_set_send_results`;
    /// one event per message, in order; never for the login's own frames).
    Sent = 4,
    /// The end, exactly once per client: after `wsb_appws_client_close`, a
    /// remote close, a dropped transport (`close_status` -1), a login failure,
    /// or a connection that never opened (`error` tells why). `text` holds the
    /// close reason or the error message.
    Closed = 5,
    /// Authenticator mode: the challenge arrived, in `text`. Answer with
    /// `wsb_appws_client_authenticate` (now or later, from any thread).
    Challenge = 6,
}

/// One AppWebsocket client event. Every pointer is borrowed: in callback mode
/// until the callback returns; in queue mode until the next
/// `wsb_appws_client_poll` on the same client (or its free). No pointer is
/// NULL; strings that do not apply are `""`.
#[repr(C)]
pub struct wsb_appws_client_event {
    /// A `wsb_appws_client_event_type` value.
    pub kind: u32,
    /// MESSAGE: the JSON text, NUL-terminated.
    pub json: *const c_char,
    /// MESSAGE: the length of `json`, without the NUL.
    pub len: usize,
    /// MESSAGE: the `mt` member, `""` if absent.
    pub mt: *const c_char,
    /// MESSAGE: the `src` member, `""` if absent.
    pub src: *const c_char,
    /// LOGIN_FAILED: the reason; CLOSED: the close reason or error message;
    /// CHALLENGE: the challenge.
    pub text: *const c_char,
    /// CLOSED: the server's close code, 0 for a close frame without one, the
    /// host's own code when `closed_by_host`, or -1 when the transport dropped
    /// or never connected.
    pub close_status: i32,
    /// CLOSED: the host (or a failed login) closed the connection.
    pub closed_by_host: bool,
    /// CLOSED: why the connection never opened (a `wsb_result` value such as
    /// `WSB_RESULT_CONNECTION_REFUSED`), else 0.
    pub error: u32,
}

/// The AppWebsocket client event callback (callback mode). Runs on the
/// client's engine thread; never two at once for the same client. It must not
/// block. It may call any `wsb_` function except `wsb_appws_client_free` on
/// its own client.
pub type wsb_appws_client_event_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, client: *mut wsb_appws_client, event: *const wsb_appws_client_event),
>;

/// Owned storage behind an event's pointers.
#[derive(Default)]
struct ClientStrings {
    json: CString,
    mt: CString,
    src: CString,
    text: CString,
}

fn client_strings(e: &AppClientEvent<'_>) -> ClientStrings {
    let mut s = ClientStrings::default();
    match *e {
        AppClientEvent::Challenge { challenge } => s.text = cstring(challenge),
        AppClientEvent::LoginFailed { reason } => s.text = cstring(reason),
        AppClientEvent::Closed { reason, .. } => s.text = cstring(reason),
        AppClientEvent::Message { json, mt, src } => {
            s.json = cstring(json);
            s.mt = cstring(mt.unwrap_or(""));
            s.src = cstring(src.unwrap_or(""));
        }
        AppClientEvent::Connected | AppClientEvent::Sent => {}
    }
    s
}

fn client_event(e: &AppClientEvent<'_>, s: &ClientStrings) -> wsb_appws_client_event {
    use wsb_appws_client_event_type as T;
    let mut out = wsb_appws_client_event {
        kind: 0,
        json: s.json.as_ptr(),
        len: s.json.as_bytes().len(),
        mt: s.mt.as_ptr(),
        src: s.src.as_ptr(),
        text: s.text.as_ptr(),
        close_status: 0,
        closed_by_host: false,
        error: 0,
    };
    out.kind = match *e {
        AppClientEvent::Connected => T::Connected,
        AppClientEvent::LoginFailed { .. } => T::LoginFailed,
        AppClientEvent::Message { .. } => T::Message,
        AppClientEvent::Sent => T::Sent,
        AppClientEvent::Challenge { .. } => T::Challenge,
        AppClientEvent::Closed {
            status, by_host, error, ..
        } => {
            out.close_status = status;
            out.closed_by_host = by_host;
            out.error = error.map_or(0, |e| wsb_result::from(e) as u32);
            T::Closed
        }
    } as u32;
    out
}

struct CClientHandler {
    cb: unsafe extern "C" fn(*mut c_void, *mut wsb_appws_client, *const wsb_appws_client_event),
    userdata: Userdata,
    owner: Owner<wsb_appws_client>,
}

impl crate::appws::AppClientHandler for CClientHandler {
    fn on_event(&mut self, _c: &AppClientHandle, e: AppClientEvent<'_>) {
        let strings = client_strings(&e);
        let ev = client_event(&e, &strings);
        self.owner.enter(|p| {
            // SAFETY: the host registered `cb` for this call shape; `ev` and
            // the strings it points at outlive the call.
            unsafe { (self.cb)(self.userdata.get(), p, &ev) }
        });
    }
}

/// Creates an AppWebsocket client configuration for `url` (`ws://` or
/// `wss://`) and `app`. With `password` set, the client logs in with the JS
/// library's identity (`sip` = `app`, `domain` `""`, `guid` 32 zeros, `dn`
/// `Admin`, no `info`; change it with `wsb_appws_client_config_set_identity`);
/// with `password` NULL it runs in authenticator mode (CHALLENGE event, then
/// `wsb_appws_client_authenticate`). Defaults: automatic flow control, no
/// send results, no keep-alive, 10 s connect timeout, 10 s login timeout,
/// system root certificates, proxy from the environment, 16 MiB messages.
/// Returns NULL if `url` or `app` is NULL or not UTF-8. The caller owns the
/// result and must call `wsb_appws_client_config_free` once.
///
/// # Safety
/// `url` and `app` must be NULL or NUL-terminated strings; `password` too.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_new(
    url: *const c_char,
    app: *const c_char,
    password: *const c_char,
) -> *mut wsb_appws_client_config {
    guard(std::ptr::null_mut(), || {
        let (Ok(u), Ok(a), Ok(p)) = (str_arg(url, "url"), str_arg(app, "app"), opt_str(password, "password")) else {
            return std::ptr::null_mut();
        };
        let creds = match p {
            Some(p) => Credentials::password_login(a, p),
            None => Credentials::Authenticator,
        };
        let cfg = Arc::new(wsb_appws_client_config {
            cfg: Mutex::new(AppClientConfig::with_credentials(u, a, creds)),
        });
        CLIENT_CONFIGS.add(cfg).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a configuration; NULL is a no-op, and so is a pointer already freed
/// or unknown (`wsb_last_error` then says so). A client keeps its own copy.
///
/// # Safety
/// `cfg` must be NULL or a pointer from `wsb_appws_client_config_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_free(cfg: *mut wsb_appws_client_config) {
    guard((), || {
        CLIENT_CONFIGS.free(cfg, "config");
    })
}

fn with_client_cfg(
    cfg: *mut wsb_appws_client_config,
    f: impl FnOnce(&mut AppClientConfig) -> Result<(), Failure>,
) -> wsb_result {
    super::with_config(&CLIENT_CONFIGS, cfg, |c| &c.cfg, f)
}

/// Password mode: sets the login identity (`info`: NULL for none, else JSON
/// text, signed and sent in `JSON.stringify` form). `WSB_RESULT_INVALID_STATE`
/// in authenticator mode, `WSB_RESULT_INVALID_ARGUMENT` when `info` is not
/// JSON.
///
/// # Safety
/// `cfg` must be valid; the strings NUL-terminated (`info` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_identity(
    cfg: *mut wsb_appws_client_config,
    domain: *const c_char,
    sip: *const c_char,
    guid: *const c_char,
    dn: *const c_char,
    info: *const c_char,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        let ids = [
            str_arg(domain, "domain")?,
            str_arg(sip, "sip")?,
            str_arg(guid, "guid")?,
            str_arg(dn, "dn")?,
        ];
        let info = opt_str(info, "info")?;
        if let Some(i) = info {
            if serde_json::from_str::<serde_json::Value>(i).is_err() {
                return Err((wsb_result::InvalidArgument, "info is not JSON".into()));
            }
        }
        let Credentials::Password { password, .. } = &c.credentials else {
            return Err((
                wsb_result::InvalidState,
                "the configuration is in authenticator mode".into(),
            ));
        };
        c.credentials = Credentials::Password {
            password: password.clone(),
            domain: ids[0].to_owned(),
            sip: ids[1].to_owned(),
            guid: ids[2].to_owned(),
            dn: ids[3].to_owned(),
            info: info.map(str::to_owned),
        };
        Ok(())
    })
}

/// Manual flow control when true (the `MessageComplete` model): after each
/// MESSAGE nothing more is delivered (and the socket is not read) until
/// `wsb_appws_client_message_complete`. Default false: a message completes
/// when its callback returns or when it is polled.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_manual_complete(
    cfg: *mut wsb_appws_client_config,
    manual: bool,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.manual_complete = manual;
        Ok(())
    })
}

/// Reports a SENT event for each message the host sends, once it is written
/// to the socket. Default false.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_send_results(
    cfg: *mut wsb_appws_client_config,
    enable: bool,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.send_results = enable;
        Ok(())
    })
}

/// Sends `{"mt":"KeepAlive"}` after `ms` milliseconds without sending (the JS
/// library uses 60,000); 0 turns it off. Default off.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_keep_alive_ms(
    cfg: *mut wsb_appws_client_config,
    ms: u32,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.keep_alive = (ms > 0).then(|| Duration::from_millis(ms as u64));
        Ok(())
    })
}

/// Sets the time allowed for TCP connect, TLS and upgrade (ms, > 0). Default
/// 10,000.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_connect_timeout_ms(
    cfg: *mut wsb_appws_client_config,
    ms: u32,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        if ms == 0 {
            return Err(invalid("connect timeout must be positive"));
        }
        c.client.connect_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Sets the time allowed from the WebSocket's opening to `AppLoginResult`
/// (ms, > 0; in authenticator mode the host's `wsb_appws_client_authenticate`
/// counts against it). When it passes, LOGIN_FAILED says what was still
/// awaited, the client closes with 1000 and CLOSED follows. Default 10,000.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_login_timeout_ms(
    cfg: *mut wsb_appws_client_config,
    ms: u32,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        if ms == 0 {
            return Err(invalid("login timeout must be positive"));
        }
        c.login_timeout = Duration::from_millis(ms as u64);
        Ok(())
    })
}

/// Trusts the CA certificates in this PEM file, besides the system roots
/// (checked by `wsb_appws_client_new`).
///
/// # Safety
/// `cfg` must be valid; `path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_ca_file(
    cfg: *mut wsb_appws_client_config,
    path: *const c_char,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.client.tls.ca_file = Some(PathBuf::from(str_arg(path, "path")?));
        Ok(())
    })
}

/// Trusts the operating system's root certificates (default true). With
/// false and no CA file, `wsb_appws_client_new` fails for a `wss://` URL.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_system_roots(
    cfg: *mut wsb_appws_client_config,
    enable: bool,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.client.tls.system_roots = enable;
        Ok(())
    })
}

/// Presents this client certificate chain and private key (PEM files, read
/// by `wsb_appws_client_new`) when the server asks for one.
///
/// # Safety
/// `cfg` must be valid; both paths NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_client_cert(
    cfg: *mut wsb_appws_client_config,
    cert_chain_path: *const c_char,
    key_path: *const c_char,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        let chain = PathBuf::from(str_arg(cert_chain_path, "cert_chain_path")?);
        let key = PathBuf::from(str_arg(key_path, "key_path")?);
        c.client.tls.client_cert = Some((chain, key));
        Ok(())
    })
}

/// Tunnels through this HTTP proxy (`[http://][user:password@]host[:port]`;
/// no scheme means `http://`, no port 80) with CONNECT. Other schemes and a
/// bad port give `WSB_RESULT_INVALID_ARGUMENT`. NULL restores the default
/// (`https_proxy`, `http_proxy`, `no_proxy` from the environment; never for
/// loopback hosts); `""` disables proxies, the environment's included.
///
/// # Safety
/// `cfg` must be valid; `proxy` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_proxy(
    cfg: *mut wsb_appws_client_config,
    proxy: *const c_char,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        super::client::set_proxy(&mut c.client, opt_str(proxy, "proxy")?)
    })
}

/// Adds a request header to the WebSocket upgrade (name: token characters;
/// value without CR/LF), e.g. a cookie or an authorization the PBX needs.
///
/// # Safety
/// `cfg` must be valid; `name` and `value` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_add_header(
    cfg: *mut wsb_appws_client_config,
    name: *const c_char,
    value: *const c_char,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        let (n, v) = (str_arg(name, "name")?, str_arg(value, "value")?);
        super::client::add_header(&mut c.client, n, v)
    })
}

/// Accepts any server certificate when true. For development only. Default
/// false.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_config_set_insecure(
    cfg: *mut wsb_appws_client_config,
    insecure: bool,
) -> wsb_result {
    with_client_cfg(cfg, |c| {
        c.client.tls.insecure = insecure;
        Ok(())
    })
}

/// Creates an AppWebsocket client and starts connecting and logging in, in
/// the background (it never blocks on the network). With `cb` set, events go
/// to `cb(userdata, client, event)` on the client's thread (callback mode);
/// with `cb` NULL they wait for `wsb_appws_client_poll` (queue mode).
/// `userdata_free` (may be NULL) is called exactly once with `userdata` when
/// the client is freed, or before this function returns if it fails.
///
/// Returns `WSB_RESULT_INVALID_ARGUMENT` for a bad URL, an unreadable CA file
/// or client certificate, no trusted root (system roots off and no CA file,
/// for `wss://`) or `info` that is not JSON (`wsb_last_error` says which). Connection
/// failures come later, as a CLOSED event with `error` set. On success the
/// caller owns `*out` and must call `wsb_appws_client_free` once. A freed or
/// unknown `cfg` gives `WSB_RESULT_NOT_FOUND`.
///
/// # Safety
/// `cfg` must be a valid configuration; `out` a valid pointer; `cb` and
/// `userdata_free` valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_new(
    cfg: *const wsb_appws_client_config,
    cb: wsb_appws_client_event_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
    out: *mut *mut wsb_appws_client,
) -> wsb_result {
    plain(|| {
        // Dropping this on any failure releases the userdata.
        let userdata = Userdata::new(userdata, userdata_free);
        let out = out_arg(out, "out")?;
        let config = CLIENT_CONFIGS.lookup(cfg, "config", |c| lock(&c.cfg).clone())?;
        // The token is drawn first, so the handler knows its pointer before
        // the first event (which waits for the registration).
        let reservation = APP_CLIENTS.reserve()?;
        let (client, userdata) = match cb {
            Some(cb) => {
                let h = CClientHandler {
                    cb,
                    userdata,
                    owner: reservation.owner(),
                };
                (AppClient::connect(config, h), None)
            }
            None => (AppClient::connect_queued(config), Some(userdata)),
        };
        let client = client.map_err(invalid)?;
        *out = reservation.commit(Arc::new(wsb_appws_client {
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
/// calls `userdata_free`. No callback runs once this has begun (so a client
/// freed while open reports no CLOSED). NULL is a no-op; an unknown or freed
/// pointer gives `WSB_RESULT_NOT_FOUND`; from the client's own callback
/// `WSB_RESULT_REENTRANT`.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_free(client: *mut wsb_appws_client) -> wsb_result {
    APP_CLIENTS.free(client, "client")
}

impl Object for wsb_appws_client {
    fn last_error(&self) -> Option<&Mutex<String>> {
        Some(&self.last_error)
    }

    fn shutdown(&self) {
        let c = lock(&self.client).take();
        if let Some(c) = c {
            c.shutdown();
        }
        release(&self.userdata);
    }
}

fn with_app_client(
    c: *const wsb_appws_client,
    f: impl FnOnce(&wsb_appws_client) -> Result<wsb_result, Failure>,
) -> wsb_result {
    APP_CLIENTS.call(c, "client", f)
}

fn sent(r: Result<crate::Sent, AppSendError>) -> Result<wsb_result, Failure> {
    match r {
        Ok(crate::Sent::Queued) => Ok(wsb_result::Ok),
        Ok(crate::Sent::Backpressure) => Ok(wsb_result::Backpressure),
        Err(e) => Err(send_failure(e)),
    }
}

/// Sends one JSON message (NUL-terminated; checked to be one JSON value,
/// else `WSB_RESULT_INVALID_ARGUMENT`). Returns `WSB_RESULT_OK` once queued,
/// `WSB_RESULT_BACKPRESSURE` when queued above the soft limit,
/// `WSB_RESULT_NOT_CONNECTED` before CONNECTED or after CLOSED. Safe to call
/// from any thread; never blocks.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; `json` a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_send(client: *mut wsb_appws_client, json: *const c_char) -> wsb_result {
    with_app_client(client, |o| sent(o.handle.send_json(str_arg(json, "json")?)))
}

/// Sends one text message as given (`data`/`len`, valid UTF-8, else
/// `WSB_RESULT_INVALID_UTF8`), without a JSON check (MessageSendText). Same
/// results as `wsb_appws_client_send`. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; `data`
/// must point to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_send_text(
    client: *mut wsb_appws_client,
    data: *const u8,
    len: usize,
) -> wsb_result {
    with_app_client(client, |o| {
        let t = std::str::from_utf8(bytes_arg(data, len)?)
            .map_err(|_| (wsb_result::InvalidUtf8, "text is not valid UTF-8".to_owned()))?;
        sent(o.handle.send_text(t))
    })
}

/// Manual flow control: the host is done with the last MESSAGE; the next may
/// be delivered. Harmless in automatic mode. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_message_complete(client: *mut wsb_appws_client) -> wsb_result {
    with_app_client(client, |o| {
        o.handle.message_complete();
        Ok(wsb_result::Ok)
    })
}

/// Authenticator mode: answers the CHALLENGE with the login identity, the
/// digest (see `wsb_appws_digest`) and the session key (see
/// `wsb_appws_session_key`), and sends the `AppLogin`. `info` is NULL or JSON
/// text, sent as given. `WSB_RESULT_INVALID_STATE` when no challenge is
/// waiting, `WSB_RESULT_INVALID_ARGUMENT` when `info` is not JSON. Safe to
/// call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; the
/// strings NUL-terminated (`info` may be NULL).
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_authenticate(
    client: *mut wsb_appws_client,
    domain: *const c_char,
    sip: *const c_char,
    guid: *const c_char,
    dn: *const c_char,
    info: *const c_char,
    digest: *const c_char,
    session_key: *const c_char,
) -> wsb_result {
    with_app_client(client, |o| {
        let auth = Authentication {
            domain: str_arg(domain, "domain")?.to_owned(),
            sip: str_arg(sip, "sip")?.to_owned(),
            guid: str_arg(guid, "guid")?.to_owned(),
            dn: str_arg(dn, "dn")?.to_owned(),
            info: opt_str(info, "info")?.map(str::to_owned),
            digest: str_arg(digest, "digest")?.to_owned(),
            session_key: str_arg(session_key, "session_key")?.to_owned(),
        };
        match o.handle.authenticate(auth) {
            Ok(()) => Ok(wsb_result::Ok),
            Err(appws::Error::WrongState) => Err((wsb_result::InvalidState, "no challenge is waiting".into())),
            Err(e) => Err((wsb_result::InvalidArgument, format!("info: {e}"))),
        }
    })
}

/// The session crypto of one client call: the output buffer is emptied
/// first, so it holds `""` after any failure.
///
/// # Safety
/// `out` must be NULL or point to `out_len` writable bytes; the strings valid.
unsafe fn client_crypto(
    client: *mut wsb_appws_client,
    seed: *const c_char,
    data: *const c_char,
    out: *mut c_char,
    out_len: usize,
    op: fn(&str, &str, &str, &mut [u8]) -> Result<usize, appws::Error>,
) -> wsb_result {
    with_app_client(client, |o| {
        let b = out_buf(out, out_len)?;
        let (s, d) = (str_arg(seed, "seed")?, str_arg(data, "data")?);
        crypto_out(o.handle.with_key(|k| op(s, d, k, b)).and_then(|r| r))
    })
}

/// §5.2 Encrypt with this client's session key (after CONNECTED, else
/// `WSB_RESULT_NOT_CONNECTED`): lowercase hex, NUL-terminated; `out_len` must
/// be at least 2·strlen(data)+1, else `WSB_RESULT_BUFFER_TOO_SMALL`. Every
/// failure writes `""` when `out_len` ≥ 1. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; `seed` and
/// `data` NUL-terminated; `out` must point to `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_encrypt(
    client: *mut wsb_appws_client,
    seed: *const c_char,
    data: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    client_crypto(client, seed, data, out, out_len, |s, d, k, b| {
        appws::encrypt_into(s, d, k, b)
    })
}

/// §5.2 Decrypt with this client's session key: the bytes behind `hex`,
/// NUL-terminated (they may hold NULs of their own); `out_len` must be at
/// least strlen(hex)/2+1. Odd length or non-hex gives
/// `WSB_RESULT_INVALID_ARGUMENT`. Every failure writes `""` when `out_len` ≥ 1.
/// Safe to call from any thread.
///
/// # Safety
/// As for `wsb_appws_client_encrypt`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_decrypt(
    client: *mut wsb_appws_client,
    seed: *const c_char,
    hex: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    client_crypto(client, seed, hex, out, out_len, |s, d, k, b| {
        appws::decrypt_into(s, d, k, b)
    })
}

/// §5.2 Hash with this client's session key: 64 lowercase hex characters and
/// a NUL (`out_len` ≥ 65). Every failure writes `""` when `out_len` ≥ 1. Safe
/// to call from any thread.
///
/// # Safety
/// As for `wsb_appws_client_encrypt`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_hash(
    client: *mut wsb_appws_client,
    seed: *const c_char,
    data: *const c_char,
    out: *mut c_char,
    out_len: usize,
) -> wsb_result {
    client_crypto(client, seed, data, out, out_len, |s, d, k, b| {
        appws::hash_into(s, d, k, b)
    })
}

/// Closes with 1000 (also before the WebSocket has opened); CLOSED follows.
/// `WSB_RESULT_NOT_CONNECTED` once CLOSED has been reported. Safe to call
/// from any thread; never blocks.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_close(client: *mut wsb_appws_client) -> wsb_result {
    with_app_client(client, |o| {
        o.handle.close().map(|()| wsb_result::Ok).map_err(send_failure)
    })
}

/// True from CONNECTED until the end or `wsb_appws_client_close`. Safe to
/// call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_is_connected(client: *const wsb_appws_client) -> bool {
    guard(false, || {
        APP_CLIENTS.with(client, |o| o.handle.is_connected()).unwrap_or(false)
    })
}

/// Queue mode: waits up to `timeout_ms` (negative = forever, 0 = just check)
/// for the next event and fills `*out`. `WSB_RESULT_TIMEOUT` when none came,
/// `WSB_RESULT_INTERRUPTED` after `wsb_appws_client_interrupt`,
/// `WSB_RESULT_SHUT_DOWN` after CLOSED has been polled,
/// `WSB_RESULT_INVALID_STATE` in callback mode. The event's pointers stay
/// valid until the next poll on this client, so poll from one thread at a
/// time: a poll that finds another one running on this client waits for it
/// within its own `timeout_ms`, then returns `WSB_RESULT_TIMEOUT`. In
/// automatic flow control, polling a MESSAGE completes it.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_poll(
    client: *mut wsb_appws_client,
    timeout_ms: i32,
    out: *mut wsb_appws_client_event,
) -> wsb_result {
    with_app_client(client, |o| {
        let out = out_arg(out, "out")?;
        if !o.handle.is_queued() {
            return Err((wsb_result::InvalidState, "the client is in callback mode".into()));
        }
        let Some((_turn, timeout)) = o.poll_gate.turn(timeout_ms) else {
            return Ok(wsb_result::Timeout);
        };
        let mut slot = lock(&o.polled);
        *slot = None;
        match poll_result(o.handle.poll(timeout), "client")? {
            Ok(ev) => {
                let strings = client_strings(&ev.as_event());
                let (ev, strings) = slot.insert((ev, strings));
                // The storage lives in `o.polled` until the next poll.
                *out = client_event(&ev.as_event(), strings);
                Ok(wsb_result::Ok)
            }
            Err(r) => Ok(r),
        }
    })
}

/// Queue mode: makes the current (or next) `wsb_appws_client_poll` return
/// `WSB_RESULT_INTERRUPTED`. Safe to call from any thread.
///
/// # Safety
/// `client` must be NULL or a pointer from `wsb_appws_client_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_interrupt(client: *mut wsb_appws_client) -> wsb_result {
    with_app_client(client, |o| {
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
/// `client` must be NULL or a pointer from `wsb_appws_client_new`; `buf` NULL
/// or `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_client_last_error(
    client: *const wsb_appws_client,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_app_client(client, |o| {
        let msg = lock(&o.last_error).clone();
        // SAFETY: forwarded caller contract.
        Ok(unsafe { super::copy_out(&msg, buf, len, needed) })
    })
}

// ---- the app service ----

/// App-service settings, built with `wsb_appws_service_config_new` and the
/// setters below. Opaque.
pub struct wsb_appws_service_config {
    cfg: Mutex<AppServiceConfig>,
}

impl Object for wsb_appws_service_config {}

static SERVICE_CONFIGS: LazyLock<Handles<wsb_appws_service_config>> = LazyLock::new(Handles::new);

/// A running app service. Opaque; create with `wsb_appws_service_new`,
/// destroy with `wsb_appws_service_free`.
pub struct wsb_appws_service {
    service: Mutex<Option<AppService>>,
    handle: AppServiceHandle,
    polled: Mutex<Option<(OwnedAppServiceEvent, ServiceStrings)>>,
    poll_gate: PollGate,
    last_error: Mutex<String>,
    /// Queue mode: the host's userdata, released by free.
    userdata: Mutex<Option<Userdata>>,
}

static APP_SERVICES: LazyLock<Handles<wsb_appws_service>> = LazyLock::new(Handles::new);

/// App-service event types. Append-only.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsb_appws_service_event_type {
    /// A session logged in: `app`, `domain`, `sip`, `guid`, `dn` and `info`
    /// (the login's `info` in `JSON.stringify` form, `""` when it had none).
    Login = 1,
    /// A text message from a logged-in session: `data`/`len` hold its JSON
    /// text (NUL-terminated), `mt` its `mt`, `src` its `src` (`""` if
    /// absent). Answer with `wsb_appws_service_reply(service, conn, src, json)`.
    Message = 2,
    /// A binary frame from a logged-in session in `data`/`len` (`data[len]`
    /// is 0).
    Binary = 3,
    /// A session that had logged in has ended; its id is stale from now on.
    /// `close_status` as for the server's CLOSE event; `data`/`len` hold the
    /// reason.
    Closed = 4,
}

/// One app-service event. Every pointer is borrowed: in callback mode until
/// the callback returns; in queue mode until the next
/// `wsb_appws_service_poll` on the same service (or its free). No pointer is
/// NULL; strings that do not apply are `""`.
#[repr(C)]
pub struct wsb_appws_service_event {
    /// A `wsb_appws_service_event_type` value.
    pub kind: u32,
    /// The session (connection id).
    pub conn: wsb_conn_id,
    /// LOGIN: the app logged in to.
    pub app: *const c_char,
    /// LOGIN: the login's `domain` (`""` if absent).
    pub domain: *const c_char,
    /// LOGIN: the login's `sip`.
    pub sip: *const c_char,
    /// LOGIN: the login's `guid`.
    pub guid: *const c_char,
    /// LOGIN: the login's `dn`.
    pub dn: *const c_char,
    /// LOGIN: the login's `info` as JSON text, `""` if it had none.
    pub info: *const c_char,
    /// MESSAGE: the `mt` member.
    pub mt: *const c_char,
    /// MESSAGE: the `src` member, `""` if absent.
    pub src: *const c_char,
    /// MESSAGE: the JSON text; BINARY: the bytes; CLOSED: the reason. Always
    /// followed by a 0 byte.
    pub data: *const u8,
    /// The length of `data`, without the 0 byte.
    pub len: usize,
    /// CLOSED: the close status.
    pub close_status: i32,
    /// CLOSED: the host closed the session.
    pub closed_by_host: bool,
}

/// The app-service event callback (callback mode). Runs on an I/O thread;
/// never two at once for the same service. It must not block. It may call
/// any `wsb_` function except `wsb_appws_service_free` on its own service.
pub type wsb_appws_service_event_cb = Option<
    unsafe extern "C" fn(userdata: *mut c_void, service: *mut wsb_appws_service, event: *const wsb_appws_service_event),
>;

#[derive(Default)]
struct ServiceStrings {
    ids: [CString; 6],
    mt: CString,
    src: CString,
    /// The payload and a 0 byte.
    data: Vec<u8>,
}

fn with_nul(d: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(d.len() + 1);
    v.extend_from_slice(d);
    v.push(0);
    v
}

fn service_strings(e: &AppServiceEvent<'_>) -> ServiceStrings {
    let mut s = ServiceStrings::default();
    match *e {
        AppServiceEvent::Login { login, .. } => {
            s.ids = [
                cstring(&login.app),
                cstring(&login.domain),
                cstring(&login.sip),
                cstring(&login.guid),
                cstring(&login.dn),
                cstring(login.info.as_deref().unwrap_or("")),
            ];
        }
        AppServiceEvent::Message { mt, src, json, .. } => {
            s.mt = cstring(mt);
            s.src = cstring(src.unwrap_or(""));
            s.data = with_nul(json.as_bytes());
        }
        AppServiceEvent::Binary { data, .. } => s.data = with_nul(data),
        AppServiceEvent::Closed { reason, .. } => s.data = with_nul(reason.as_bytes()),
    }
    if s.data.is_empty() {
        s.data.push(0);
    }
    s
}

fn service_event(e: &AppServiceEvent<'_>, s: &ServiceStrings) -> wsb_appws_service_event {
    use wsb_appws_service_event_type as T;
    let mut out = wsb_appws_service_event {
        kind: 0,
        conn: 0,
        app: s.ids[0].as_ptr(),
        domain: s.ids[1].as_ptr(),
        sip: s.ids[2].as_ptr(),
        guid: s.ids[3].as_ptr(),
        dn: s.ids[4].as_ptr(),
        info: s.ids[5].as_ptr(),
        mt: s.mt.as_ptr(),
        src: s.src.as_ptr(),
        data: s.data.as_ptr(),
        len: s.data.len() - 1,
        close_status: 0,
        closed_by_host: false,
    };
    let (kind, conn) = match *e {
        AppServiceEvent::Login { conn, .. } => (T::Login, conn),
        AppServiceEvent::Message { conn, .. } => (T::Message, conn),
        AppServiceEvent::Binary { conn, .. } => (T::Binary, conn),
        AppServiceEvent::Closed {
            conn, status, by_host, ..
        } => {
            out.close_status = status;
            out.closed_by_host = by_host;
            (T::Closed, conn)
        }
    };
    out.kind = kind as u32;
    out.conn = conn;
    out
}

struct CServiceHandler {
    cb: unsafe extern "C" fn(*mut c_void, *mut wsb_appws_service, *const wsb_appws_service_event),
    userdata: Userdata,
    owner: Owner<wsb_appws_service>,
}

impl crate::appws::AppServiceHandler for CServiceHandler {
    fn on_event(&mut self, _s: &AppServiceHandle, e: AppServiceEvent<'_>) {
        let strings = service_strings(&e);
        let ev = service_event(&e, &strings);
        self.owner.enter(|p| {
            // SAFETY: the host registered `cb` for this call shape; `ev` and
            // the storage it points at outlive the call.
            unsafe { (self.cb)(self.userdata.get(), p, &ev) }
        });
    }
}

/// Creates an app-service configuration: 127.0.0.1 on an ephemeral port (see
/// `wsb_appws_service_port`), no apps (every login fails until
/// `wsb_appws_service_config_add_app`), 64 KiB messages, automatic flow
/// control, no echo. Returns NULL only if out of memory. The caller owns the
/// result and must call `wsb_appws_service_config_free` once.
#[no_mangle]
pub extern "C" fn wsb_appws_service_config_new() -> *mut wsb_appws_service_config {
    guard(std::ptr::null_mut(), || {
        let cfg = Arc::new(wsb_appws_service_config {
            cfg: Mutex::new(AppServiceConfig::new()),
        });
        SERVICE_CONFIGS.add(cfg).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a configuration; NULL is a no-op, and so is a pointer already freed
/// or unknown (`wsb_last_error` then says so). A service keeps its own copy.
///
/// # Safety
/// `cfg` must be NULL or a pointer from `wsb_appws_service_config_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_free(cfg: *mut wsb_appws_service_config) {
    guard((), || {
        SERVICE_CONFIGS.free(cfg, "config");
    })
}

fn with_service_cfg(
    cfg: *mut wsb_appws_service_config,
    f: impl FnOnce(&mut AppServiceConfig) -> Result<(), Failure>,
) -> wsb_result {
    super::with_config(&SERVICE_CONFIGS, cfg, |c| &c.cfg, f)
}

/// Sets the listen address, `"IP:PORT"` (port 0 = ephemeral). Default
/// `"127.0.0.1:0"`.
///
/// # Safety
/// `cfg` must be valid; `addr` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_set_bind(
    cfg: *mut wsb_appws_service_config,
    addr: *const c_char,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        let a = str_arg(addr, "addr")?;
        c.engine.bind = a
            .parse()
            .map_err(|_| (wsb_result::InvalidArgument, format!("not an IP:PORT address: {a:?}")))?;
        Ok(())
    })
}

/// Accepts logins to `app` with `password` (replacing an earlier password of
/// the same app).
///
/// # Safety
/// `cfg` must be valid; `app` and `password` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_add_app(
    cfg: *mut wsb_appws_service_config,
    app: *const c_char,
    password: *const c_char,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        let (a, p) = (str_arg(app, "app")?, str_arg(password, "password")?);
        c.apps.retain(|(name, _)| name != a);
        c.apps.push((a.to_owned(), p.to_owned()));
        Ok(())
    })
}

/// Also accepts, for any configured app, logins whose `domain` is `domain`
/// with this password; tried after the app's own password.
///
/// # Safety
/// `cfg` must be valid; `domain` and `password` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_add_domain_password(
    cfg: *mut wsb_appws_service_config,
    domain: *const c_char,
    password: *const c_char,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        let (d, p) = (str_arg(domain, "domain")?, str_arg(password, "password")?);
        c.domain_passwords.retain(|(name, _)| name != d);
        c.domain_passwords.push((d.to_owned(), p.to_owned()));
        Ok(())
    })
}

/// Manual flow control when true: after each MESSAGE or BINARY of a session,
/// nothing more of that session is delivered (and it is not read) until
/// `wsb_appws_service_message_complete`. Default false: a message completes
/// when its callback returns or when it is polled.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_set_manual_complete(
    cfg: *mut wsb_appws_service_config,
    manual: bool,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        c.manual_complete = manual;
        Ok(())
    })
}

/// The built-in echo when true: each message comes back with `mt` changed to
/// `mt`+`Result` (binary unchanged) and is not reported; LOGIN and CLOSED
/// still are. Default false.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_set_echo(
    cfg: *mut wsb_appws_service_config,
    echo: bool,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        c.echo = echo;
        Ok(())
    })
}

/// Sets the largest message accepted (bytes, > 0); larger gets close 1009.
/// Default 65,536.
///
/// # Safety
/// `cfg` must be valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_set_max_message_size(
    cfg: *mut wsb_appws_service_config,
    bytes: usize,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        if bytes == 0 {
            return Err((wsb_result::InvalidArgument, "max message size must be positive".into()));
        }
        c.engine.max_message_size = bytes;
        c.engine.max_frame_size = bytes;
        Ok(())
    })
}

/// Serves `wss://` instead of `ws://`: TLS with the certificate chain (PEM,
/// leaf first) and its private key (PEM), both read now. Returns
/// `WSB_RESULT_INVALID_ARGUMENT` when a file cannot be read, holds no
/// certificate or no usable key, or the key does not belong to the
/// certificate (`wsb_last_error` names the file and the reason); the
/// configuration is then unchanged. Both paths NULL turn TLS off again.
/// Default: no TLS.
///
/// # Safety
/// `cfg` must be valid; each path NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_config_set_tls(
    cfg: *mut wsb_appws_service_config,
    cert_chain_pem_path: *const c_char,
    key_pem_path: *const c_char,
) -> wsb_result {
    with_service_cfg(cfg, |c| {
        c.engine.tls = load_server_tls(tls_paths(cert_chain_pem_path, key_pem_path)?)?;
        Ok(())
    })
}

/// Binds and starts an app service. With `cb` set, events go to
/// `cb(userdata, service, event)` on an I/O thread (callback mode); with `cb`
/// NULL they wait for `wsb_appws_service_poll` (queue mode). `userdata_free`
/// (may be NULL) is called exactly once with `userdata` when the service is
/// freed, or before this function returns if it fails. Returns
/// `WSB_RESULT_ADDR_IN_USE` or `WSB_RESULT_IO` when it cannot listen. On
/// success the caller owns `*out` and must call `wsb_appws_service_free` once.
/// A freed or unknown `cfg` gives `WSB_RESULT_NOT_FOUND`.
///
/// # Safety
/// `cfg` must be a valid configuration; `out` a valid pointer; `cb` and
/// `userdata_free` valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_new(
    cfg: *const wsb_appws_service_config,
    cb: wsb_appws_service_event_cb,
    userdata: *mut c_void,
    userdata_free: wsb_userdata_free_cb,
    out: *mut *mut wsb_appws_service,
) -> wsb_result {
    plain(|| {
        // Dropping this on any failure releases the userdata.
        let userdata = Userdata::new(userdata, userdata_free);
        let out = out_arg(out, "out")?;
        let config = SERVICE_CONFIGS.lookup(cfg, "config", |c| lock(&c.cfg).clone())?;
        let bind = config.engine.bind;
        // The token is drawn first, so the handler knows its pointer before
        // the first event (which waits for the registration).
        let reservation = APP_SERVICES.reserve()?;
        let (service, userdata) = match cb {
            Some(cb) => {
                let h = CServiceHandler {
                    cb,
                    userdata,
                    owner: reservation.owner(),
                };
                (AppService::start(config, h), None)
            }
            None => (AppService::start_queued(config), Some(userdata)),
        };
        let service = service.map_err(|e| {
            let r = if e.kind() == std::io::ErrorKind::AddrInUse {
                wsb_result::AddrInUse
            } else {
                wsb_result::Io
            };
            (r, format!("cannot listen on {bind}: {e}"))
        })?;
        *out = reservation.commit(Arc::new(wsb_appws_service {
            handle: service.handle().clone(),
            service: Mutex::new(Some(service)),
            polled: Mutex::new(None),
            poll_gate: PollGate::new(),
            last_error: Mutex::new(String::new()),
            userdata: Mutex::new(userdata),
        }));
        Ok(wsb_result::Ok)
    })
}

/// Stops and frees a service: every session gets close 1001, the I/O threads
/// are joined, then `userdata_free` runs. No callback runs once this has
/// begun. NULL is a no-op; an unknown or freed pointer gives
/// `WSB_RESULT_NOT_FOUND`; from the service's own callback
/// `WSB_RESULT_REENTRANT`.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_free(service: *mut wsb_appws_service) -> wsb_result {
    APP_SERVICES.free(service, "service")
}

impl Object for wsb_appws_service {
    fn last_error(&self) -> Option<&Mutex<String>> {
        Some(&self.last_error)
    }

    fn on_own_thread(&self) -> bool {
        self.handle.server().on_io_thread()
    }

    fn shutdown(&self) {
        let s = lock(&self.service).take();
        if let Some(s) = s {
            s.shutdown();
        }
        release(&self.userdata);
    }
}

fn with_service(
    s: *const wsb_appws_service,
    f: impl FnOnce(&wsb_appws_service) -> Result<wsb_result, Failure>,
) -> wsb_result {
    APP_SERVICES.call(s, "service", f)
}

/// The port the service listens on, or 0 if `service` is NULL or unknown.
/// Safe to call from any thread.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_port(service: *const wsb_appws_service) -> u16 {
    guard(0, || {
        APP_SERVICES
            .with(service, |o| o.handle.local_addr().port())
            .unwrap_or(0)
    })
}

/// Answers a message: `json` (a JSON object, else
/// `WSB_RESULT_INVALID_ARGUMENT`) is sent to `conn` with the request's `src`
/// set (kept in place if `json` has a `src`, else appended); `src` NULL or
/// `""` adds none, so the MESSAGE event's `src` can be passed as it is.
/// Numbers keep their text. Same results as `wsb_appws_service_send`. Safe
/// to call from any thread; never blocks.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`; `src`
/// NULL or NUL-terminated; `json` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_reply(
    service: *mut wsb_appws_service,
    conn: wsb_conn_id,
    src: *const c_char,
    json: *const c_char,
) -> wsb_result {
    with_service(service, |o| {
        let src = opt_str(src, "src")?.filter(|s| !s.is_empty());
        let json = str_arg(json, "json")?;
        sent(o.handle.reply(conn, src, json)).map_err(|(r, m)| (r, format!("connection {conn}: {m}")))
    })
}

/// Sends one message to a session as given: text (valid UTF-8, else
/// `WSB_RESULT_INVALID_UTF8`) or binary. `data` is borrowed only for the
/// call. Returns `WSB_RESULT_OK` once queued, `WSB_RESULT_BACKPRESSURE` above
/// the soft limit, `WSB_RESULT_CLOSED` after close, `WSB_RESULT_NOT_FOUND`
/// for a stale id. Safe to call from any thread; never blocks.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`; `data`
/// must point to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_send(
    service: *mut wsb_appws_service,
    conn: wsb_conn_id,
    data: *const u8,
    len: usize,
    is_text: bool,
) -> wsb_result {
    with_service(service, |o| {
        let d = bytes_arg(data, len)?;
        sent(o.handle.send(conn, d, is_text)).map_err(|(r, m)| (r, format!("connection {conn}: {m}")))
    })
}

/// Closes a session (code ≤ 0, or not allowed on the wire: 1000; reason NULL
/// or ≤ 123 bytes of UTF-8). CLOSED follows, with `closed_by_host`. Safe to
/// call from any thread; never blocks.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`; `reason`
/// NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_close(
    service: *mut wsb_appws_service,
    conn: wsb_conn_id,
    code: i32,
    reason: *const c_char,
) -> wsb_result {
    with_service(service, |o| {
        let r = opt_str(reason, "reason")?.unwrap_or("");
        o.handle.close(conn, code, r).map(|()| wsb_result::Ok).map_err(|e| {
            let (r, m) = send_failure(e);
            (r, format!("connection {conn}: {m}"))
        })
    })
}

/// Manual flow control: the host is done with `conn`'s last MESSAGE or
/// BINARY; the next may be delivered. Harmless in automatic mode and for
/// stale ids. Safe to call from any thread.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_message_complete(
    service: *mut wsb_appws_service,
    conn: wsb_conn_id,
) -> wsb_result {
    with_service(service, |o| {
        o.handle.message_complete(conn);
        Ok(wsb_result::Ok)
    })
}

/// Queue mode: waits up to `timeout_ms` (negative = forever, 0 = just check)
/// for the next event and fills `*out`. `WSB_RESULT_TIMEOUT` when none came,
/// `WSB_RESULT_INTERRUPTED` after `wsb_appws_service_interrupt`,
/// `WSB_RESULT_INVALID_STATE` in callback mode. The event's pointers stay
/// valid until the next poll on this service, so poll from one thread at a
/// time: a poll that finds another one running on this service waits for it
/// within its own `timeout_ms`, then returns `WSB_RESULT_TIMEOUT`. In
/// automatic flow control, polling a MESSAGE or BINARY completes it.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_poll(
    service: *mut wsb_appws_service,
    timeout_ms: i32,
    out: *mut wsb_appws_service_event,
) -> wsb_result {
    with_service(service, |o| {
        let out = out_arg(out, "out")?;
        if !o.handle.is_queued() {
            return Err((wsb_result::InvalidState, "the service is in callback mode".into()));
        }
        let Some((_turn, timeout)) = o.poll_gate.turn(timeout_ms) else {
            return Ok(wsb_result::Timeout);
        };
        let mut slot = lock(&o.polled);
        *slot = None;
        match poll_result(o.handle.poll(timeout), "service")? {
            Ok(ev) => {
                let strings = service_strings(&ev.as_event());
                let (ev, strings) = slot.insert((ev, strings));
                // The storage lives in `o.polled` until the next poll.
                *out = service_event(&ev.as_event(), strings);
                Ok(wsb_result::Ok)
            }
            Err(r) => Ok(r),
        }
    })
}

/// Queue mode: makes the current (or next) `wsb_appws_service_poll` return
/// `WSB_RESULT_INTERRUPTED`. Safe to call from any thread.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_interrupt(service: *mut wsb_appws_service) -> wsb_result {
    with_service(service, |o| {
        if !o.handle.is_queued() {
            return Err((wsb_result::InvalidState, "the service is in callback mode".into()));
        }
        o.handle.interrupt();
        Ok(wsb_result::Ok)
    })
}

/// Copies the detail of the last failed call on this service into `buf`
/// (NUL-terminated; `*needed` gets the size needed, NUL included; too small
/// gives `WSB_RESULT_BUFFER_TOO_SMALL`). Safe to call from any thread.
///
/// # Safety
/// `service` must be NULL or a pointer from `wsb_appws_service_new`; `buf`
/// NULL or `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_appws_service_last_error(
    service: *const wsb_appws_service,
    buf: *mut c_char,
    len: usize,
    needed: *mut usize,
) -> wsb_result {
    with_service(service, |o| {
        let msg = lock(&o.last_error).clone();
        // SAFETY: forwarded caller contract.
        Ok(unsafe { super::copy_out(&msg, buf, len, needed) })
    })
}
