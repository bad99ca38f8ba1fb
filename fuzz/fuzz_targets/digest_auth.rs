//! Digest authentication header parsers (WWW-Authenticate / Authorization values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::sip::auth::{parse_challenge, parse_credentials};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = parse_challenge(s) {
        let _ = format!("{c:?}");
    }
    if let Ok(c) = parse_credentials(s) {
        let _ = c.nc_value();
    }
});
