//! The admin side of webtalk (PROTOCOLS.md §4.2, §4.3): one [`AdminSession`]
//! per admin TCP connection, and [`execute`], the command parser over the
//! [`Webtalk`] API.

use super::framing::{encode_reply, Frame, FrameParser};
use super::{ct_eq, parse_id, split_once, Webtalk, WebtalkError};
use crate::dialect::Action;

/// An admin reply before framing: `[ok] ` or `[error] ` + text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: Vec<u8>,
}

impl Reply {
    fn ok(text: impl Into<Vec<u8>>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
        }
    }

    fn error(text: impl Into<Vec<u8>>) -> Reply {
        Reply {
            ok: false,
            text: text.into(),
        }
    }

    /// `Invalid …: ` + the text exactly as sent.
    fn invalid(what: &str, sent: &[u8]) -> Reply {
        let mut text = format!("Invalid {what}: ").into_bytes();
        text.extend_from_slice(sent);
        Reply::error(text)
    }

    fn ok_echo(head: &str, echoed: &[u8]) -> Reply {
        let mut text = head.as_bytes().to_vec();
        text.extend_from_slice(echoed);
        Reply::ok(text)
    }

    /// The framed bytes to write to the admin connection.
    pub fn encode(&self) -> Vec<u8> {
        encode_reply(self.ok, &self.text)
    }
}

impl From<Result<&str, WebtalkError>> for Reply {
    fn from(r: Result<&str, WebtalkError>) -> Reply {
        match r {
            Ok(text) => Reply::ok(text),
            Err(e) => Reply::error(e.to_string()),
        }
    }
}

/// Runs one admin command (`cmd` and `data` of a `[cmd] data` body) against
/// `webtalk`. Deliveries and closes for browsers are appended to `out`.
///
/// `[auth]` always succeeds here: checking a secret is the session's job.
pub fn execute(webtalk: &mut Webtalk, cmd: &[u8], data: &[u8], out: &mut Vec<Action>) -> Reply {
    match cmd {
        b"newuser" => match webtalk.create_user() {
            Ok((id, salt)) => Reply::ok(format!("{id}!{salt}")),
            Err(e) => Reply::error(e.to_string()),
        },
        b"killuser" => match parse_id(data) {
            None => Reply::invalid("User", data),
            Some(user) => webtalk.kill_user(user, out).map(|()| "user killed").into(),
        },
        b"whisper" => {
            let Some((user, message)) = split_once(data) else {
                return Reply::error("User separator not found (!)");
            };
            match parse_id(user) {
                None => Reply::invalid("User", user),
                Some(user) => webtalk.whisper(user, message, out).map(|()| "message sent").into(),
            }
        }
        b"newchannel" => Reply::ok(webtalk.create_channel().to_string()),
        b"killchannel" => match parse_id(data) {
            None => Reply::invalid("Channel", data),
            Some(chan) => webtalk.kill_channel(chan).map(|()| "channel killed").into(),
        },
        b"shout" => {
            let Some((chan, message)) = split_once(data) else {
                return Reply::error("Channel separator not found (!)");
            };
            match parse_id(chan) {
                None => Reply::invalid("Channel", chan),
                Some(chan) => webtalk.shout(chan, message, out).map(|()| "message sent").into(),
            }
        }
        b"join" | b"leave" => {
            let Some((chan_text, user_text)) = split_once(data) else {
                return Reply::error("Channel/User separator not found (!)");
            };
            let Some(chan) = parse_id(chan_text) else {
                return Reply::invalid("Channel", chan_text);
            };
            let Some(user) = parse_id(user_text) else {
                return Reply::invalid("User", user_text);
            };
            if cmd == b"join" {
                webtalk.join(chan, user).map(|()| "user joined").into()
            } else {
                webtalk.leave(chan, user).map(|()| "user leaved").into()
            }
        }
        b"store" => {
            let Some((key, value)) = split_once(data) else {
                return Reply::error("Data separator not found (!)");
            };
            webtalk.store(key, value);
            Reply::ok_echo("stored ", key)
        }
        b"clear" => {
            webtalk.clear(data);
            Reply::ok_echo("cleared ", data)
        }
        b"retrieve" => Reply::ok(webtalk.retrieve(data).unwrap_or_default()),
        b"auth" => Reply::ok("authenticated"),
        _ => Reply::invalid("command", cmd),
    }
}

/// What one read from an admin connection produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdminOutput {
    /// Framed replies to write, in order.
    pub reply: Vec<u8>,
    /// Close the connection once `reply` is written.
    pub close: bool,
    /// Deliveries and closes for browser sessions.
    pub actions: Vec<Action>,
}

/// One admin TCP connection: framing, the optional secret, and the commands.
#[derive(Debug)]
pub struct AdminSession {
    parser: FrameParser,
    secret: Option<Vec<u8>>,
    authenticated: bool,
    closed: bool,
}

impl AdminSession {
    /// A new connection. With a `secret`, its first frame must be
    /// `[auth] SECRET`.
    pub fn new(secret: Option<&[u8]>) -> AdminSession {
        AdminSession {
            parser: FrameParser::new(),
            secret: secret.map(<[u8]>::to_vec),
            authenticated: false,
            closed: false,
        }
    }

    /// Handles bytes read from the connection: every complete frame is
    /// answered in order; an incomplete one waits for more bytes. Once the
    /// output says `close`, later input is ignored.
    pub fn feed(&mut self, input: &[u8], webtalk: &mut Webtalk) -> AdminOutput {
        let mut out = AdminOutput::default();
        if self.closed {
            out.close = true;
            return out;
        }
        self.parser.push(input);
        while let Some(frame) = self.parser.next_frame() {
            let (reply, close) = match frame {
                Err(e) => (e.reply(), true),
                Ok(Frame::Goodbye) => (encode_reply(true, b"goodbye"), true),
                Ok(Frame::Command(c)) => self.command(c.cmd(), c.data(), webtalk, &mut out.actions),
            };
            out.reply.extend_from_slice(&reply);
            if close {
                self.closed = true;
                // Nothing after the closing frame is read, so drop it now.
                self.parser = FrameParser::new();
                break;
            }
        }
        out.close = self.closed;
        out
    }

    /// True once the session has asked for the connection to be closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when part of a frame is buffered. A peer closing now gets no
    /// reply: there is nothing to do but log it.
    pub fn is_mid_frame(&self) -> bool {
        self.parser.is_mid_frame()
    }

    fn command(
        &mut self,
        cmd: &[u8],
        data: &[u8],
        webtalk: &mut Webtalk,
        actions: &mut Vec<Action>,
    ) -> (Vec<u8>, bool) {
        if let Some(secret) = &self.secret {
            // Every `[auth]` is checked, even after a success: a wrong secret
            // closes the connection like a wrong first frame does (the
            // choice is documented in docs/daemon.md).
            let granted = cmd == b"auth" && ct_eq(secret, data);
            if granted {
                self.authenticated = true;
            } else if cmd == b"auth" || !self.authenticated {
                return (encode_reply(false, b"Not authenticated"), true);
            }
        }
        (execute(webtalk, cmd, data, actions).encode(), false)
    }
}
