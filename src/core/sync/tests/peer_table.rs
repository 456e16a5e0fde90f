//! What the peer table makes of the names peers give themselves.

use super::*;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where a test's log lines go.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_peer_using_our_node_name_is_warned_about_once() {
    let mut a = peer(0, vec![], 1);
    let own = a.cfg.node_name.clone();
    let hello = |name: &str| {
        Body::Hello(Hello {
            name: name.into(),
            fingerprint: Fingerprint::default(),
            newest: None,
        })
    };
    let summary = |name: &str| {
        Body::SyncResponse(SyncResponse::Summary {
            name: name.into(),
            fingerprint: Fingerprint::default(),
            cookie: None,
        })
    };
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Node 42 shares our name: in HELLOs on both channels and in a summary.
        for (ms, body) in [(1, hello(&own)), (2, hello(&own)), (3, summary(&own))] {
            let d = clear_datagram(42, 4000, body);
            a.handle_datagram(now(ms), Channel::Group, addr(4000), &d);
            a.handle_datagram(now(ms), Channel::Whisper, addr(4000), &d);
        }
        // Node 43 too, once; node 44 has a name of its own.
        let d = clear_datagram(43, 4001, hello(&own));
        a.handle_datagram(now(4), Channel::Group, addr(4001), &d);
        let d = clear_datagram(44, 4002, hello("someone-else"));
        a.handle_datagram(now(5), Channel::Group, addr(4002), &d);
        // Sync switched off and on again: still not repeated.
        a.set_sync_enabled(now(6), false);
        a.set_sync_enabled(now(7), true);
        let d = clear_datagram(42, 4000, hello(&own));
        a.handle_datagram(now(8), Channel::Group, addr(4000), &d);
    });
    assert_eq!(a.stats().name_clashes, 2);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(warnings[0].contains("sync") && warnings[0].contains("000000000000002a"));
    assert!(warnings[1].contains("000000000000002b"), "{log}");
    assert!(warnings.iter().all(|w| w.contains(&format!("{own:?}"))));
    // The name is still recorded (the switch forgot the peers; only 42 was heard again).
    let named: Vec<u64> = a
        .peers()
        .filter(|p| p.name.as_deref() == Some(own.as_str()))
        .map(|p| p.node)
        .collect();
    assert_eq!(named, vec![42]);
}
