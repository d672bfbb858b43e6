//! WSChat messages from a few sessions: every reply is one JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbroker::broker::json::{self, Json};
use wsbroker::dialect::wschat::WsChat;
use wsbroker::dialect::Action;

fuzz_target!(|data: &[u8]| {
    let mut chat = WsChat::new();
    for sid in 1..=3 {
        chat.on_open(sid);
    }
    chat.on_message(2, br#"{"command":"identify","name":"bob"}"#, true);
    for (i, frame) in data.split(|&b| b == 0xff).enumerate() {
        let sid = (i % 3) as u64 + 1;
        let text = i % 7 != 6;
        for a in chat.on_message(sid, frame, text) {
            let Action::Send { data, text, .. } = a else {
                panic!("WSChat only sends");
            };
            assert!(text);
            assert!(matches!(json::parse(&data), Ok(Json::Object(_))));
        }
    }
    chat.on_close(1);
});
