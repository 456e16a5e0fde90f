//! Clear datagrams (no group key): the wire codec, then the sync core behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loot_sync::core::sync::Channel;
use loot_sync::proto::wire;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = wire::decode(data) {
        // Whatever decodes re-encodes to the same message (when it fits our send limit).
        if let Ok(bytes) = wire::encode(&envelope) {
            assert_eq!(wire::decode(&bytes).expect("re-decode"), envelope);
        }
    }
    let mut peer = common::peer();
    let from = "127.0.0.1:2000".parse().unwrap();
    peer.handle_datagram(common::NOW, Channel::Whisper, from, data);
    common::check_actions(&mut peer);
    peer.handle_timeout(common::NOW);
    common::check_actions(&mut peer);
});
