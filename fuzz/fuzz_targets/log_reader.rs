//! The log record reader: arbitrary bytes as a group's log file, opened as the daemon would.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loot_sync::store::{LogStore, StateLock};
use std::sync::OnceLock;

/// One state directory for the whole run (a fresh one per input costs most of the time).
static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    std::fs::write(LogStore::log_path(dir.path(), "raid"), data).expect("write log");
    let lock = StateLock::acquire(dir.path()).expect("lock");
    if let Ok((store, entries, report)) = LogStore::open(lock, "raid") {
        assert_eq!(report.entries, entries.len());
        for entry in &entries {
            entry
                .validate()
                .expect("the reader only returns valid entries");
        }
        drop(store);
        // Whatever was accepted (and any torn tail cut) reopens to the same entries.
        let lock = StateLock::acquire(dir.path()).expect("lock");
        let (_, again, _) = LogStore::open(lock, "raid").expect("reopen");
        assert_eq!(again, entries);
    }
});
