//! Is a 20 ms frame of telephone audio *voiced* (periodic, as the vowels of speech are) or
//! not (random noise, silence)? The periodicity measure behind the answering-machine
//! detector's voice/silence decision ([`super::amd`]): on a noisy line the energy of a
//! frame cannot tell noise from speech, its periodicity can — the vocal folds make vowels
//! repeat every pitch period (2.5–14 ms), noise never repeats.
//!
//! # Measure
//!
//! The peak of the normalised autocorrelation of the frame against the audio one pitch
//! period earlier, over the lags of a 70–400 Hz voice ([`MIN_LAG`]..=[`MAX_LAG`] samples at
//! 8 kHz):
//!
//! ```text
//! r(τ) = Σ x[n]·x[n−τ] / √(Σ x[n]² · Σ x[n−τ]²),   n over the 160 samples of the frame
//! ```
//!
//! 1 for a perfectly periodic signal, about 0.2–0.35 at best for 20 ms of white or pink
//! noise (measured: `tests`), 0.8–1 for a vowel, and still above 0.5 for vowels with noise
//! 10 dB under the speech. The signal is first high-passed at 200 Hz (2nd-order
//! Butterworth): pink and brown noise carry most of their power below 100 Hz, where one
//! pitch period is a small fraction of a cycle, so without the filter such noise looks
//! periodic (measured with an offline copy of the detector on the noisy-line corpus of
//! `tests/amd.rs`: 29–32 of 192 people taken for machines without the filter, none with
//! it); the pitch harmonics of speech above 200 Hz keep the periodicity.
//!
//! Cost: the even lags are searched first and the best one refined by its two odd
//! neighbours (a 0.5-sample error costs < 5 % of the peak at the 800 Hz of a first
//! formant), and the search stops as soon as the peak reaches the caller's threshold:
//! at most 50 dot products of 160 samples per frame, about 2–3 µs in a release build, only
//! for frames loud enough to matter (the caller decides). State: 274 samples of filtered
//! audio (1.1 KB), fixed-size; nothing is allocated.

/// Shortest pitch period searched: 400 Hz at 8 kHz.
pub const MIN_LAG: usize = 20;
/// Longest pitch period searched: ~70 Hz at 8 kHz.
pub const MAX_LAG: usize = 114;
/// Samples in one analysis frame (20 ms at 8 kHz).
pub const FRAME: usize = 160;
/// Corner of the high-pass filter applied before the measure, Hz.
pub const HIGH_PASS_HZ: f32 = 200.0;

/// The periodicity meter: feed samples with [`Periodicity::push`]; once a whole frame has
/// been pushed, [`Periodicity::peak`] measures it, and [`Periodicity::next_frame`] moves on.
#[derive(Debug, Clone)]
pub struct Periodicity {
    /// Biquad coefficients `b0, b1, b2, a1, a2` (a0 = 1).
    coef: [f32; 5],
    /// Filter state: the last two inputs and outputs.
    x1: f32,
    x2: f32,
    y1: f32,
    y2: f32,
    /// Filtered audio: the last [`MAX_LAG`] samples of the previous frames, then the frame.
    buf: [f32; MAX_LAG + FRAME],
    /// Samples of the current frame pushed so far.
    len: usize,
}

impl Default for Periodicity {
    fn default() -> Self {
        Periodicity::new()
    }
}

impl Periodicity {
    pub fn new() -> Periodicity {
        // RBJ cookbook high-pass, Q = 1/√2 (Butterworth), at 8 kHz.
        let w0 = 2.0 * std::f32::consts::PI * HIGH_PASS_HZ / 8000.0;
        let (cos, sin) = (w0.cos(), w0.sin());
        let alpha = sin / std::f32::consts::SQRT_2;
        let a0 = 1.0 + alpha;
        Periodicity {
            coef: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
                -2.0 * cos / a0,
                (1.0 - alpha) / a0,
            ],
            x1: 0.0,
            x2: 0.0,
            y1: 0.0,
            y2: 0.0,
            buf: [0.0; MAX_LAG + FRAME],
            len: 0,
        }
    }

    /// One sample of the current frame. Samples beyond a whole frame (no
    /// [`Periodicity::next_frame`] in between) are ignored.
    pub fn push(&mut self, sample: i16) {
        let x = f32::from(sample);
        let [b0, b1, b2, a1, a2] = self.coef;
        let y = b0 * x + b1 * self.x1 + b2 * self.x2 - a1 * self.y1 - a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        if self.len < FRAME {
            self.buf[MAX_LAG + self.len] = y;
            self.len += 1;
        }
    }

    /// [`Periodicity::push`] each sample of `samples`.
    pub fn extend(&mut self, samples: &[i16]) {
        for &s in samples {
            self.push(s);
        }
    }

    /// Whether a whole frame has been pushed.
    pub fn frame_complete(&self) -> bool {
        self.len == FRAME
    }

    /// The periodicity (0..=1) of the frame just completed: the peak normalised
    /// autocorrelation over the pitch lags. The search stops as soon as a lag reaches
    /// `enough` (pass a value above 1 for the true peak), so the result is exact for the
    /// comparison `peak(t) >= t`. 0 before a whole frame or for a silent one.
    pub fn peak(&self, enough: f32) -> f32 {
        if self.len < FRAME {
            return 0.0;
        }
        let frame = &self.buf[MAX_LAG..];
        let e0 = dot(frame, frame);
        if e0 <= 0.0 {
            return 0.0;
        }
        // Energy of the window `lag` samples back, for every lag, by sliding it one sample
        // at a time (one add and one subtract per lag instead of 160 products).
        let mut energy = [0.0f32; MAX_LAG + 1];
        let w = self.window(MIN_LAG);
        energy[MIN_LAG] = dot(w, w);
        for lag in MIN_LAG + 1..=MAX_LAG {
            let enter = self.buf[MAX_LAG - lag];
            let leave = self.buf[MAX_LAG - lag + FRAME];
            energy[lag] = (energy[lag - 1] + enter * enter - leave * leave).max(0.0);
        }
        let r = |lag: usize| {
            let num = dot(frame, self.window(lag));
            let den = e0 * energy[lag];
            if num > 0.0 && den > 0.0 {
                num / den.sqrt()
            } else {
                0.0
            }
        };
        let (mut best, mut best_lag) = (0.0f32, MIN_LAG);
        for lag in (MIN_LAG..=MAX_LAG).step_by(2) {
            let v = r(lag);
            if v > best {
                (best, best_lag) = (v, lag);
                if best >= enough {
                    return best;
                }
            }
        }
        for lag in [best_lag - 1, best_lag + 1] {
            if (MIN_LAG..=MAX_LAG).contains(&lag) {
                best = best.max(r(lag));
            }
        }
        best
    }

    /// Start the next frame: keep the last [`MAX_LAG`] filtered samples as its past.
    pub fn next_frame(&mut self) {
        self.buf.copy_within(FRAME.., 0);
        self.len = 0;
    }

    /// The [`FRAME`] filtered samples starting `lag` samples before the current frame.
    fn window(&self, lag: usize) -> &[f32] {
        &self.buf[MAX_LAG - lag..MAX_LAG - lag + FRAME]
    }
}

/// Dot product of two equally long slices, in 8 partial sums (lets the compiler vectorise
/// it; the order of the additions is fixed, so the result is deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            s[k] += x[k] * y[k];
        }
    }
    s.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The true peak of every whole frame of `x`.
    fn peaks(x: &[i16]) -> Vec<f32> {
        let mut p = Periodicity::new();
        let mut out = Vec::new();
        for &s in x {
            p.push(s);
            if p.frame_complete() {
                out.push(p.peak(2.0));
                p.next_frame();
            }
        }
        out
    }

    /// Deterministic Gaussian-ish noise (sum of 4 uniforms, LCG), RMS ≈ `rms`.
    fn noise(n: usize, rms: f32, seed: u32) -> Vec<f32> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                let mut s = 0.0;
                for _ in 0..4 {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    s += (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
                }
                // Each uniform has variance 1/3: the sum of 4 has 4/3.
                s * rms * (3.0f32 / 4.0).sqrt()
            })
            .collect()
    }

    /// Pink-ish noise: white noise through three leaky integrators (−3 dB/octave or more
    /// below 1 kHz), normalised to RMS `rms`: most of its power is at low frequencies.
    fn pink(n: usize, rms: f32, seed: u32) -> Vec<f32> {
        let w = noise(n, 1.0, seed);
        let mut b = [0.0f32; 3];
        let raw: Vec<f32> = w
            .iter()
            .map(|&v| {
                b[0] = 0.997 * b[0] + 0.03 * v;
                b[1] = 0.96 * b[1] + 0.15 * v;
                b[2] = 0.6 * b[2] + 0.5 * v;
                b[0] + b[1] + b[2] + 0.2 * v
            })
            .collect();
        let r = (raw.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
        raw.iter().map(|v| v / r * rms).collect()
    }

    fn to_i16(x: &[f32]) -> Vec<i16> {
        x.iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }

    /// A vowel-like signal: pitch `f0` with harmonics falling 6 dB/octave.
    fn vowel(n: usize, f0: f32, amp: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (1..=12)
                    .map(|k| {
                        let f = f0 * k as f32;
                        if f < 3800.0 {
                            amp / k as f32 * (2.0 * std::f32::consts::PI * f * t).sin()
                        } else {
                            0.0
                        }
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn vowels_are_periodic_at_every_pitch() {
        for f0 in [75.0, 110.0, 180.0, 260.0, 390.0] {
            let p = peaks(&to_i16(&vowel(8000, f0, 4000.0)));
            // The first frame has no past yet; every later one is periodic.
            let min = p[1..].iter().copied().fold(1.0, f32::min);
            assert!(min > 0.9, "f0 {f0}: min peak {min}");
        }
    }

    #[test]
    fn noise_is_not_periodic() {
        for (name, x) in [
            ("white", noise(8000 * 5, 2000.0, 1)),
            ("pink", pink(8000 * 5, 2000.0, 2)),
        ] {
            let p = peaks(&to_i16(&x));
            let max = p[1..].iter().copied().fold(0.0, f32::max);
            assert!(max < 0.45, "{name}: max peak {max}");
        }
    }

    #[test]
    fn the_high_pass_is_what_keeps_pink_noise_aperiodic() {
        // The same pink noise, measured without the filter: its low frequencies make
        // every lag look correlated.
        let x = pink(8000 * 2, 2000.0, 3);
        let raw_peak = (1..x.len() / FRAME)
            .map(|f| {
                let cur = &x[f * FRAME..(f + 1) * FRAME];
                (MIN_LAG..=MAX_LAG)
                    .map(|lag| {
                        let past = &x[f * FRAME - lag.min(f * FRAME)..][..FRAME];
                        let num = dot(cur, past);
                        num / (dot(cur, cur) * dot(past, past)).sqrt()
                    })
                    .fold(0.0, f32::max)
            })
            .fold(0.0, f32::max);
        assert!(raw_peak > 0.45, "unfiltered pink noise peak {raw_peak}");
        let filtered = peaks(&to_i16(&x))[1..].iter().copied().fold(0.0, f32::max);
        assert!(filtered < 0.45, "filtered {filtered}");
    }

    #[test]
    fn a_vowel_in_noise_10_db_under_it_stays_periodic() {
        let v = vowel(8000, 140.0, 4000.0);
        let rms = (v.iter().map(|s| s * s).sum::<f32>() / v.len() as f32).sqrt();
        let n = noise(v.len(), rms / 10f32.powf(10.0 / 20.0), 4);
        let x: Vec<f32> = v.iter().zip(&n).map(|(a, b)| a + b).collect();
        let p = peaks(&to_i16(&x));
        let min = p[1..].iter().copied().fold(1.0, f32::min);
        assert!(min > 0.6, "min peak {min}");
    }

    #[test]
    fn silence_and_partial_frames_are_zero() {
        let mut p = Periodicity::new();
        for _ in 0..FRAME {
            p.push(0);
        }
        assert_eq!(p.peak(2.0), 0.0);
        p.next_frame();
        p.push(1000);
        assert!(!p.frame_complete());
        assert_eq!(p.peak(2.0), 0.0);
    }

    #[test]
    fn early_stop_is_exact_for_the_threshold_test() {
        let x = to_i16(&vowel(1600, 150.0, 3000.0));
        let w = to_i16(&noise(1600, 3000.0, 5));
        for sig in [x, w] {
            let mut p = Periodicity::new();
            for &s in &sig {
                p.push(s);
                if p.frame_complete() {
                    let full = p.peak(2.0);
                    for t in [0.3, 0.5, 0.7] {
                        assert_eq!(p.peak(t) >= t, full >= t);
                    }
                    p.next_frame();
                }
            }
        }
    }
}
