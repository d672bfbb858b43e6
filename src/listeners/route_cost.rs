//! A deterministic harness for the broker's per-message cost: Achex messages
//! pushed through the dialect and the listeners' action path, no sockets, so
//! `valgrind --tool=callgrind` counts the same instructions on every run
//! (timings on a shared machine do not repeat; instruction counts do).
//! `bench/route_cost.sh` runs it and prints instructions per message.
//!
//! Ignored by `cargo test`: it measures, it does not check behaviour (the
//! dialect and listener tests do that).

use std::cell::{Cell, RefCell};
use std::time::Instant;

use super::{apply_each, Outlet};
use crate::dialect::achex::{AchexConfig, AchexDialect};
use crate::dialect::SessionId;
use crate::engine::frame;
use crate::SharedFrame;

/// Stands in for the engine: keeps what one message produced, as the
/// connections' outbound buffers would, and drops it before the next.
#[derive(Default)]
struct Sink {
    frames: RefCell<Vec<SharedFrame>>,
    owned: RefCell<Vec<Vec<u8>>>,
    sends: Cell<u64>,
}

impl Outlet for Sink {
    fn send_shared(&self, _to: SessionId, frame: &SharedFrame) {
        self.frames.borrow_mut().push(frame.clone());
        self.sends.set(self.sends.get() + 1);
    }

    fn ping(&self, _to: SessionId, _payload: &[u8]) {}

    fn close(&self, _to: SessionId, _code: u16, _reason: &str) {}

    /// What `ServerHandle::send` does for an idle connection: check the
    /// text, start a buffer chunk, frame the payload into it.
    fn send(&self, _to: SessionId, data: &[u8], text: bool) {
        assert!(!text || std::str::from_utf8(data).is_ok());
        let mut chunk = Vec::with_capacity((data.len() + frame::MAX_HEADER).max(256));
        frame::append_frame(&mut chunk, frame::OP_TEXT, data, None);
        self.owned.borrow_mut().push(chunk);
        self.sends.set(self.sends.get() + 1);
    }
}

/// Logged-in sessions besides the sender, as in bench/broker.sh: names
/// `s0`, `s1`, …, so a direct message's name lookup searches among as many.
const SESSIONS: u64 = 1000;

/// The message kinds measured: a 64-byte body like bench/loadgen's, and how
/// many sessions receive one message.
fn scenario(kind: &str) -> Option<(&'static str, usize)> {
    Some(match kind {
        // One sender, one recipient (bench/broker.sh direct).
        "to" => (r#"{"to":"s77","t":1733456789012345678,"p":"xxxxxxxxxxxxxxxxxxxxx"}"#, 1),
        // Every session is in the group (bench/broker.sh fan-out).
        "bc" => (
            r#"{"bc":"g","t":1733456789012345678,"p":"xxxxxxxxxxxxxxxxxxxxxxx"}"#,
            SESSIONS as usize,
        ),
        // A hub of 10 besides the sender.
        "toH" => (
            r#"{"toH":"h","t":1733456789012345678,"p":"xxxxxxxxxxxxxxxxxxxxxx"}"#,
            10,
        ),
        // Nested values with escapes, whitespace and a duplicate member.
        "to-nested" => (
            r#"{"to":"s77", "m": {"a": [1, 2.50, {"b":"caf\u00e9 \/ \"q\""}], "a": null}, "FROM":"x", "t":1}"#,
            1,
        ),
        _ => return None,
    })
}

#[test]
#[ignore = "measurement harness for callgrind; see bench/route_cost.sh"]
fn route_cost() {
    let kind = std::env::var("WSB_ROUTE_KIND").unwrap_or_else(|_| "to".into());
    let count: u64 = std::env::var("WSB_ROUTE_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let (msg, fan) = scenario(&kind).unwrap_or_else(|| panic!("unknown WSB_ROUTE_KIND {kind:?}"));
    let now = Instant::now();
    let mut d = AchexDialect::new_at(AchexConfig::default(), now);
    let sink = Sink::default();
    let login = |d: &mut AchexDialect, s: SessionId, name: &str, also: Option<&str>| {
        d.on_open(s);
        let r = d.on_message_at(s, format!(r#"{{"setID":"{name}"}}"#).as_bytes(), true, now);
        assert_eq!(r.len(), 1, "login reply");
        if let Some(cmd) = also {
            d.on_message_at(s, cmd.as_bytes(), true, now);
        }
    };
    login(&mut d, 1, "alice", Some(r#"{"joinHub":"h"}"#));
    for i in 0..SESSIONS {
        let also = match kind.as_str() {
            "bc" => Some(r#"{"cmd":"register_broadcast","bid":"g"}"#),
            "toH" if i < 10 => Some(r#"{"joinHub":"h"}"#),
            _ => None,
        };
        login(&mut d, 10 + i, &format!("s{i}"), also);
    }
    for _ in 0..count {
        // As the listener does it: carry the actions out, then hand the
        // emptied list back for the next message.
        let mut actions = d.on_message_at(1, msg.as_bytes(), true, now);
        apply_each(&sink, actions.drain(..));
        d.recycle(actions);
        sink.frames.borrow_mut().clear();
        sink.owned.borrow_mut().clear();
    }
    assert_eq!(
        sink.sends.get(),
        count * fan as u64,
        "every message reached every recipient"
    );
}
