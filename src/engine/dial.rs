//! The client side: where to connect and how, and the client half of the
//! opening handshake (tungstenite's response parser and accept-key check).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tungstenite::handshake::client::Response;
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::machine::TryParse;

/// An outgoing connection, already resolved.
#[derive(Clone)]
pub struct DialTarget {
    /// Addresses to try in order (of the proxy, when there is one).
    pub addrs: Vec<SocketAddr>,
    /// Host name for the `Host` header, SNI and certificate checks.
    pub host: String,
    pub port: u16,
    /// Request target: path and query.
    pub path: String,
    /// TLS settings for `wss://`; `None` for `ws://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The client certificate `tls` presents, described in one line (see
    /// [`crate::tls::describe_certificate`]), for the message when the
    /// server refuses it.
    pub client_cert: Option<String>,
    /// Tunnel through an HTTP proxy with CONNECT (`addrs` are the proxy's).
    pub proxy: Option<ProxyTunnel>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Time allowed for TCP connect (+ proxy + TLS) and the upgrade.
    pub connect_timeout: Duration,
    /// Count messages written out (`Event::Sent`).
    pub send_results: bool,
    /// Deliver one message at a time: the next only after `message_complete`.
    pub manual_complete: bool,
    /// Report this failure instead of connecting (name resolution or proxy
    /// setup failed before the dial), so it reaches the host in order with
    /// every other event.
    pub error: Option<(ConnectError, String)>,
}

/// CONNECT tunnelling through an HTTP proxy.
#[derive(Clone, Debug)]
pub struct ProxyTunnel {
    /// `Proxy-Authorization` value, if any (e.g. `Basic …`).
    pub authorization: Option<String>,
}

/// Why an outgoing connection failed before it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// The host name did not resolve.
    Resolve,
    /// The peer refused the TCP connection.
    Refused,
    /// No route, network down, or every address failed otherwise.
    Unreachable,
    /// Connect, TLS or upgrade did not finish within the connect timeout.
    Timeout,
    /// The server's certificate was rejected (untrusted, expired, wrong name…).
    Certificate,
    /// Another TLS failure (protocol, alert, client certificate refused…).
    Tls,
    /// The server did not upgrade (HTTP status, bad accept key, garbage).
    Handshake,
    /// The proxy refused or failed the CONNECT.
    Proxy,
    /// The connection dropped or another I/O error happened while connecting.
    Io,
}

/// Builds the upgrade request and returns it with its `Sec-WebSocket-Key`.
pub(crate) fn client_request(t: &DialTarget, key: &str) -> Vec<u8> {
    let default_port = if t.tls.is_some() { 443 } else { 80 };
    let host = if t.host.contains(':') && !t.host.starts_with('[') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    let host = if t.port == default_port {
        host
    } else {
        format!("{host}:{}", t.port)
    };
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        if t.path.is_empty() { "/" } else { &t.path }
    );
    if !t.protocols.is_empty() {
        r.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", t.protocols.join(", ")));
    }
    for (k, v) in &t.headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The proxy's CONNECT request.
pub(crate) fn connect_request(t: &DialTarget) -> Vec<u8> {
    let hp = if t.host.contains(':') && !t.host.starts_with('[') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let mut r = format!("CONNECT {hp} HTTP/1.1\r\nHost: {hp}\r\n");
    if let Some(a) = t.proxy.as_ref().and_then(|p| p.authorization.as_ref()) {
        r.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The outcome of the bytes received so far in reply to our request.
pub(crate) enum Reply {
    Partial,
    /// Upgraded; frames start at `consumed`.
    Upgraded {
        consumed: usize,
        protocol: Option<String>,
    },
    Failed(String),
}

pub(crate) fn check_response(buf: &[u8], key: &str, offered: &[String]) -> Reply {
    let (consumed, resp) = match Response::try_parse(buf) {
        Ok(Some(x)) => x,
        Ok(None) if buf.len() > 16 << 10 => return Reply::Failed("response headers too large".into()),
        Ok(None) => return Reply::Partial,
        Err(e) => return Reply::Failed(format!("not an HTTP response: {e}")),
    };
    if resp.status().as_u16() != 101 {
        return Reply::Failed(format!("the server answered HTTP {} instead of 101", resp.status()));
    }
    let h = resp.headers();
    let is = |name: &str, want: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case(want)))
    };
    if !is("Upgrade", "websocket") || !is("Connection", "upgrade") {
        return Reply::Failed("the 101 response lacks Upgrade: websocket / Connection: Upgrade".into());
    }
    let accept = h
        .get("Sec-WebSocket-Accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept != derive_accept_key(key.as_bytes()) {
        return Reply::Failed("wrong Sec-WebSocket-Accept".into());
    }
    let protocol = h
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned());
    if let Some(p) = &protocol {
        if !offered.iter().any(|o| o == p) {
            return Reply::Failed(format!("the server chose subprotocol {p:?}, which was not offered"));
        }
    }
    Reply::Upgraded { consumed, protocol }
}

/// Checks the proxy's answer to CONNECT: `Some(Ok(consumed))` when tunnelled.
pub(crate) fn check_proxy_reply(buf: &[u8]) -> Option<Result<usize, String>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > 16 << 10 => Some(Err("proxy reply too large".into())),
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(n)) => match r.code {
            Some(200..=299) => Some(Ok(n)),
            Some(c) => Some(Err(format!(
                "the proxy refused CONNECT: HTTP {c} {}",
                r.reason.unwrap_or("")
            ))),
            None => Some(Err("malformed proxy reply".into())),
        },
        Err(e) => Some(Err(format!("malformed proxy reply: {e}"))),
    }
}

/// A fresh base64 `Sec-WebSocket-Key` from the CSPRNG.
pub(crate) fn new_key() -> String {
    let mut k = [0u8; 16];
    if getrandom::getrandom(&mut k).is_err() {
        // A predictable key only weakens a cache-poisoning defence; still unique enough.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        k = t.to_le_bytes();
    }
    base64(&k)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Mask keys: RFC 6455 wants them unpredictable to the page that sends, so
/// a per-thread generator seeded from the CSPRNG (xorshift64*).
pub(crate) fn mask_key() -> [u8; 4] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut b = [0u8; 8];
            let _ = getrandom::getrandom(&mut b);
            u64::from_le_bytes(b) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).to_le_bytes()[..4]
            .try_into()
            .unwrap_or([0x5a; 4])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(new_key().len(), 24);
    }

    #[test]
    fn response_checks() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        match check_response(ok, key, &[]) {
            Reply::Upgraded { consumed, protocol } => {
                assert_eq!(consumed, ok.len() - 2);
                assert_eq!(protocol, None);
            }
            _ => panic!(),
        }
        assert!(matches!(check_response(&ok[..30], key, &[]), Reply::Partial));
        let bad = String::from_utf8_lossy(ok).replace("s3pP", "AAAA");
        assert!(matches!(check_response(bad.as_bytes(), key, &[]), Reply::Failed(_)));
        assert!(matches!(
            check_response(b"HTTP/1.1 404 Not Found\r\n\r\n", key, &[]),
            Reply::Failed(m) if m.contains("404")
        ));
        assert!(matches!(
            check_response(b"\x00\x01garbage\r\n\r\n", key, &[]),
            Reply::Failed(_)
        ));
    }

    #[test]
    fn proxy_reply() {
        assert_eq!(check_proxy_reply(b"HTTP/1.1 200 OK\r\n\r\n"), Some(Ok(19)));
        assert!(matches!(check_proxy_reply(b"HTTP/1.1 407 Auth\r\n\r\n"), Some(Err(m)) if m.contains("407")));
        assert_eq!(check_proxy_reply(b"HTTP/1.1 200"), None);
    }
}
