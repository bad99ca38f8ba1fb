//! Did the caller say anything? A meter over recorded audio that answers it, so a `record`
//! step can drop a "message" that is only line noise, a breath or the key that ended it (a
//! survey caller who presses `#` at once, a voicemail caller who says nothing).
//!
//! It is the answering-machine detector's voice/silence classifier ([`super::amd`]: a
//! frame is voice when its RMS is above 256 and 6 dB above the quietest frame of the last
//! second, that floor capped at −40 dBFS unless loud stationary noise is recognised, and it
//! is voiced — periodic in the pitch range — or within 100 ms of a voiced frame, so line
//! noise is not voice; a word is ≥ 100 ms of voice) with every decision rule switched
//! off, so it only counts: the
//! milliseconds of voice and the words. Sans-IO, no allocation per frame: feed 8 kHz
//! 16-bit PCM with [`SpeechMeter::process`], read [`SpeechMeter::measure`].
//!
//! The rule ([`Speech::is_message`]): a message has at least one word and at least
//! `min_voice_ms` of voice in all. A click or a line hit is shorter than a word (100 ms);
//! a short real message ("thanks", "good") carries 300–500 ms of voice, so 300 ms is the
//! shipped survey's minimum (`min_speech_ms` of the `record` step, docs/dialplan.md).

use super::amd::{Amd, AmdConfig};

/// Voice found in a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Speech {
    /// Milliseconds of frames above the voice threshold (20 ms steps).
    pub voice_ms: u32,
    /// Runs of voice of at least 100 ms.
    pub words: u32,
}

impl Speech {
    /// A message worth keeping: one word at least, and `min_voice_ms` of voice in all.
    /// `min_voice_ms` 0 keeps everything (even silence).
    pub fn is_message(&self, min_voice_ms: u32) -> bool {
        min_voice_ms == 0 || (self.words >= 1 && self.voice_ms >= min_voice_ms)
    }
}

impl std::fmt::Display for Speech {
    /// `voice_ms=N words=M`, as recorded in `call_events`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "voice_ms={} words={}", self.voice_ms, self.words)
    }
}

/// Counts voice in the audio fed to it (see the module documentation).
#[derive(Debug, Clone)]
pub struct SpeechMeter {
    amd: Amd,
}

impl Default for SpeechMeter {
    fn default() -> Self {
        SpeechMeter::new()
    }
}

impl SpeechMeter {
    pub fn new() -> SpeechMeter {
        // The AMD's classifier (threshold, noise floor, word length) with its decision rules
        // out of reach: it never decides, so it never stops counting.
        let never = u32::MAX;
        let cfg = AmdConfig {
            initial_silence_ms: never,
            greeting_ms: never,
            after_greeting_silence_ms: never,
            total_analysis_time_ms: never,
            maximum_number_of_words: never,
            maximum_word_length_ms: never,
            ..AmdConfig::default()
        };
        let amd = match Amd::new(&cfg) {
            Ok(a) => a,
            // The configuration above is valid (non-zero limits, the default margin); a
            // failure here would be a change in amd.rs, caught by the unit tests.
            Err(e) => unreachable!("speech meter configuration rejected: {e}"),
        };
        SpeechMeter { amd }
    }

    /// Feed audio (8 kHz, 16-bit linear, any chunking).
    pub fn process(&mut self, pcm: &[i16]) {
        let _ = self.amd.process(pcm);
    }

    /// The voice counted so far.
    pub fn measure(&self) -> Speech {
        Speech {
            voice_ms: self.amd.voice_ms(),
            words: self.amd.words(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` of a 400 Hz tone at `amp` (a vowel's level: −12 dBFS is 8000).
    fn tone(ms: usize, amp: f32) -> Vec<i16> {
        (0..ms * 8)
            .map(|i| (amp * (i as f32 * 2.0 * std::f32::consts::PI * 400.0 / 8000.0).sin()) as i16)
            .collect()
    }

    /// Deterministic white-ish noise of RMS about `rms` (LCG; no rand in unit tests).
    fn noise(ms: usize, rms: f32, seed: u32) -> Vec<i16> {
        let mut x = seed;
        (0..ms * 8)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                // Uniform in [-1, 1): RMS 1/√3.
                let u = (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
                (u * rms * 3f32.sqrt()) as i16
            })
            .collect()
    }

    fn measure(parts: &[Vec<i16>]) -> Speech {
        let mut m = SpeechMeter::new();
        for p in parts {
            // Odd chunking: the result must not depend on it.
            for c in p.chunks(97) {
                m.process(c);
            }
        }
        m.measure()
    }

    #[test]
    fn silence_and_quiet_line_noise_are_no_message() {
        let s = measure(&[vec![0; 8000 * 5]]);
        assert_eq!(s, Speech::default());
        assert!(!s.is_message(300));
        // −50 dBFS hiss for 5 s: below the fixed threshold, never voice.
        let s = measure(&[noise(5000, 100.0, 1)]);
        assert_eq!(s.words, 0, "{s}");
        assert!(!s.is_message(300), "{s}");
    }

    #[test]
    fn a_click_or_a_short_blip_is_no_message() {
        // 40 ms blip: voice, but shorter than a word.
        let s = measure(&[vec![0; 8000], tone(40, 8000.0), vec![0; 8000]]);
        assert_eq!(s.words, 0, "{s}");
        assert!(!s.is_message(300), "{s}");
        // One 200 ms "word" is a word but under the 300 ms minimum.
        let s = measure(&[vec![0; 8000], tone(200, 8000.0), vec![0; 8000]]);
        assert_eq!(s.words, 1, "{s}");
        assert!(!s.is_message(300), "{s}");
    }

    #[test]
    fn speech_is_a_message_also_on_a_noisy_line() {
        // Two 300 ms syllables with a pause, between silences.
        let s = measure(&[
            vec![0; 4000],
            tone(300, 8000.0),
            vec![0; 800],
            tone(300, 6000.0),
            vec![0; 4000],
        ]);
        assert_eq!(s.words, 2, "{s}");
        assert_eq!(s.voice_ms, 600, "{s}");
        assert!(s.is_message(300), "{s}");
        // The same in −40 dBFS noise (RMS ~330): the floor adapts, the words still count.
        let n = |ms, seed| noise(ms, 330.0, seed);
        let mut word = tone(300, 8000.0);
        for (w, z) in word.iter_mut().zip(n(300, 9)) {
            *w = w.saturating_add(z);
        }
        let s = measure(&[n(1000, 2), word.clone(), n(200, 3), word, n(1000, 4)]);
        assert!(s.words >= 1, "{s}");
        assert!(s.is_message(300), "{s}");
        // That noise alone is no message.
        assert!(!measure(&[n(5000, 5)]).is_message(300));
    }

    #[test]
    fn minimum_zero_keeps_everything() {
        assert!(Speech::default().is_message(0));
        assert_eq!(
            Speech {
                voice_ms: 40,
                words: 0
            }
            .to_string(),
            "voice_ms=40 words=0"
        );
    }
}
