//! Opus (RFC 6716) for RTP legs (RFC 7587), through libopus via the `opus` crate (see
//! docs/adr/0004-opus-codec.md for the choice and the safety wrapping).
//!
//! RFC 7587 §4.1: the RTP clock is always 48000 Hz whatever the audio bandwidth, so a 20 ms
//! packet advances the timestamp by 960, and the rtpmap is always `opus/48000/2` even for
//! mono. libopus decodes and encodes at 8 kHz natively (it resamples inside the codec), so
//! switchboard's 8 kHz internal audio never needs a resampler of its own: the decoder is
//! created at 8000 Hz mono (stereo packets are down-mixed by libopus) and the encoder takes
//! 8 kHz input (a narrowband Opus stream, which every Opus decoder plays).
//!
//! Both objects are created once per call leg (libopus allocates its state there); encode
//! and decode then write into caller-provided buffers and never allocate.

use super::CodecError;

/// RFC 7587 RTP clock rate.
pub const RTP_CLOCK: u32 = 48000;
/// Samples per 20 ms at the 8 kHz internal rate (what one encode call consumes).
pub const FRAME_8K: usize = 160;
/// Largest Opus packet duration (120 ms, RFC 6716 §3.2.1) at 8 kHz: the decode buffer size.
pub const MAX_DECODED_8K: usize = 960;
/// Upper bound on one encoded 20 ms packet we produce (RFC 6716 allows 1275 octets; at the
/// bit rates we configure a narrowband 20 ms frame is ~30–60 octets).
pub const MAX_ENCODED: usize = 400;

/// Bit rate for prompts and transcoded audio: narrowband speech is transparent well below
/// this (RFC 7587 §3.1.1 recommends 8–12 kbit/s NB), so 16 kbit/s leaves headroom.
pub const BITRATE: i32 = 16_000;

pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusDecoder")
    }
}

impl OpusDecoder {
    pub fn new() -> Result<OpusDecoder, CodecError> {
        Ok(OpusDecoder {
            inner: opus::Decoder::new(8000, opus::Channels::Mono)?,
        })
    }

    /// Decode one RTP payload to 8 kHz mono PCM. An empty payload asks libopus for packet
    /// loss concealment (one 20 ms frame). Returns the samples written.
    pub fn decode_8k(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if payload.is_empty() {
            let n = out.len().min(FRAME_8K);
            return Ok(self.inner.decode(&[], &mut out[..n], false)?);
        }
        // libopus validates the TOC and frame lengths itself and reports
        // OPUS_INVALID_PACKET; we only make sure the output can hold the longest packet so a
        // legal 120 ms packet is not misreported as corrupt.
        let n = out.len().min(MAX_DECODED_8K);
        Ok(self.inner.decode(payload, &mut out[..n], false)?)
    }
}

pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpusEncoder")
    }
}

impl OpusEncoder {
    /// An encoder for 8 kHz mono speech, 20 ms frames.
    pub fn new() -> Result<OpusEncoder, CodecError> {
        let mut inner = opus::Encoder::new(8000, opus::Channels::Mono, opus::Application::Voip)?;
        inner.set_bitrate(opus::Bitrate::Bits(BITRATE))?;
        inner.set_vbr(true)?;
        Ok(OpusEncoder { inner })
    }

    /// Encode exactly one 20 ms frame (160 samples at 8 kHz) into `out`; returns the octets.
    pub fn encode_8k(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() != FRAME_8K {
            return Err(CodecError::FrameSize(pcm.len()));
        }
        let n = out.len().min(MAX_ENCODED);
        Ok(self.inner.encode(pcm, &mut out[..n])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        // Opus is a perceptual codec: sample-exact SNR is meaningless (phase is not kept),
        // so compare the level and the tone's energy share with a Goertzel filter.
        let input = sine(1000.0, 8000.0, 8000);
        let mut enc = OpusEncoder::new().expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut out = Vec::new();
        let mut packet = [0u8; MAX_ENCODED];
        let mut pcm = [0i16; MAX_DECODED_8K];
        let mut bytes = 0;
        for frame in input.chunks(FRAME_8K) {
            let n = enc.encode_8k(frame, &mut packet).expect("encode");
            assert!(n > 0 && n <= MAX_ENCODED);
            bytes += n;
            let m = dec.decode_8k(&packet[..n], &mut pcm).expect("decode");
            assert_eq!(m, FRAME_8K, "20 ms at 8 kHz");
            out.extend_from_slice(&pcm[..m]);
        }
        let kbps = bytes as f64 * 8.0 / 1000.0;
        assert!(kbps < 24.0, "{kbps} kbit/s");
        let tail = &out[1600..];
        let power = |v: &[i16]| v.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / v.len() as f64;
        let ratio = (power(tail) / power(&input[1600..])).sqrt();
        assert!((0.7..1.3).contains(&ratio), "level ratio {ratio:.2}");
        // Goertzel at 1 kHz over the tail: most energy is the tone.
        let k = 2.0 * (2.0 * std::f64::consts::PI * 1000.0 / 8000.0).cos();
        let (mut s1, mut s2) = (0f64, 0f64);
        for x in tail {
            let s0 = *x as f64 + k * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        // |X|² = s1² + s2² − k·s1·s2; a sine of power P gives |X|² = P·N²/2.
        let n = tail.len() as f64;
        let share = 2.0 * (s1 * s1 + s2 * s2 - k * s1 * s2) / (n * n) / power(tail);
        eprintln!("opus 1 kHz: {kbps:.1} kbit/s, level ratio {ratio:.2}, tone share {share:.2}");
        assert!(share > 0.9, "tone share {share:.2}");
    }

    #[test]
    fn rejects_wrong_frame_size_and_conceals_loss() {
        let mut enc = OpusEncoder::new().expect("encoder");
        let mut out = [0u8; MAX_ENCODED];
        assert!(matches!(
            enc.encode_8k(&[0; 100], &mut out),
            Err(CodecError::FrameSize(100))
        ));
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut pcm = [0i16; MAX_DECODED_8K];
        assert_eq!(dec.decode_8k(&[], &mut pcm).expect("plc"), FRAME_8K);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever arrives in an RTP payload, decoding returns Ok or Err, never panics (and
        /// libopus, under the debug build's checks, never writes past the buffer).
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500)) {
            let mut dec = OpusDecoder::new().expect("decoder");
            let mut pcm = [0i16; MAX_DECODED_8K];
            if let Ok(n) = dec.decode_8k(&data, &mut pcm) {
                proptest::prop_assert!(n <= MAX_DECODED_8K);
            }
            // Tiny output buffers must be refused, not overrun.
            let mut small = [0i16; 10];
            let _ = dec.decode_8k(&data, &mut small);
        }
    }
}
