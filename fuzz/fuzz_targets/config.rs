//! The YAML configuration, loaded and validated as `latchkey serve` does,
//! then turned into the pieces start-up derives from it without I/O.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The last byte decides `--dev`, which changes validation (bcrypt cost).
    let dev = data.last().is_some_and(|b| b & 1 == 1);
    if let Ok(loaded) = latchkey::config::load_str(text, std::iter::empty(), dev) {
        let config = &loaded.config;
        let _ = config.redacted_dsn();
        let _ = latchkey::startup::backend_of(&config.dsn);
        let _ = latchkey::startup::hasher_config(config);
    }
});
