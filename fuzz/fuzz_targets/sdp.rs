//! SDP parser and RFC 3264 offer/answer negotiation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::media::codec::Codec;
use switchboard::sip::sdp::{negotiate, SessionDescription};

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = SessionDescription::parse(data) {
        if let Ok(n) = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]) {
            let _ = n.is_on_hold();
        }
        let _ = negotiate(&sd, &[Codec::Pcma]);
    }
});
