//! Browser messages (the first is the login) against a namespace with one
//! user whose salt is known: only the exact `1!SALT` may bind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbroker::dialect::webtalk::{Webtalk, SALT_LEN};
use wsbroker::dialect::Action;

const SALT: [u8; SALT_LEN] = *b"40381957220467715836";

fuzz_target!(|data: &[u8]| {
    let mut wt = Webtalk::with_salt_source(Box::new(|| Some(SALT)));
    let (user, _) = wt.create_user().unwrap();
    let mut out = Vec::new();
    wt.whisper(user, b"queued", &mut out).unwrap();
    // Frames separated by 0xFF; the low bit of each frame's first byte picks
    // text or binary and the session.
    for (i, frame) in data.split(|&b| b == 0xff).enumerate() {
        let sid = (i % 3) as u64 + 1;
        let text = frame.first().is_none_or(|b| b & 1 == 0);
        wt.on_open(sid);
        let actions = wt.on_message(sid, frame, text);
        let good = text && is_login_of_user_1(frame);
        for a in &actions {
            if let Action::Close { code, .. } = a {
                assert!(*code == 4001 || *code == 4002);
            }
        }
        if !good {
            assert!(actions.iter().all(|a| !matches!(a, Action::Send { .. })));
        }
        if i % 4 == 3 {
            wt.on_close(sid);
        }
    }
});

/// `ID!SALT` naming user 1 (leading zeros allowed) with the right salt.
fn is_login_of_user_1(frame: &[u8]) -> bool {
    let Some(at) = frame.iter().position(|&b| b == b'!') else {
        return false;
    };
    let (id, salt) = (&frame[..at], &frame[at + 1..]);
    let digits = !id.is_empty() && id.iter().all(u8::is_ascii_digit);
    digits && id.iter().rev().skip(1).all(|&b| b == b'0') && id.last() == Some(&b'1') && salt == SALT
}
