//! Audio codecs an RTP leg can negotiate, and their per-stream encoder/decoder state.
//!
//! | codec | RTP clock | 20 ms timestamp step | payload / 20 ms | RFC |
//! |-------|-----------|----------------------|-----------------|-----|
//! | PCMU, PCMA | 8000 | 160 | 160 octets | RFC 3551 §4.5.14 (ITU-T G.711) |
//! | G722 | 8000 (sampled at 16 kHz!) | 160 | 160 octets | RFC 3551 §4.5.2 (ITU-T G.722) |
//! | opus | 48000 | 960 | ~20–60 octets (VBR) | RFC 7587 (RFC 6716) |
//!
//! switchboard's internal audio (prompts, in-band DTMF, AMD, recordings) is 8 kHz mono
//! 16-bit PCM; [`Decoder::decode_8k`] and [`Encoder::encode_8k`] convert between that and a
//! payload without resampling (G.722: low band only; Opus: libopus works at 8 kHz natively).
//! G.711 is stateless (a table per sample); G.722 and Opus keep adaptive state, so a
//! decoder/encoder belongs to exactly one stream and is created once per leg, never per
//! packet. Encode/decode write into caller-provided buffers and never allocate.

pub mod g711;
pub mod g722;
pub mod opus;

pub use g711::{linear_to_alaw, linear_to_ulaw, ALAW_TO_LINEAR, ULAW_TO_LINEAR};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("opus: {0}")]
    Opus(#[from] ::opus::Error),
    #[error("encoder frame of {0} samples: 20 ms at 8 kHz is 160")]
    FrameSize(usize),
}

/// Samples one RTP packet may decode to at 8 kHz (120 ms, the longest Opus packet); the
/// size of the stack buffers on the receive path.
pub const MAX_DECODED_8K: usize = opus::MAX_DECODED_8K;
/// Internal samples per 20 ms frame (8 kHz).
pub const FRAME_8K: usize = 160;

/// Codecs switchboard can speak on an RTP leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
    Opus,
}

/// Dynamic payload type we offer Opus with (the one browsers use, so answers rarely renumber).
pub const OPUS_OFFER_PT: u8 = 111;
/// Dynamic payload types we offer telephone-event with, per clock rate.
pub const TELEPHONE_EVENT_8K_PT: u8 = 101;
pub const TELEPHONE_EVENT_48K_PT: u8 = 110;

impl Codec {
    pub const ALL: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::G722, Codec::Opus];

    /// From an `a=rtpmap` encoding name and clock rate (names are case-insensitive,
    /// RFC 4855 §3). G.722 is only valid at 8000 (RFC 3551 §4.5.2), Opus only at 48000
    /// (RFC 7587 §7).
    pub fn from_rtpmap(encoding: &str, clock_rate: u32) -> Option<Codec> {
        let is = |n: &str| encoding.eq_ignore_ascii_case(n);
        match clock_rate {
            8000 if is("PCMU") => Some(Codec::Pcmu),
            8000 if is("PCMA") => Some(Codec::Pcma),
            8000 if is("G722") => Some(Codec::G722),
            48000 if is("opus") => Some(Codec::Opus),
            _ => None,
        }
    }

    /// RFC 3551 static payload types.
    pub fn from_static_pt(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }

    /// The static payload type, if the codec has one (Opus is always dynamic).
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// The payload type we use for this codec in our own offers.
    pub fn offer_pt(self) -> u8 {
        self.static_pt().unwrap_or(OPUS_OFFER_PT)
    }

    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
            Codec::Opus => "opus",
        }
    }

    /// The `a=rtpmap` value after the payload type. Opus always says `/2` (RFC 7587 §7:
    /// the channel count is 2 even for mono streams).
    pub fn rtpmap(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU/8000",
            Codec::Pcma => "PCMA/8000",
            Codec::G722 => "G722/8000",
            Codec::Opus => "opus/48000/2",
        }
    }

    /// The `a=fmtp` parameters we send. For Opus (RFC 7587 §6.1): we can decode in-band FEC,
    /// and we prefer (and send) mono.
    pub fn fmtp(self) -> Option<&'static str> {
        match self {
            Codec::Opus => Some("useinbandfec=1;stereo=0;sprop-stereo=0"),
            _ => None,
        }
    }

    /// The RTP clock rate (not always the sampling rate: G.722 samples at 16 kHz).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8000,
            Codec::Opus => opus::RTP_CLOCK,
        }
    }

    /// RTP timestamp increment of one 20 ms packet.
    pub fn timestamp_step(self) -> u32 {
        self.clock_rate() / 50
    }

    pub fn is_g711(self) -> bool {
        matches!(self, Codec::Pcmu | Codec::Pcma)
    }

    /// Fixed one octet per 8 kHz sample (G.711, and G.722 through its low band), so a
    /// prompt is a byte string that can be cut anywhere; Opus is a sequence of packets.
    pub fn is_octet_per_sample(self) -> bool {
        !matches!(self, Codec::Opus)
    }

    /// Whether DTMF tones survive the codec well enough for in-band detection when no
    /// telephone-event was negotiated (waveform codecs; not a perceptual codec like Opus,
    /// whose peers — browsers — always send RFC 4733 anyway).
    pub fn carries_inband_dtmf(self) -> bool {
        self.is_octet_per_sample()
    }

    /// The encoded octet for digital silence, for the octet-per-sample codecs. For G.722
    /// (high band 3, low band 63: the smallest steps, whose 4-bit predictor input is 0) it
    /// decodes to |x| < 16 from any state (see the test); the player does not use it — it
    /// encodes G.722 live so the remote decoder's state always matches ours.
    pub fn silence_byte(self) -> u8 {
        match self {
            Codec::Pcmu => 0xFF,
            Codec::Pcma => 0xD5,
            Codec::G722 => G722_SILENCE,
            Codec::Opus => 0,
        }
    }

    /// G.711 only (stateless). For stateful codecs use [`Encoder`]; calling this for them
    /// is a bug, caught in debug builds, and falls back to μ-law.
    pub fn encode_sample(self, s: i16) -> u8 {
        debug_assert!(self.is_g711(), "encode_sample on {self:?}");
        match self {
            Codec::Pcma => linear_to_alaw(s),
            _ => linear_to_ulaw(s),
        }
    }

    /// G.711 only (see [`Codec::encode_sample`]).
    pub fn decode_sample(self, b: u8) -> i16 {
        debug_assert!(self.is_g711(), "decode_sample on {self:?}");
        match self {
            Codec::Pcma => ALAW_TO_LINEAR[b as usize],
            _ => ULAW_TO_LINEAR[b as usize],
        }
    }

    /// A configured codec name (`PCMU`, `PCMA`, `G722`, `opus`; case-insensitive).
    pub fn parse_name(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }
}

const G722_SILENCE: u8 = 0xFF;

/// Per-stream decoder: payload → 8 kHz PCM.
#[derive(Debug)]
pub enum Decoder {
    G711(Codec),
    G722(Box<g722::Decoder>),
    Opus(Box<opus::OpusDecoder>),
}

impl Decoder {
    /// Create the state for one stream (allocates for G.722/Opus: call once per leg).
    pub fn new(codec: Codec) -> Result<Decoder, CodecError> {
        Ok(match codec {
            Codec::Pcmu | Codec::Pcma => Decoder::G711(codec),
            Codec::G722 => Decoder::G722(Box::default()),
            Codec::Opus => Decoder::Opus(Box::new(opus::OpusDecoder::new()?)),
        })
    }

    pub fn codec(&self) -> Codec {
        match self {
            Decoder::G711(c) => *c,
            Decoder::G722(_) => Codec::G722,
            Decoder::Opus(_) => Codec::Opus,
        }
    }

    /// Decode one RTP payload into `out` (8 kHz); returns the samples written, at most
    /// `out.len()` (a longer G.711/G.722 payload is truncated). Never allocates.
    pub fn decode_8k(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Decoder::G711(c) => {
                let table = if *c == Codec::Pcma {
                    &ALAW_TO_LINEAR
                } else {
                    &ULAW_TO_LINEAR
                };
                let n = payload.len().min(out.len());
                for (o, b) in out.iter_mut().zip(payload) {
                    *o = table[*b as usize];
                }
                Ok(n)
            }
            Decoder::G722(d) => Ok(d.decode_8k(payload, out)),
            Decoder::Opus(d) => d.decode_8k(payload, out),
        }
    }
}

/// Per-stream encoder: 8 kHz PCM → payload.
#[derive(Debug)]
pub enum Encoder {
    G711(Codec),
    G722(Box<g722::Encoder>),
    Opus(Box<opus::OpusEncoder>),
}

impl Encoder {
    /// Create the state for one stream (allocates for G.722/Opus: call once per leg).
    pub fn new(codec: Codec) -> Result<Encoder, CodecError> {
        Ok(match codec {
            Codec::Pcmu | Codec::Pcma => Encoder::G711(codec),
            Codec::G722 => Encoder::G722(Box::default()),
            Codec::Opus => Encoder::Opus(Box::new(opus::OpusEncoder::new()?)),
        })
    }

    pub fn codec(&self) -> Codec {
        match self {
            Encoder::G711(c) => *c,
            Encoder::G722(_) => Codec::G722,
            Encoder::Opus(_) => Codec::Opus,
        }
    }

    /// Encode 8 kHz PCM into `out`; returns the octets written. Opus takes exactly one 20 ms
    /// frame (160 samples) per call. Never allocates.
    pub fn encode_8k(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        match self {
            Encoder::G711(c) => {
                let n = pcm.len().min(out.len());
                for (o, s) in out.iter_mut().zip(pcm) {
                    *o = c.encode_sample(*s);
                }
                Ok(n)
            }
            Encoder::G722(e) => Ok(e.encode_8k(pcm, out)),
            Encoder::Opus(e) => e.encode_8k(pcm, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_properties() {
        // (codec, static PT, rtpmap, clock, timestamp step per 20 ms)
        let table = [
            (Codec::Pcmu, Some(0), "PCMU/8000", 8000, 160),
            (Codec::Pcma, Some(8), "PCMA/8000", 8000, 160),
            // RFC 3551 §4.5.2: sampled at 16 kHz, clocked at 8 kHz.
            (Codec::G722, Some(9), "G722/8000", 8000, 160),
            // RFC 7587 §4.1: always 48 kHz.
            (Codec::Opus, None, "opus/48000/2", 48000, 960),
        ];
        for (c, pt, map, clock, step) in table {
            assert_eq!(c.static_pt(), pt);
            assert_eq!(c.rtpmap(), map);
            assert_eq!(c.clock_rate(), clock);
            assert_eq!(c.timestamp_step(), step);
            let (name, rate) = map.split_once('/').expect("map");
            let rate: u32 = rate
                .split('/')
                .next()
                .and_then(|r| r.parse().ok())
                .expect("rate");
            assert_eq!(Codec::from_rtpmap(name, rate), Some(c));
            assert_eq!(Codec::parse_name(&name.to_uppercase()), Some(c));
            if let Some(pt) = pt {
                assert_eq!(Codec::from_static_pt(pt), Some(c));
            }
        }
        assert_eq!(Codec::from_rtpmap("G722", 16000), None);
        assert_eq!(Codec::from_rtpmap("opus", 8000), None);
        assert_eq!(Codec::Opus.offer_pt(), OPUS_OFFER_PT);
    }

    /// One 20 ms frame through each codec's encoder and decoder: sizes and the SNR (for the
    /// waveform codecs) or the level (for Opus).
    #[test]
    fn frame_sizes_and_round_trip() {
        let pcm: Vec<i16> = (0..1600)
            .map(|i| {
                (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        for c in Codec::ALL {
            let mut enc = Encoder::new(c).expect("encoder");
            let mut dec = Decoder::new(c).expect("decoder");
            assert_eq!((enc.codec(), dec.codec()), (c, c));
            let mut out = Vec::new();
            let mut payload = [0u8; 512];
            let mut back = [0i16; MAX_DECODED_8K];
            for frame in pcm.chunks(FRAME_8K) {
                let n = enc.encode_8k(frame, &mut payload).expect("encode");
                if c.is_octet_per_sample() {
                    assert_eq!(n, 160, "{c:?}");
                } else {
                    assert!(n > 2 && n < 120, "{c:?} {n}");
                }
                let m = dec.decode_8k(&payload[..n], &mut back).expect("decode");
                assert_eq!(m, FRAME_8K, "{c:?}");
                out.extend_from_slice(&back[..m]);
            }
            if c.is_octet_per_sample() {
                let (mut s, mut e) = (0f64, 0f64);
                for (a, b) in pcm[400..].iter().zip(&out[400..]) {
                    s += (*a as f64).powi(2);
                    e += (*a as f64 - *b as f64).powi(2);
                }
                let db = 10.0 * (s / e).log10();
                eprintln!("{c:?} 440 Hz round trip SNR {db:.1} dB");
                assert!(db > 20.0, "{c:?}: {db:.1} dB");
            }
        }
    }

    #[test]
    fn g722_silence_byte_decodes_to_silence() {
        let mut dec = Decoder::new(Codec::G722).expect("decoder");
        let mut out = [0i16; 160];
        for _ in 0..10 {
            dec.decode_8k(&[Codec::G722.silence_byte(); 160], &mut out)
                .expect("decode");
            assert!(out.iter().all(|s| s.abs() < 16), "{out:?}");
        }
    }

    /// Cost figures quoted in docs/architecture.md (run with `--ignored --nocapture`; use
    /// `--release` for production-like numbers).
    #[test]
    #[ignore]
    fn cost_per_packet() {
        let pcm: Vec<i16> = (0..160 * 500)
            .map(|i| (6000.0 * (i as f64 * 0.3).sin() + 2000.0 * (i as f64 * 0.071).sin()) as i16)
            .collect();
        for c in Codec::ALL {
            let mut enc = Encoder::new(c).expect("encoder");
            let mut dec = Decoder::new(c).expect("decoder");
            let mut payloads = Vec::new();
            let mut out = [0u8; 512];
            let t = std::time::Instant::now();
            for f in pcm.chunks(FRAME_8K) {
                let n = enc.encode_8k(f, &mut out).expect("encode");
                payloads.push(out[..n].to_vec());
            }
            let e = t.elapsed() / 500;
            let mut back = [0i16; MAX_DECODED_8K];
            let t = std::time::Instant::now();
            for p in &payloads {
                dec.decode_8k(p, &mut back).expect("decode");
            }
            let d = t.elapsed() / 500;
            eprintln!("{c:?}: encode {e:?} / decode {d:?} per 20 ms packet");
        }
    }
}
