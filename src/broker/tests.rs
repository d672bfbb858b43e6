use std::collections::HashMap;
use std::sync::Arc;

use super::*;

fn broker_with(ids: &[SessionId]) -> Broker {
    let mut b = Broker::new(AuthMode::Open);
    for &id in ids {
        assert!(b.open(id));
    }
    b
}

#[test]
fn open_rejects_a_duplicate_id() {
    let mut b = broker_with(&[1]);
    assert!(!b.open(1));
    assert_eq!(b.stats().sessions, 1);
}

#[test]
fn a_name_reaches_every_session_holding_it() {
    let mut b = broker_with(&[1, 2, 3, 5]);
    b.login_user(5, "bob", "").expect("login");
    b.login_user(2, "bob", "").expect("login");
    b.login_user(1, "alex", "").expect("login");
    assert_eq!(b.recipients(Target::Name("bob")), vec![2, 5]);
    assert_eq!(b.recipients(Target::Name("alex")), vec![1]);
    assert!(b.recipients(Target::Name("nobody")).is_empty());
}

#[test]
fn a_session_target_needs_only_an_open_session() {
    let mut b = broker_with(&[4]);
    assert_eq!(b.recipients(Target::Session(4)), vec![4]);
    assert!(b.recipients(Target::Session(9)).is_empty());
    b.close(4);
    assert!(b.recipients(Target::Session(4)).is_empty());
}

#[test]
fn open_mode_first_claimer_sets_the_password_until_the_last_holder_leaves() {
    let mut b = broker_with(&[1, 2, 3]);
    b.login_user(1, "alex", "free").expect("first claim");
    assert_eq!(b.login_user(2, "alex", "other"), Err(LoginError::WrongPassword));
    assert_eq!(b.name_of(2), None);
    b.login_user(2, "alex", "free").expect("matching password");
    b.close(1);
    assert_eq!(b.login_user(3, "alex", "new"), Err(LoginError::WrongPassword));
    b.close(2);
    let s = b.login_user(3, "alex", "new").expect("claim ended, new claim");
    assert!(s.changed);
}

#[test]
fn table_mode_checks_configured_credentials() {
    let table = HashMap::from([("alex".to_owned(), "free".to_owned())]);
    let mut b = Broker::new(AuthMode::Table(table));
    b.open(1);
    assert_eq!(b.login_user(1, "alex", "x"), Err(LoginError::InvalidCredentials));
    assert_eq!(b.login_user(1, "eve", "free"), Err(LoginError::InvalidCredentials));
    b.login_user(1, "alex", "free").expect("table match");
}

#[test]
fn callback_mode_asks_the_host() {
    let mut b = Broker::new(AuthMode::Callback(Box::new(|name, pw| match (name, pw) {
        ("alex", "free") => Ok(()),
        ("mute", _) => Err(String::new()),
        _ => Err("go away".to_owned()),
    })));
    b.open(1);
    b.login_user(1, "alex", "free").expect("host accepts");
    assert_eq!(
        b.login_user(1, "bob", "x"),
        Err(LoginError::Rejected("go away".to_owned()))
    );
    assert_eq!(
        b.login_user(1, "mute", "x"),
        Err(LoginError::Rejected("rejected".to_owned()))
    );
    assert_eq!(b.name_of(1), Some("alex"));
}

#[test]
fn relogin_switches_and_releases_the_old_name() {
    let mut b = broker_with(&[1, 2]);
    b.login_user(1, "alex", "").expect("login");
    b.login_user(2, "alex", "").expect("login");
    let s = b.login_user(1, "carl", "").expect("switch");
    assert_eq!(s.previous.as_deref(), Some("alex"));
    assert_eq!(b.recipients(Target::Name("alex")), vec![2]);
    b.login_user(2, "dora", "").expect("switch");
    assert!(b.names().iter().all(|n| n.name != "alex"));
    let same = b.login_user(2, "dora", "").expect("same name again");
    assert!(!same.changed);
}

#[test]
fn failed_relogin_keeps_the_old_identity() {
    let mut b = broker_with(&[1, 2]);
    b.login_user(1, "bob", "pw").expect("login");
    b.login_user(2, "alex", "").expect("login");
    assert_eq!(b.login_user(2, "bob", "no"), Err(LoginError::WrongPassword));
    assert_eq!(b.name_of(2), Some("alex"));
    assert_eq!(b.login_user(2, "", "x"), Err(LoginError::InvalidName));
    assert_eq!(b.name_of(2), Some("alex"));
}

#[test]
fn memberships_survive_relogin() {
    let mut b = broker_with(&[1]);
    b.login_user(1, "a", "").expect("login");
    b.join_group(1, "g");
    b.join_hub(1, "h");
    b.login_user(1, "b", "").expect("switch");
    assert_eq!(b.groups_of(1), vec!["g".to_owned()]);
    assert_eq!(b.hubs_of(1), vec!["h".to_owned()]);
}

#[test]
fn service_names_are_exclusive() {
    let mut b = broker_with(&[1, 2, 3]);
    b.set_service_credentials("svc", "p");
    assert_eq!(b.login_service(1, "nope", "p", "nope"), Err(LoginError::UnknownService));
    assert_eq!(b.login_service(1, "svc", "x", "svc"), Err(LoginError::WrongPassword));
    b.login_service(1, "svc", "p", "svc-1").expect("service login");
    assert_eq!(b.role_of(1), Some(Role::Service));
    assert_eq!(b.login_service(2, "svc", "p", "svc-1"), Err(LoginError::NameInUse));
    assert_eq!(b.login_user(2, "svc-1", ""), Err(LoginError::NameInUse));
    b.login_user(3, "carol", "").expect("user");
    assert_eq!(b.login_service(2, "svc", "p", "carol"), Err(LoginError::NameInUse));
    // The holder itself may log in again under its own name.
    let again = b.login_service(1, "svc", "p", "svc-1").expect("idempotent");
    assert!(!again.changed);
    b.close(1);
    b.login_service(2, "svc", "p", "svc-1").expect("name free again");
}

#[test]
fn removed_service_credentials_refuse_new_logins() {
    let mut b = broker_with(&[1]);
    b.set_service_credentials("svc", "p");
    assert!(b.remove_service_credentials("svc"));
    assert_eq!(b.login_service(1, "svc", "p", "svc"), Err(LoginError::UnknownService));
}

#[test]
fn groups_are_idempotent_and_include_every_member() {
    let mut b = broker_with(&[1, 2, 3]);
    assert!(b.join_group(1, "room42"));
    assert!(!b.join_group(1, "room42"));
    assert!(b.join_group(3, "room42"));
    assert_eq!(b.recipients(Target::Group("room42")), vec![1, 3]);
    assert!(b.leave_group(1, "room42"));
    assert!(!b.leave_group(1, "room42"));
    assert_eq!(b.recipients(Target::Group("room42")), vec![3]);
    assert!(b.recipients(Target::Group("empty")).is_empty());
}

#[test]
fn hubs_deliver_with_or_without_the_sender() {
    let mut b = broker_with(&[1, 2, 3]);
    b.join_hub(1, "T1");
    b.join_hub(2, "T1");
    b.join_hub(2, "T2");
    assert_eq!(b.recipients(Target::Hub("T1")), vec![1, 2]);
    assert_eq!(b.recipients(Target::HubExcept("T1", 2)), vec![1]);
    // A non-member sender excludes nobody.
    assert_eq!(b.recipients(Target::HubExcept("T1", 3)), vec![1, 2]);
    assert_eq!(b.leave_hub(2, "T1"), Some(vec![1]));
    assert_eq!(b.leave_hub(2, "T1"), None);
    assert_eq!(b.hubs_of(2), vec!["T2".to_owned()]);
}

#[test]
fn close_reports_what_the_session_left() {
    let mut b = broker_with(&[1, 2]);
    b.login_user(2, "bob", "").expect("login");
    b.join_group(2, "g");
    b.join_hub(1, "T1");
    b.join_hub(2, "T1");
    b.join_hub(2, "T9");
    let d = b.close(2).expect("was open");
    assert_eq!(d.name.as_deref(), Some("bob"));
    assert_eq!(d.groups, vec!["g".to_owned()]);
    assert_eq!(d.hubs, vec![("T1".to_owned(), vec![1]), ("T9".to_owned(), vec![])]);
    assert_eq!(b.close(2), None);
    assert!(b.names().is_empty());
}

#[test]
fn stats_count_only_groups_and_hubs_with_members() {
    let mut b = broker_with(&[1, 2, 3]);
    b.set_service_credentials("svc", "p");
    b.login_user(1, "a", "").expect("login");
    b.login_user(2, "a", "").expect("login");
    b.login_service(3, "svc", "p", "svc").expect("service");
    b.join_group(1, "g1");
    b.join_group(2, "g2");
    b.join_hub(1, "h1");
    b.leave_group(2, "g2");
    assert_eq!(
        b.stats(),
        Stats {
            sessions: 3,
            names: 2,
            groups: 1,
            hubs: 1
        }
    );
    assert_eq!(b.groups(), vec![("g1".to_owned(), 1)]);
    assert_eq!(b.hubs(), vec![("h1".to_owned(), 1)]);
    assert_eq!(
        b.names(),
        vec![
            NameInfo {
                name: "a".into(),
                role: Role::User,
                sessions: 2
            },
            NameInfo {
                name: "svc".into(),
                role: Role::Service,
                sessions: 1
            }
        ]
    );
}

#[test]
fn deliver_shares_one_allocation_among_recipients() {
    let mut b = broker_with(&[1, 2, 3]);
    for id in [1, 2, 3] {
        b.join_group(id, "g");
    }
    let data: Shared = Arc::from(&b"hello"[..]);
    let actions = b.deliver(Target::Group("g"), &data, true);
    assert_eq!(actions.len(), 3);
    for (a, want) in actions.iter().zip([1, 2, 3]) {
        match a {
            Action::Send { to, data: d, text } => {
                assert_eq!(*to, want);
                assert!(*text);
                assert!(Arc::ptr_eq(d, &data));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn operations_on_unknown_sessions_do_nothing() {
    let mut b = broker_with(&[]);
    assert_eq!(b.login_user(7, "a", ""), Err(LoginError::NoSuchSession));
    assert!(!b.join_group(7, "g"));
    assert!(!b.join_hub(7, "h"));
    assert_eq!(b.leave_hub(7, "h"), None);
    assert_eq!(b.stats(), Stats::default());
}

#[test]
fn debug_output_hides_passwords() {
    let mut b = broker_with(&[1]);
    b.set_service_credentials("svc", "s3cret-service");
    b.login_user(1, "alex", "s3cret-user").expect("login");
    let shown = format!("{b:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("sessions: 1"), "{shown}");
}
