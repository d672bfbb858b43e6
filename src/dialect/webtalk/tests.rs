use super::admin::{execute, AdminOutput, AdminSession};
use super::framing::{FrameParser, MAX_BODY};
use super::*;

const SALT1: &str = "40381957220467715836";

/// Salts 40381957220467715836 for user 1, then 00000000000000000002, …
fn fixed_salts() -> SaltSource {
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        let s = if n == 1 { SALT1.to_string() } else { format!("{n:020}") };
        s.as_bytes().try_into().ok()
    })
}

fn webtalk() -> Webtalk {
    Webtalk::with_salt_source(fixed_salts())
}

/// Frames a body with its 5-digit byte length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = format!("{:05}", body.len()).into_bytes();
    f.extend_from_slice(body);
    f
}

/// Drives one admin connection with string frames.
struct Admin {
    session: AdminSession,
}

impl Admin {
    fn new() -> Admin {
        Admin {
            session: AdminSession::new(None),
        }
    }

    fn with_secret(secret: &str) -> Admin {
        Admin {
            session: AdminSession::new(Some(secret.as_bytes())),
        }
    }

    fn raw(&mut self, wt: &mut Webtalk, bytes: &[u8]) -> AdminOutput {
        self.session.feed(bytes, wt)
    }

    /// Sends one body and returns the reply as text.
    fn cmd(&mut self, wt: &mut Webtalk, body: &str) -> String {
        self.cmd_actions(wt, body).0
    }

    fn cmd_actions(&mut self, wt: &mut Webtalk, body: &str) -> (String, Vec<Action>) {
        let out = self.raw(wt, &frame(body.as_bytes()));
        assert!(!out.close, "{body} closed the connection");
        (String::from_utf8(out.reply).expect("UTF-8 reply"), out.actions)
    }
}

/// The framed reply for a body text.
fn r(body: &str) -> String {
    format!("{:05}{body}", body.len())
}

fn send(to: SessionId, data: &[u8], text: bool) -> Action {
    Action::Send {
        to,
        data: Arc::from(data),
        text,
    }
}

fn close_action(to: SessionId, code: u16, reason: &str) -> Action {
    Action::Close {
        to,
        code,
        reason: reason.to_string(),
    }
}

/// A webtalk with `n` users (salts from [`fixed_salts`]) and a connection.
fn setup(n: usize) -> (Webtalk, Admin) {
    let mut wt = webtalk();
    let mut admin = Admin::new();
    for _ in 0..n {
        assert!(admin.cmd(&mut wt, "[newuser]").starts_with("000"));
    }
    (wt, admin)
}

fn login_text(wt: &Webtalk, user: UserId) -> String {
    let salt = &wt.users[&user].salt;
    format!("{user}!{}", std::str::from_utf8(salt).unwrap())
}

fn login(wt: &mut Webtalk, sid: SessionId, user: UserId) -> Vec<Action> {
    wt.on_open(sid);
    let text = login_text(wt, user);
    wt.on_message(sid, text.as_bytes(), true)
}

// ----- §4.6 transcript -----

#[test]
fn transcript() {
    let mut wt = webtalk();
    let mut admin = Admin::new();
    let browser = 10;
    let mut step = |wt: &mut Webtalk, sent: &str, want: &str| -> Vec<Action> {
        let out = admin.raw(wt, sent.as_bytes());
        assert_eq!(String::from_utf8_lossy(&out.reply), want, "after {sent}");
        assert_eq!(out.close, sent == "00000", "close flag after {sent}");
        out.actions
    };
    assert!(step(&mut wt, "00009[newuser]", "00027[ok] 1!40381957220467715836").is_empty());
    assert!(wt.on_open(browser).is_empty());
    assert!(wt.on_message(browser, b"1!40381957220467715836", true).is_empty());
    let acts = step(&mut wt, "00019[whisper] 1!hello!x", "00017[ok] message sent");
    assert_eq!(acts, vec![send(browser, b"hello!x", true)]);
    let acts = step(&mut wt, "00018[whisper] 1!h\u{e9}llo", "00017[ok] message sent");
    assert_eq!(acts, vec![send(browser, "héllo".as_bytes(), true)]);
    step(&mut wt, "00012[newchannel]", "00006[ok] 2");
    step(&mut wt, "00010[join] 2!1", "00016[ok] user joined");
    let acts = step(&mut wt, "00020[shout] 2!{\"t\":\"hi\"}", "00017[ok] message sent");
    assert_eq!(acts, vec![send(browser, br#"{"t":"hi"}"#, true)]);
    step(&mut wt, "00011[leave] 2!1", "00016[ok] user leaved");
    step(&mut wt, "00018[store] color!blue", "00017[ok] stored color");
    step(&mut wt, "00016[retrieve] color", "00009[ok] blue");
    step(&mut wt, "00015[whisper] 99!hi", "00024[error] Unknown User: 99");
    step(&mut wt, "00014[whisper] x!hi", "00023[error] Invalid User: x");
    step(
        &mut wt,
        "00015[killchannel] 1",
        "00038[error] Cannot kill the global channel",
    );
    step(&mut wt, "00005[foo]", "00028[error] Invalid command: foo");
    let acts = step(&mut wt, "00012[killuser] 1", "00016[ok] user killed");
    assert_eq!(acts, vec![close_action(browser, 4003, "user killed")]);
    step(&mut wt, "00000", "00012[ok] goodbye");
    assert!(admin.session.is_closed());
}

// ----- §4.1 framing -----

#[test]
fn byte_length_counts_bytes_not_characters() {
    let (mut wt, mut admin) = setup(1);
    let body = "[whisper] 1!héllo";
    assert_eq!(body.chars().count(), 17);
    let out = admin.raw(&mut wt, format!("00018{body}").as_bytes());
    assert_eq!(out.reply, b"00017[ok] message sent");
    assert_eq!(wt.users[&1].queue[0].0.as_ref(), "héllo".as_bytes());
    // Replies count bytes too.
    assert_eq!(admin.cmd(&mut wt, "[store] clé!v"), r("[ok] stored clé"));
    assert!(r("[ok] stored clé").starts_with("00016"));
}

#[test]
fn invalid_frame_size() {
    for header in ["abcde", "-0001", "+0012", "0001x", " 0012", "0x0ff"] {
        let mut wt = webtalk();
        let mut admin = Admin::new();
        let out = admin.raw(&mut wt, format!("{header}[newuser]").as_bytes());
        assert_eq!(
            String::from_utf8(out.reply).unwrap(),
            r(&format!("[error] Invalid Frame Size: {header}"))
        );
        assert!(out.close);
        assert_eq!(wt.user_count(), 0, "nothing after the bad header runs");
    }
    let (mut wt, mut admin) = setup(0);
    assert_eq!(
        admin.raw(&mut wt, b"abcde").reply,
        b"00033[error] Invalid Frame Size: abcde"
    );
    // The header is echoed as bytes, even when they are not UTF-8.
    let mut admin = Admin::new();
    let out = admin.raw(&mut wt, b"12\xff45");
    assert_eq!(out.reply, b"00033[error] Invalid Frame Size: 12\xff45");
}

#[test]
fn brace_errors_close() {
    let (mut wt, mut admin) = setup(0);
    let out = admin.raw(&mut wt, b"00009newuser]]00009[newuser]");
    assert_eq!(out.reply, b"00040[error] Invalid Frame: [ brace not found");
    assert!(out.close);
    assert_eq!(wt.user_count(), 0);
    let mut admin = Admin::new();
    let out = admin.raw(&mut wt, b"00008[newuser00009[newuser]");
    assert_eq!(out.reply, b"00040[error] Invalid Frame: ] brace not found");
    assert!(out.close);
    // `]` only after the body's end does not count.
    let mut admin = Admin::new();
    let out = admin.raw(&mut wt, b"00001[]");
    assert_eq!(out.reply, b"00040[error] Invalid Frame: ] brace not found");
    assert_eq!(wt.user_count(), 0);
}

#[test]
fn goodbye_closes_and_ignores_the_rest() {
    let (mut wt, mut admin) = setup(0);
    let out = admin.raw(&mut wt, b"00009[newuser]0000000009[newuser]");
    assert_eq!(out.reply, b"00027[ok] 1!4038195722046771583600012[ok] goodbye");
    assert!(out.close);
    assert_eq!(wt.user_count(), 1);
    let out = admin.raw(&mut wt, b"00009[newuser]");
    assert!(out.reply.is_empty() && out.close);
    assert_eq!(wt.user_count(), 1);
}

#[test]
fn peer_closing_mid_frame_gets_nothing() {
    let (mut wt, mut admin) = setup(0);
    let out = admin.raw(&mut wt, b"99999");
    assert_eq!(out, AdminOutput::default());
    assert!(admin.session.is_mid_frame());
    let out = admin.raw(&mut wt, &vec![b'['; 50_000]);
    assert_eq!(out, AdminOutput::default());
    assert!(admin.session.is_mid_frame());
    // Half a header is pending too.
    let mut admin = Admin::new();
    assert_eq!(admin.raw(&mut wt, b"000"), AdminOutput::default());
    assert!(admin.session.is_mid_frame());
    let mut admin = Admin::new();
    assert!(!admin.session.is_mid_frame());
    admin.cmd(&mut wt, "[newuser]");
    assert!(!admin.session.is_mid_frame());
}

#[test]
fn full_size_body() {
    let (mut wt, mut admin) = setup(0);
    let mut body = b"[store] k!".to_vec();
    body.resize(MAX_BODY, b'v');
    let out = admin.raw(&mut wt, &frame(&body));
    assert_eq!(out.reply, b"00013[ok] stored k");
    assert_eq!(wt.retrieve(b"k").map(<[u8]>::len), Some(MAX_BODY - 10));
    // The retrieved value fits: `[ok] ` + 99989 bytes.
    let out = admin.raw(&mut wt, b"00012[retrieve] k");
    assert_eq!(&out.reply[..5], b"99994");
}

#[test]
fn echoed_text_is_cut_at_the_limit() {
    let (mut wt, mut admin) = setup(0);
    // `[clear] ` + key fills the body; `[ok] cleared ` + key would not fit.
    // With 3-byte characters the 99986 bytes left after `[ok] cleared ` end
    // inside a character, which is dropped whole.
    let key = "€".repeat((MAX_BODY - 8) / 3);
    let out = admin.raw(&mut wt, &frame(format!("[clear] {key}").as_bytes()));
    assert_eq!(&out.reply[..5], b"99997");
    assert_eq!(out.reply.len(), 5 + 99_997);
    let text = std::str::from_utf8(&out.reply[5..]).expect("cut at a boundary");
    assert!(text.starts_with("[ok] cleared €€"));
    // An invalid command name is echoed and cut the same way.
    let cmd = "x".repeat(MAX_BODY - 2);
    let out = admin.raw(&mut wt, &frame(format!("[{cmd}]").as_bytes()));
    assert_eq!(&out.reply[..5], b"99999");
    assert_eq!(out.reply.len(), 5 + MAX_BODY);
}

/// Several frames of every kind, pipelined in one stream.
fn pipeline() -> Vec<u8> {
    let mut s = Vec::new();
    for body in [
        "[newuser]",
        "[newuser] ignored",
        "[whisper] 1!héllo",
        "[newchannel]",
        "[join] 2!2",
        "[shout] 2!x",
        "[store] a!b!c",
        "[retrieve] a",
        "[bogus]",
        "[killuser] 1",
    ] {
        s.extend(frame(body.as_bytes()));
    }
    s.extend_from_slice(b"00000");
    s
}

fn whole_run(stream: &[u8]) -> (AdminOutput, Webtalk) {
    let (mut wt, mut admin) = setup(0);
    let out = admin.raw(&mut wt, stream);
    (out, wt)
}

#[test]
fn pipelined_replies_come_in_order() {
    let (out, _) = whole_run(&pipeline());
    let want = [
        "[ok] 1!40381957220467715836",
        "[ok] 2!00000000000000000002",
        "[ok] message sent",
        "[ok] 2",
        "[ok] user joined",
        "[ok] message sent",
        "[ok] stored a",
        "[ok] b!c",
        "[error] Invalid command: bogus",
        "[ok] user killed",
        "[ok] goodbye",
    ]
    .map(r)
    .concat();
    assert_eq!(String::from_utf8(out.reply).unwrap(), want);
    assert!(out.close);
}

#[test]
fn split_at_every_byte_boundary() {
    let stream = pipeline();
    let (whole, whole_wt) = whole_run(&stream);
    for at in 0..=stream.len() {
        let (mut wt, mut admin) = setup(0);
        let first = admin.raw(&mut wt, &stream[..at]);
        let second = admin.raw(&mut wt, &stream[at..]);
        let mut reply = first.reply;
        reply.extend(second.reply);
        assert_eq!(reply, whole.reply, "split at {at}");
        assert!(second.close);
        assert_eq!(wt.retrieve(b"a"), whole_wt.retrieve(b"a"));
        assert_eq!(wt.users[&2].queue.len(), 1, "split at {at}");
        assert_eq!(wt.user_count(), whole_wt.user_count());
    }
    // One byte per read.
    let (mut wt, mut admin) = setup(0);
    let mut reply = Vec::new();
    for b in &stream {
        reply.extend(admin.raw(&mut wt, std::slice::from_ref(b)).reply);
    }
    assert_eq!(reply, whole.reply);
}

#[test]
fn parser_splits_every_way_in_three() {
    let stream = [frame(b"[a]x"), frame(b"[b] yy"), frame("[c]!é".as_bytes())].concat();
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let mut p = FrameParser::new();
            let mut got = Vec::new();
            for part in [&stream[..i], &stream[i..j], &stream[j..]] {
                p.push(part);
                while let Some(f) = p.next_frame() {
                    match f {
                        Ok(super::framing::Frame::Command(c)) => got.push((c.cmd().to_vec(), c.data().to_vec())),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            let want = vec![
                (b"a".to_vec(), b"".to_vec()),
                (b"b".to_vec(), b"yy".to_vec()),
                (b"c".to_vec(), "é".as_bytes().to_vec()),
            ];
            assert_eq!(got, want, "split at {i}, {j}");
            assert!(!p.is_mid_frame());
        }
    }
}

#[test]
fn separator_byte_is_skipped_whatever_it_is_and_nothing_is_trimmed() {
    let (mut wt, mut admin) = setup(0);
    assert_eq!(admin.cmd(&mut wt, "[store]Xk!v"), r("[ok] stored k"));
    assert_eq!(admin.cmd(&mut wt, "[retrieve]:k"), r("[ok] v"));
    assert_eq!(admin.cmd(&mut wt, "[store]  k ! v "), r("[ok] stored  k "));
    assert_eq!(admin.cmd(&mut wt, "[retrieve]  k "), r("[ok]  v "));
    assert_eq!(admin.cmd(&mut wt, "[retrieve] k"), r("[ok] v"));
    // `[newuser]` and `[newuser] ` both have empty data, which is ignored.
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r(&format!("[ok] 1!{SALT1}")));
    assert_eq!(admin.cmd(&mut wt, "[newuser] "), r("[ok] 2!00000000000000000002"));
    assert_eq!(admin.cmd(&mut wt, "[newuser] 7"), r("[ok] 3!00000000000000000003"));
    // The command runs to the first `]`.
    assert_eq!(admin.cmd(&mut wt, "[a]b] c"), r("[error] Invalid command: a"));
    assert_eq!(admin.cmd(&mut wt, "[]"), r("[error] Invalid command: "));
}

// ----- §4.2 authentication -----

#[test]
fn auth_without_secret_is_ok() {
    let (mut wt, mut admin) = setup(0);
    assert_eq!(admin.cmd(&mut wt, "[auth] anything"), "00018[ok] authenticated");
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r(&format!("[ok] 1!{SALT1}")));
}

#[test]
fn auth_with_secret() {
    let mut wt = webtalk();
    let mut admin = Admin::with_secret("s3cret");
    assert_eq!(admin.cmd(&mut wt, "[auth] s3cret"), "00018[ok] authenticated");
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r(&format!("[ok] 1!{SALT1}")));
    assert_eq!(admin.cmd(&mut wt, "[auth] s3cret"), "00018[ok] authenticated");

    // Any other first frame is refused and closes, and runs nothing.
    for first in [
        "[newuser]",
        "[auth] S3cret",
        "[auth] s3cret ",
        "[auth] s3cre",
        "[auth]",
        "[AUTH] s3cret",
    ] {
        let mut admin = Admin::with_secret("s3cret");
        let out = admin.raw(&mut wt, &[frame(first.as_bytes()), frame(b"[newuser]")].concat());
        assert_eq!(out.reply, b"00025[error] Not authenticated", "{first}");
        assert!(out.close);
    }
    assert_eq!(wt.user_count(), 1);

    // Pipelined login and command in one read.
    let mut admin = Admin::with_secret("s3cret");
    let out = admin.raw(&mut wt, &[frame(b"[auth] s3cret"), frame(b"[newchannel]")].concat());
    assert_eq!(out.reply, b"00018[ok] authenticated00006[ok] 2");
    // A wrong secret later still closes.
    let out = admin.raw(&mut wt, &frame(b"[auth] nope"));
    assert_eq!(out.reply, b"00025[error] Not authenticated");
    assert!(out.close);
}

#[test]
fn framing_errors_and_goodbye_keep_their_replies_before_auth() {
    let mut wt = webtalk();
    for (input, want) in [
        (&b"abcde"[..], &b"00033[error] Invalid Frame Size: abcde"[..]),
        (b"00003abc", b"00040[error] Invalid Frame: [ brace not found"),
        (b"00003[ab", b"00040[error] Invalid Frame: ] brace not found"),
        (b"00000", b"00012[ok] goodbye"),
    ] {
        let mut admin = Admin::with_secret("s3cret");
        let out = admin.raw(&mut wt, input);
        assert_eq!(out.reply, want);
        assert!(out.close);
    }
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(ct_eq(b"", b""));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(!ct_eq(b"ab", b"abc"));
    assert!(!ct_eq(b"", b"a"));
    assert!(!ct_eq(b"a", b""));
    // A candidate that matches the secret then adds NULs is still wrong.
    assert!(!ct_eq(b"ab", b"ab\0"));
}

// ----- §4.3 commands -----

#[test]
fn newuser_joins_the_global_channel() {
    let (mut wt, mut admin) = setup(0);
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r(&format!("[ok] 1!{SALT1}")));
    assert!(wt.is_member(GLOBAL_CHANNEL, 1));
    assert_eq!(wt.user_count(), 1);
}

#[test]
fn ids_are_parsed_strictly_and_echoed_as_sent() {
    let (mut wt, mut admin) = setup(1);
    for bad in ["x", "", " 1", "1 ", "-1", "+1", "1.0", "18446744073709551616", "١"] {
        assert_eq!(
            admin.cmd(&mut wt, &format!("[killuser] {bad}")),
            r(&format!("[error] Invalid User: {bad}"))
        );
        assert_eq!(
            admin.cmd(&mut wt, &format!("[whisper] {bad}!m")),
            r(&format!("[error] Invalid User: {bad}"))
        );
        assert_eq!(
            admin.cmd(&mut wt, &format!("[killchannel] {bad}")),
            r(&format!("[error] Invalid Channel: {bad}"))
        );
    }
    // Leading zeros are fine; unknown ids are printed canonically.
    assert_eq!(admin.cmd(&mut wt, "[whisper] 0001!m"), r("[ok] message sent"));
    assert_eq!(admin.cmd(&mut wt, "[whisper] 007!m"), r("[error] Unknown User: 7"));
    assert_eq!(
        admin.cmd(&mut wt, "[whisper] 18446744073709551615!m"),
        r("[error] Unknown User: 18446744073709551615")
    );
    assert_eq!(
        admin.cmd(&mut wt, "[killchannel] 0009"),
        r("[error] Unknown Channel: 9")
    );
}

#[test]
fn killuser() {
    let (mut wt, mut admin) = setup(2);
    assert_eq!(admin.cmd(&mut wt, "[killuser] 1x"), r("[error] Invalid User: 1x"));
    assert_eq!(admin.cmd(&mut wt, "[killuser] 3"), r("[error] Unknown User: 3"));
    admin.cmd(&mut wt, "[newchannel]");
    admin.cmd(&mut wt, "[join] 2!1");
    admin.cmd(&mut wt, "[whisper] 1!queued");
    assert_eq!(wt.queued_count(), 1);
    assert!(login(&mut wt, 50, 2).is_empty());
    let (reply, acts) = admin.cmd_actions(&mut wt, "[killuser] 2");
    assert_eq!(reply, r("[ok] user killed"));
    assert_eq!(acts, vec![close_action(50, 4003, "user killed")]);
    assert!(!wt.is_member(1, 2));
    // An offline user: no close, queue dropped, memberships gone, forgotten.
    let (reply, acts) = admin.cmd_actions(&mut wt, "[killuser] 1");
    assert_eq!(reply, r("[ok] user killed"));
    assert!(acts.is_empty());
    assert_eq!(wt.queued_count(), 0);
    assert!(!wt.is_member(1, 1) && !wt.is_member(2, 1));
    assert_eq!(admin.cmd(&mut wt, "[killuser] 1"), r("[error] Unknown User: 1"));
    assert_eq!(admin.cmd(&mut wt, "[whisper] 1!x"), r("[error] Unknown User: 1"));
    assert_eq!(admin.cmd(&mut wt, "[join] 2!1"), r("[error] Unknown User: 1"));
    // Ids are never reused; the killed browser's later traffic is ignored.
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r("[ok] 3!00000000000000000003"));
    assert!(wt.on_message(50, b"anything", true).is_empty());
    assert!(wt.on_close(50).is_empty());
    assert_eq!(wt.user_count(), 1);
}

#[test]
fn whisper() {
    let (mut wt, mut admin) = setup(1);
    assert_eq!(
        admin.cmd(&mut wt, "[whisper] 1 hi"),
        r("[error] User separator not found (!)")
    );
    assert_eq!(
        admin.cmd(&mut wt, "[whisper]"),
        r("[error] User separator not found (!)")
    );
    assert_eq!(admin.cmd(&mut wt, "[whisper] x!hi"), r("[error] Invalid User: x"));
    assert_eq!(admin.cmd(&mut wt, "[whisper] !hi"), r("[error] Invalid User: "));
    assert_eq!(admin.cmd(&mut wt, "[whisper] 2!hi"), r("[error] Unknown User: 2"));
    login(&mut wt, 9, 1);
    // Exactly the message bytes, empty included; non-UTF-8 goes as binary.
    for (msg, text) in [(&b"a!b"[..], true), (b"", true), (b"\xff\x00", false)] {
        let body = [&b"[whisper] 1!"[..], msg].concat();
        let out = admin.raw(&mut wt, &frame(&body));
        assert_eq!(out.reply, b"00017[ok] message sent");
        assert_eq!(out.actions, vec![send(9, msg, text)]);
    }
}

#[test]
fn offline_queue_limits() {
    let (mut wt, mut admin) = setup(2);
    for i in 0..QUEUE_MAX_MESSAGES {
        assert_eq!(admin.cmd(&mut wt, &format!("[whisper] 1!{i}")), r("[ok] message sent"));
    }
    assert_eq!(
        admin.cmd(&mut wt, "[whisper] 1!late"),
        r("[error] Queue full for user 1")
    );
    // At login the queue comes out in order, and later messages follow.
    let acts = login(&mut wt, 5, 1);
    let want: Vec<_> = (0..QUEUE_MAX_MESSAGES)
        .map(|i| send(5, i.to_string().as_bytes(), true))
        .collect();
    assert_eq!(acts, want);
    assert_eq!(wt.queued_count(), 0);
    let (_, acts) = admin.cmd_actions(&mut wt, "[whisper] 1!late");
    assert_eq!(acts, vec![send(5, b"late", true)]);

    // 1 MiB of payload: exactly full is accepted, one byte more is not.
    let mut out = Vec::new();
    let half = vec![b'x'; QUEUE_MAX_BYTES / 2];
    assert_eq!(wt.whisper(2, &half, &mut out), Ok(()));
    assert_eq!(wt.whisper(2, &half, &mut out), Ok(()));
    assert_eq!(wt.whisper(2, b"", &mut out), Ok(()));
    assert_eq!(wt.whisper(2, b"y", &mut out), Err(WebtalkError::QueueFull(2)));
    assert!(out.is_empty());
    // Room comes back after a login and logout.
    assert_eq!(login(&mut wt, 6, 2).len(), 3);
    wt.on_close(6);
    assert_eq!(wt.whisper(2, b"y", &mut out), Ok(()));
}

#[test]
fn newchannel_and_killchannel() {
    let (mut wt, mut admin) = setup(1);
    assert_eq!(admin.cmd(&mut wt, "[newchannel]"), r("[ok] 2"));
    assert_eq!(admin.cmd(&mut wt, "[newchannel] data"), r("[ok] 3"));
    admin.cmd(&mut wt, "[join] 2!1");
    assert_eq!(admin.cmd(&mut wt, "[killchannel] 2"), r("[ok] channel killed"));
    assert!(!wt.is_member(2, 1));
    assert!(!wt.users[&1].channels.contains(&2));
    assert_eq!(admin.cmd(&mut wt, "[killchannel] 2"), r("[error] Unknown Channel: 2"));
    assert_eq!(admin.cmd(&mut wt, "[join] 2!1"), r("[error] Unknown Channel: 2"));
    // Check order: invalid, then global, then unknown.
    assert_eq!(admin.cmd(&mut wt, "[killchannel] 1!"), r("[error] Invalid Channel: 1!"));
    assert_eq!(
        admin.cmd(&mut wt, "[killchannel] 001"),
        r("[error] Cannot kill the global channel")
    );
    assert_eq!(admin.cmd(&mut wt, "[killchannel] 4"), r("[error] Unknown Channel: 4"));
    // Channel ids are never reused.
    assert_eq!(admin.cmd(&mut wt, "[newchannel]"), r("[ok] 4"));
    assert_eq!(wt.channel_count(), 3);
}

#[test]
fn shout() {
    let (mut wt, mut admin) = setup(3);
    assert_eq!(
        admin.cmd(&mut wt, "[shout] 1 hi"),
        r("[error] Channel separator not found (!)")
    );
    assert_eq!(admin.cmd(&mut wt, "[shout] a!hi"), r("[error] Invalid Channel: a"));
    assert_eq!(admin.cmd(&mut wt, "[shout] 02!hi"), r("[error] Unknown Channel: 2"));
    login(&mut wt, 11, 1);
    login(&mut wt, 13, 3);
    // Formatted once: online members share the bytes; user 2 gets it queued.
    let (reply, acts) = admin.cmd_actions(&mut wt, "[shout] 1!all!");
    assert_eq!(reply, r("[ok] message sent"));
    assert_eq!(acts, vec![send(11, b"all!", true), send(13, b"all!", true)]);
    match (&acts[0], &acts[1]) {
        (Action::Send { data: a, .. }, Action::Send { data: b, .. }) => {
            assert!(Arc::ptr_eq(a, b))
        }
        _ => unreachable!(),
    }
    assert_eq!(wt.users[&2].queue.len(), 1);
    // An empty channel is fine.
    assert_eq!(admin.cmd(&mut wt, "[newchannel]"), r("[ok] 2"));
    let (reply, acts) = admin.cmd_actions(&mut wt, "[shout] 2!x");
    assert_eq!(reply, r("[ok] message sent"));
    assert!(acts.is_empty());
}

#[test]
fn shout_with_full_queues_names_the_first_and_reaches_the_rest() {
    let (mut wt, mut admin) = setup(4);
    let mut sink = Vec::new();
    for _ in 0..QUEUE_MAX_MESSAGES {
        wt.whisper(2, b"q", &mut sink).unwrap();
        wt.whisper(4, b"q", &mut sink).unwrap();
    }
    login(&mut wt, 30, 3);
    let (reply, acts) = admin.cmd_actions(&mut wt, "[shout] 1!news");
    assert_eq!(reply, r("[error] Queue full for user 2"));
    assert_eq!(acts, vec![send(30, b"news", true)]);
    assert_eq!(wt.users[&1].queue.len(), 1);
    assert_eq!(wt.users[&4].queue.len(), QUEUE_MAX_MESSAGES);
}

#[test]
fn join_and_leave() {
    let (mut wt, mut admin) = setup(1);
    admin.cmd(&mut wt, "[newchannel]");
    for cmd in ["join", "leave"] {
        let e = |s: &str| r(&format!("[error] {s}"));
        let mut c = |data: &str| admin.cmd(&mut wt, &format!("[{cmd}] {data}"));
        assert_eq!(c("2 1"), e("Channel/User separator not found (!)"));
        assert_eq!(c("x!y"), e("Invalid Channel: x"));
        assert_eq!(c("2!y"), e("Invalid User: y"));
        assert_eq!(c("2!1!"), e("Invalid User: 1!"));
        assert_eq!(c("9!9"), e("Unknown Channel: 9"));
        assert_eq!(c("2!9"), e("Unknown User: 9"));
        assert_eq!(c("!1"), e("Invalid Channel: "));
    }
    // Join is idempotent: one delivery per shout.
    assert_eq!(admin.cmd(&mut wt, "[join] 2!1"), r("[ok] user joined"));
    assert_eq!(admin.cmd(&mut wt, "[join] 02!01"), r("[ok] user joined"));
    login(&mut wt, 7, 1);
    let (_, acts) = admin.cmd_actions(&mut wt, "[shout] 2!once");
    assert_eq!(acts, vec![send(7, b"once", true)]);
    assert_eq!(admin.cmd(&mut wt, "[leave] 2!1"), r("[ok] user leaved"));
    assert_eq!(admin.cmd(&mut wt, "[leave] 2!1"), r("[ok] user leaved"));
    let (_, acts) = admin.cmd_actions(&mut wt, "[shout] 2!none");
    assert!(acts.is_empty());
    // Leaving the global channel is allowed, and rejoining works.
    assert_eq!(admin.cmd(&mut wt, "[leave] 1!1"), r("[ok] user leaved"));
    assert!(!wt.is_member(1, 1));
    assert_eq!(admin.cmd(&mut wt, "[join] 1!1"), r("[ok] user joined"));
    assert!(wt.is_member(1, 1));
}

#[test]
fn store_clear_retrieve() {
    let (mut wt, mut admin) = setup(0);
    assert_eq!(
        admin.cmd(&mut wt, "[store] novalue"),
        r("[error] Data separator not found (!)")
    );
    assert_eq!(admin.cmd(&mut wt, "[retrieve] k"), "00005[ok] ");
    assert_eq!(admin.cmd(&mut wt, "[store] k!v!w"), r("[ok] stored k"));
    assert_eq!(admin.cmd(&mut wt, "[retrieve] k"), r("[ok] v!w"));
    assert_eq!(admin.cmd(&mut wt, "[store] k!"), r("[ok] stored k"));
    assert_eq!(admin.cmd(&mut wt, "[retrieve] k"), "00005[ok] ");
    assert_eq!(admin.cmd(&mut wt, "[store] !empty key"), r("[ok] stored "));
    assert_eq!(admin.cmd(&mut wt, "[retrieve]"), r("[ok] empty key"));
    assert_eq!(admin.cmd(&mut wt, "[clear] k"), r("[ok] cleared k"));
    assert_eq!(admin.cmd(&mut wt, "[clear] k"), r("[ok] cleared k"));
    assert_eq!(admin.cmd(&mut wt, "[retrieve] k"), "00005[ok] ");
    // `clear` and `retrieve` take the whole data as the key.
    admin.cmd(&mut wt, "[store] a!b!c");
    assert_eq!(admin.cmd(&mut wt, "[retrieve] a!b"), "00005[ok] ");
    assert_eq!(admin.cmd(&mut wt, "[clear] a!b"), r("[ok] cleared a!b"));
    assert_eq!(admin.cmd(&mut wt, "[retrieve] a"), r("[ok] b!c"));
    // Binary keys and values round-trip.
    let out = admin.raw(&mut wt, &frame(b"[store] \xff!\x00\xfe"));
    assert_eq!(out.reply, b"00013[ok] stored \xff");
    let out = admin.raw(&mut wt, &frame(b"[retrieve] \xff"));
    assert_eq!(out.reply, b"00007[ok] \x00\xfe");
    assert_eq!(wt.stored_count(), 3);
}

#[test]
fn unknown_commands() {
    let (mut wt, mut admin) = setup(0);
    assert_eq!(admin.cmd(&mut wt, "[foo]"), "00028[error] Invalid command: foo");
    assert_eq!(admin.cmd(&mut wt, "[NEWUSER]"), r("[error] Invalid command: NEWUSER"));
    assert_eq!(admin.cmd(&mut wt, "[ newuser]"), r("[error] Invalid command:  newuser"));
    assert_eq!(
        admin.cmd(&mut wt, "[new user] x"),
        r("[error] Invalid command: new user")
    );
    assert_eq!(wt.user_count(), 0);
}

#[test]
fn execute_is_usable_without_a_session() {
    let mut wt = webtalk();
    let mut out = Vec::new();
    let reply = execute(&mut wt, b"newuser", b"", &mut out);
    assert_eq!(reply.encode(), b"00027[ok] 1!40381957220467715836");
    let reply = execute(&mut wt, b"auth", b"whatever", &mut out);
    assert!(reply.ok);
    assert!(out.is_empty());
}

#[test]
fn rust_api_mirrors_the_commands() {
    let mut wt = webtalk();
    let mut out = Vec::new();
    assert_eq!(wt.create_user(), Ok((1, SALT1.to_string())));
    assert_eq!(wt.create_channel(), 2);
    assert_eq!(wt.join(2, 1), Ok(()));
    assert_eq!(wt.join(3, 9), Err(WebtalkError::UnknownChannel(3)));
    assert_eq!(wt.leave(2, 9), Err(WebtalkError::UnknownUser(9)));
    assert_eq!(wt.kill_channel(1), Err(WebtalkError::GlobalChannel));
    assert_eq!(wt.shout(2, b"s", &mut out), Ok(()));
    assert_eq!(wt.whisper(1, b"w", &mut out), Ok(()));
    wt.store(b"k", b"v");
    assert_eq!(wt.retrieve(b"k"), Some(&b"v"[..]));
    wt.clear(b"k");
    assert_eq!(wt.retrieve(b"k"), None);
    assert_eq!(wt.queued_count(), 2);
    assert_eq!(wt.kill_channel(2), Ok(()));
    assert_eq!(wt.kill_user(1, &mut out), Ok(()));
    assert_eq!(wt.kill_user(1, &mut out), Err(WebtalkError::UnknownUser(1)));
    assert!(out.is_empty());
    assert_eq!(WebtalkError::QueueFull(3).to_string(), "Queue full for user 3");
}

#[test]
fn salt_failure_creates_nobody() {
    let mut wt = Webtalk::with_salt_source(Box::new(|| None));
    let mut admin = Admin::new();
    assert_eq!(admin.cmd(&mut wt, "[newuser]"), r("[error] Salt generation failed"));
    assert_eq!(wt.user_count(), 0);
}

#[test]
fn os_salts_are_20_digits_and_differ() {
    let mut wt = Webtalk::new();
    let (_, a) = wt.create_user().unwrap();
    let (_, b) = wt.create_user().unwrap();
    for s in [&a, &b] {
        assert_eq!(s.len(), SALT_LEN);
        assert!(s.bytes().all(|c| c.is_ascii_digit()));
    }
    assert_ne!(a, b);
    assert!(!format!("{wt:?}").contains(&a), "salts stay out of Debug");
}

// ----- §4.5 browser side -----

#[test]
fn login_binds_silently_and_flushes_in_order() {
    let (mut wt, _) = setup(1);
    let mut out = Vec::new();
    wt.whisper(1, b"first", &mut out).unwrap();
    wt.shout(1, b"second", &mut out).unwrap();
    assert!(wt.on_open(3).is_empty());
    assert_eq!(wt.browser_of(1), None);
    let acts = wt.on_message(3, format!("1!{SALT1}").as_bytes(), true);
    assert_eq!(acts, vec![send(3, b"first", true), send(3, b"second", true)]);
    assert_eq!(wt.browser_of(1), Some(3));
    assert_eq!(wt.online_count(), 1);
    // Later messages, even a login, are discarded.
    assert!(wt.on_message(3, format!("1!{SALT1}").as_bytes(), true).is_empty());
    assert!(wt.on_message(3, b"junk", false).is_empty());
    assert_eq!(wt.browser_of(1), Some(3));
}

#[test]
fn login_replaces_an_older_browser() {
    let (mut wt, _) = setup(1);
    assert!(login(&mut wt, 1, 1).is_empty());
    assert_eq!(login(&mut wt, 2, 1), vec![close_action(1, 4002, "replaced")]);
    assert_eq!(wt.browser_of(1), Some(2));
    // The replaced browser's close does not unbind the new one.
    assert!(wt.on_close(1).is_empty());
    assert_eq!(wt.browser_of(1), Some(2));
    let mut out = Vec::new();
    wt.whisper(1, b"m", &mut out).unwrap();
    assert_eq!(out, vec![send(2, b"m", true)]);
}

#[test]
fn login_failures_close_only_the_new_socket() {
    let (mut wt, _) = setup(2);
    login(&mut wt, 100, 1);
    let good = format!("1!{SALT1}");
    let cases: Vec<(Vec<u8>, bool)> = vec![
        (b"no separator".to_vec(), true),
        (SALT1.as_bytes().to_vec(), true),
        (format!("x!{SALT1}").into_bytes(), true),
        (format!("!{SALT1}").into_bytes(), true),
        (format!("9!{SALT1}").into_bytes(), true),
        (b"1!00000000000000000000".to_vec(), true),
        // The other user's salt.
        (b"1!00000000000000000002".to_vec(), true),
        (format!("{good} ").into_bytes(), true),
        (format!(" {good}").into_bytes(), true),
        (format!("{good}\n").into_bytes(), true),
        (good.as_bytes()[..good.len() - 1].to_vec(), true),
        (Vec::new(), true),
        (good.as_bytes().to_vec(), false),
    ];
    for (i, (msg, text)) in cases.into_iter().enumerate() {
        let sid = 200 + i as SessionId;
        wt.on_open(sid);
        assert_eq!(
            wt.on_message(sid, &msg, text),
            vec![close_action(sid, 4001, "login failed")],
            "case {i}: {:?}",
            String::from_utf8_lossy(&msg)
        );
        // Its later messages are discarded, a correct login included.
        assert!(wt.on_message(sid, good.as_bytes(), true).is_empty());
        assert_eq!(wt.browser_of(1), Some(100));
        assert!(wt.on_close(sid).is_empty());
    }
    // Leading zeros in the id are accepted, as on the admin side.
    assert_eq!(
        {
            wt.on_open(300);
            wt.on_message(300, format!("01!{SALT1}").as_bytes(), true)
        },
        vec![close_action(100, 4002, "replaced")]
    );
}

#[test]
fn disconnect_keeps_the_user() {
    let (mut wt, mut admin) = setup(1);
    login(&mut wt, 1, 1);
    assert!(wt.on_close(1).is_empty());
    assert_eq!(wt.browser_of(1), None);
    assert_eq!(wt.user_count(), 1);
    let (_, acts) = admin.cmd_actions(&mut wt, "[whisper] 1!while away");
    assert!(acts.is_empty());
    assert_eq!(login(&mut wt, 2, 1), vec![send(2, b"while away", true)]);
    // Messages from a session never announced are treated as a login.
    assert_eq!(
        wt.on_message(3, b"bad", true),
        vec![close_action(3, 4001, "login failed")]
    );
}

// ----- randomized -----

use crate::dialect::wschat::tests::XorShift;

/// Splits a reply stream into bodies, asserting the framing is well formed.
fn reply_bodies(mut reply: &[u8]) -> Vec<Vec<u8>> {
    let mut bodies = Vec::new();
    while !reply.is_empty() {
        assert!(reply.len() >= 5, "short header");
        let len: usize = std::str::from_utf8(&reply[..5]).unwrap().parse().unwrap();
        assert!(reply[..5].iter().all(u8::is_ascii_digit));
        let body = &reply[5..5 + len];
        assert!(body.starts_with(b"[ok] ") || body.starts_with(b"[error] "));
        bodies.push(body.to_vec());
        reply = &reply[5 + len..];
    }
    bodies
}

#[test]
fn randomized_admin_frames_get_well_formed_replies() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut wt = webtalk();
    let mut admin = AdminSession::new(None);
    let cmds = [
        "newuser",
        "killuser",
        "whisper",
        "newchannel",
        "killchannel",
        "shout",
        "join",
        "leave",
        "store",
        "clear",
        "retrieve",
        "auth",
        "x",
        "",
    ];
    let datas = [
        "1", "2", "0", "1!2", "2!1", "3!hi", "x", "!", "", "99!x", "1!\u{e9}", "k!v",
    ];
    let mut browsers: Vec<SessionId> = Vec::new();
    let mut next_sid = 1;
    for _ in 0..10_000 {
        // Browsers come and go, trying random logins.
        if rng.below(8) == 0 {
            let sid = next_sid;
            next_sid += 1;
            wt.on_open(sid);
            let user = rng.below(wt.next_user as usize + 1) as UserId;
            let login = match wt.users.get(&user) {
                Some(u) if rng.below(2) == 0 => {
                    format!("{user}!{}", String::from_utf8_lossy(&u.salt))
                }
                _ => format!("{user}!{}", rng.next()),
            };
            for a in wt.on_message(sid, login.as_bytes(), true) {
                if let Action::Close { to, code, .. } = a {
                    assert!(code == 4001 || code == 4002);
                    browsers.retain(|&b| b != to);
                }
            }
            browsers.push(sid);
        }
        if !browsers.is_empty() && rng.below(10) == 0 {
            let sid = browsers.remove(rng.below(browsers.len()));
            assert!(wt.on_close(sid).is_empty());
        }
        let kind = rng.below(10);
        let mut frames = usize::from(kind >= 2);
        let mut bytes = match kind {
            // Raw noise, which usually breaks the framing.
            0 => (0..rng.below(16)).map(|_| rng.next() as u8).collect(),
            // A frame whose header lies about the length.
            1 => format!("{:05}[{}] {}", rng.below(30), rng.pick(&cmds), rng.pick(&datas)).into_bytes(),
            _ => frame(format!("[{}] {}", rng.pick(&cmds), rng.pick(&datas)).as_bytes()),
        };
        if rng.below(4) == 0 {
            bytes.extend(frame(format!("[{}]", rng.pick(&cmds)).as_bytes()));
            frames += 1;
        }
        let clean = !admin.is_mid_frame();
        let out = admin.feed(&bytes, &mut wt);
        let bodies = reply_bodies(&out.reply);
        if clean && kind >= 2 {
            // Well-formed frames on a clean stream: one reply each.
            assert_eq!(bodies.len(), frames, "{:?}", String::from_utf8_lossy(&bytes));
        }
        for a in &out.actions {
            match a {
                Action::Send { to, .. } => assert!(browsers.contains(to) || *to < next_sid),
                Action::Close { code, .. } => assert_eq!(*code, 4003),
                Action::Ping { .. } => panic!("no pings from webtalk"),
            }
        }
        if out.close {
            admin = AdminSession::new(None);
        } else if admin.is_mid_frame() && rng.below(3) == 0 {
            // The peer gives up mid-frame: no reply, a fresh connection.
            admin = AdminSession::new(None);
        } else {
            assert!(bodies.iter().all(|b| !b.ends_with(b"goodbye")));
        }
    }
    assert!(wt.user_count() > 0);
}

#[test]
fn state_can_be_shared_between_threads() {
    // The admin listener and the browser listener may run on different
    // threads around one `Mutex<Webtalk>`.
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&Webtalk::new());
    assert_send(&AdminSession::new(Some(b"s")));
}
