//! Audio payload decoders (Opus through libopus, our G.722, G.711) on arbitrary RTP
//! payloads: a hostile packet may be refused (`Err`) but never panic, and never report more
//! samples than the buffer holds. State carries over between calls like on a real stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::media::codec::{Codec, Decoder, MAX_DECODED_8K};

fuzz_target!(|data: &[u8]| {
    let mut pcm = [0i16; MAX_DECODED_8K];
    for codec in Codec::ALL {
        let Ok(mut d) = Decoder::new(codec) else {
            continue;
        };
        // The input as one payload, then cut into 3 packets on the same decoder state.
        if let Ok(n) = d.decode_8k(data, &mut pcm) {
            assert!(n <= MAX_DECODED_8K);
        }
        for chunk in data.chunks(data.len().div_ceil(3).max(1)) {
            let _ = d.decode_8k(chunk, &mut pcm[..160]);
        }
    }
});
