//! The admin byte stream, cut into reads at fuzzer-chosen points: every
//! reply must be a well-formed frame, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbroker::dialect::webtalk::admin::AdminSession;
use wsbroker::dialect::webtalk::{Webtalk, SALT_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, stream)) = data.split_first() else {
        return;
    };
    let mut wt = Webtalk::with_salt_source(Box::new(|| Some([b'7'; SALT_LEN])));
    // Some sessions need the secret, decided by the first byte.
    let secret: Option<&[u8]> = (cuts & 0x80 != 0).then_some(b"s");
    let mut session = AdminSession::new(secret);
    let step = usize::from(cuts & 0x7f) + 1;
    let mut browser = 1u64;
    for read in stream.chunks(step) {
        // Browsers come and go between reads so deliveries have targets.
        wt.on_open(browser);
        let out = session.feed(read, &mut wt);
        check_replies(&out.reply);
        browser += 1;
        if out.close {
            assert!(session.is_closed());
            break;
        }
    }
});

fn check_replies(mut r: &[u8]) {
    while !r.is_empty() {
        assert!(r.len() >= 5, "truncated header");
        let len: usize = std::str::from_utf8(&r[..5]).unwrap().parse().unwrap();
        assert!(r.len() >= 5 + len, "truncated body");
        let body = &r[5..5 + len];
        assert!(body.starts_with(b"[ok] ") || body.starts_with(b"[error] "));
        r = &r[5 + len..];
    }
}
