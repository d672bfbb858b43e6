use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;

/// What the engine would put on the wire, as readable pairs. Pings show as
/// `[ping]`; their payload is kept aside so tests can answer them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Text(SessionId, String),
    Binary(SessionId, Vec<u8>),
    Ping(SessionId, Vec<u8>),
    Close(SessionId, u16),
}

fn outs(actions: Vec<Action>) -> Vec<Out> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Send { to, data, text: true } => {
                Out::Text(to, String::from_utf8(data.to_vec()).expect("UTF-8 text"))
            }
            Action::Send { to, data, .. } => Out::Binary(to, data.to_vec()),
            Action::Ping { to, payload } => Out::Ping(to, payload),
            Action::Close { to, code, .. } => Out::Close(to, code),
        })
        .collect()
}

fn t(to: SessionId, s: &str) -> Out {
    Out::Text(to, s.to_owned())
}

struct H {
    d: AchexDialect,
    t0: Instant,
}

impl H {
    fn new() -> H {
        H::with(AchexConfig::default())
    }

    fn with(config: AchexConfig) -> H {
        let t0 = Instant::now();
        H {
            d: AchexDialect::new_at(config, t0),
            t0,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn open(&mut self, session: SessionId) -> Vec<Out> {
        outs(self.d.on_open(session))
    }

    fn send(&mut self, session: SessionId, msg: &str) -> Vec<Out> {
        let now = self.t0;
        outs(self.d.on_message_at(session, msg.as_bytes(), true, now))
    }

    fn send_at(&mut self, session: SessionId, msg: &str, ms: u64) -> Vec<Out> {
        let now = self.at(ms);
        outs(self.d.on_message_at(session, msg.as_bytes(), true, now))
    }

    fn close(&mut self, session: SessionId) -> Vec<Out> {
        outs(self.d.on_close(session))
    }

    /// Opens a session and logs it in with `setID`.
    fn user(&mut self, session: SessionId, name: &str) {
        self.open(session);
        let r = self.send(session, &format!("{{\"setID\":{}}}", json::quote(name)));
        assert_eq!(r, vec![t(session, "{\"auth\":\"ok\"}")]);
    }

    fn reply(&mut self, session: SessionId, msg: &str) -> String {
        match self.send(session, msg).as_slice() {
            [Out::Text(to, s)] if *to == session => s.clone(),
            other => panic!("expected one reply to {session}, got {other:?}"),
        }
    }
}

fn with_services() -> AchexConfig {
    AchexConfig {
        services: vec![("svc".to_owned(), "p".to_owned())],
        ..AchexConfig::default()
    }
}

// ---- §2 Open ----

#[test]
fn open_sends_sid_counting_from_one_never_reused() {
    let mut h = H::new();
    assert_eq!(h.open(100), vec![t(100, "{\"SID\":1}")]);
    assert_eq!(h.open(7), vec![t(7, "{\"SID\":2}")]);
    h.close(100);
    assert_eq!(h.open(100), vec![t(100, "{\"SID\":3}")]);
    assert_eq!(h.d.sid_of(7), Some(2));
    assert_eq!(h.d.session_of(3), Some(100));
    assert_eq!(h.d.session_of(1), None);
    // A second open of a live id is ignored rather than given a second SID.
    assert!(h.open(7).is_empty());
}

#[test]
fn unknown_and_host_range_sessions_are_ignored() {
    let mut h = H::new();
    assert!(h.send(9, "{\"setID\":\"a\"}").is_empty());
    assert!(h.open(HOST_SESSION_BIT | 1).is_empty());
    assert!(h.close(9).is_empty());
    assert!(outs(h.d.on_pong(9, b"achex-ltcy-1")).is_empty());
}

// ---- §2.1 Login ----

#[test]
fn setid_replies_auth_ok_exactly_and_missing_passwd_is_empty() {
    let mut h = H::new();
    h.open(1);
    h.open(2);
    assert_eq!(h.reply(1, r#"{"setID":"alex","passwd":"free"}"#), r#"{"auth":"ok"}"#);
    assert_eq!(h.reply(2, r#"{"setID":"bob"}"#), r#"{"auth":"ok"}"#);
    h.close(2);
    h.open(3);
    // bob's claim ended; a missing passwd equals "" so this matches a new claim.
    assert_eq!(h.reply(3, r#"{"setID":"bob","passwd":""}"#), r#"{"auth":"ok"}"#);
    h.open(4);
    assert_eq!(h.reply(4, r#"{"setID":"bob"}"#), r#"{"auth":"ok"}"#);
}

#[test]
fn auth_replies_ok_upper_case_with_own_sid() {
    let mut h = H::new();
    for s in 1..=6 {
        h.open(s * 10);
    }
    assert_eq!(
        h.reply(60, r#"{"auth":"alex","passwd":"free"}"#),
        r#"{"auth":"OK","SID":6}"#
    );
    assert_eq!(h.reply(50, r#"{"auth":"bob"}"#), r#"{"auth":"OK","SID":5}"#);
}

#[test]
fn service_login_uses_idtag_else_service_id() {
    let mut h = H::with(with_services());
    h.open(1);
    h.open(2);
    assert_eq!(
        h.reply(1, r#"{"serviceID":"svc","passwd":"p","idtag":"svc-2"}"#),
        r#"{"auth":"ok"}"#
    );
    assert_eq!(h.d.name_of(1), Some("svc-2"));
    assert_eq!(h.reply(2, r#"{"serviceID":"svc","passwd":"p"}"#), r#"{"auth":"ok"}"#);
    assert_eq!(h.d.name_of(2), Some("svc"));
    assert_eq!(
        h.d.names().iter().map(|n| n.role).collect::<Vec<_>>(),
        vec![Role::Service, Role::Service]
    );
}

fn failed(reason: &str) -> String {
    format!("{{\"auth\":\"failed\",\"error\":\"{reason}\"}}")
}

#[test]
fn failure_invalid_name() {
    let mut h = H::with(with_services());
    h.open(1);
    for msg in [
        r#"{"setID":""}"#,
        r#"{"setID":5}"#,
        r#"{"setID":null}"#,
        r#"{"auth":["a"]}"#,
        r#"{"serviceID":"","passwd":"p"}"#,
        r#"{"serviceID":{},"passwd":"p"}"#,
        r#"{"serviceID":"svc","passwd":"p","idtag":""}"#,
        r#"{"serviceID":"svc","passwd":"p","idtag":7}"#,
    ] {
        assert_eq!(h.reply(1, msg), failed("invalid name"), "{msg}");
    }
}

#[test]
fn failure_invalid_password() {
    let mut h = H::with(with_services());
    h.open(1);
    for msg in [
        r#"{"setID":"a","passwd":1}"#,
        r#"{"auth":"a","passwd":null}"#,
        r#"{"serviceID":"svc","passwd":false}"#,
    ] {
        assert_eq!(h.reply(1, msg), failed("invalid password"), "{msg}");
    }
}

#[test]
fn failure_wrong_password() {
    let mut h = H::with(with_services());
    h.user(1, "alex");
    h.open(2);
    assert_eq!(h.reply(2, r#"{"setID":"alex","passwd":"x"}"#), failed("wrong password"));
    assert_eq!(
        h.reply(2, r#"{"serviceID":"svc","passwd":"x"}"#),
        failed("wrong password")
    );
}

#[test]
fn failure_invalid_credentials_in_table_mode() {
    let table = HashMap::from([("alex".to_owned(), "free".to_owned())]);
    let mut h = H::with(AchexConfig {
        auth: AuthMode::Table(table),
        ..AchexConfig::default()
    });
    h.open(1);
    assert_eq!(
        h.reply(1, r#"{"setID":"alex","passwd":"nope"}"#),
        failed("invalid credentials")
    );
    assert_eq!(h.reply(1, r#"{"setID":"eve"}"#), failed("invalid credentials"));
    assert_eq!(h.reply(1, r#"{"setID":"alex","passwd":"free"}"#), r#"{"auth":"ok"}"#);
}

#[test]
fn failure_name_in_use() {
    let mut h = H::with(with_services());
    h.open(1);
    h.reply(1, r#"{"serviceID":"svc","passwd":"p"}"#);
    h.open(2);
    assert_eq!(h.reply(2, r#"{"setID":"svc"}"#), failed("name in use"));
    assert_eq!(h.reply(2, r#"{"serviceID":"svc","passwd":"p"}"#), failed("name in use"));
    h.user(3, "carol");
    assert_eq!(
        h.reply(2, r#"{"serviceID":"svc","passwd":"p","idtag":"carol"}"#),
        failed("name in use")
    );
}

#[test]
fn failure_unknown_service() {
    let mut h = H::new();
    h.open(1);
    assert_eq!(
        h.reply(1, r#"{"serviceID":"svc","passwd":"p"}"#),
        failed("unknown service")
    );
    h.d.set_service_credentials("svc", "p");
    assert_eq!(h.reply(1, r#"{"serviceID":"svc","passwd":"p"}"#), r#"{"auth":"ok"}"#);
    assert!(h.d.remove_service_credentials("svc"));
    h.open(2);
    assert_eq!(
        h.reply(2, r#"{"serviceID":"svc","passwd":"p","idtag":"x"}"#),
        failed("unknown service")
    );
}

#[test]
fn failure_host_callback_text_or_rejected() {
    let mut h = H::with(AchexConfig {
        auth: AuthMode::Callback(Box::new(|name, pw| match (name, pw) {
            ("alex", "free") => Ok(()),
            ("eve", _) => Err("banned \"eve\"".to_owned()),
            _ => Err(String::new()),
        })),
        ..AchexConfig::default()
    });
    h.open(1);
    assert_eq!(
        h.reply(1, r#"{"setID":"eve"}"#),
        r#"{"auth":"failed","error":"banned \"eve\""}"#
    );
    assert_eq!(h.reply(1, r#"{"setID":"bob"}"#), failed("rejected"));
    assert_eq!(h.reply(1, r#"{"setID":"alex","passwd":"free"}"#), r#"{"auth":"ok"}"#);
}

#[test]
fn relogin_switches_identity_and_keeps_memberships() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.send(1, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(1, r#"{"joinHub":"T1"}"#);
    assert_eq!(h.reply(1, r#"{"setID":"carl"}"#), r#"{"auth":"ok"}"#);
    assert_eq!(h.reply(2, r#"{"to":"alex"}"#), r#"{"error":"no such user: alex"}"#);
    assert_eq!(
        h.send(2, r#"{"to":"carl","m":1}"#),
        vec![t(1, r#"{"to":"carl","m":1,"FROM":"bob","sID":2}"#)]
    );
    assert_eq!(
        h.send(2, r#"{"bc":"g"}"#),
        vec![t(1, r#"{"bc":"g","FROM":"bob","sID":2}"#)]
    );
    assert_eq!(
        h.send(2, r#"{"toH":"T1"}"#),
        vec![t(1, r#"{"toH":"T1","FROM":"bob","sID":2}"#)]
    );
    // alex was released, so anyone may claim it with a new password.
    h.open(3);
    assert_eq!(h.reply(3, r#"{"setID":"alex","passwd":"new"}"#), r#"{"auth":"ok"}"#);
}

#[test]
fn failed_relogin_keeps_the_old_identity() {
    let mut h = H::new();
    h.open(1);
    h.reply(1, r#"{"setID":"bob","passwd":"pw"}"#);
    h.user(2, "alex");
    assert_eq!(h.reply(2, r#"{"setID":"bob"}"#), failed("wrong password"));
    assert_eq!(
        h.send(2, r#"{"echo":1}"#),
        vec![t(2, r#"{"echo":1,"FROM":"alex","sID":2}"#)]
    );
}

#[test]
fn a_service_name_is_exclusive_until_released() {
    let mut h = H::with(with_services());
    h.open(1);
    h.reply(1, r#"{"serviceID":"svc","passwd":"p","idtag":"s1"}"#);
    h.open(2);
    assert_eq!(
        h.reply(2, r#"{"serviceID":"svc","passwd":"p","idtag":"s1"}"#),
        failed("name in use")
    );
    // Re-login by the holder is harmless.
    assert_eq!(
        h.reply(1, r#"{"serviceID":"svc","passwd":"p","idtag":"s1"}"#),
        r#"{"auth":"ok"}"#
    );
    h.close(1);
    assert_eq!(
        h.reply(2, r#"{"serviceID":"svc","passwd":"p","idtag":"s1"}"#),
        r#"{"auth":"ok"}"#
    );
}

// ---- §2.2 Classification ----

#[test]
fn rule1_binary_frame_is_an_error() {
    let mut h = H::new();
    h.open(1);
    let r = outs(h.d.on_message(1, br#"{"serverstat":true}"#, false));
    assert_eq!(r, vec![t(1, r#"{"error":"binary frames are not supported"}"#)]);
}

#[test]
fn rule2_exact_ping_or_latency_text_is_a_probe() {
    let mut h = H::new();
    h.open(1);
    for probe in ["ping", "latency"] {
        let r = h.send(1, probe);
        assert!(matches!(r.as_slice(), [Out::Ping(1, _)]), "{probe}: {r:?}");
    }
    for not_probe in ["Ping", "PING", "ping ", "\"ping\"", "latency\n"] {
        assert_eq!(
            h.reply(1, not_probe),
            r#"{"error":"invalid message: expected a JSON object"}"#,
            "{not_probe:?}"
        );
    }
}

#[test]
fn rule3_text_that_is_not_a_json_object_is_an_error() {
    let mut h = H::new();
    h.open(1);
    for bad in ["", "hello", "[1]", "\"x\"", "42", "null", "{\"a\":1", "{\"a\":1}x"] {
        assert_eq!(
            h.reply(1, bad),
            r#"{"error":"invalid message: expected a JSON object"}"#,
            "{bad:?}"
        );
    }
}

fn nested(levels: usize) -> String {
    format!(
        "{{\"echo\":1,\"x\":{}{}}}",
        "[".repeat(levels - 1),
        "]".repeat(levels - 1)
    )
}

#[test]
fn rule3_json_deeper_than_128_levels_is_invalid() {
    let mut h = H::new();
    h.user(1, "a");
    let ok = h.reply(1, &nested(128));
    assert!(ok.ends_with(r#"]]]],"FROM":"a","sID":1}"#), "{ok}");
    assert_eq!(
        h.reply(1, &nested(129)),
        r#"{"error":"invalid message: expected a JSON object"}"#
    );
}

#[test]
fn rule4_routing_keys_in_order_only_first_used() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.send(2, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(2, r#"{"joinHub":"h"}"#);
    // toS beats tos, to, bc and toH even when it fails.
    assert_eq!(
        h.reply(1, r#"{"toH":"h","bc":"g","to":"bob","tos":"2","toS":99}"#),
        r#"{"error":"no such session: 99"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"toH":"h","bc":"g","to":"bob","tos":"98"}"#),
        r#"{"error":"no such session: 98"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"toH":"h","bc":"g","to":"zed"}"#),
        r#"{"error":"no such user: zed"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"toH":"h","bc":{}}"#),
        r#"{"error":"invalid value for bc"}"#
    );
    assert_eq!(
        h.send(1, r#"{"toH":"h","x":1}"#),
        vec![t(2, r#"{"toH":"h","x":1,"FROM":"alex","sID":1}"#)]
    );
}

#[test]
fn rule5_command_keys_in_order() {
    let mut h = H::with(with_services());
    h.open(1);
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"ping":1,"echo":1,"auth":"b","setID":"a"}"#),
        r#"{"auth":"ok"}"#
    );
    assert_eq!(h.d.name_of(1), Some("a"));
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"serviceID":"svc","passwd":"p","auth":"b"}"#),
        r#"{"auth":"OK","SID":1}"#
    );
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"cmd":"x","serviceID":"svc","passwd":"p"}"#),
        r#"{"auth":"ok"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"joinHub":"h","cmd":"x"}"#),
        r#"{"error":"unknown cmd: x"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"leaveHub":"h","joinHub":"h"}"#),
        r#"{"joinHub":"OK"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"echo":1,"leaveHub":"h"}"#),
        r#"{"leaveHub":"OK"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"serverstat":1,"ping":1,"echo":1}"#),
        r#"{"serverstat":1,"ping":1,"echo":1,"FROM":"svc","sID":1}"#
    );
    let r = h.send(1, r#"{"serverstat":1,"latency":1}"#);
    assert!(matches!(r.as_slice(), [Out::Ping(1, _)]), "{r:?}");
    let r = h.send(1, r#"{"serverstat":1,"ping":1}"#);
    assert!(matches!(r.as_slice(), [Out::Ping(1, _)]), "{r:?}");
    assert!(h.reply(1, r#"{"serverstat":1}"#).starts_with(r#"{"serverstat":{"#));
}

#[test]
fn rule6_no_routing_key_and_no_command() {
    let mut h = H::new();
    h.open(1);
    for msg in [r#"{}"#, r#"{"msg":"hi"}"#, r#"{"TO":"a","Cmd":"x","fbauth":"t"}"#] {
        assert_eq!(h.reply(1, msg), r#"{"error":"no routing key in message"}"#);
    }
}

#[test]
fn routing_wins_over_commands() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    assert_eq!(
        h.send(1, r#"{"to":"bob","cmd":"move"}"#),
        vec![t(2, r#"{"to":"bob","cmd":"move","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(
        h.send(1, r#"{"setID":"mallory","to":"bob"}"#),
        vec![t(2, r#"{"setID":"mallory","to":"bob","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(h.d.name_of(1), Some("alex"));
}

#[test]
fn routing_and_member_commands_need_login() {
    let mut h = H::new();
    h.user(1, "bob");
    h.open(2);
    for msg in [
        r#"{"to":"bob"}"#,
        r#"{"toS":1}"#,
        r#"{"tos":"1"}"#,
        r#"{"bc":"g"}"#,
        r#"{"toH":"h"}"#,
        r#"{"cmd":"register_broadcast","bid":"g"}"#,
        r#"{"cmd":"nonsense"}"#,
        r#"{"joinHub":{}}"#,
        r#"{"leaveHub":"h"}"#,
        r#"{"echo":true}"#,
    ] {
        assert_eq!(h.reply(2, msg), r#"{"error":"not authenticated"}"#, "{msg}");
    }
    assert!(h.d.groups().is_empty() && h.d.hubs().is_empty());
}

#[test]
fn login_probes_and_serverstat_work_before_login() {
    let mut h = H::new();
    h.open(1);
    assert!(matches!(h.send(1, "latency").as_slice(), [Out::Ping(1, _)]));
    assert!(matches!(h.send(1, r#"{"ping":true}"#).as_slice(), [Out::Ping(1, _)]));
    assert!(h.reply(1, r#"{"serverstat":true}"#).starts_with(r#"{"serverstat":"#));
    assert_eq!(h.reply(1, r#"{"setID":"a"}"#), r#"{"auth":"ok"}"#);
}

// ---- §2.3 Routing and stamping ----

#[test]
fn stamping_replaces_from_and_sid_and_keeps_everything_else() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    let sent = r#"{ "sID" : "99", "to" : "bob", "n" : [1E5, -0.0, 1.50, 12345678901234567890123], "s" : "caf\u00e9 \/ \ud83d\ude00 \"q\"\n", "FROM" : {"a":1}, "o" : {"FROM":"inner"}, "dup" : 1, "dup" : 2 }"#;
    assert_eq!(
        h.send(1, sent),
        vec![t(
            2,
            r#"{"to":"bob","n":[1E5,-0.0,1.50,12345678901234567890123],"s":"café / 😀 \"q\"\n","o":{"FROM":"inner"},"dup":2,"FROM":"alex","sID":1}"#
        )]
    );
}

#[test]
fn to_reaches_every_session_of_the_name_including_self() {
    let mut h = H::new();
    h.user(1, "bob");
    h.user(2, "alex");
    h.user(3, "bob");
    let m = r#"{"to":"bob","FROM":"alex","sID":2}"#;
    assert_eq!(h.send(2, r#"{"to":"bob"}"#), vec![t(1, m), t(3, m)]);
    // Sent to its own name: all of its sessions, the sending one included.
    assert_eq!(
        h.send(3, r#"{"to":"bob"}"#),
        vec![
            t(1, r#"{"to":"bob","FROM":"bob","sID":3}"#),
            t(3, r#"{"to":"bob","FROM":"bob","sID":3}"#)
        ]
    );
}

#[test]
fn to_reaches_a_service_session() {
    let mut h = H::with(with_services());
    h.open(1);
    h.reply(1, r#"{"serviceID":"svc","passwd":"p","idtag":"svc-2"}"#);
    h.user(2, "alex");
    assert_eq!(
        h.send(2, r#"{"to":"svc-2","q":1}"#),
        vec![t(1, r#"{"to":"svc-2","q":1,"FROM":"alex","sID":2}"#)]
    );
    assert_eq!(
        h.send(1, r#"{"to":"alex","a":1}"#),
        vec![t(2, r#"{"to":"alex","a":1,"FROM":"svc-2","sID":1}"#)]
    );
}

#[test]
fn to_errors_show_strings_as_is_and_other_values_as_json() {
    let mut h = H::new();
    h.user(1, "alex");
    assert_eq!(h.reply(1, r#"{"to":"nobody"}"#), r#"{"error":"no such user: nobody"}"#);
    assert_eq!(h.reply(1, r#"{"to":"a\"b\/é"}"#), r#"{"error":"no such user: a\"b/é"}"#);
    assert_eq!(h.reply(1, r#"{"to":""}"#), r#"{"error":"no such user: "}"#);
    assert_eq!(h.reply(1, r#"{"to":1E3}"#), r#"{"error":"no such user: 1E3"}"#);
    assert_eq!(
        h.reply(1, r#"{"to": {"x" : [1, "y"]}}"#),
        r#"{"error":"no such user: {\"x\":[1,\"y\"]}"}"#
    );
    assert_eq!(h.reply(1, r#"{"to":null}"#), r#"{"error":"no such user: null"}"#);
    // A non-string never matches, even when the name looks the same.
    h.user(2, "5");
    assert_eq!(h.reply(1, r#"{"to":5}"#), r#"{"error":"no such user: 5"}"#);
}

#[test]
fn tos_takes_a_number_or_digit_string_and_reaches_unauthenticated_sessions() {
    let mut h = H::new();
    h.user(1, "alex");
    h.open(2);
    let want = |k: &str, v: &str| vec![t(2, &format!("{{\"{k}\":{v},\"m\":1,\"FROM\":\"alex\",\"sID\":1}}"))];
    assert_eq!(h.send(1, r#"{"toS":2,"m":1}"#), want("toS", "2"));
    assert_eq!(h.send(1, r#"{"toS":"2","m":1}"#), want("toS", "\"2\""));
    assert_eq!(h.send(1, r#"{"tos":"02","m":1}"#), want("tos", "\"02\""));
    assert_eq!(h.send(1, r#"{"tos":2,"m":1}"#), want("tos", "2"));
    // To itself works as well.
    assert_eq!(
        h.send(1, r#"{"toS":1}"#),
        vec![t(1, r#"{"toS":1,"FROM":"alex","sID":1}"#)]
    );
}

#[test]
fn tos_errors_for_unknown_and_non_numeric_values() {
    let mut h = H::new();
    h.user(1, "alex");
    for (v, shown) in [
        ("343", "343"),
        ("\"343\"", "343"),
        ("\"abc\"", "abc"),
        ("\"\"", ""),
        ("\"+1\"", "+1"),
        ("\" 1\"", " 1"),
        ("1.0", "1.0"),
        ("-1", "-1"),
        ("1e0", "1e0"),
        ("true", "true"),
        ("[1]", "[1]"),
        ("99999999999999999999999", "99999999999999999999999"),
    ] {
        assert_eq!(
            h.reply(1, &format!("{{\"toS\":{v}}}")),
            format!("{{\"error\":\"no such session: {}\"}}", shown),
            "{v}"
        );
    }
    h.open(2);
    h.close(2);
    assert_eq!(h.reply(1, r#"{"tos":"2"}"#), r#"{"error":"no such session: 2"}"#);
}

#[test]
fn bc_reaches_every_member_and_the_sender_only_if_registered() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.user(3, "carol");
    h.send(2, r#"{"cmd":"register_broadcast","bid":"room42"}"#);
    h.send(3, r#"{"cmd":"register_broadcast","bid":"room42"}"#);
    let m = |to| t(to, r#"{"bc":"room42","FROM":"alex","sID":1}"#);
    assert_eq!(h.send(1, r#"{"bc":"room42"}"#), vec![m(2), m(3)]);
    h.send(1, r#"{"cmd":"register_broadcast","bid":"room42"}"#);
    assert_eq!(h.send(1, r#"{"bc":"room42"}"#), vec![m(1), m(2), m(3)]);
    // An empty or unknown group is silent.
    assert!(h.send(1, r#"{"bc":"nobody-here"}"#).is_empty());
}

#[test]
fn bc_shares_one_buffer_among_recipients() {
    let mut h = H::new();
    h.user(1, "alex");
    for s in 2..=5 {
        h.user(s, "x");
        h.send(s, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    }
    let actions = h.d.on_message(1, br#"{"bc":"g"}"#, true);
    assert_eq!(actions.len(), 4);
    let Action::Send { data: first, .. } = &actions[0] else {
        panic!("send expected")
    };
    for a in &actions {
        let Action::Send { data, .. } = a else {
            panic!("send expected")
        };
        assert!(Arc::ptr_eq(first, data));
    }
}

#[test]
fn toh_reaches_hub_members_except_the_sender() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.user(3, "carol");
    for s in [1, 2] {
        h.send(s, r#"{"joinHub":"T1"}"#);
    }
    assert_eq!(
        h.send(1, r#"{"toH":"T1","m":"x"}"#),
        vec![t(2, r#"{"toH":"T1","m":"x","FROM":"alex","sID":1}"#)]
    );
    // Non-members may send to a hub; an unknown hub is silent.
    assert_eq!(
        h.send(3, r#"{"toH":"T1"}"#),
        vec![
            t(1, r#"{"toH":"T1","FROM":"carol","sID":3}"#),
            t(2, r#"{"toH":"T1","FROM":"carol","sID":3}"#)
        ]
    );
    assert!(h.send(3, r#"{"toH":"T9"}"#).is_empty());
}

#[test]
fn group_and_hub_names_numbers_count_as_text_other_values_are_invalid() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.send(2, r#"{"cmd":"register_broadcast","bid":42}"#);
    h.send(2, r#"{"joinHub":1.5}"#);
    assert_eq!(h.d.groups(), vec![("42".to_owned(), 1)]);
    assert_eq!(h.d.hubs(), vec![("1.5".to_owned(), 1)]);
    assert_eq!(
        h.send(1, r#"{"bc":"42"}"#),
        vec![t(2, r#"{"bc":"42","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(
        h.send(1, r#"{"toH":1.5}"#),
        vec![t(2, r#"{"toH":1.5,"FROM":"alex","sID":1}"#)]
    );
    for (msg, key) in [
        (r#"{"bc":null}"#, "bc"),
        (r#"{"toH":true}"#, "toH"),
        (r#"{"cmd":"register_broadcast","bid":[1]}"#, "bid"),
        (r#"{"cmd":"unregister_broadcast","bid":{}}"#, "bid"),
        (r#"{"joinHub":null}"#, "joinHub"),
        (r#"{"leaveHub":false}"#, "leaveHub"),
    ] {
        assert_eq!(
            h.reply(1, msg),
            format!("{{\"error\":\"invalid value for {key}\"}}"),
            "{msg}"
        );
    }
}

// ---- §2.4 Commands ----

#[test]
fn register_and_unregister_broadcast_are_silent_and_idempotent() {
    let mut h = H::new();
    h.user(1, "alex");
    assert!(h.send(1, r#"{"cmd":"register_broadcast","bid":"room42"}"#).is_empty());
    assert!(h.send(1, r#"{"cmd":"register_broadcast","bid":"room42"}"#).is_empty());
    assert_eq!(h.d.groups(), vec![("room42".to_owned(), 1)]);
    assert!(h.send(1, r#"{"cmd":"unregister_broadcast","bid":"room42"}"#).is_empty());
    assert!(h.send(1, r#"{"cmd":"unregister_broadcast","bid":"room42"}"#).is_empty());
    assert!(h.d.groups().is_empty());
}

#[test]
fn missing_bid_and_unknown_cmd() {
    let mut h = H::new();
    h.user(1, "alex");
    assert_eq!(
        h.reply(1, r#"{"cmd":"register_broadcast"}"#),
        r#"{"error":"missing bid"}"#
    );
    assert_eq!(
        h.reply(1, r#"{"cmd":"unregister_broadcast"}"#),
        r#"{"error":"missing bid"}"#
    );
    assert_eq!(h.reply(1, r#"{"cmd":"other"}"#), r#"{"error":"unknown cmd: other"}"#);
    assert_eq!(h.reply(1, r#"{"cmd":7}"#), r#"{"error":"unknown cmd: 7"}"#);
    assert_eq!(
        h.reply(1, r#"{"cmd":{"a":"b"}}"#),
        r#"{"error":"unknown cmd: {\"a\":\"b\"}"}"#
    );
}

#[test]
fn join_hub_is_idempotent_and_many_hubs_work() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    assert_eq!(
        h.reply(1, r#"{"joinHub":"T1","passwd":"ignored"}"#),
        r#"{"joinHub":"OK"}"#
    );
    assert_eq!(h.reply(1, r#"{"joinHub":"T1"}"#), r#"{"joinHub":"OK"}"#);
    assert_eq!(h.reply(1, r#"{"joinHub":"T2"}"#), r#"{"joinHub":"OK"}"#);
    assert_eq!(h.d.hubs(), vec![("T1".to_owned(), 1), ("T2".to_owned(), 1)]);
    for hub in ["T1", "T2"] {
        assert_eq!(
            h.send(2, &format!("{{\"toH\":\"{hub}\"}}")),
            vec![t(1, &format!("{{\"toH\":\"{hub}\",\"FROM\":\"bob\",\"sID\":2}}"))]
        );
    }
}

#[test]
fn leave_hub_replies_ok_even_if_not_a_member_and_tells_the_rest() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.user(3, "carol");
    assert_eq!(h.reply(1, r#"{"leaveHub":"T1"}"#), r#"{"leaveHub":"OK"}"#);
    for s in [1, 2, 3] {
        h.send(s, r#"{"joinHub":"T1"}"#);
    }
    assert_eq!(
        h.send(2, r#"{"leaveHub":"T1"}"#),
        vec![
            t(2, r#"{"leaveHub":"OK"}"#),
            t(1, r#"{"leftHub":"T1","user":"bob","sID":2}"#),
            t(3, r#"{"leftHub":"T1","user":"bob","sID":2}"#)
        ]
    );
    assert_eq!(h.reply(2, r#"{"leaveHub":"T1"}"#), r#"{"leaveHub":"OK"}"#);
}

#[test]
fn disconnect_sends_left_hub_for_every_hub() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.user(3, "carol");
    h.send(1, r#"{"joinHub":"A"}"#);
    h.send(3, r#"{"joinHub":"B"}"#);
    h.send(2, r#"{"joinHub":"A"}"#);
    h.send(2, r#"{"joinHub":"B"}"#);
    h.send(2, r#"{"joinHub":"C"}"#);
    assert_eq!(
        h.close(2),
        vec![
            t(1, r#"{"leftHub":"A","user":"bob","sID":2}"#),
            t(3, r#"{"leftHub":"B","user":"bob","sID":2}"#)
        ]
    );
    assert_eq!(h.d.hubs(), vec![("A".to_owned(), 1), ("B".to_owned(), 1)]);
}

#[test]
fn echo_goes_to_the_sender_only_stamped() {
    let mut h = H::new();
    for s in 1..=6 {
        h.open(s);
    }
    h.user(7, "alex");
    h.user(8, "alex");
    assert_eq!(
        h.send(7, r#"{"echo":true,"x":1,"FROM":"x"}"#),
        vec![t(7, r#"{"echo":true,"x":1,"FROM":"alex","sID":7}"#)]
    );
}

#[test]
fn latency_probe_answers_with_rounded_round_trip() {
    let mut h = H::new();
    h.open(1);
    let r = h.send_at(1, "ping", 1000);
    let [Out::Ping(1, payload)] = r.as_slice() else {
        panic!("ping expected: {r:?}")
    };
    assert!(payload.len() <= 125);
    // 2.5 ms rounds to 3 ms.
    let back = h.at(1000) + Duration::from_micros(2500);
    assert_eq!(outs(h.d.on_pong_at(1, payload, back)), vec![t(1, r#"{"ltcy":"3ms"}"#)]);
    // A second pong with the same payload is not a new answer.
    assert!(outs(h.d.on_pong_at(1, payload, back)).is_empty());
    let r = h.send_at(1, r#"{"latency":1}"#, 2000);
    let [Out::Ping(1, p2)] = r.as_slice() else {
        panic!("ping expected")
    };
    assert_ne!(p2, payload);
    let back = h.at(2000) + Duration::from_micros(2499);
    assert_eq!(outs(h.d.on_pong_at(1, p2, back)), vec![t(1, r#"{"ltcy":"2ms"}"#)]);
}

#[test]
fn pongs_that_match_no_probe_of_the_session_are_ignored() {
    let mut h = H::new();
    h.open(1);
    h.open(2);
    let r = h.send(1, "ping");
    let [Out::Ping(1, payload)] = r.as_slice() else {
        panic!("ping expected")
    };
    assert!(outs(h.d.on_pong_at(2, payload, h.at(1))).is_empty());
    assert!(outs(h.d.on_pong_at(1, b"hello", h.at(1))).is_empty());
    assert!(outs(h.d.on_pong_at(1, b"achex-ltcy-x", h.at(1))).is_empty());
    assert_eq!(
        outs(h.d.on_pong_at(1, payload, h.at(4))),
        vec![t(1, r#"{"ltcy":"4ms"}"#)]
    );
}

#[test]
fn latency_probe_times_out_after_five_seconds() {
    let mut h = H::new();
    h.open(1);
    h.open(2);
    let r = h.send_at(1, "ping", 0);
    let [Out::Ping(1, late)] = r.as_slice() else {
        panic!("ping expected")
    };
    h.send_at(2, "latency", 1000);
    assert_eq!(h.d.next_deadline(), Some(h.at(5000)));
    assert!(outs(h.d.on_tick(h.at(4999))).is_empty());
    assert_eq!(
        outs(h.d.on_tick(h.at(5000))),
        vec![t(1, r#"{"error":"latency probe timed out"}"#)]
    );
    assert!(outs(h.d.on_tick(h.at(5500))).is_empty());
    // Its pong after the timeout gets nothing.
    assert!(outs(h.d.on_pong_at(1, late, h.at(5600))).is_empty());
    assert_eq!(
        outs(h.d.on_tick(h.at(6000))),
        vec![t(2, r#"{"error":"latency probe timed out"}"#)]
    );
    assert_eq!(h.d.next_deadline(), None);
}

#[test]
fn closing_a_session_drops_its_probes() {
    let mut h = H::new();
    h.open(1);
    h.send(1, "ping");
    h.close(1);
    assert_eq!(h.d.next_deadline(), None);
    assert!(outs(h.d.on_tick(h.at(10_000))).is_empty());
}

#[test]
fn pending_probes_per_session_are_bounded() {
    let mut h = H::new();
    h.open(1);
    let mut payloads = Vec::new();
    for _ in 0..MAX_PENDING_PROBES {
        let r = h.send(1, "ping");
        let [Out::Ping(1, p)] = r.as_slice() else {
            panic!("ping expected")
        };
        payloads.push(p.clone());
    }
    let r = h.send(1, "ping");
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], t(1, r#"{"error":"latency probe timed out"}"#));
    assert!(outs(h.d.on_pong_at(1, &payloads[0], h.at(1))).is_empty());
    assert_eq!(
        outs(h.d.on_pong_at(1, &payloads[1], h.at(1))),
        vec![t(1, r#"{"ltcy":"1ms"}"#)]
    );
}

#[test]
fn serverstat_reports_counts_and_uptime() {
    let mut h = H::with(AchexConfig {
        services: vec![("svc".to_owned(), "p".to_owned())],
        version: "wsbroker/1.2.3".to_owned(),
        ..AchexConfig::default()
    });
    h.user(1, "alex");
    h.user(2, "alex");
    h.open(3);
    h.reply(3, r#"{"serviceID":"svc","passwd":"p"}"#);
    h.open(4);
    h.send(1, r#"{"cmd":"register_broadcast","bid":"g1"}"#);
    h.send(2, r#"{"cmd":"register_broadcast","bid":"g2"}"#);
    h.send(2, r#"{"cmd":"unregister_broadcast","bid":"g2"}"#);
    h.send(1, r#"{"joinHub":"h"}"#);
    h.d.register_service("inproc").expect("register");
    assert_eq!(
        h.send_at(4, r#"{"serverstat":true}"#, 61_900),
        vec![t(
            4,
            r#"{"serverstat":{"version":"wsbroker/1.2.3","sessions":4,"users":3,"groups":1,"hubs":1,"uptime_s":61}}"#
        )]
    );
    let s = h.d.stats_at(h.at(0));
    assert_eq!((s.sessions, s.users, s.groups, s.hubs), (4, 3, 1, 1));
}

#[test]
fn default_version_names_the_crate() {
    let mut h = H::new();
    h.open(1);
    let r = h.reply(1, r#"{"serverstat":true}"#);
    let want = format!(
        r#"{{"serverstat":{{"version":"wsbroker/{}","sessions":1,"users":0,"groups":0,"hubs":0,"uptime_s":0}}}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(r, want);
}

#[test]
fn status_views_list_names_groups_and_hubs() {
    let mut h = H::new();
    h.user(1, "bob");
    h.user(2, "alex");
    h.user(3, "bob");
    h.send(1, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(3, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(2, r#"{"joinHub":"h"}"#);
    let names: Vec<(String, usize)> = h.d.names().into_iter().map(|n| (n.name, n.sessions)).collect();
    assert_eq!(names, vec![("alex".to_owned(), 1), ("bob".to_owned(), 2)]);
    assert_eq!(h.d.groups(), vec![("g".to_owned(), 2)]);
    assert_eq!(h.d.hubs(), vec![("h".to_owned(), 1)]);
}

// ---- §2.5 Errors and quiet mode ----

#[test]
fn error_table_texts() {
    let mut h = H::new();
    h.open(1);
    assert_eq!(h.reply(1, r#"{"echo":1}"#), r#"{"error":"not authenticated"}"#);
    assert_eq!(h.reply(1, r#"{"x":1}"#), r#"{"error":"no routing key in message"}"#);
    assert_eq!(
        h.reply(1, "x"),
        r#"{"error":"invalid message: expected a JSON object"}"#
    );
    assert_eq!(
        outs(h.d.on_message(1, b"\x00\x01", false)),
        vec![t(1, r#"{"error":"binary frames are not supported"}"#)]
    );
}

#[test]
fn quiet_mode_suppresses_errors_but_not_auth_failures() {
    let mut h = H::with(AchexConfig {
        quiet: true,
        ..AchexConfig::default()
    });
    h.open(1);
    for msg in [
        r#"{"echo":1}"#,
        r#"{"x":1}"#,
        "x",
        r#"{"setID":"a"}"#,
        r#"{"to":"nobody"}"#,
        r#"{"toS":99}"#,
        r#"{"bc":[]}"#,
        r#"{"cmd":"register_broadcast"}"#,
        r#"{"cmd":"zap"}"#,
        r#"{"joinHub":null}"#,
    ] {
        let r = h.send(1, msg);
        if msg.contains("setID") {
            assert_eq!(r, vec![t(1, r#"{"auth":"ok"}"#)]);
        } else {
            assert!(r.is_empty(), "{msg}: {r:?}");
        }
    }
    assert!(outs(h.d.on_message(1, b"bin", false)).is_empty());
    h.open(2);
    assert_eq!(h.reply(2, r#"{"setID":5}"#), failed("invalid name"));
    h.send(1, "ping");
    assert!(outs(h.d.on_tick(h.at(6000))).is_empty());
    // Non-error replies still flow.
    assert_eq!(h.reply(1, r#"{"joinHub":"T"}"#), r#"{"joinHub":"OK"}"#);
}

// ---- §2.6 Transcripts ----

#[test]
fn transcript_legacy() {
    let mut h = H::new();
    // Engine ids differ from SIDs on purpose: alex is SID 1, bob SIDs 2 and 5.
    assert_eq!(h.open(11), vec![t(11, r#"{"SID":1}"#)]);
    h.open(12);
    h.open(13);
    h.open(14);
    h.open(15);
    h.reply(12, r#"{"setID":"bob","passwd":"b"}"#);
    h.reply(15, r#"{"setID":"bob","passwd":"b"}"#);

    let alex = 11;
    assert_eq!(
        h.send(alex, r#"{"setID":"alex","passwd":"free"}"#),
        vec![t(alex, r#"{"auth":"ok"}"#)]
    );
    assert!(h
        .send(alex, r#"{"cmd":"register_broadcast","bid":"room42"}"#)
        .is_empty());
    assert_eq!(
        h.send(alex, r#"{"bc":"room42","type":"hello"}"#),
        vec![t(alex, r#"{"bc":"room42","type":"hello","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(
        h.send(alex, r#"{"to":"bob","msg":"hi","FROM":"fake","sID":99}"#),
        vec![
            t(12, r#"{"to":"bob","msg":"hi","FROM":"alex","sID":1}"#),
            t(15, r#"{"to":"bob","msg":"hi","FROM":"alex","sID":1}"#)
        ]
    );
    assert_eq!(
        h.send(alex, r#"{"tos":"5","msg":"only you"}"#),
        vec![t(15, r#"{"tos":"5","msg":"only you","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(
        h.send(alex, r#"{"to":"nobody"}"#),
        vec![t(alex, r#"{"error":"no such user: nobody"}"#)]
    );
    let r = h.send_at(alex, "ping", 100);
    let [Out::Ping(to, payload)] = r.as_slice() else {
        panic!("ping expected")
    };
    assert_eq!(*to, alex);
    assert_eq!(
        outs(h.d.on_pong_at(alex, payload, h.at(102))),
        vec![t(alex, r#"{"ltcy":"2ms"}"#)]
    );
}

#[test]
fn transcript_cloud() {
    let mut h = H::new();
    h.open(1);
    h.open(2);
    h.reply(2, r#"{"auth":"bob"}"#);
    h.reply(2, r#"{"joinHub":"T1"}"#);

    let alice = 3;
    assert_eq!(h.open(alice), vec![t(alice, r#"{"SID":3}"#)]);
    assert_eq!(
        h.send(alice, r#"{"auth":"alice@00001023"}"#),
        vec![t(alice, r#"{"auth":"OK","SID":3}"#)]
    );
    assert_eq!(
        h.send(alice, r#"{"joinHub":"T1"}"#),
        vec![t(alice, r#"{"joinHub":"OK"}"#)]
    );
    assert_eq!(
        h.send(alice, r#"{"toH":"T1","msg":"joined"}"#),
        vec![t(2, r#"{"toH":"T1","msg":"joined","FROM":"alice@00001023","sID":3}"#)]
    );
    assert_eq!(h.close(2), vec![t(alice, r#"{"leftHub":"T1","user":"bob","sID":2}"#)]);
}

// ---- host services and events ----

#[test]
fn in_process_service_receives_and_sends() {
    let mut h = H::new();
    h.user(1, "alex");
    let svc = h.d.register_service("calc").expect("register");
    assert_eq!(svc.sid(), 2);
    assert_eq!(
        h.d.register_service("calc"),
        Err(HostError::Login(LoginError::NameInUse))
    );
    assert_eq!(
        h.d.register_service("alex"),
        Err(HostError::Login(LoginError::NameInUse))
    );
    assert_eq!(h.d.register_service(""), Err(HostError::Login(LoginError::InvalidName)));
    h.open(3);
    assert_eq!(h.reply(3, r#"{"setID":"calc"}"#), failed("name in use"));

    assert!(h.send(1, r#"{"to":"calc","op":"add","a":1}"#).is_empty());
    assert!(h.send(1, r#"{"toS":2,"op":"sub"}"#).is_empty());
    let items = h.d.take_host_items();
    let bodies: Vec<String> = items
        .iter()
        .map(|i| match i {
            HostItem::Message {
                service,
                from_name,
                from_sid,
                json,
            } => {
                assert_eq!((*service, from_name.as_str(), *from_sid), (svc, "alex", 1));
                String::from_utf8(json.to_vec()).expect("utf8")
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            r#"{"to":"calc","op":"add","a":1,"FROM":"alex","sID":1}"#,
            r#"{"toS":2,"op":"sub","FROM":"alex","sID":1}"#
        ]
    );
    assert!(h.d.take_host_items().is_empty());

    let r =
        h.d.service_send(svc, &HostTarget::Name("alex".into()), br#"{"r":2,"sID":0}"#)
            .expect("send");
    assert_eq!(outs(r), vec![t(1, r#"{"r":2,"FROM":"calc","sID":2}"#)]);
    let r =
        h.d.service_send(svc, &HostTarget::Session(3), br#"{"hi":1}"#)
            .expect("send");
    assert_eq!(outs(r), vec![t(3, r#"{"hi":1,"FROM":"calc","sID":2}"#)]);
    assert_eq!(
        h.d.service_send(svc, &HostTarget::Name("zed".into()), b"{}"),
        Err(HostError::NoSuchUser)
    );
    assert_eq!(
        h.d.service_send(svc, &HostTarget::Session(77), b"{}"),
        Err(HostError::NoSuchSession)
    );
    assert_eq!(
        h.d.service_send(svc, &HostTarget::Group("g".into()), b"[1]"),
        Err(HostError::NotAnObject)
    );
    // Services count as users, not as connections.
    let s = h.d.stats();
    assert_eq!((s.sessions, s.users), (2, 2));
}

#[test]
fn in_process_service_in_groups_and_hubs() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    h.send(1, r#"{"joinHub":"T"}"#);
    h.send(2, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    let svc = h.d.register_service("bot").expect("register");
    assert_eq!(h.d.service_join(svc, Membership::Hub, "T"), Ok(true));
    assert_eq!(h.d.service_join(svc, Membership::Hub, "T"), Ok(false));
    assert_eq!(h.d.service_join(svc, Membership::Group, "g"), Ok(true));

    assert!(h.send(1, r#"{"toH":"T","x":1}"#).is_empty());
    assert_eq!(
        h.send(1, r#"{"bc":"g"}"#),
        vec![t(2, r#"{"bc":"g","FROM":"alex","sID":1}"#)]
    );
    assert_eq!(h.d.take_host_items().len(), 2);

    let r =
        h.d.service_send(svc, &HostTarget::Hub("T".into()), br#"{"y":1}"#)
            .expect("send");
    assert_eq!(outs(r), vec![t(1, r#"{"y":1,"FROM":"bot","sID":3}"#)]);
    let r =
        h.d.service_send(svc, &HostTarget::Group("g".into()), br#"{"z":1}"#)
            .expect("send");
    assert_eq!(outs(r), vec![t(2, r#"{"z":1,"FROM":"bot","sID":3}"#)]);
    assert!(h.d.take_host_items().len() == 1, "the service is in g too");

    // A client leaving the hub tells the service.
    h.send(1, r#"{"leaveHub":"T"}"#);
    let items = h.d.take_host_items();
    assert!(matches!(
        items.as_slice(),
        [HostItem::Message { json, .. }] if &json[..] == br#"{"leftHub":"T","user":"alex","sID":1}"#
    ));
    h.send(1, r#"{"joinHub":"T"}"#);
    let r = h.d.service_leave(svc, Membership::Hub, "T").expect("leave");
    assert_eq!(outs(r), vec![t(1, r#"{"leftHub":"T","user":"bot","sID":3}"#)]);
    h.d.service_join(svc, Membership::Hub, "T").expect("join");
    let r = h.d.unregister_service(svc).expect("unregister");
    assert_eq!(outs(r), vec![t(1, r#"{"leftHub":"T","user":"bot","sID":3}"#)]);
    assert_eq!(h.d.unregister_service(svc), Err(HostError::UnknownService));
    assert_eq!(h.reply(1, r#"{"to":"bot"}"#), r#"{"error":"no such user: bot"}"#);
    assert_eq!(h.reply(1, r#"{"toS":3}"#), r#"{"error":"no such session: 3"}"#);
    assert_eq!(h.d.stats().sessions, 2);
}

#[test]
fn events_report_login_logout_join_and_leave_when_enabled() {
    let mut h = H::new();
    h.user(1, "alex");
    assert!(h.d.take_host_items().is_empty(), "events are off by default");
    h.d.set_events(true);
    h.reply(1, r#"{"setID":"bob"}"#);
    h.reply(1, r#"{"setID":"bob"}"#);
    h.send(1, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(1, r#"{"cmd":"register_broadcast","bid":"g"}"#);
    h.send(1, r#"{"joinHub":"T"}"#);
    h.send(1, r#"{"leaveHub":"T"}"#);
    h.send(1, r#"{"joinHub":"U"}"#);
    h.close(1);
    let ev: Vec<AchexEvent> =
        h.d.take_host_items()
            .into_iter()
            .map(|i| match i {
                HostItem::Event(e) => e,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
    let (session, sid) = (1, 1);
    // Memberships carry the session's name, also when it leaves by closing.
    let join = |kind, place: &str| AchexEvent::Join {
        session,
        sid,
        kind,
        place: place.into(),
        name: "bob".into(),
    };
    let leave = |kind, place: &str| AchexEvent::Leave {
        session,
        sid,
        kind,
        place: place.into(),
        name: "bob".into(),
    };
    assert_eq!(
        ev,
        vec![
            AchexEvent::Logout {
                session,
                sid,
                name: "alex".into()
            },
            AchexEvent::Login {
                session,
                sid,
                name: "bob".into(),
                service: false
            },
            join(Membership::Group, "g"),
            join(Membership::Hub, "T"),
            leave(Membership::Hub, "T"),
            join(Membership::Hub, "U"),
            leave(Membership::Group, "g"),
            leave(Membership::Hub, "U"),
            AchexEvent::Logout {
                session,
                sid,
                name: "bob".into()
            },
        ]
    );
}

// ---- robustness ----

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "toS",
    "tos",
    "to",
    "bc",
    "toH",
    "setID",
    "auth",
    "serviceID",
    "idtag",
    "passwd",
    "cmd",
    "bid",
    "joinHub",
    "leaveHub",
    "echo",
    "ping",
    "latency",
    "serverstat",
    "FROM",
    "sID",
    "msg",
];

fn random_value(r: &mut Rng, depth: usize) -> String {
    match r.below(if depth > 3 { 6 } else { 9 }) {
        0 => "null".into(),
        1 => "true".into(),
        2 => r
            .pick(&["0", "1", "2", "3", "-1", "1E5", "2.50", "99999999999999999999"])
            .into(),
        3..=5 => json::quote(r.pick(&[
            "",
            "alex",
            "bob",
            "svc",
            "1",
            "2",
            "room",
            "T1",
            "register_broadcast",
            "unregister_broadcast",
            "p",
            "é/\u{1}\"",
        ])),
        6 => {
            let n = r.below(3);
            let items: Vec<String> = (0..n).map(|_| random_value(r, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => random_object(r, depth + 1),
    }
}

fn random_object(r: &mut Rng, depth: usize) -> String {
    let n = r.below(5);
    let members: Vec<String> = (0..n)
        .map(|_| format!("{}:{}", json::quote(r.pick(KEYS)), random_value(r, depth)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Checks what any output must satisfy, whatever the input; returns how many
/// stamped messages went to a session other than their sender.
fn check(d: &AchexDialect, actions: &[Action], open: &[SessionId]) -> usize {
    let mut relayed = 0;
    for a in actions {
        match a {
            Action::Send { to, data, text } => {
                assert!(*text);
                assert!(open.contains(to), "send to closed session {to}");
                let v: serde_json::Value = serde_json::from_slice(data).expect("every reply is valid JSON");
                assert!(v.is_object());
                if let Some(from) = v.get("sID").and_then(|n| n.as_u64()) {
                    if d.session_of(from) != Some(*to) && v.get("leftHub").is_none() {
                        relayed += 1;
                    }
                }
            }
            Action::Ping { to, payload } => {
                assert!(open.contains(to));
                assert!(payload.len() <= 125);
            }
            Action::Close { .. } => panic!("the dialect never closes"),
        }
    }
    let s = d.stats();
    assert_eq!(s.sessions, open.len());
    relayed
}

#[test]
fn random_input_never_panics_and_output_stays_valid() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut d = AchexDialect::new(with_services());
    d.set_events(true);
    let t0 = Instant::now();
    let mut open: Vec<SessionId> = Vec::new();
    let mut next_id = 1;
    let mut pings: Vec<(SessionId, Vec<u8>)> = Vec::new();
    let mut relayed = 0;
    for i in 0..20_000u64 {
        let now = t0 + Duration::from_millis(i);
        if open.len() < 3 || r.below(50) == 0 {
            let a = d.on_open(next_id);
            open.push(next_id);
            next_id += 1;
            check(&d, &a, &open);
        }
        if r.below(80) == 0 {
            let victim = open.remove(r.below(open.len()));
            let a = d.on_close(victim);
            check(&d, &a, &open);
        }
        let s = open[r.below(open.len())];
        let data: Vec<u8> = if i % 2 == 0 {
            // Random bytes, sometimes inside something JSON-like.
            let n = r.below(40);
            let mut v: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            if r.below(3) == 0 {
                v.insert(0, b'{');
                v.push(b'}');
            }
            v
        } else {
            random_object(&mut r, 0).into_bytes()
        };
        let is_text = r.below(10) != 0;
        let a = d.on_message_at(s, &data, is_text, now);
        for act in &a {
            if let Action::Ping { to, payload } = act {
                pings.push((*to, payload.clone()));
            }
        }
        relayed += check(&d, &a, &open);
        if !pings.is_empty() && r.below(3) == 0 {
            let (to, p) = pings.swap_remove(r.below(pings.len()));
            let a = d.on_pong_at(to, &p, now);
            check(&d, &a, &open);
        }
        if r.below(5) == 0 {
            let garbage: Vec<u8> = (0..r.below(20)).map(|_| r.next() as u8).collect();
            let a = d.on_pong_at(s, &garbage, now);
            check(&d, &a, &open);
        }
        let a = d.on_tick(now);
        check(&d, &a, &open);
        d.take_host_items();
    }
    for s in open.clone() {
        let a = d.on_close(s);
        open.retain(|&o| o != s);
        check(&d, &a, &open);
    }
    // The generator must reach routing, or this test proves little.
    assert!(relayed > 100, "only {relayed} messages relayed");
    let s = d.stats();
    assert_eq!((s.sessions, s.users, s.groups, s.hubs), (0, 0, 0, 0));
    assert!(d.names().is_empty());
    assert_eq!(d.next_deadline(), None);
}

// ---- stamping against the previous implementation ----

/// The stamping rule as written before routing borrowed from the message:
/// the previous parser's owned tree, edited and encoded again.
fn stamped_the_old_way(doc: &[u8], name: &str, sid: u64) -> Option<String> {
    use crate::broker::json::{reference, Json};
    let Ok(Json::Object(mut obj)) = reference::parse(doc) else {
        return None;
    };
    obj.remove("FROM");
    obj.remove("sID");
    obj.insert("FROM", Json::String(name.to_owned()));
    obj.insert("sID", Json::Number(sid.to_string()));
    String::from_utf8(obj.to_bytes()).ok()
}

#[test]
fn relayed_messages_match_the_previous_stamping_on_random_documents() {
    use crate::broker::json::reference::{gen_object, Rng as DocRng};
    // Neither routing nor command keys, so every valid document is routed
    // by its leading `to`; escaped spellings of `FROM` must go too.
    const MEMBER_KEYS: &[&str] = &[
        "a",
        "b",
        "\\u0061",
        "FROM",
        "sID",
        "FR\\u004fM",
        "s\\u0049D",
        "k\\/",
        "k/",
        "",
    ];
    let mut r = DocRng(0x2545_f491_4f6c_dd1d);
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    let (mut delivered, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut members = String::new();
        gen_object(&mut r, 1, MEMBER_KEYS, &mut members);
        let mut doc = match members.strip_prefix('{') {
            Some("}") | None => "{\"to\":\"bob\"}".to_owned(),
            Some(rest) => format!("{{\"to\":\"bob\",{rest}"),
        };
        if r.below(10) == 0 {
            let mut cut = r.below(doc.len());
            while !doc.is_char_boundary(cut) {
                cut -= 1;
            }
            doc.truncate(cut);
        }
        let got = h.send(1, &doc);
        match stamped_the_old_way(doc.as_bytes(), "alex", 1) {
            Some(expect) => {
                assert_eq!(got, vec![t(2, &expect)], "{doc}");
                delivered += 1;
            }
            None => {
                assert_eq!(
                    got,
                    vec![t(1, r#"{"error":"invalid message: expected a JSON object"}"#)],
                    "{doc}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        delivered > 5_000 && refused > 1_000,
        "{delivered} delivered, {refused} refused"
    );
}

#[test]
fn escaped_routing_keys_names_and_stamps_are_decoded() {
    let mut h = H::new();
    h.user(1, "alex");
    h.user(2, "bob");
    assert_eq!(
        h.send(
            1,
            r#"{ "t\u006f" : "b\u006fb", "m" : [ "\/", "\u00e9" ], "FR\u004fM" : "x", "s\u0049D" : 9 }"#
        ),
        vec![t(2, r#"{"to":"bob","m":["/","é"],"FROM":"alex","sID":1}"#)]
    );
    // A name that needs escaping is escaped in the stamp.
    h.user(3, "a\"b");
    assert_eq!(
        h.send(3, r#"{"to":"bob"}"#),
        vec![t(2, r#"{"to":"bob","FROM":"a\"b","sID":3}"#)]
    );
}
