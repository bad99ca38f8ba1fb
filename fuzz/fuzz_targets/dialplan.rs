//! Dialplan TOML loader: any text must load or be rejected with errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::ivr::loader::{load_str, LoadContext};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = LoadContext {
        prompt_exists: &|_, _| true,
        queues: &[],
    };
    let _ = load_str("f.toml", s, &ctx);
});
