//! The TOML config parser and validator; whatever validates prints back to the same config.
#![no_main]
use libfuzzer_sys::fuzz_target;
use loot_sync::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_toml_str(text, "<fuzz>") {
        let printed = config.to_toml_string();
        let back = Config::from_toml_str(&printed, "<printed>").expect("printed config parses");
        assert_eq!(back, config);
    }
});
