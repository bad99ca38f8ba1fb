//! RTP header parser and RFC 4733 telephone-event payload parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::media::rtp::RtpPacket;
use switchboard::media::telephone_event::EventPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        assert!(p.payload.len() <= data.len());
        let _ = EventPayload::parse(p.payload);
    }
    let _ = EventPayload::parse(data);
});
