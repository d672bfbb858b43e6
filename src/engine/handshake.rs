//! The server side of the opening handshake, using tungstenite's request
//! parser and response builder on bytes the engine has buffered itself (so the
//! handshake is as non-blocking as the rest of the connection).

use super::config::Config;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{create_response, write_response, Request};

/// The outcome of looking at the bytes received so far.
pub(crate) enum Outcome {
    /// The request is not complete yet.
    Partial,
    /// Upgrade accepted: send `response`; frames start at `consumed`.
    Accept {
        response: Vec<u8>,
        consumed: usize,
        path: String,
        protocol: Option<String>,
    },
    /// Refused: send `response` and close.
    Reject { response: Vec<u8>, why: String },
}

fn reject(status: &str, extra_headers: &str, body: &str) -> Outcome {
    let response = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Outcome::Reject {
        response: response.into_bytes(),
        why: format!("{status}: {}", body.trim_end()),
    }
}

/// Looks at the buffered request bytes.
pub(crate) fn server_handshake(buf: &[u8], cfg: &Config) -> Outcome {
    let (consumed, req) = match Request::try_parse(buf) {
        Ok(Some(x)) => x,
        Ok(None) => {
            if buf.len() > cfg.max_handshake_size {
                return reject("431 Request Header Fields Too Large", "", "upgrade request too large\n");
            }
            return Outcome::Partial;
        }
        Err(e) => return reject("400 Bad Request", "", &format!("malformed upgrade request: {e}\n")),
    };
    let mut response = match create_response(&req) {
        Ok(r) => r,
        Err(WsError::Protocol(ProtocolError::MissingSecWebSocketVersionHeader))
            if req.headers().contains_key("Sec-WebSocket-Version") =>
        {
            return reject(
                "426 Upgrade Required",
                "Sec-WebSocket-Version: 13\r\n",
                "only WebSocket version 13 is supported\n",
            );
        }
        Err(e) => {
            return reject(
                "400 Bad Request",
                "",
                &format!("not a WebSocket upgrade request: {e}\n"),
            );
        }
    };
    if !cfg.allowed_origins.is_empty() {
        let origin = req.headers().get("Origin").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !cfg.allowed_origins.iter().any(|o| o == origin) {
            return reject("403 Forbidden", "", "origin not allowed\n");
        }
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    if let Some(want) = &cfg.path {
        if req.uri().path() != want {
            return reject("404 Not Found", "", "no WebSocket endpoint at this path\n");
        }
    }
    let mut protocol = None;
    if !cfg.subprotocols.is_empty() {
        let offered: Vec<&str> = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        protocol = cfg.subprotocols.iter().find(|p| offered.contains(&p.as_str())).cloned();
        if let Some(p) = &protocol {
            if let Ok(v) = p.parse() {
                response.headers_mut().insert("Sec-WebSocket-Protocol", v);
            }
        }
    }
    let mut out = Vec::with_capacity(160);
    if write_response(&mut out, &response).is_err() {
        return reject("500 Internal Server Error", "", "cannot write the response\n");
    }
    Outcome::Accept {
        response: out,
        consumed,
        path: target,
        protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    fn req(extra: &str) -> Vec<u8> {
        format!("{GOOD}{extra}\r\n").into_bytes()
    }

    #[test]
    fn accepts_and_computes_the_rfc_accept_key() {
        match server_handshake(&req(""), &Config::default()) {
            Outcome::Accept {
                response,
                path,
                protocol,
                consumed,
            } => {
                let r = String::from_utf8(response).unwrap();
                assert!(r.starts_with("HTTP/1.1 101"));
                assert!(r.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{r}");
                assert_eq!(path, "/chat?x=1");
                assert_eq!(protocol, None);
                assert_eq!(consumed, req("").len());
            }
            _ => panic!("not accepted"),
        }
    }

    #[test]
    fn partial_then_too_large() {
        let r = req("");
        assert!(matches!(
            server_handshake(&r[..20], &Config::default()),
            Outcome::Partial
        ));
        let big = vec![b'a'; 20000];
        let mut b = b"GET / HTTP/1.1\r\nX: ".to_vec();
        b.extend_from_slice(&big);
        assert!(matches!(
            server_handshake(&b, &Config::default()),
            Outcome::Reject { .. }
        ));
    }

    #[test]
    fn rejections() {
        let cfg = Config::default();
        let check = |bytes: &[u8], cfg: &Config, status: &str| match server_handshake(bytes, cfg) {
            Outcome::Reject { response, .. } => {
                let r = String::from_utf8(response).unwrap();
                assert!(r.starts_with(&format!("HTTP/1.1 {status}")), "{r}");
                r
            }
            _ => panic!("accepted"),
        };
        check(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &cfg, "400");
        check(b"\x16\x03\x01garbage\r\n\r\n", &cfg, "400");
        let v8 = GOOD.replace("Version: 13", "Version: 8") + "\r\n";
        let r = check(v8.as_bytes(), &cfg, "426");
        assert!(r.contains("Sec-WebSocket-Version: 13"));
        let c2 = Config {
            allowed_origins: vec!["https://ok".into()],
            ..Config::default()
        };
        check(&req("Origin: https://evil\r\n"), &c2, "403");
        assert!(matches!(
            server_handshake(&req("Origin: https://ok\r\n"), &c2),
            Outcome::Accept { .. }
        ));
        let c3 = Config {
            path: Some("/ws".into()),
            ..Config::default()
        };
        check(&req(""), &c3, "404");
    }

    #[test]
    fn subprotocol_selection_follows_server_preference() {
        let cfg = Config {
            subprotocols: vec!["b".into(), "a".into()],
            ..Config::default()
        };
        match server_handshake(&req("Sec-WebSocket-Protocol: a, b\r\n"), &cfg) {
            Outcome::Accept { protocol, response, .. } => {
                assert_eq!(protocol.as_deref(), Some("b"));
                assert!(String::from_utf8(response)
                    .unwrap()
                    .contains("sec-websocket-protocol: b"));
            }
            _ => panic!(),
        }
        match server_handshake(&req("Sec-WebSocket-Protocol: c\r\n"), &cfg) {
            Outcome::Accept { protocol, .. } => assert_eq!(protocol, None),
            _ => panic!(),
        }
    }
}
