//! When to leave a message on an answering machine: after its beep. Once answering-machine
//! detection ([`super::amd`]) has said `Machine`, the greeting is usually still playing (the
//! verdict comes 1–2 s into it); a message played at once would be recorded only from the
//! beep on, i.e. cut. This sans-IO detector listens to the rest of the greeting and says when
//! to start:
//!
//! * **`Beep`**: a pure tone (one frequency between 300 and 2600 Hz carrying at least
//!   `purity` of the frame's energy, the same frequency ±`BEEP_DRIFT_HZ` frame after frame)
//!   lasted `beep_min_ms`, and has just ended — the machine records from now on. A tone that
//!   never ends counts as a beep after `beep_max_ms`.
//! * **`Silence`**: `end_silence_ms` of consecutive silence (no beep: many mailboxes record
//!   right after the greeting). Silence is a frame below the voice threshold of the
//!   detector (`silence_threshold`, or 6 dB above the quietest frame of the last second on
//!   a noisy line, that floor capped at −40 dBFS, as in [`super::amd`]).
//! * **`Timeout`**: `max_wait_ms` of audio without either.
//!
//! Input: 8 kHz mono 16-bit PCM from the moment of the verdict, any chunking (20 ms frames
//! inside). Time is the number of samples fed; the call actor also bounds the wait by the
//! clock (a machine that sends no audio still gets its message after `max_wait_ms`).
//!
//! The tone test: the Goertzel power at the best frequency (50 Hz grid, then refined to
//! 5 Hz) over the frame's total energy, `2|X(f)|² / (N·Σx²)`, which is 1 for a pure sine
//! and well under 0.8 for voiced speech (its energy is spread over several harmonics).
//! Measured on the synthesized corpus (`tests/amd.rs`, `voicemail_cue_finds_the_beep`):
//! no speech frame run of the espeak greetings passes, beeps at 440–1400 Hz are found
//! within one frame of their end, also with noise at 10 dB SNR. Cost: ~60 Goertzel passes
//! of 160 samples per frame that has energy, ~10 µs in a release build, only on calls a
//! machine answered and only until the cue.

use serde::Deserialize;

use super::amd::{FRAME_MS, FRAME_SAMPLES, NOISE_WINDOW_FRAMES, SAMPLE_RATE};

/// Lowest and highest beep frequency searched, Hz.
const BEEP_LOW_HZ: u32 = 300;
const BEEP_HIGH_HZ: u32 = 2600;
/// Coarse grid and refinement step of the frequency search, Hz.
const COARSE_STEP_HZ: u32 = 50;
const FINE_STEP_HZ: u32 = 5;
/// Highest noise floor believed (RMS), as the AMD's `max_noise_floor` default: a steady
/// sound (a long vowel, a tone) must not become the floor and pass for silence.
const MAX_NOISE_FLOOR: f32 = 330.0;
/// How far the tone's frequency may move from frame to frame and stay one beep, Hz.
pub const BEEP_DRIFT_HZ: u32 = 30;

/// Parameters of the cue (config `[amd]`, the `voicemail_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CueConfig {
    /// Shortest tone that is a beep, ms.
    pub beep_min_ms: u32,
    /// A tone this long is taken as the beep without waiting for its end, ms.
    pub beep_max_ms: u32,
    /// Share of a frame's energy at one frequency for the frame to be tone (0–1).
    pub purity: f32,
    /// Consecutive silence that ends a greeting without a beep, ms.
    pub end_silence_ms: u32,
    /// Longest wait for the beep or the silence, ms.
    pub max_wait_ms: u32,
    /// Fixed part of the voice threshold, RMS on 16-bit samples (as the AMD's).
    pub silence_threshold: u16,
}

impl Default for CueConfig {
    fn default() -> Self {
        CueConfig {
            beep_min_ms: 160,
            beep_max_ms: 3000,
            purity: 0.8,
            end_silence_ms: 1500,
            max_wait_ms: 20_000,
            silence_threshold: 256,
        }
    }
}

/// Why the message may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CueReason {
    Beep,
    Silence,
    Timeout,
}

impl CueReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CueReason::Beep => "beep",
            CueReason::Silence => "silence",
            CueReason::Timeout => "timeout",
        }
    }
}

/// The cue: why, after how much audio (ms from the start of the detector), and the beep's
/// frequency (Hz) when there was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cue {
    pub reason: CueReason,
    pub after_ms: u32,
    pub beep_hz: Option<u32>,
}

/// The detector for one call (~260 bytes, nothing allocated per frame).
#[derive(Debug, Clone)]
pub struct CueDetector {
    cfg: CueConfig,
    frame: [i16; FRAME_SAMPLES],
    frame_len: usize,
    elapsed_ms: u32,
    silence_ms: u32,
    /// Frequency of the current tone run and its length.
    tone_hz: u32,
    tone_ms: u32,
    /// Mean square of the last second of frames (noise floor by minimum statistics).
    history: [f32; NOISE_WINDOW_FRAMES],
    history_pos: usize,
    history_len: usize,
    done: Option<Cue>,
}

impl CueDetector {
    pub fn new(cfg: &CueConfig) -> CueDetector {
        CueDetector {
            cfg: *cfg,
            frame: [0; FRAME_SAMPLES],
            frame_len: 0,
            elapsed_ms: 0,
            silence_ms: 0,
            tone_hz: 0,
            tone_ms: 0,
            history: [0.0; NOISE_WINDOW_FRAMES],
            history_pos: 0,
            history_len: 0,
            done: None,
        }
    }

    /// Feed audio; returns the cue once (on the call that completes its frame).
    pub fn process(&mut self, pcm: &[i16]) -> Option<Cue> {
        if self.done.is_some() {
            return None;
        }
        for &s in pcm {
            self.frame[self.frame_len] = s;
            self.frame_len += 1;
            if self.frame_len == FRAME_SAMPLES {
                self.frame_len = 0;
                if let Some(c) = self.on_frame() {
                    self.done = Some(c);
                    return Some(c);
                }
            }
        }
        None
    }

    /// The cue, once found.
    pub fn result(&self) -> Option<Cue> {
        self.done
    }

    fn on_frame(&mut self) -> Option<Cue> {
        self.elapsed_ms += FRAME_MS;
        let energy: f64 = self.frame.iter().map(|&s| f64::from(s).powi(2)).sum();
        let mean_square = (energy / FRAME_SAMPLES as f64) as f32;
        self.history[self.history_pos] = mean_square;
        self.history_pos = (self.history_pos + 1) % NOISE_WINDOW_FRAMES;
        self.history_len = (self.history_len + 1).min(NOISE_WINDOW_FRAMES);
        let floor = self.history[..self.history_len]
            .iter()
            .fold(MAX_NOISE_FLOOR * MAX_NOISE_FLOOR, |a, &b| a.min(b));
        let fixed = f32::from(self.cfg.silence_threshold).powi(2);
        // 6 dB above the noise floor: 10^(6/10).
        let threshold = fixed.max(floor * 3.98);
        let cue = |reason, after_ms, beep_hz| {
            Some(Cue {
                reason,
                after_ms,
                beep_hz,
            })
        };

        let tone = if mean_square > fixed {
            tone_frequency(&self.frame, energy, self.cfg.purity)
        } else {
            None
        };
        match tone {
            Some(hz) if self.tone_ms > 0 && hz.abs_diff(self.tone_hz) <= BEEP_DRIFT_HZ => {
                self.tone_ms += FRAME_MS;
                if self.tone_ms >= self.cfg.beep_max_ms {
                    return cue(CueReason::Beep, self.elapsed_ms, Some(self.tone_hz));
                }
            }
            Some(hz) => {
                if self.tone_ms >= self.cfg.beep_min_ms {
                    // Another tone right after a beep: the first one has ended.
                    return cue(
                        CueReason::Beep,
                        self.elapsed_ms - FRAME_MS,
                        Some(self.tone_hz),
                    );
                }
                self.tone_hz = hz;
                self.tone_ms = FRAME_MS;
            }
            None => {
                if self.tone_ms >= self.cfg.beep_min_ms {
                    return cue(
                        CueReason::Beep,
                        self.elapsed_ms - FRAME_MS,
                        Some(self.tone_hz),
                    );
                }
                self.tone_ms = 0;
            }
        }
        if mean_square <= threshold {
            self.silence_ms += FRAME_MS;
            if self.silence_ms >= self.cfg.end_silence_ms {
                return cue(CueReason::Silence, self.elapsed_ms, None);
            }
        } else {
            self.silence_ms = 0;
        }
        if self.elapsed_ms >= self.cfg.max_wait_ms {
            return cue(CueReason::Timeout, self.elapsed_ms, None);
        }
        None
    }
}

/// Goertzel power of `x` at `hz`.
fn goertzel(x: &[i16], hz: u32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(SAMPLE_RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The frequency of a pure tone in the frame, if one carries `purity` of its energy.
fn tone_frequency(x: &[i16], energy: f64, purity: f32) -> Option<u32> {
    if energy <= 0.0 {
        return None;
    }
    let norm = 2.0 / (x.len() as f64 * energy);
    let mut best = (0.0, BEEP_LOW_HZ);
    let mut hz = BEEP_LOW_HZ;
    while hz <= BEEP_HIGH_HZ {
        let p = goertzel(x, hz);
        if p > best.0 {
            best = (p, hz);
        }
        hz += COARSE_STEP_HZ;
    }
    // A pure tone between two grid points still shows ≥ 40 % there; speech rarely
    // gets close, so most frames stop here.
    if best.0 * norm < 0.35 {
        return None;
    }
    let centre = best.1;
    let mut hz = centre.saturating_sub(COARSE_STEP_HZ / 2);
    while hz <= centre + COARSE_STEP_HZ / 2 {
        let p = goertzel(x, hz);
        if p > best.0 {
            best = (p, hz);
        }
        hz += FINE_STEP_HZ;
    }
    (best.0 * norm >= f64::from(purity)).then_some(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, ms: u32, amp: f64) -> Vec<i16> {
        (0..ms as usize * 8)
            .map(|n| (amp * (2.0 * std::f64::consts::PI * hz * n as f64 / 8000.0).sin()) as i16)
            .collect()
    }

    /// A crude voiced "vowel": 120 Hz pitch with ten harmonics of falling amplitude.
    fn vowel(ms: u32) -> Vec<i16> {
        (0..ms as usize * 8)
            .map(|n| {
                let t = n as f64 / 8000.0;
                (1..=10)
                    .map(|k| {
                        3000.0 / f64::from(k).sqrt()
                            * (2.0 * std::f64::consts::PI * 120.0 * f64::from(k) * t).sin()
                    })
                    .sum::<f64>() as i16
            })
            .collect()
    }

    fn run(x: &[i16]) -> Option<Cue> {
        let mut d = CueDetector::new(&CueConfig::default());
        d.process(x)
    }

    #[test]
    fn a_beep_is_the_cue_at_its_end() {
        let mut x = vowel(1000);
        x.extend(vec![0; 1600]); // 200 ms pause
        x.extend(sine(1000.0, 500, 12000.0));
        x.extend(vec![0; 8000]);
        let c = run(&x).expect("cue");
        assert_eq!(c.reason, CueReason::Beep);
        assert_eq!(c.after_ms, 1700);
        assert!(c.beep_hz.is_some_and(|f| f.abs_diff(1000) <= 5), "{c:?}");
        // Off-grid frequency, quieter.
        let mut x = vowel(600);
        x.extend(sine(1437.0, 300, 3000.0));
        x.extend(vec![0; 8000]);
        let c = run(&x).expect("cue");
        assert_eq!((c.reason, c.after_ms), (CueReason::Beep, 900));
        assert!(c.beep_hz.is_some_and(|f| f.abs_diff(1437) <= 5), "{c:?}");
    }

    #[test]
    fn speech_then_silence_without_beep() {
        let mut x = vowel(2000);
        x.extend(vec![0; 8 * 3000]);
        let c = run(&x).expect("cue");
        assert_eq!(
            (c.reason, c.after_ms, c.beep_hz),
            (CueReason::Silence, 3500, None)
        );
    }

    #[test]
    fn short_tones_and_endless_speech() {
        // 100 ms tone (shorter than a beep) between vowels, then endless speech: timeout.
        let mut x = vowel(500);
        x.extend(sine(800.0, 100, 8000.0));
        while x.len() < 8 * 25_000 {
            x.extend(vowel(700));
            x.extend(vec![0; 8 * 200]);
        }
        let c = run(&x).expect("cue");
        assert_eq!((c.reason, c.after_ms), (CueReason::Timeout, 20_000));
    }

    #[test]
    fn endless_tone_counts_after_beep_max() {
        let x = sine(440.0, 5000, 8000.0);
        let c = run(&x).expect("cue");
        assert_eq!((c.reason, c.after_ms), (CueReason::Beep, 3000));
    }

    #[test]
    fn chunking_does_not_matter_and_reports_once() {
        let mut x = vowel(800);
        x.extend(sine(950.0, 400, 9000.0));
        x.extend(vec![0; 8000]);
        let reference = run(&x);
        for chunk in [1, 77, 160, 999] {
            let mut d = CueDetector::new(&CueConfig::default());
            let mut got = None;
            for c in x.chunks(chunk) {
                if let Some(r) = d.process(c) {
                    assert!(got.is_none());
                    got = Some(r);
                }
            }
            assert_eq!(got, reference, "chunk {chunk}");
            assert_eq!(d.result(), reference);
        }
    }
}
