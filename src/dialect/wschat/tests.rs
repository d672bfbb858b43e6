use super::*;
use serde_json::Value;

/// Actions as `(to, text)` pairs; every WSChat output is a text frame.
fn sends(actions: Vec<Action>) -> Vec<(SessionId, String)> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Send { to, data, text } => {
                assert!(text, "WSChat sends text frames only");
                (to, String::from_utf8(data.to_vec()).expect("UTF-8 output"))
            }
            other => panic!("unexpected action {other:?}"),
        })
        .collect()
}

fn fail(message: &str, code: u16) -> String {
    format!(r#"{{"type":"outcome","success":false,"message":"{message}","code":{code}}}"#)
}

const OK: &str = r#"{"type":"outcome","success":true,"message":"Identified successfully!","code":300}"#;

fn send(chat: &mut WsChat, sid: SessionId, msg: &str) -> Vec<(SessionId, String)> {
    sends(chat.on_message(sid, msg.as_bytes(), true))
}

/// A chat with sessions 1..=n open and identified as the given names.
fn chat_with(names: &[&str]) -> WsChat {
    let mut chat = WsChat::new();
    for (i, name) in names.iter().enumerate() {
        let sid = i as SessionId + 1;
        chat.on_open(sid);
        let r = send(&mut chat, sid, &format!(r#"{{"command":"identify","name":"{name}"}}"#));
        assert_eq!(r, vec![(sid, OK.to_string())]);
    }
    chat
}

#[test]
fn open_sends_init_with_the_typo() {
    let mut chat = WsChat::new();
    assert_eq!(
        sends(chat.on_open(7)),
        vec![(
            7,
            r#"{"type":"init","message":"Please identify to recieve messages."}"#.to_string()
        )]
    );
}

#[test]
fn row1_invalid_input() {
    let mut chat = chat_with(&["alice"]);
    let want = vec![(1, fail("Invalid message: expected a JSON object!", 400))];
    for bad in ["", "not json", "[1,2]", "\"s\"", "12", "null", "{", r#"{"a":1}x"#] {
        assert_eq!(send(&mut chat, 1, bad), want, "input {bad:?}");
    }
    // A binary frame is invalid even when it holds a valid object.
    assert_eq!(
        sends(chat.on_message(1, br#"{"command":"identify","name":"x"}"#, false)),
        want
    );
    // Invalid UTF-8 and nesting past the parser's limit are invalid JSON.
    assert_eq!(sends(chat.on_message(1, b"{\"a\":\"\xff\"}", true)), want);
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let deep = format!(r#"{{"command":"broadcast","message":{deep}}}"#);
    assert_eq!(send(&mut chat, 1, &deep), want);
    // The connection stays usable: identification state is kept.
    assert_eq!(chat.name_of(1), Some("alice"));
}

#[test]
fn row2_missing_command() {
    let mut chat = WsChat::new();
    chat.on_open(1);
    assert_eq!(
        send(&mut chat, 1, r#"{"name":"alice"}"#),
        vec![(1, fail("Missing 'command' field!", 400))]
    );
}

#[test]
fn row3_missing_name() {
    let mut chat = WsChat::new();
    chat.on_open(1);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"identify"}"#),
        vec![(1, fail("Missing 'name' field!", 400))]
    );
}

#[test]
fn row4_invalid_name() {
    let mut chat = WsChat::new();
    chat.on_open(1);
    let long = "é".repeat(257);
    for name in ["1", "null", "\"\"", "[\"a\"]", "{}", "true", &format!("\"{long}\"")] {
        assert_eq!(
            send(&mut chat, 1, &format!(r#"{{"command":"identify","name":{name}}}"#)),
            vec![(1, fail("Invalid 'name' field!", 400))],
            "name {name}"
        );
    }
    // 256 characters (512 bytes) is still allowed.
    let max = "é".repeat(256);
    assert_eq!(
        send(&mut chat, 1, &format!(r#"{{"command":"identify","name":"{max}"}}"#)),
        vec![(1, OK.to_string())]
    );
}

#[test]
fn row5_name_taken_or_own() {
    let mut chat = chat_with(&["alice"]);
    chat.on_open(2);
    let taken = vec![(2, fail("Client with that name already exists!", 305))];
    assert_eq!(send(&mut chat, 2, r#"{"command":"identify","name":"alice"}"#), taken);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"identify","name":"alice"}"#),
        vec![(1, fail("Client with that name already exists!", 305))]
    );
    assert_eq!(chat.identified_count(), 1);
}

#[test]
fn row6_identify_and_reidentify_releases_old_name() {
    let mut chat = chat_with(&["alice", "bob"]);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"identify","name":"carol"}"#),
        vec![(1, OK.to_string())]
    );
    // No quit for the released name, and it is free again.
    assert_eq!(chat.name_of(1), Some("carol"));
    assert_eq!(chat.identified_count(), 2);
    chat.on_open(3);
    assert_eq!(
        send(&mut chat, 3, r#"{"command":"identify","name":"alice"}"#),
        vec![(3, OK.to_string())]
    );
    // Messages to the old name no longer reach session 1.
    assert_eq!(
        send(&mut chat, 2, r#"{"command":"message","to":"alice","message":1}"#),
        vec![(3, r#"{"type":"message","from":"bob","message":1}"#.to_string())]
    );
}

#[test]
fn row7_not_identified() {
    let mut chat = WsChat::new();
    chat.on_open(1);
    let want = vec![(1, fail("Please identify yourself!", 10))];
    for cmd in [
        r#"{"command":"broadcast","message":"hi"}"#,
        r#"{"command":"broadcast"}"#,
        r#"{"command":"message","to":"x","message":1}"#,
        r#"{"command":"message"}"#,
        r#"{"command":"nope"}"#,
        r#"{"command":5}"#,
        r#"{"command":null}"#,
        r#"{"command":"IDENTIFY","name":"a"}"#,
    ] {
        assert_eq!(send(&mut chat, 1, cmd), want, "{cmd}");
    }
}

#[test]
fn row8_broadcast_missing_message() {
    let mut chat = chat_with(&["alice", "bob"]);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"broadcast","msg":"x"}"#),
        vec![(1, fail("Missing 'message' field!", 400))]
    );
}

#[test]
fn row9_broadcast_reaches_other_identified_only() {
    let mut chat = chat_with(&["alice", "bob", "carol"]);
    chat.on_open(4); // never identifies
    let actions = chat.on_message(2, br#"{"command":"broadcast","message":null}"#, true);
    // Formatted once: every recipient shares the same bytes.
    let ptrs: Vec<_> = actions
        .iter()
        .map(|a| match a {
            Action::Send { data, .. } => data.as_ptr(),
            _ => std::ptr::null(),
        })
        .collect();
    assert!(ptrs.windows(2).all(|w| w[0] == w[1]));
    let m = r#"{"type":"broadcast","from":"bob","message":null}"#.to_string();
    assert_eq!(sends(actions), vec![(1, m.clone()), (3, m)]);
}

#[test]
fn row10_message_missing_fields_in_order() {
    let mut chat = chat_with(&["alice", "bob"]);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"message"}"#),
        vec![(1, fail("Missing 'message' field!", 400))]
    );
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"message","to":"bob"}"#),
        vec![(1, fail("Missing 'message' field!", 400))]
    );
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"message","message":1}"#),
        vec![(1, fail("Missing 'to' field!", 400))]
    );
}

#[test]
fn row11_no_such_client() {
    let mut chat = chat_with(&["alice", "bob"]);
    chat.on_open(3); // open but unidentified: not a valid target
    let want = vec![(1, fail("No client with that name is currently connected!", 404))];
    for to in ["\"carol\"", "1", "null", "[\"bob\"]", "\"Bob\"", "\"\""] {
        assert_eq!(
            send(
                &mut chat,
                1,
                &format!(r#"{{"command":"message","to":{to},"message":1}}"#)
            ),
            want,
            "to {to}"
        );
    }
}

#[test]
fn row12_message_delivery_including_self() {
    let mut chat = chat_with(&["alice", "bob"]);
    assert_eq!(
        send(
            &mut chat,
            1,
            r#"{"command":"message","to":"bob","message":{"b":[1.50,2],"a":"x/é"}}"#
        ),
        vec![(
            2,
            r#"{"type":"message","from":"alice","message":{"b":[1.50,2],"a":"x/é"}}"#.to_string()
        )]
    );
    assert_eq!(
        send(&mut chat, 1, r#"{"message":"me","command":"message","to":"alice"}"#),
        vec![(1, r#"{"type":"message","from":"alice","message":"me"}"#.to_string())]
    );
}

#[test]
fn row13_unknown_command() {
    let mut chat = chat_with(&["alice"]);
    assert_eq!(
        send(&mut chat, 1, r#"{"command":"X"}"#),
        vec![(1, fail("Unknown command 'X'!", 400))]
    );
    assert_eq!(
        send(&mut chat, 1, r#"{"command":{"a": [1, 2.0]}}"#),
        vec![(1, fail(r#"Unknown command '{\"a\":[1,2.0]}'!"#, 400))]
    );
    assert_eq!(
        send(&mut chat, 1, r#"{"command":null}"#),
        vec![(1, fail("Unknown command 'null'!", 400))]
    );
}

#[test]
fn relayed_json_rules() {
    let mut chat = chat_with(&["alice", "bob"]);
    // Spaces removed, member order kept, last duplicate wins, number text kept,
    // `/` and non-ASCII unescaped, escapes decoded.
    let r = send(
        &mut chat,
        1,
        r#"{ "command" : "message", "to" : "bob", "message" : {"z": 1, "a": 12345678901234567890123, "z": -0.10, "s": "\u00e9\/\n\"" } }"#,
    );
    assert_eq!(
        r,
        vec![(
            2,
            r#"{"type":"message","from":"alice","message":{"z":-0.10,"a":12345678901234567890123,"s":"é/\n\""}}"#
                .to_string()
        )]
    );
}

#[test]
fn relayed_numbers_keep_their_exponent_text() {
    let mut chat = chat_with(&["alice", "bob"]);
    let r = send(
        &mut chat,
        1,
        r#"{"command":"message","to":"bob","message":[1E5,-2e-3,1.0E+400,0.5e+0]}"#,
    );
    assert_eq!(
        r,
        vec![(
            2,
            r#"{"type":"message","from":"alice","message":[1E5,-2e-3,1.0E+400,0.5e+0]}"#.to_string()
        )]
    );
}

#[test]
fn nesting_of_128_levels_is_relayed_and_129_is_invalid() {
    let mut chat = chat_with(&["alice", "bob"]);
    // The command object is level 1, so the message adds `levels - 1`.
    let doc = |levels: usize| {
        let m = format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
        (format!(r#"{{"command":"broadcast","message":{m}}}"#), m)
    };
    let (ok, m) = doc(128);
    assert_eq!(
        send(&mut chat, 1, &ok),
        vec![(2, format!(r#"{{"type":"broadcast","from":"alice","message":{m}}}"#))]
    );
    let (too_deep, _) = doc(129);
    assert_eq!(
        send(&mut chat, 1, &too_deep),
        vec![(1, fail("Invalid message: expected a JSON object!", 400))]
    );
}

#[test]
fn quit_goes_to_other_identified_clients() {
    let mut chat = chat_with(&["alice", "bob", "carol"]);
    chat.on_open(4);
    let q = r#"{"type":"quit","who":"bob"}"#.to_string();
    assert_eq!(sends(chat.on_close(2)), vec![(1, q.clone()), (3, q)]);
    assert_eq!(chat.identified_count(), 2);
    // The name is free again; an unidentified close says nothing.
    assert!(chat.on_close(4).is_empty());
    assert!(chat.on_close(99).is_empty());
    chat.on_open(5);
    assert_eq!(
        send(&mut chat, 5, r#"{"command":"identify","name":"bob"}"#),
        vec![(5, OK.to_string())]
    );
    assert_eq!(chat.session_count(), 3);
}

#[test]
fn transcript() {
    let (a, b) = (1, 2);
    let mut chat = WsChat::new();
    let mut log = Vec::new();
    let run = |log: &mut Vec<String>, from: Option<(SessionId, &str)>, acts: Vec<Action>| {
        if let Some((sid, msg)) = from {
            log.push(format!("{}→S  {msg}", if sid == a { 'A' } else { 'B' }));
        }
        for (to, m) in sends(acts) {
            log.push(format!("S→{}  {m}", if to == a { 'A' } else { 'B' }));
        }
    };
    run(&mut log, None, chat.on_open(a));
    for msg in [
        r#"{"command":"broadcast","message":"hi"}"#,
        r#"{"command":"identify","name":"alice"}"#,
    ] {
        let acts = chat.on_message(a, msg.as_bytes(), true);
        run(&mut log, Some((a, msg)), acts);
    }
    chat.on_open(b);
    for msg in [
        r#"{"command":"identify","name":"alice"}"#,
        r#"{"command":"identify","name":"bob"}"#,
    ] {
        let acts = chat.on_message(b, msg.as_bytes(), true);
        run(&mut log, Some((b, msg)), acts);
    }
    for msg in [
        r#"{"command":"message","to":"bob","message":{"pos":12.5}}"#,
        r#"{"command":"message","to":"carol","message":1}"#,
    ] {
        let acts = chat.on_message(a, msg.as_bytes(), true);
        run(&mut log, Some((a, msg)), acts);
    }
    let acts = chat.on_close(b);
    run(&mut log, None, acts);
    let want = [
        r#"S→A  {"type":"init","message":"Please identify to recieve messages."}"#,
        r#"A→S  {"command":"broadcast","message":"hi"}"#,
        r#"S→A  {"type":"outcome","success":false,"message":"Please identify yourself!","code":10}"#,
        r#"A→S  {"command":"identify","name":"alice"}"#,
        r#"S→A  {"type":"outcome","success":true,"message":"Identified successfully!","code":300}"#,
        r#"B→S  {"command":"identify","name":"alice"}"#,
        r#"S→B  {"type":"outcome","success":false,"message":"Client with that name already exists!","code":305}"#,
        r#"B→S  {"command":"identify","name":"bob"}"#,
        r#"S→B  {"type":"outcome","success":true,"message":"Identified successfully!","code":300}"#,
        r#"A→S  {"command":"message","to":"bob","message":{"pos":12.5}}"#,
        r#"S→B  {"type":"message","from":"alice","message":{"pos":12.5}}"#,
        r#"A→S  {"command":"message","to":"carol","message":1}"#,
        r#"S→A  {"type":"outcome","success":false,"message":"No client with that name is currently connected!","code":404}"#,
        r#"S→A  {"type":"quit","who":"bob"}"#,
    ];
    assert_eq!(log, want);
}

/// A small deterministic generator so the randomized test is reproducible.
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn randomized_inputs_get_well_formed_replies() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut chat = WsChat::new();
    let mut open: Vec<SessionId> = Vec::new();
    let mut next_sid = 1;
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"command\"",
        "\"identify\"",
        "\"broadcast\"",
        "\"message\"",
        "\"to\"",
        "\"name\"",
        "\"a\"",
        "\"b\"",
        "1",
        "-0.5e3",
        "null",
        "true",
        "\"\\u00e9\"",
        " ",
        "\"\\ud800\"",
        "\u{e9}",
        "\\",
    ];
    let mut messages = 0;
    while messages < 10_000 {
        if open.is_empty() || rng.below(20) == 0 {
            let sid = next_sid;
            next_sid += 1;
            open.push(sid);
            assert_eq!(sends(chat.on_open(sid)).len(), 1);
            continue;
        }
        let sid = open[rng.below(open.len())];
        if rng.below(30) == 0 {
            open.retain(|&s| s != sid);
            for (to, m) in sends(chat.on_close(sid)) {
                assert!(open.contains(&to));
                assert!(m.starts_with(r#"{"type":"quit","who":"#));
            }
            continue;
        }
        messages += 1;
        let input = match rng.below(3) {
            // Structured, mostly valid commands.
            0 => {
                let cmd = rng.pick(&["identify", "broadcast", "message", "x"]);
                let name = rng.pick(&["a", "b", "c", ""]);
                let field = rng.pick(&["name", "to", "message", "other"]);
                format!(r#"{{"command":"{cmd}","{field}":"{name}","message":[1,{{"k":null}}]}}"#)
            }
            // Token soup: usually invalid JSON.
            1 => (0..rng.below(12)).map(|_| rng.pick(&pieces)).collect(),
            // Raw random bytes, as text or binary.
            _ => {
                let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                let is_text = rng.below(2) == 0;
                let acts = chat.on_message(sid, &bytes, is_text);
                check_reply(sid, &open, sends(acts));
                continue;
            }
        };
        let acts = chat.on_message(sid, input.as_bytes(), true);
        check_reply(sid, &open, sends(acts));
    }
}

/// Either one outcome to the sender, or deliveries to open sessions.
fn check_reply(sid: SessionId, open: &[SessionId], out: Vec<(SessionId, String)>) {
    for (to, m) in &out {
        assert!(open.contains(to));
        let v: Value = serde_json::from_str(m).expect("valid JSON");
        let ty = v.get("type").and_then(Value::as_str).expect("type");
        match ty {
            "outcome" => {
                assert_eq!(*to, sid);
                assert_eq!(out.len(), 1);
                let keys: Vec<_> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap();
                assert_eq!(keys, ["type", "success", "message", "code"]);
            }
            "broadcast" => assert_ne!(*to, sid),
            "message" => assert_eq!(out.len(), 1),
            other => panic!("unexpected type {other}"),
        }
    }
}

#[test]
fn state_can_be_shared_between_threads() {
    fn assert_send<T: Send + Sync>(_: &T) {}
    assert_send(&WsChat::new());
}
