//! Achex messages from a few sessions: no panic, and every text sent is
//! UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbroker::dialect::achex::{AchexConfig, AchexDialect};
use wsbroker::dialect::Action;

fuzz_target!(|data: &[u8]| {
    let mut d = AchexDialect::new(AchexConfig::default());
    for sid in 1..=3 {
        d.on_open(sid);
    }
    d.on_message(2, br#"{"setID":"bob","passwd":"x"}"#, true);
    for (i, frame) in data.split(|&b| b == 0xff).enumerate() {
        let sid = (i % 3) as u64 + 1;
        let text = i % 5 != 4;
        for a in d.on_message(sid, frame, text) {
            if let Action::Send { data, text: true, .. } = a {
                assert!(std::str::from_utf8(&data).is_ok());
            }
        }
    }
    d.on_close(1);
});
