//! The control-socket request parser; whatever parses prints back to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loot_sync::control::parse_request;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(request) = parse_request(&line) {
        let printed = serde_json::to_string(&request).expect("requests serialize");
        assert_eq!(
            parse_request(&printed).expect("printed request parses"),
            request
        );
    }
});
