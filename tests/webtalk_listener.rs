//! The webtalk listeners over real sockets: the admin framing and commands
//! (PROTOCOLS.md §4.1-4.3), state and browser rules (§4.4, §4.5), the §4.6
//! transcript, a scenario with concurrent browsers, and hostile admin input.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;
use wsbroker::dialect::webtalk::admin::AdminSession;
use wsbroker::dialect::webtalk::{Webtalk, SALT_LEN};
use wsbroker::listeners::webtalk::{self, AdminConfig, WebtalkListener};
use wsbroker::listeners::{loopback, ListenerConfig};

fn admin_cfg() -> AdminConfig {
    AdminConfig {
        bind: loopback(0),
        ..AdminConfig::default()
    }
}

fn start() -> WebtalkListener {
    webtalk::start(ListenerConfig::new(loopback(0)), Some(admin_cfg())).expect("start")
}

/// A listener whose salts are all zeros, for exact replies.
fn start_zero_salts() -> WebtalkListener {
    webtalk::start_with(ListenerConfig::new(loopback(0)), Some(admin_cfg()), fixed_salts(&[])).expect("start")
}

fn admin(l: &WebtalkListener) -> Admin {
    Admin::connect(l.admin_addr().expect("admin listener"))
}

/// A salt source giving `salts` in turn, then `0…0`.
fn fixed_salts(salts: &[&str]) -> Webtalk {
    let mut queue: Vec<[u8; SALT_LEN]> = salts
        .iter()
        .rev()
        .map(|s| s.as_bytes().try_into().expect("20 digits"))
        .collect();
    Webtalk::with_salt_source(Box::new(move || Some(queue.pop().unwrap_or([b'0'; SALT_LEN]))))
}

/// `ID!SALT` from a `[newuser]` reply.
fn new_user(a: &mut Admin) -> String {
    let r = a.cmd_text("[newuser]");
    let login = r.strip_prefix(&format!("{:05}[ok] ", r.len() - 5)).expect("ok reply");
    let (id, salt) = login.split_once('!').expect("ID!SALT");
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(salt.len(), 20);
    assert!(salt.bytes().all(|b| b.is_ascii_digit()));
    login.to_owned()
}

fn id_of(login: &str) -> &str {
    login.split_once('!').unwrap().0
}

fn browser(l: &WebtalkListener, login: &str) -> Ws {
    let mut ws = connect(l.local_addr());
    send(&mut ws, login);
    ws
}

fn ok(text: &str) -> String {
    format!("{:05}[ok] {text}", text.len() + 5)
}

fn err(text: &str) -> String {
    format!("{:05}[error] {text}", text.len() + 8)
}

/// Waits until the listener has bound `n` browsers (a login sends nothing
/// back, so there is no reply to wait for).
fn wait_online(l: &WebtalkListener, n: u64) {
    let deadline = Instant::now() + WAIT;
    while l.stats().browsers.names != n {
        assert!(
            Instant::now() < deadline,
            "{} browsers online, want {n}",
            l.stats().browsers.names
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn transcript_section_4_6() {
    let l = webtalk::start_with(
        ListenerConfig::new(loopback(0)),
        Some(admin_cfg()),
        fixed_salts(&["40381957220467715836"]),
    )
    .unwrap();
    let mut a = admin(&l);
    a.write(b"00009[newuser]");
    assert_eq!(a.read_reply().unwrap(), b"00027[ok] 1!40381957220467715836");
    let mut b = browser(&l, "1!40381957220467715836");
    wait_online(&l, 1);
    let steps: &[(&str, &str)] = &[
        ("00019[whisper] 1!hello!x", "00017[ok] message sent"),
        ("00018[whisper] 1!héllo", "00017[ok] message sent"),
        ("00012[newchannel]", "00006[ok] 2"),
        ("00010[join] 2!1", "00016[ok] user joined"),
        ("00020[shout] 2!{\"t\":\"hi\"}", "00017[ok] message sent"),
        ("00011[leave] 2!1", "00016[ok] user leaved"),
        ("00018[store] color!blue", "00017[ok] stored color"),
        ("00016[retrieve] color", "00009[ok] blue"),
        ("00015[whisper] 99!hi", "00024[error] Unknown User: 99"),
        ("00014[whisper] x!hi", "00023[error] Invalid User: x"),
        ("00015[killchannel] 1", "00038[error] Cannot kill the global channel"),
        ("00005[foo]", "00028[error] Invalid command: foo"),
        ("00012[killuser] 1", "00016[ok] user killed"),
    ];
    for (frame, reply) in steps {
        a.write(frame.as_bytes());
        assert_eq!(String::from_utf8(a.read_reply().unwrap()).unwrap(), *reply, "{frame}");
    }
    assert_eq!(recv_text(&mut b), "hello!x");
    assert_eq!(recv_text(&mut b), "héllo");
    assert_eq!(recv_text(&mut b), r#"{"t":"hi"}"#);
    assert_eq!(recv_close(&mut b), (4003, "user killed".into()));
    a.write(b"00000");
    assert_eq!(a.read_reply().unwrap(), b"00012[ok] goodbye");
    assert!(a.is_closed());
}

#[test]
fn framing_errors_reply_then_close() {
    let l = start_zero_salts();
    let cases: &[(&[u8], &str)] = &[
        (b"abcde", "00033[error] Invalid Frame Size: abcde"),
        (b"-0001", "00033[error] Invalid Frame Size: -0001"),
        (b"+0012[newuser]", "00033[error] Invalid Frame Size: +0012"),
        (b"0001 [x]", "00033[error] Invalid Frame Size: 0001 "),
        (b"00003abc", "00040[error] Invalid Frame: [ brace not found"),
        (b"00000", "00012[ok] goodbye"),
        (b"00003[ab", "00040[error] Invalid Frame: ] brace not found"),
        (b"00001[", "00040[error] Invalid Frame: ] brace not found"),
        (b"00009newuser]]", "00040[error] Invalid Frame: [ brace not found"),
    ];
    for (input, reply) in cases {
        let mut a = admin(&l);
        a.write(input);
        assert_eq!(String::from_utf8(a.read_reply().unwrap()).unwrap(), *reply);
        assert!(a.is_closed(), "closed after {:?}", String::from_utf8_lossy(input));
    }
    // Frames after the failing one in the same write get nothing.
    let mut a = admin(&l);
    a.write(b"00009[newuser]abcde00009[newuser]");
    assert_eq!(a.read_reply().unwrap(), b"00027[ok] 1!00000000000000000000");
    assert_eq!(a.read_reply().unwrap(), b"00033[error] Invalid Frame Size: abcde");
    assert!(a.is_closed());
    // The listener keeps serving.
    assert_eq!(admin(&l).cmd_text("[newchannel]"), ok("2"));
}

#[test]
fn partial_reads_pipelining_and_byte_counts() {
    let l = start();
    let mut a = admin(&l);
    // Header and body split across many writes, byte by byte.
    for b in b"00018[store] k!h\xc3\xa9llo-!" {
        a.write(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.read_reply().unwrap(), b"00013[ok] stored k");
    assert_eq!(a.cmd_text("[retrieve] k"), ok("héllo-!"));
    // Several frames in one write, answered in order.
    let mut batch = Vec::new();
    for body in [
        "[newchannel]",
        "[retrieve] k",
        "[clear] k",
        "[retrieve] k",
        "[bad]",
        "[newchannel] x",
    ] {
        batch.extend(frame(body.as_bytes()));
    }
    a.write(&batch);
    for want in [
        ok("2"),
        ok("héllo-!"),
        ok("cleared k"),
        ok(""),
        err("Invalid command: bad"),
        ok("3"),
    ] {
        assert_eq!(String::from_utf8(a.read_reply().unwrap()).unwrap(), want);
    }
    // The byte after `]` is skipped whatever it is; nothing is trimmed.
    assert_eq!(a.cmd_text("[store]Xa!b"), ok("stored a"));
    assert_eq!(a.cmd_text("[retrieve]-a"), ok("b"));
    assert_eq!(a.cmd_text("[store]  a ! b "), ok("stored  a "));
    assert_eq!(a.cmd_text("[retrieve]  a "), ok(" b "));
    assert_eq!(a.cmd_text("[retrieve]"), ok(""));
    // Commands are case-sensitive and run to the first `]`.
    assert_eq!(a.cmd_text("[NewUser]"), err("Invalid command: NewUser"));
    assert_eq!(a.cmd_text("[new]user]"), err("Invalid command: new"));
    assert_eq!(a.cmd_text("[]"), err("Invalid command: "));
    // Echoed text is cut so the reply body stays within 99999 bytes.
    let key = "k".repeat(99_990);
    let reply = a.cmd(format!("[store] {key}!").as_bytes());
    assert_eq!(&reply[..5], b"99999");
    assert_eq!(reply.len(), 5 + 99_999);
    assert!(reply[5..].starts_with(b"[ok] stored kkk"));
}

#[test]
fn peer_closing_mid_frame_gets_nothing_and_the_listener_keeps_serving() {
    let l = start();
    for partial in [&b"000"[..], b"00012[newch", b"99999", b"99999[store] x!"] {
        let mut a = admin(&l);
        a.write(partial);
        a.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(a.read_reply().is_none(), "{:?}", String::from_utf8_lossy(partial));
    }
    let mut a = admin(&l);
    assert_eq!(a.cmd_text("[newchannel]"), ok("2"));
    let deadline = Instant::now() + WAIT;
    while l.stats().admin_connections != 1 {
        assert!(Instant::now() < deadline, "{:?}", l.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn commands_and_errors_in_check_order() {
    let l = start();
    let mut a = admin(&l);
    let u1 = new_user(&mut a);
    assert_eq!(id_of(&u1), "1");
    // Data sent with newuser/newchannel is ignored; ids count up.
    let u2 = new_user(&mut a);
    assert_eq!(id_of(&u2), "2");
    assert_ne!(u1.split_once('!').unwrap().1, u2.split_once('!').unwrap().1);
    assert_eq!(a.cmd_text("[newchannel] 77"), ok("2"));
    assert_eq!(a.cmd_text("[newchannel]"), ok("3"));

    let table: &[(&str, String)] = &[
        // killuser
        ("[killuser] abc", err("Invalid User: abc")),
        ("[killuser] ", err("Invalid User: ")),
        ("[killuser] -1", err("Invalid User: -1")),
        (
            "[killuser] 18446744073709551616",
            err("Invalid User: 18446744073709551616"),
        ),
        ("[killuser] 0099", err("Unknown User: 99")),
        // whisper
        ("[whisper] 1", err("User separator not found (!)")),
        ("[whisper] 1x!hi", err("Invalid User: 1x")),
        ("[whisper] !hi", err("Invalid User: ")),
        ("[whisper] 00099!hi", err("Unknown User: 99")),
        ("[whisper] 001!a!b", ok("message sent")),
        // killchannel
        ("[killchannel] x", err("Invalid Channel: x")),
        ("[killchannel] 0001", err("Cannot kill the global channel")),
        ("[killchannel] 9", err("Unknown Channel: 9")),
        ("[killchannel] 3", ok("channel killed")),
        ("[killchannel] 3", err("Unknown Channel: 3")),
        // shout
        ("[shout] 2", err("Channel separator not found (!)")),
        ("[shout] two!x", err("Invalid Channel: two")),
        ("[shout] 3!x", err("Unknown Channel: 3")),
        ("[shout] 2!to nobody", ok("message sent")),
        // join / leave
        ("[join] 2", err("Channel/User separator not found (!)")),
        ("[join] x!y", err("Invalid Channel: x")),
        ("[join] 2!y", err("Invalid User: y")),
        ("[join] 99!99", err("Unknown Channel: 99")),
        ("[join] 2!99", err("Unknown User: 99")),
        ("[join] 2!1", ok("user joined")),
        ("[join] 02!01", ok("user joined")),
        ("[leave] 2", err("Channel/User separator not found (!)")),
        ("[leave] x!y", err("Invalid Channel: x")),
        ("[leave] 2!y", err("Invalid User: y")),
        ("[leave] 99!1", err("Unknown Channel: 99")),
        ("[leave] 2!99", err("Unknown User: 99")),
        ("[leave] 2!2", ok("user leaved")),
        // store / clear / retrieve
        ("[store] novalue", err("Data separator not found (!)")),
        ("[store] k!v!w", ok("stored k")),
        ("[retrieve] k", ok("v!w")),
        ("[store] k!", ok("stored k")),
        ("[retrieve] k", ok("")),
        ("[clear] nothing", ok("cleared nothing")),
        ("[clear] k", ok("cleared k")),
        ("[retrieve] k", ok("")),
        // auth without a secret, unknown commands
        ("[auth] anything", ok("authenticated")),
        ("[whisper1] 1!x", err("Invalid command: whisper1")),
    ];
    for (body, want) in table {
        assert_eq!(a.cmd_text(body), *want, "{body}");
    }
    // The whisper with leading zeros and a second `!` was queued as `a!b`;
    // user 1 joined channel 2 once, so the shout after login arrives once.
    let mut b = browser(&l, &u1);
    assert_eq!(recv_text(&mut b), "a!b");
    assert_eq!(a.cmd_text("[shout] 2!s"), ok("message sent"));
    assert_eq!(recv_text(&mut b), "s");
    // Killing a user forgets it.
    assert_eq!(a.cmd_text("[killuser] 1"), ok("user killed"));
    assert_eq!(recv_close(&mut b), (4003, "user killed".into()));
    assert_eq!(a.cmd_text("[killuser] 1"), err("Unknown User: 1"));
    assert_eq!(a.cmd_text("[whisper] 1!x"), err("Unknown User: 1"));
    assert_eq!(a.cmd_text("[shout] 2!x"), ok("message sent"));
    assert_eq!(a.cmd_text("[join] 1!1"), err("Unknown User: 1"));
    // Ids are never reused.
    assert_eq!(id_of(&new_user(&mut a)), "3");
    assert_eq!(a.cmd_text("[newchannel]"), ok("4"));
    let st = l.stats();
    assert_eq!((st.users, st.channels), (2, 3));
}

#[test]
fn secret_authentication() {
    let cfg = AdminConfig {
        secret: Some(b"s3cret".to_vec()),
        ..admin_cfg()
    };
    let l = webtalk::start(ListenerConfig::new(loopback(0)), Some(cfg)).unwrap();
    let mut a = admin(&l);
    assert_eq!(a.cmd(b"[auth] s3cret"), b"00018[ok] authenticated");
    assert_eq!(a.cmd_text("[newchannel]"), ok("2"));
    for first in [
        "[newchannel]",
        "[auth] wrong",
        "[auth] s3cret ",
        "[auth]",
        "[Auth] s3cret",
    ] {
        let mut a = admin(&l);
        assert_eq!(a.cmd(first.as_bytes()), b"00025[error] Not authenticated", "{first}");
        assert!(a.is_closed());
    }
    // Framing errors and goodbye keep their replies.
    let mut a = admin(&l);
    a.write(b"abcde");
    assert_eq!(a.read_reply().unwrap(), b"00033[error] Invalid Frame Size: abcde");
    let mut a = admin(&l);
    a.write(b"00000");
    assert_eq!(a.read_reply().unwrap(), b"00012[ok] goodbye");
    // Nothing ran for the refused connections.
    assert_eq!(l.stats().channels, 2);
}

#[test]
fn admin_binds_loopback_by_default() {
    let cfg = AdminConfig::default();
    assert_eq!(cfg.bind, "127.0.0.1:12344".parse::<SocketAddr>().unwrap());
    assert!(cfg.secret.is_none());
    assert_eq!(webtalk::DEFAULT_BIND, "127.0.0.1:12345".parse::<SocketAddr>().unwrap());
}

#[test]
fn browser_login_rules() {
    let l = start();
    let mut a = admin(&l);
    let u1 = new_user(&mut a);
    let (id, salt) = u1.split_once('!').unwrap();
    // Offline queue: delivered at login, in order, before newer messages.
    for i in 0..5 {
        assert_eq!(a.cmd_text(&format!("[whisper] 1!q{i}")), ok("message sent"));
    }
    assert_eq!(a.cmd_text("[shout] 1!q5"), ok("message sent"));
    assert_eq!(l.stats().queued, 6);
    let mut b1 = browser(&l, &u1);
    assert_eq!(a.cmd_text("[whisper] 1!new"), ok("message sent"));
    for i in 0..6 {
        assert_eq!(recv_text(&mut b1), format!("q{i}"));
    }
    assert_eq!(recv_text(&mut b1), "new");
    assert_eq!(l.stats().queued, 0);

    // Failed logins close only the new socket with 4001.
    let mut wrong_salt = salt.to_owned().into_bytes();
    wrong_salt[19] = if wrong_salt[19] == b'0' { b'1' } else { b'0' };
    let bad: Vec<String> = vec![
        format!("{id}!{}", String::from_utf8(wrong_salt).unwrap()),
        format!("{id}!{salt} "),
        format!(" {id}!{salt}"),
        format!("{id}{salt}"),
        format!("x!{salt}"),
        format!("99!{salt}"),
        format!("{id}!"),
        String::new(),
    ];
    for login in &bad {
        let mut b = browser(&l, login);
        assert_eq!(recv_close(&mut b), (4001, "login failed".into()), "{login:?}");
    }
    let mut b = connect(l.local_addr());
    send_binary(&mut b, u1.as_bytes());
    assert_eq!(recv_close(&mut b), (4001, "login failed".into()));
    // The bound browser was not kicked, and later messages it sends are
    // discarded.
    send(&mut b1, "ignored");
    send(&mut b1, &u1);
    send_binary(&mut b1, b"ignored");
    assert_eq!(a.cmd_text("[whisper] 1!still here"), ok("message sent"));
    assert_eq!(recv_text(&mut b1), "still here");

    // Payloads go as they are: binary when not UTF-8.
    assert_eq!(a.cmd(b"[whisper] 1!\xff\x00bin"), ok("message sent").into_bytes());
    assert_eq!(recv(&mut b1), Message::binary(b"\xff\x00bin".to_vec()));
    assert_eq!(a.cmd_text("[whisper] 1!"), ok("message sent"));
    assert_eq!(recv_text(&mut b1), "");

    // A correct login on a new socket replaces the old one with 4002.
    let mut b2 = browser(&l, &u1);
    assert_eq!(recv_close(&mut b1), (4002, "replaced".into()));
    assert_eq!(a.cmd_text("[whisper] 1!to b2"), ok("message sent"));
    assert_eq!(recv_text(&mut b2), "to b2");

    // After a disconnect the user stays known and logs in again.
    drop(b2);
    wait_online(&l, 0);
    assert_eq!(a.cmd_text("[whisper] 1!while away"), ok("message sent"));
    let mut b3 = browser(&l, &u1);
    assert_eq!(recv_text(&mut b3), "while away");
}

#[test]
fn offline_queue_limits() {
    let l = start();
    let mut a = admin(&l);
    let u1 = new_user(&mut a);
    let u2 = new_user(&mut a);
    // 1000 messages fill user 1's queue.
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(frame(format!("[whisper] 1!m{i}").as_bytes()));
    }
    a.write(&batch);
    for _ in 0..1000 {
        assert_eq!(String::from_utf8(a.read_reply().unwrap()).unwrap(), ok("message sent"));
    }
    assert_eq!(a.cmd_text("[whisper] 1!over"), err("Queue full for user 1"));
    // A shout still reaches the others and names the first full member.
    assert_eq!(a.cmd_text("[shout] 1!all"), err("Queue full for user 1"));
    let mut b2 = browser(&l, &u2);
    assert_eq!(recv_text(&mut b2), "all");
    let mut b1 = browser(&l, &u1);
    for i in 0..1000 {
        assert_eq!(recv_text(&mut b1), format!("m{i}"));
    }
    assert_eq!(a.cmd_text("[whisper] 1!after"), ok("message sent"));
    assert_eq!(recv_text(&mut b1), "after");
    // 1 MiB of payload fills a queue too.
    let u3 = new_user(&mut a);
    let big = "x".repeat(99_000);
    for _ in 0..10 {
        assert_eq!(a.cmd_text(&format!("[whisper] 3!{big}")), ok("message sent"));
    }
    let rest = (1 << 20) - 10 * 99_000;
    assert_eq!(
        a.cmd_text(&format!("[whisper] 3!{}", "y".repeat(rest + 1))),
        err("Queue full for user 3")
    );
    assert_eq!(
        a.cmd_text(&format!("[whisper] 3!{}", "y".repeat(rest))),
        ok("message sent")
    );
    assert_eq!(a.cmd_text("[whisper] 3!z"), err("Queue full for user 3"));
    drop(u3);
}

#[test]
fn scenario_backend_drives_concurrent_browsers() {
    let l = start();
    let mut a = admin(&l);
    const USERS: usize = 20;
    let logins: Vec<String> = (0..USERS).map(|_| new_user(&mut a)).collect();
    assert_eq!(a.cmd_text("[newchannel]"), ok("2"));
    for i in (0..USERS).step_by(2) {
        assert_eq!(a.cmd_text(&format!("[join] 2!{}", i + 1)), ok("user joined"));
    }
    // Browsers log in from their own threads while the backend keeps
    // whispering and shouting; each must see its own whispers in order, and
    // every shout it was meant to get, queued or live.
    let addr = l.local_addr();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = logins
        .iter()
        .enumerate()
        .map(|(i, login)| {
            let login = login.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis((i * 3) as u64));
                let mut ws = connect(addr);
                send(&mut ws, &login);
                let mut got = Vec::new();
                loop {
                    let t = recv_text(&mut ws);
                    if t == "end" {
                        break;
                    }
                    got.push(t);
                }
                seen.lock().unwrap().push((i, got));
            })
        })
        .collect();
    for round in 0..30 {
        for u in 1..=USERS {
            assert_eq!(a.cmd_text(&format!("[whisper] {u}!w{round}")), ok("message sent"));
        }
        assert_eq!(a.cmd_text(&format!("[shout] 2!s{round}")), ok("message sent"));
        assert_eq!(a.cmd_text(&format!("[shout] 1!g{round}")), ok("message sent"));
    }
    assert_eq!(a.cmd_text("[shout] 1!end"), ok("message sent"));
    for t in threads {
        t.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), USERS);
    for (i, got) in seen.iter() {
        let mut want = Vec::new();
        for round in 0..30 {
            want.push(format!("w{round}"));
            if i % 2 == 0 {
                want.push(format!("s{round}"));
            }
            want.push(format!("g{round}"));
        }
        assert_eq!(got, &want, "browser {i}");
    }
}

#[test]
fn socketless_handle_drives_the_same_state() {
    let l = start();
    let h = l.handle().clone();
    let (id, salt) = h.create_user().unwrap();
    assert_eq!(id, 1);
    let chan = h.create_channel();
    assert_eq!(chan, 2);
    h.join(chan, id).unwrap();
    h.store(b"k", b"v");
    let mut b = browser(&l, &format!("{id}!{salt}"));
    // From another thread, as a C host would.
    let h2 = h.clone();
    std::thread::spawn(move || {
        h2.whisper(1, b"hi").unwrap();
        h2.shout(2, b"all").unwrap();
    })
    .join()
    .unwrap();
    assert_eq!(recv_text(&mut b), "hi");
    assert_eq!(recv_text(&mut b), "all");
    assert_eq!(h.retrieve(b"k").as_deref(), Some(&b"v"[..]));
    h.clear(b"k");
    assert_eq!(h.retrieve(b"k"), None);
    h.leave(chan, id).unwrap();
    assert_eq!(h.whisper(9, b"x").unwrap_err().to_string(), "Unknown User: 9");
    assert_eq!(
        h.kill_channel(1).unwrap_err().to_string(),
        "Cannot kill the global channel"
    );
    let r = h.execute(b"whisper", b"1!via execute");
    assert_eq!(r.encode(), ok("message sent").into_bytes());
    assert_eq!(recv_text(&mut b), "via execute");
    // The admin socket sees the same namespace.
    let mut a = admin(&l);
    assert_eq!(a.cmd_text("[newchannel]"), ok("3"));
    h.kill_user(1).unwrap();
    assert_eq!(recv_close(&mut b), (4003, "user killed".into()));
    // Without an admin listener the handle still works.
    let l2 = webtalk::start(ListenerConfig::new(loopback(0)), None).unwrap();
    assert!(l2.admin_addr().is_none());
    assert_eq!(l2.handle().create_user().unwrap().0, 1);
}

#[test]
fn ten_thousand_random_admin_frames_match_the_dialect() {
    // The listener and an in-process model start from the same state and
    // salts; every reply over the socket must equal the model's.
    let salts = || {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            let s = format!("{n:020}");
            s.as_bytes().try_into().ok()
        }) as Box<dyn FnMut() -> Option<[u8; SALT_LEN]> + Send>
    };
    let l = webtalk::start_with(
        ListenerConfig::new(loopback(0)),
        Some(admin_cfg()),
        Webtalk::with_salt_source(salts()),
    )
    .unwrap();
    let mut model = Webtalk::with_salt_source(salts());
    let mut rng = Rng(0x5eed_1234_abcd_0001);
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
        "bogus",
        "",
    ];
    let mut a = admin(&l);
    let mut session = AdminSession::new(None);
    let (mut closes, mut errors) = (0, 0);
    for i in 0..10_000 {
        let input = random_frame(&mut rng, &cmds);
        let want = session.feed(&input, &mut model);
        // Split the frame across up to three writes.
        let cut1 = rng.below(input.len() + 1);
        let cut2 = cut1 + rng.below(input.len() - cut1 + 1);
        for part in [&input[..cut1], &input[cut1..cut2], &input[cut2..]] {
            if !part.is_empty() {
                a.write(part);
            }
        }
        let got = a
            .read_reply()
            .unwrap_or_else(|| panic!("no reply to frame {i}: {input:?}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want.reply),
            "frame {i}: {:?}",
            String::from_utf8_lossy(&input)
        );
        if got[5..].starts_with(b"[error]") {
            errors += 1;
        }
        if want.close {
            assert!(a.is_closed(), "frame {i} should close");
            closes += 1;
            a = admin(&l);
            session = AdminSession::new(None);
        }
    }
    assert!(closes > 100 && errors > 1000, "closes {closes}, errors {errors}");
    // Still serving browsers and admins.
    let login = new_user(&mut a);
    let mut b = browser(&l, &login);
    assert_eq!(
        a.cmd_text(&format!("[whisper] {}!alive", id_of(&login))),
        ok("message sent")
    );
    assert_eq!(recv_text(&mut b), "alive");
}

/// A frame that is usually well formed, sometimes not: valid commands with
/// small or hostile ids and data, wrong headers, missing braces, goodbye.
fn random_frame(rng: &mut Rng, cmds: &[&str]) -> Vec<u8> {
    let kind = rng.below(100);
    if kind < 2 {
        let junk: Vec<u8> = (0..5).map(|_| b"0123456789-+ ax"[rng.below(15)]).collect();
        if junk.iter().all(u8::is_ascii_digit) {
            return b"x0000".to_vec();
        }
        return junk;
    }
    if kind < 3 {
        return b"00000".to_vec();
    }
    let mut body = Vec::new();
    if kind < 5 {
        // Any bytes, but not starting with `[`.
        body.push(b'x' + (rng.below(2) as u8));
        body.extend((0..rng.below(20)).map(|_| (rng.next() & 0xff) as u8));
        return frame(&body);
    }
    if kind < 7 {
        body.push(b'[');
        body.extend((0..rng.below(20)).map(|_| b"abc!1 \xc3\xa9"[rng.below(8)]));
        return frame(&body);
    }
    let cmd = cmds[rng.below(cmds.len())];
    body.push(b'[');
    body.extend_from_slice(cmd.as_bytes());
    body.push(b']');
    if rng.below(10) > 0 {
        body.push(if rng.below(4) == 0 { b'#' } else { b' ' });
    }
    let id = |rng: &mut Rng| -> String {
        match rng.below(10) {
            0 => "x".into(),
            1 => String::new(),
            2 => "18446744073709551616".into(),
            3 => format!("000{}", rng.below(5)),
            _ => rng.below(8).to_string(),
        }
    };
    let a = id(rng);
    let b = id(rng);
    let sep = if rng.below(12) == 0 { "" } else { "!" };
    let data = match rng.below(4) {
        0 => a.clone(),
        1 => format!("{a}{sep}{b}"),
        2 => format!("{a}{sep}msg é {}", rng.next()),
        _ => format!("{a}{sep}{b}!{}", "z".repeat(rng.below(300))),
    };
    body.extend_from_slice(data.as_bytes());
    if rng.below(50) == 0 {
        body.push(0xff);
    }
    frame(&body)
}

#[test]
fn backend_that_announces_99999_then_closes() {
    let l = start();
    for _ in 0..20 {
        let mut a = admin(&l);
        a.write(b"99999[whisper] 1!");
        drop(a);
    }
    let mut a = admin(&l);
    assert_eq!(a.cmd_text("[newchannel]"), ok("2"));
    let deadline = Instant::now() + WAIT;
    while l.stats().admin_connections != 1 {
        assert!(Instant::now() < deadline, "{:?}", l.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(l.stats().admin_connections_total, 21);
}

#[test]
fn connection_limit_and_shutdown() {
    let cfg = AdminConfig {
        max_connections: 2,
        ..admin_cfg()
    };
    let l = webtalk::start(ListenerConfig::new(loopback(0)), Some(cfg)).unwrap();
    let mut a1 = admin(&l);
    let mut a2 = admin(&l);
    assert_eq!(a1.cmd_text("[newchannel]"), ok("2"));
    assert_eq!(a2.cmd_text("[newchannel]"), ok("3"));
    let mut a3 = admin(&l);
    a3.write(b"00012[newchannel]");
    assert!(a3.read_reply().is_none(), "over the limit: closed without a reply");
    let login = new_user(&mut a1);
    let mut b = browser(&l, &login);
    wait_online(&l, 1);
    let st = l.stats();
    assert_eq!(
        (st.browsers.sessions, st.browsers.names, st.admin_connections),
        (1, 1, 2)
    );
    assert!(st.admin_frames >= 3, "{st:?}");
    let t = std::thread::spawn(move || l.shutdown());
    assert_eq!(recv_close(&mut b).0, 1001);
    assert!(a1.read_reply().is_none());
    assert!(a2.read_reply().is_none());
    t.join().unwrap();
}

#[test]
fn browser_messages_over_the_limit_close_1009() {
    let l = webtalk::start(
        ListenerConfig::new(loopback(0)).max_message_size(1000),
        Some(admin_cfg()),
    )
    .unwrap();
    let mut a = admin(&l);
    let login = new_user(&mut a);
    let mut b = browser(&l, &login);
    send(&mut b, &"x".repeat(1000));
    assert_eq!(
        a.cmd_text(&format!("[whisper] {}!fine", id_of(&login))),
        ok("message sent")
    );
    assert_eq!(recv_text(&mut b), "fine");
    send(&mut b, &"x".repeat(1001));
    assert_eq!(recv_close(&mut b).0, 1009);
    // A login over the default 64 KiB is refused the same way.
    let l = start();
    let mut b = connect(l.local_addr());
    send(&mut b, &"1".repeat(65_537));
    assert_eq!(recv_close(&mut b).0, 1009);
}
