//! Ready-to-start listeners: a dialect on top of the engine, one namespace
//! each (PROTOCOLS.md §1). The daemon starts them from its flags; a host
//! application may start them from Rust (or, later, from C).
//!
//! * [`wschat`]: the WSChat relay (§3).
//! * [`webtalk`]: the webtalk browser listener and its admin TCP listener,
//!   sharing one state that is also drivable without a socket (§4).
//! * [`appws`]: the innovaphone AppWebsocket app-service endpoint (§5.3).
//! * [`achex`]: the Achex relay with in-process services (§2).
//!
//! [`apply_actions`] is the glue every listener shares: it carries out a
//! dialect's actions through the engine.
//!
//! Every `start` binds before it returns (port 0 gets an ephemeral port; ask
//! the handle's `local_addr`), and every handle's `shutdown` sends close 1001
//! to the WebSocket sessions, closes admin TCP connections and joins threads.

pub mod achex;
pub mod appws;
pub mod webtalk;
pub mod wschat;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use std::sync::Arc;

use crate::dialect::{Action, SessionId};
use crate::engine::{Config, Stats};
use crate::{SendError, ServerHandle, SharedFrame};

/// The size limit of a dialect listener's messages unless configured:
/// 64 KiB, larger gets close 1009 (PROTOCOLS.md §1, §7 row 14).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 10;

/// The largest message limit a listener may be given (1 GiB): a bound on
/// what one connection can make the process buffer, and a guard against a
/// mistyped setting.
pub const MAX_MESSAGE_LIMIT: usize = 1 << 30;

/// A loopback address with this port (every default binds 127.0.0.1).
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Settings of one WebSocket listener: the engine's, with the dialect
/// defaults (64 KiB messages) in place of the raw server's.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Every engine setting; see [`Config`] for each default. `bind`, the
    /// message size and the frame size are set by [`ListenerConfig::new`].
    pub engine: Config,
}

impl ListenerConfig {
    /// A listener on `bind` with messages (and frames) up to
    /// [`DEFAULT_MAX_MESSAGE_SIZE`] and the engine's other defaults.
    pub fn new(bind: SocketAddr) -> ListenerConfig {
        let engine = Config {
            bind,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_MESSAGE_SIZE,
            ..Config::default()
        };
        ListenerConfig { engine }
    }

    /// Sets the largest message (and frame) accepted; larger gets close 1009.
    pub fn max_message_size(mut self, bytes: usize) -> ListenerConfig {
        self.engine.max_message_size = bytes;
        self.engine.max_frame_size = bytes;
        self
    }
}

/// What a status page shows for every listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Sessions open now (WebSocket connections past the handshake).
    pub sessions: u64,
    /// Sessions holding an identity: WSChat names, webtalk browsers logged in
    /// as a user, AppWebsocket sessions logged in to an app.
    pub names: u64,
    /// WebSocket messages received and sent since start.
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Sessions opened since start.
    pub sessions_total: u64,
}

impl ListenerStats {
    fn from_engine(s: &Stats, names: u64) -> ListenerStats {
        ListenerStats {
            sessions: s.connections_open,
            names,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            sessions_total: s.connections_total,
        }
    }
}

/// Carries out `actions` in order. A payload shared by several recipients
/// (the same `Arc`, in consecutive sends) is framed once and the frame's
/// bytes are shared by every connection; a payload for one recipient only is
/// framed straight into that connection's buffer. Sends to sessions that have
/// gone meanwhile are dropped (the dialect hears about the close from the
/// engine).
pub fn apply_actions(server: &ServerHandle, actions: Vec<Action>) {
    apply_to(server, actions);
}

/// As [`apply_actions`], emptying `actions` but keeping its memory for the
/// caller to reuse.
pub fn apply_actions_from(server: &ServerHandle, actions: &mut Vec<Action>) {
    apply_each(server, actions.drain(..));
}

/// Where [`apply_actions`] sends: the engine, or a recorder in tests.
trait Outlet {
    fn send_shared(&self, to: SessionId, frame: &SharedFrame);
    fn ping(&self, to: SessionId, payload: &[u8]);
    fn close(&self, to: SessionId, code: u16, reason: &str);

    /// Sends a payload no other recipient shares.
    fn send(&self, to: SessionId, data: &[u8], text: bool) {
        if let Some(frame) = frame(data, text) {
            self.send_shared(to, &frame);
        }
    }
}

impl Outlet for ServerHandle {
    fn send_shared(&self, to: SessionId, frame: &SharedFrame) {
        let _ = ServerHandle::send_shared(self, to, frame);
    }

    fn ping(&self, to: SessionId, payload: &[u8]) {
        let _ = ServerHandle::ping(self, to, payload);
    }

    fn close(&self, to: SessionId, code: u16, reason: &str) {
        let _ = ServerHandle::close(self, to, code as i32, reason);
    }

    // The engine frames it into the connection's outbound buffer: no shared
    // frame to allocate, copy and free for a single reader.
    fn send(&self, to: SessionId, data: &[u8], text: bool) {
        if let Err(SendError::InvalidUtf8) = ServerHandle::send(self, to, data, text) {
            // Not UTF-8 although marked text: a dialect bug; send it as binary.
            let _ = ServerHandle::send(self, to, data, false);
        }
    }
}

/// `data` framed once for many connections; text that is not UTF-8 (a
/// dialect bug) goes as binary rather than not at all.
fn frame(data: &[u8], text: bool) -> Option<SharedFrame> {
    SharedFrame::new(data, text)
        .or_else(|_| SharedFrame::new(data, false))
        .ok()
}

fn apply_to(out: &impl Outlet, actions: Vec<Action>) {
    apply_each(out, actions);
}

fn apply_each(out: &impl Outlet, actions: impl IntoIterator<Item = Action>) {
    // The frame of the latest shared payload, by payload address and kind.
    let mut last: Option<((*const u8, bool), SharedFrame)> = None;
    for a in actions {
        match a {
            Action::Send { to, data, text } => {
                let key = (Arc::as_ptr(&data) as *const u8, text);
                if !matches!(&last, Some((k, _)) if *k == key) {
                    // This action holds the only reference, and no frame
                    // was built for earlier sends of it: nobody else gets
                    // this payload, so there is nothing to share.
                    if Arc::strong_count(&data) == 1 {
                        out.send(to, &data, text);
                        continue;
                    }
                    let Some(f) = frame(&data, text) else {
                        continue;
                    };
                    last = Some((key, f));
                }
                if let Some((_, f)) = &last {
                    out.send_shared(to, f);
                }
            }
            Action::Ping { to, payload } => out.ping(to, &payload),
            Action::Close { to, code, reason } => out.close(to, code, &reason),
        }
    }
}

#[cfg(test)]
mod route_cost;

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::dialect::Shared;

    /// Records what would reach the engine.
    #[derive(Default)]
    struct Recorder {
        sends: RefCell<Vec<(SessionId, SharedFrame)>>,
        others: RefCell<Vec<String>>,
    }

    impl Outlet for Recorder {
        fn send_shared(&self, to: SessionId, frame: &SharedFrame) {
            self.sends.borrow_mut().push((to, frame.clone()));
        }

        fn ping(&self, to: SessionId, payload: &[u8]) {
            self.others.borrow_mut().push(format!("ping {to} {payload:?}"));
        }

        fn close(&self, to: SessionId, code: u16, reason: &str) {
            self.others.borrow_mut().push(format!("close {to} {code} {reason}"));
        }
    }

    impl Recorder {
        /// The distinct frames built, in first-use order, each with the
        /// sessions it went to.
        fn frames(&self) -> Vec<(SharedFrame, Vec<SessionId>)> {
            let mut out: Vec<(SharedFrame, Vec<SessionId>)> = Vec::new();
            for (to, f) in self.sends.borrow().iter() {
                match out.iter_mut().find(|(g, _)| Arc::ptr_eq(&g.0, &f.0)) {
                    Some((_, tos)) => tos.push(*to),
                    None => out.push((f.clone(), vec![*to])),
                }
            }
            out
        }
    }

    fn send(to: SessionId, data: &Shared, text: bool) -> Action {
        Action::Send {
            to,
            data: data.clone(),
            text,
        }
    }

    #[test]
    fn a_fan_out_builds_one_frame_shared_by_every_recipient() {
        const N: u64 = 1000;
        let payload: Shared = Arc::from(&b"{\"bc\":\"room\",\"m\":1}"[..]);
        let rec = Recorder::default();
        apply_to(&rec, (1..=N).map(|to| send(to, &payload, true)).collect());
        let frames = rec.frames();
        assert_eq!(frames.len(), 1, "one frame for {N} recipients");
        let (frame, tos) = &frames[0];
        assert_eq!(tos, &(1..=N).collect::<Vec<_>>(), "every recipient, in order");
        // The recorder holds one reference per send, plus `frame` here:
        // nothing else kept or copied the frame.
        assert_eq!(Arc::strong_count(&frame.0), N as usize + 1);
        // And it is the payload framed as one unmasked text frame.
        assert_eq!(frame.0[0], 0x81);
        assert_eq!(&frame.0[2..], &payload[..]);
    }

    #[test]
    fn each_payload_and_kind_gets_its_own_frame() {
        let a: Shared = Arc::from(&b"a"[..]);
        let b: Shared = Arc::from(&b"b"[..]);
        // Equal bytes in another allocation are another payload.
        let a2: Shared = Arc::from(&b"a"[..]);
        let bad: Shared = Arc::from(&b"\xff"[..]);
        let rec = Recorder::default();
        apply_to(
            &rec,
            vec![
                send(1, &a, true),
                send(2, &a, true),
                Action::Ping {
                    to: 3,
                    payload: b"p".to_vec(),
                },
                send(3, &a, true),
                send(1, &a, false),
                send(1, &b, true),
                send(2, &b, true),
                send(1, &a2, true),
                send(4, &bad, true),
                Action::Close {
                    to: 4,
                    code: 1000,
                    reason: "bye".into(),
                },
            ],
        );
        let frames: Vec<(u8, Vec<u8>, Vec<SessionId>)> = rec
            .frames()
            .into_iter()
            .map(|(f, tos)| (f.0[0], f.0[2..].to_vec(), tos))
            .collect();
        assert_eq!(
            frames,
            vec![
                // A ping in between does not break the sharing.
                (0x81, b"a".to_vec(), vec![1, 2, 3]),
                (0x82, b"a".to_vec(), vec![1]),
                (0x81, b"b".to_vec(), vec![1, 2]),
                (0x81, b"a".to_vec(), vec![1]),
                // Text that is not UTF-8 goes as binary rather than not at all.
                (0x82, vec![0xff], vec![4]),
            ]
        );
        assert_eq!(
            *rec.others.borrow(),
            vec!["ping 3 [112]".to_owned(), "close 4 1000 bye".to_owned()]
        );
    }

    /// Records single-recipient sends apart from shared frames.
    #[derive(Default)]
    struct Direct {
        shared: Recorder,
        direct: RefCell<Vec<(SessionId, Vec<u8>, bool)>>,
    }

    impl Outlet for Direct {
        fn send_shared(&self, to: SessionId, frame: &SharedFrame) {
            self.shared.send_shared(to, frame);
        }

        fn ping(&self, to: SessionId, payload: &[u8]) {
            self.shared.ping(to, payload);
        }

        fn close(&self, to: SessionId, code: u16, reason: &str) {
            self.shared.close(to, code, reason);
        }

        fn send(&self, to: SessionId, data: &[u8], text: bool) {
            self.direct.borrow_mut().push((to, data.to_vec(), text));
        }
    }

    #[test]
    fn a_payload_for_one_recipient_is_not_framed_for_sharing() {
        let one: Shared = Arc::from(&b"one"[..]);
        let many: Shared = Arc::from(&b"many"[..]);
        let actions = vec![send(1, &one, true), send(2, &many, true), send(3, &many, true)];
        // Only the actions hold the payloads now, as when a dialect returns them.
        drop((one, many));
        let out = Direct::default();
        apply_to(&out, actions);
        assert_eq!(*out.direct.borrow(), vec![(1, b"one".to_vec(), true)]);
        let frames: Vec<(Vec<u8>, Vec<SessionId>)> = out
            .shared
            .frames()
            .into_iter()
            .map(|(f, tos)| (f.0[2..].to_vec(), tos))
            .collect();
        assert_eq!(frames, vec![(b"many".to_vec(), vec![2, 3])]);
    }

    #[test]
    fn a_single_recipient_gets_its_frames_in_order_from_a_real_engine() {
        use std::time::Duration;

        use crate::engine::{Config, OwnedEvent, Server};
        use tungstenite::Message;

        let (server, events) = Server::start_queued(Config {
            bind: loopback(0),
            ..Config::default()
        })
        .unwrap();
        let addr = server.handle().local_addr();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp).unwrap();
        let conn = match events.poll(Some(Duration::from_secs(10))).unwrap() {
            OwnedEvent::Open { conn, .. } => conn,
            other => panic!("expected an open event, got {other:?}"),
        };
        let single = |bytes: &[u8], text: bool| Action::Send {
            to: conn,
            data: Arc::from(bytes),
            text,
        };
        apply_actions(
            server.handle(),
            vec![
                single(b"first", true),
                // Marked text but not UTF-8 (a dialect bug): sent as binary.
                single(b"\xff", true),
                single(b"\x01\x02", false),
                single("last é".as_bytes(), true),
            ],
        );
        let mut got = Vec::new();
        while got.len() < 4 {
            match ws.read().unwrap() {
                Message::Ping(_) | Message::Pong(_) => {}
                m => got.push(m),
            }
        }
        assert_eq!(
            got,
            vec![
                Message::text("first"),
                Message::binary(vec![0xff]),
                Message::binary(vec![1, 2]),
                Message::text("last é"),
            ]
        );
        server.shutdown();
    }
}
