//! In-band DTMF detection (ITU-T Q.23 keypad tones, Q.24 receiver requirements) for 8 kHz
//! linear audio: a pure, sans-IO, allocation-free Goertzel detector.
//!
//! # Inputs and outputs
//!
//! * Input: 16-bit linear PCM at 8000 Hz, mono (e.g. decoded G.711 RTP payloads), fed in
//!   chunks of any size: [`InbandDetector::process_with`] (callback per digit, any chunk
//!   size), [`InbandDetector::process`] (returns a digit; meant for RTP-sized frames) or the
//!   one-shot [`InbandDetector::process_all`]. The output does not depend on how the stream
//!   is cut into chunks: the state advances sample by sample.
//! * Output: one character of `0-9 * # A-D` per key press, reported once, as soon as the
//!   tone has been confirmed (about 40 ms after its start), never again on release.
//! * [`detect_wav`] runs the detector over an 8 kHz mono 16-bit WAV file (operator CLI).
//!
//! Per call of `process*` nothing is allocated and nothing locks: the state is a few fixed
//! arrays (under 2 KiB with its constant tables). Cost: about 0.54 µs per 160-sample
//! (20 ms) frame, 3.4 ns per sample, in a release build on this project's x86-64 machine,
//! i.e. about 0.003 % of one core per call (`tests/dtmf_inband.rs`, `per_frame_cost`).
//!
//! # Design
//!
//! **Analysis.** Eight Goertzel filters evaluate the DTFT at exactly the eight DTMF
//! frequencies (697, 770, 852, 941 | 1209, 1336, 1477, 1633 Hz) over *sub-blocks* of
//! [`SUB_BLOCK`] = 53 samples (6.6 ms), keeping the complex result. Two consecutive
//! sub-blocks are combined exactly (`X = H₁ + e^{-jωM}·H₂`) into an analysis *window* of
//! [`WINDOW`] = 106 samples (13.25 ms, rectangular, main lobe ±75 Hz) every 53 samples:
//! 50 % overlapping windows at no extra filtering cost. 106 samples puts the neighbouring
//! low-group frequency (73–89 Hz away) at or near the first null. The side lobes of the
//! rectangular window leak the other group's tone into a group's bins (941 Hz into the
//! 1209 Hz bin at −21 dB, i.e. −13 dB relative to a high tone at 8 dB twist); that leakage
//! is computed from the other group's peak and subtracted before any check.
//!
//! Energies are normalised so that a sine on its bin scores its own signal energy; a
//! window therefore compares directly with its sample energy `Σx²`.
//!
//! **Per-window checks** (a window "shows" digit *d* only if all hold):
//!
//! | Check | Threshold | Serves |
//! |---|---|---|
//! | strongest low and strongest high tone each ≥ −39 dBFS (≈ −36 dBm0) | `MIN_TONE_DBFS` | sensitivity / non-operate level: noise and quiet signals are not keys |
//! | twist within the final limits + 5 dB | `WINDOW_TWIST_SLACK_DB` | coarse pre-check (the exact twist check needs the measured frequencies, below) |
//! | each peak ≥ 6 dB above the other three tones of its group | `GROUP_DOMINANCE_DB` | Q.23: one tone per group; talk-off (speech has several harmonics per group). 6 dB, because a tone 1.5 % off leaks −13 dB into the neighbouring bin, plus noise |
//! | the two peaks carry ≥ 60 % of the window's energy | `MIN_ENERGY_SHARE` | talk-off / music: a DTMF signal is *only* two sines |
//!
//! **Confirmation** (each time a run of consecutive windows shows the same digit that is
//! not already held):
//!
//! | Check | Threshold | Serves |
//! |---|---|---|
//! | ≥ 4 *strong* windows (energy within 2 dB of the key's maximum), consecutive or in two stretches around a hole | `MIN_STRONG_WINDOWS`, `STRONG_DB` | Q.24 duration, accept ≥ 40 ms / reject < 23 ms: a 40 ms tone always covers ≥ 5 whole sub-blocks, hence ≥ 4 whole windows; a 23 ms tone covers ≤ 3 whole sub-blocks and only a window ≥ 79 % filled is strong, so it yields ≤ 3. Measured: never detected ≤ 26 ms, always from 36 ms. A key with a hole of ≤ 10 ms counts with its whole duration (below) |
//! | measured frequency of each tone within ±2.5 % of nominal | `MAX_FREQ_DEVIATION` | Q.24 frequency tolerance, accept ±1.5 % / reject ±3.5 % (midway; Q.23 senders are within ±1.8 %). Measured edges: ±2.4–2.8 % |
//! | phase coherence ≥ 0.8 | `MIN_COHERENCE` | talk-off: a key is a steady sine, speech glides |
//! | twist, on levels corrected for the measured offsets: low ≤ high + 10 dB, high ≤ low + 6 dB | `NORMAL_TWIST_DB`, `REVERSE_TWIST_DB` | Q.24 twist: accept 8 dB normal / 4 dB reverse, with 2 dB margin for noise; 12 dB normal / 10 dB reverse are rejected |
//! | the two tones, corrected for the offsets, are ≥ 80 % of the signal energy | `MIN_TONE_SHARE` | talk-off and music; pure DTMF scores ≈ 1, 0.97 at 15 dB SNR (Q.24 noise) |
//!
//! **Holes before confirmation.** The windows of a key are all those showing it back to
//! the last *pause*, i.e. `RELEASE_SUB_BLOCKS` = 3 consecutive sub-blocks whose two
//! strongest tones are not the key's pair at a usable level and share (the rule that
//! releases a held key, below, without a reference level). A hole of ≤ 10 ms leaves at
//! most 2 such sub-blocks, so a 30 ms + 10 ms hole + 30 ms key counts as one 70 ms key
//! although neither half is long enough on its own; a pause of ≥ 26.4 ms always leaves 3,
//! so bursts separated by a pause never add up to a key. The phase pairs of the frequency
//! measurement are only taken between strong windows one hop apart (the tone may resume
//! with any phase).
//!
//! The frequency is *measured*, not inferred from the bin: the main lobe (±75 Hz) is far
//! wider than 3.5 % of 697 Hz (24 Hz), and no block short enough to tell 23 ms from
//! 40 ms could reject a 3.5 % offset by energy alone. A tone Δ Hz off turns the phase of
//! successive windows (53 samples apart) by `2π·Δ·53/8000` on top of the nominal advance;
//! the phase of `Σ X_k·conj(X_{k-1})·e^{-jω₀·53}` over the strong windows gives Δ (within
//! ~1 Hz at 15 dB SNR), unambiguous over ±75 Hz, i.e. the whole main lobe; a tone further
//! off fails the energy-share checks. The length of that phasor sum over the sum of its
//! terms' lengths is the coherence. With Δ known, the window's attenuation of each tone
//! (`window_gain`) is undone for the twist and share checks.
//!
//! **Hold and release** (after a digit was reported): every sub-block checks that both
//! tones are still there (each ≥ −8 dB of its level at detection, i.e. the sub-block is at
//! least ~40 % filled, and together ≥ 30 % of the sub-block energy). The digit is released
//! after 3 consecutive sub-blocks without it (`RELEASE_SUB_BLOCKS`). Q.24 interruptions:
//! a drop-out of ≤ 10 ms (in fact up to 14.6 ms) leaves at most 2 such sub-blocks, so it
//! is bridged and the key is not reported twice; a pause of ≥ 26.4 ms (Q.24: ≥ 40 ms)
//! always contains 3, so the next tone, even of the same key, is a new key press. A
//! different digit confirmed while one is held is reported at once.
//!
//! # Verified behaviour (`tests/dtmf_inband.rs`)
//!
//! All 16 keys, 50 ms on / 50 ms off; ±1.5 % accepted and ±3.5 % … 6 % rejected for every
//! tone and combination; 40 ms accepted and 23 ms / 20 ms rejected at every sample
//! alignment; 10 ms interruptions bridged (also with phase jumps), also before the key
//! was confirmed (16 keys of 30 ms + 10 ms hole + 30 ms, 70 ms pauses, at every alignment,
//! also off-centre and at 15 dB SNR), 20 ms bursts 40 ms apart not joined, and 40 ms
//! pauses recognised; twist 8 dB normal / 4 dB reverse accepted, 12 dB / 10 dB rejected; 15 dB
//! SNR white noise (100 seeds × 16 keys), also combined with 8 dB twist, ±1.5 % or 40 ms;
//! G.711 μ-law and A-law round trips; chunking invariance; talk-off: zero digits on the
//! 417 s of English and Mandarin prompts, test greetings and music on hold in `audio/`
//! (at 0, −10 and −20 dB, linear and μ-law) and on 220 s of synthetic vowels (5 vowels,
//! F0 swept 80–300 Hz).
//!
//! Known limit: a synthetic vowel whose two formants are placed exactly on a DTMF pair and
//! held at a constant pitch that puts two harmonics within the frequency tolerance is
//! indistinguishable from a key by these checks (3 detections in 176 s of such
//! deliberately adversarial sweeps). Natural speech does not hold that.

use std::path::{Path, PathBuf};

/// Sample rate the detector is designed for.
pub const SAMPLE_RATE: u32 = 8000;
/// Goertzel sub-block length in samples (6.625 ms); the hop between analysis windows.
pub const SUB_BLOCK: usize = 53;
/// Analysis window length in samples (13.25 ms): two sub-blocks.
pub const WINDOW: usize = 2 * SUB_BLOCK;
/// The DTMF frequencies: low group (rows) then high group (columns).
pub const FREQUENCIES: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad layout, `KEYPAD[row][column]`.
pub const KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Minimum level of each of the two tones, dBFS (sine peak relative to 32768); ≈ −36 dBm0.
const MIN_TONE_DBFS: f32 = -39.0;
/// Low group may be this much louder than the high group (Q.24 "normal" twist, 8 dB + margin).
const NORMAL_TWIST_DB: f32 = 10.0;
/// High group may be this much louder than the low group (Q.24 "reverse" twist, 4 dB + margin).
const REVERSE_TWIST_DB: f32 = 6.0;
/// Extra twist tolerated per window (the window attenuates an off-nominal tone by up to
/// 4.6 dB at the ±2.5 % limit); the exact twist check is made on confirmation.
const WINDOW_TWIST_SLACK_DB: f32 = 5.0;
/// Each peak must exceed the other tones of its group by this much.
const GROUP_DOMINANCE_DB: f32 = 6.0;
/// The two peaks must hold this share of the window's energy.
const MIN_ENERGY_SHARE: f32 = 0.6;
/// ... and, corrected for their measured frequency offsets, this share on confirmation.
const MIN_TONE_SHARE: f32 = 0.8;
/// Maximum measured deviation of each tone from its nominal frequency (relative).
const MAX_FREQ_DEVIATION: f32 = 0.025;
/// Minimum phase coherence of each tone across the confirming windows.
const MIN_COHERENCE: f32 = 0.8;
/// A window is "strong" (counts for the duration) if within this many dB of the run's peak.
const STRONG_DB: f32 = -2.0;
/// Consecutive strong windows needed to confirm a key (duration check).
const MIN_STRONG_WINDOWS: usize = 4;
/// A held tone is still present in a sub-block if each tone is within this many dB of its
/// level at detection.
const PRESENT_DB: f32 = -8.0;
/// ... and both tones hold at least this share of the sub-block energy.
const PRESENT_MIN_SHARE: f32 = 0.3;
/// Consecutive sub-blocks without the held tone that release it.
const RELEASE_SUB_BLOCKS: u8 = 3;
/// Windows kept for the confirmation (≥ `MIN_STRONG_WINDOWS`; more = more averaging): 16
/// windows span 106 ms, enough for a 70 ms key with a 10 ms hole in it (Q.24) to be seen
/// whole.
const HISTORY: usize = 16;
/// Digits [`InbandDetector::process`] can hold back for [`InbandDetector::next_digit`].
const PENDING: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Cplx {
    re: f32,
    im: f32,
}

impl Cplx {
    const ZERO: Cplx = Cplx { re: 0.0, im: 0.0 };

    fn mul(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn conj(self) -> Cplx {
        Cplx {
            re: self.re,
            im: -self.im,
        }
    }
    fn sub(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul_conj(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re * o.re + self.im * o.im,
            im: self.im * o.re - self.re * o.im,
        }
    }
    fn add(self, o: Cplx) -> Cplx {
        Cplx {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn scale(self, k: f32) -> Cplx {
        Cplx {
            re: self.re * k,
            im: self.im * k,
        }
    }
    fn norm_sqr(self) -> f32 {
        self.re * self.re + self.im * self.im
    }
    fn abs(self) -> f32 {
        self.norm_sqr().sqrt()
    }
    fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }
    fn expj(phase: f64) -> Cplx {
        Cplx {
            re: phase.cos() as f32,
            im: phase.sin() as f32,
        }
    }
}

/// Constants derived once from the frequencies and the dB thresholds.
#[derive(Debug, Clone)]
struct Tables {
    /// Goertzel feedback coefficient `2·cos ω`.
    coef: [f32; 8],
    /// `e^{-jω(M-1)}`: turns the final Goertzel state into the DTFT referenced to the
    /// sub-block start.
    out_a: [Cplx; 8],
    /// `e^{-jωM}`: second half of that, and the shift of a sub-block by one hop.
    hop: [Cplx; 8],
    /// Cross-group leakage over a window: `leak_pos[i][j % 4]·X_j + leak_neg[i][j % 4]·conj(X_j)`
    /// is what a real sine at frequency `j` with window DTFT `X_j` puts into bin `i`.
    leak_pos: [[Cplx; 4]; 8],
    leak_neg: [[Cplx; 4]; 8],
    min_tone_energy: f32,
    normal_twist: f32,
    reverse_twist: f32,
    /// Extra twist a single window may show before `confirm` applies the exact limit.
    twist_slack: f32,
    dominance: f32,
    strong: f32,
    present: f32,
}

impl Tables {
    fn new() -> Tables {
        let db = |d: f32| 10f32.powf(d / 10.0);
        let mut t = Tables {
            coef: [0.0; 8],
            out_a: [Cplx::ZERO; 8],
            hop: [Cplx::ZERO; 8],
            leak_pos: [[Cplx::ZERO; 4]; 8],
            leak_neg: [[Cplx::ZERO; 4]; 8],
            min_tone_energy: 0.0,
            normal_twist: db(NORMAL_TWIST_DB),
            reverse_twist: db(REVERSE_TWIST_DB),
            twist_slack: db(WINDOW_TWIST_SLACK_DB),
            dominance: db(GROUP_DOMINANCE_DB),
            strong: db(STRONG_DB),
            present: db(PRESENT_DB),
        };
        for (i, f) in FREQUENCIES.iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * f64::from(*f) / f64::from(SAMPLE_RATE);
            t.coef[i] = (2.0 * w.cos()) as f32;
            t.out_a[i] = Cplx::expj(-w * (SUB_BLOCK as f64 - 1.0));
            t.hop[i] = Cplx::expj(-w * SUB_BLOCK as f64);
        }
        // Σ_{n<N} e^{jδn} = (1 − e^{jδN}) / (1 − e^{jδ}), normalised by N (a sine `c·e^{jω_j n}`
        // has X_j ≈ c·N). Only needed across groups, where δ is never 0.
        let omega = |i: usize| {
            2.0 * std::f64::consts::PI * f64::from(FREQUENCIES[i]) / f64::from(SAMPLE_RATE)
        };
        let kernel = |delta: f64| {
            let n = WINDOW as f64;
            let (nr, ni) = (1.0 - (delta * n).cos(), -(delta * n).sin());
            let (dr, di) = (1.0 - delta.cos(), -delta.sin());
            let den = dr * dr + di * di;
            Cplx {
                re: ((nr * dr + ni * di) / den / n) as f32,
                im: ((ni * dr - nr * di) / den / n) as f32,
            }
        };
        for i in 0..8 {
            for j in 0..8 {
                if (i < 4) != (j < 4) {
                    t.leak_pos[i][j % 4] = kernel(omega(j) - omega(i));
                    t.leak_neg[i][j % 4] = kernel(-omega(j) - omega(i));
                }
            }
        }
        // A sine of peak amplitude A on its bin scores A²·N/2 (its energy over the window).
        let amp = 10f32.powf(MIN_TONE_DBFS / 20.0);
        t.min_tone_energy = amp * amp * WINDOW as f32 / 2.0;
        t
    }
}

/// What one analysis window showed.
#[derive(Debug, Clone, Copy, Default)]
struct WindowResult {
    /// Digit index `row*4 + column` if the window passed every per-window check.
    digit: Option<u8>,
    /// Normalised energies of the strongest low and high tone.
    low: f32,
    high: f32,
    /// Their complex DTFT values (phase referenced to the window start).
    x_low: Cplx,
    x_high: Cplx,
    /// Signal energy of the window.
    total: f32,
    /// Digit index whose two tones are present in the window's *newest sub-block* (each at
    /// least `PRESENT_DB` above the minimum level, together `PRESENT_MIN_SHARE` of its
    /// energy): what `confirm` uses to tell a hole in a key from a pause between keys.
    sub_digit: Option<u8>,
}

/// The digit being held (reported, not yet released).
#[derive(Debug, Clone, Copy)]
struct Held {
    digit: u8,
    /// Normalised window energies of each tone at detection.
    ref_low: f32,
    ref_high: f32,
    /// Consecutive sub-blocks without the tone.
    missing: u8,
}

/// Fixed-capacity FIFO of reported digits for [`InbandDetector::process`].
#[derive(Debug, Clone, Copy)]
struct Pending {
    buf: [char; PENDING],
    head: usize,
    len: usize,
}

impl Pending {
    const EMPTY: Pending = Pending {
        buf: ['\0'; PENDING],
        head: 0,
        len: 0,
    };

    fn push(&mut self, c: char) {
        if self.len == PENDING {
            // Full: the caller fed a very long buffer to `process` without draining it.
            // Keep the newest digits.
            self.head = (self.head + 1) % PENDING;
            self.len -= 1;
        }
        self.buf[(self.head + self.len) % PENDING] = c;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<char> {
        if self.len == 0 {
            return None;
        }
        let c = self.buf[self.head];
        self.head = (self.head + 1) % PENDING;
        self.len -= 1;
        Some(c)
    }
}

/// Streaming in-band DTMF detector for 8 kHz audio. See the module documentation.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    t: Tables,
    // Goertzel state of the current sub-block.
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    n: usize,
    // The previous sub-block.
    prev_h: [Cplx; 8],
    prev_energy: f32,
    have_prev: bool,
    // Ring of the latest window results.
    hist: [WindowResult; HISTORY],
    hist_head: usize,
    hist_len: usize,
    held: Option<Held>,
    pending: Pending,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl InbandDetector {
    pub fn new() -> Self {
        InbandDetector {
            t: Tables::new(),
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            n: 0,
            prev_h: [Cplx::ZERO; 8],
            prev_energy: 0.0,
            have_prev: false,
            hist: [WindowResult::default(); HISTORY],
            hist_head: 0,
            hist_len: 0,
            held: None,
            pending: Pending::EMPTY,
        }
    }

    /// Forget everything (new call, or after a discontinuity in the stream).
    pub fn reset(&mut self) {
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.n = 0;
        self.prev_h = [Cplx::ZERO; 8];
        self.prev_energy = 0.0;
        self.have_prev = false;
        self.hist = [WindowResult::default(); HISTORY];
        self.hist_head = 0;
        self.hist_len = 0;
        self.held = None;
        self.pending = Pending::EMPTY;
    }

    /// The digit currently held down, if any (reported and not yet released).
    pub fn held(&self) -> Option<char> {
        self.held.map(|h| digit_char(h.digit))
    }

    /// Feed samples; return the key press detected in them, if any.
    ///
    /// Meant for RTP-sized frames: a chunk of up to 212 samples (26.5 ms) can never contain
    /// two detections. If a longer chunk does, the first is returned and the others are
    /// kept (up to 16) for [`next_digit`](Self::next_digit) and later calls, so nothing is
    /// lost; [`process_with`](Self::process_with) avoids the question altogether.
    pub fn process(&mut self, samples: &[i16]) -> Option<char> {
        let mut pending = self.pending;
        self.process_with(samples, |c| pending.push(c));
        self.pending = pending;
        self.pending.pop()
    }

    /// The next digit held back by [`process`](Self::process), if any.
    pub fn next_digit(&mut self) -> Option<char> {
        self.pending.pop()
    }

    /// Feed samples of any length; `on_digit` is called once per key press, in order.
    pub fn process_with<F: FnMut(char)>(&mut self, samples: &[i16], mut on_digit: F) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (SUB_BLOCK - self.n).min(rest.len());
            let (now, later) = rest.split_at(take);
            rest = later;
            let coef = self.t.coef;
            let (mut s1, mut s2, mut energy) = (self.s1, self.s2, self.energy);
            for &s in now {
                let x = f32::from(s) * (1.0 / 32768.0);
                energy += x * x;
                for i in 0..8 {
                    let s0 = x + coef[i] * s1[i] - s2[i];
                    s2[i] = s1[i];
                    s1[i] = s0;
                }
            }
            (self.s1, self.s2, self.energy) = (s1, s2, energy);
            self.n += take;
            if self.n == SUB_BLOCK {
                if let Some(d) = self.end_sub_block() {
                    on_digit(digit_char(d));
                }
            }
        }
    }

    /// Run a fresh detector over a whole signal.
    pub fn process_all(samples: &[i16]) -> Vec<char> {
        let mut det = InbandDetector::new();
        let mut out = Vec::new();
        det.process_with(samples, |c| out.push(c));
        out
    }

    /// A sub-block is complete: hold/release bookkeeping, then analyse the window ending
    /// here. Returns a newly confirmed digit.
    fn end_sub_block(&mut self) -> Option<u8> {
        let mut h = [Cplx::ZERO; 8];
        for (i, hi) in h.iter_mut().enumerate() {
            // DTFT over the sub-block: e^{-jω(M-1)}·(s[M-1] − e^{-jω}·s[M-2]).
            *hi = self.t.out_a[i]
                .scale(self.s1[i])
                .add(self.t.hop[i].scale(-self.s2[i]));
        }
        let energy = self.energy;
        self.s1 = [0.0; 8];
        self.s2 = [0.0; 8];
        self.energy = 0.0;
        self.n = 0;

        self.update_held(&h, energy);

        let mut found = None;
        if self.have_prev {
            let mut x = [Cplx::ZERO; 8];
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = self.prev_h[i].add(self.t.hop[i].mul(h[i]));
            }
            let mut w = self.classify(&x, self.prev_energy + energy);
            w.sub_digit = self.sub_block_pair(&h, energy);
            self.hist[self.hist_head] = w;
            self.hist_head = (self.hist_head + 1) % HISTORY;
            self.hist_len = (self.hist_len + 1).min(HISTORY);
            if let Some(d) = w.digit {
                if self.held.map(|h| h.digit) != Some(d) {
                    if let Some((ref_low, ref_high)) = self.confirm(d) {
                        self.held = Some(Held {
                            digit: d,
                            ref_low,
                            ref_high,
                            missing: 0,
                        });
                        found = Some(d);
                    }
                }
            }
        }
        self.prev_h = h;
        self.prev_energy = energy;
        self.have_prev = true;
        found
    }

    /// Is the held digit still sounding in this sub-block? Release it after
    /// `RELEASE_SUB_BLOCKS` sub-blocks without it.
    fn update_held(&mut self, h: &[Cplx; 8], energy: f32) {
        let Some(mut held) = self.held else { return };
        let (lo, hi) = tone_indices(held.digit);
        let norm = 2.0 / SUB_BLOCK as f32;
        let (pl, ph) = (h[lo].norm_sqr() * norm, h[hi].norm_sqr() * norm);
        // A sub-block is half a window: a full sub-block scores half the window energy.
        let present = pl >= 0.5 * held.ref_low * self.t.present
            && ph >= 0.5 * held.ref_high * self.t.present
            && pl + ph >= PRESENT_MIN_SHARE * energy;
        if present {
            held.missing = 0;
            self.held = Some(held);
        } else if held.missing + 1 >= RELEASE_SUB_BLOCKS {
            self.held = None;
            // The windows of this key press must not confirm it a second time.
            for w in self.hist.iter_mut() {
                if w.digit == Some(held.digit) {
                    w.digit = None;
                }
            }
        } else {
            held.missing += 1;
            self.held = Some(held);
        }
    }

    /// The key whose two tones are present in a sub-block, without reference to a held
    /// key: the strongest tone of each group at least `PRESENT_DB` above the minimum tone
    /// level (a sub-block scores half a window) and the two together at least
    /// `PRESENT_MIN_SHARE` of the sub-block's energy. A sub-block at least ~10 % filled
    /// with a key at a normal level passes; silence, noise and speech between keys do not.
    fn sub_block_pair(&self, h: &[Cplx; 8], energy: f32) -> Option<u8> {
        let norm = 2.0 / SUB_BLOCK as f32;
        let mut p = [0.0f32; 8];
        for (pi, hi) in p.iter_mut().zip(h) {
            *pi = hi.norm_sqr() * norm;
        }
        let lo = argmax(&p[0..4]);
        let hi = 4 + argmax(&p[4..8]);
        let min = 0.5 * self.t.min_tone_energy * self.t.present;
        (p[lo] >= min && p[hi] >= min && p[lo] + p[hi] >= PRESENT_MIN_SHARE * energy)
            .then_some((lo * 4 + (hi - 4)) as u8)
    }

    /// Per-window checks: level, twist, one dominant tone per group, energy share.
    fn classify(&self, x: &[Cplx; 8], total_energy: f32) -> WindowResult {
        let t = &self.t;
        let norm = 2.0 / WINDOW as f32;
        let mut p = [0.0f32; 8];
        for (pi, xi) in p.iter_mut().zip(x) {
            *pi = xi.norm_sqr() * norm;
        }
        let lo = argmax(&p[0..4]);
        let hi = 4 + argmax(&p[4..8]);
        // Remove from every bin what the peak of the *other* group leaks into it through
        // the rectangular window's side lobes (e.g. 941 Hz into the 1209 Hz bin: −21 dB,
        // i.e. −13 dB relative to a high tone at 8 dB twist), so that the twist and
        // dominance checks and the phase measurement see the tones actually present.
        let mut xc = *x;
        for (i, xi) in xc.iter_mut().enumerate() {
            let j = if i < 4 { hi } else { lo };
            let leak = t.leak_pos[i][j % 4]
                .mul(x[j])
                .add(t.leak_neg[i][j % 4].mul(x[j].conj()));
            *xi = xi.sub(leak);
            p[i] = xi.norm_sqr() * norm;
        }
        let (pl, ph) = (p[lo], p[hi]);
        let mut w = WindowResult {
            digit: None,
            low: pl,
            high: ph,
            x_low: xc[lo],
            x_high: xc[hi],
            total: total_energy,
            sub_digit: None,
        };
        if pl < t.min_tone_energy || ph < t.min_tone_energy {
            return w;
        }
        // Coarse twist limit here; the exact one is applied by `confirm` once the tone
        // frequencies, hence the window's attenuation of each tone, are known.
        if pl > ph * t.normal_twist * t.twist_slack || ph > pl * t.reverse_twist * t.twist_slack {
            return w;
        }
        for (j, pj) in p.iter().enumerate() {
            let peak = if j < 4 { pl } else { ph };
            if j != lo && j != hi && pj * t.dominance > peak {
                return w;
            }
        }
        if pl + ph < MIN_ENERGY_SHARE * total_energy {
            return w;
        }
        w.digit = Some((lo * 4 + (hi - 4)) as u8);
        w
    }

    /// Confirmation of digit `d` shown by the newest window: duration (strong windows),
    /// measured frequencies and coherence. Returns the tone levels for the hold check.
    ///
    /// The key is every window showing `d` back to the last *pause*: `RELEASE_SUB_BLOCKS`
    /// consecutive sub-blocks without `d`'s two tones (the rule that releases a held key).
    /// A hole of ≤ 10 ms (Q.24 interruption) leaves at most 2 such sub-blocks, so the
    /// windows on both sides of it count for the duration; a pause of ≥ 26.4 ms always
    /// leaves 3, so separate bursts never add up.
    fn confirm(&self, d: u8) -> Option<(f32, f32)> {
        // The windows showing `d` since the last pause, newest first, with their age in hops.
        let mut run = [(0usize, 0usize); HISTORY];
        let mut n = 0;
        let mut absent = 0u8;
        for age in 0..self.hist_len {
            let idx = (self.hist_head + HISTORY - 1 - age) % HISTORY;
            let w = &self.hist[idx];
            if w.sub_digit == Some(d) {
                absent = 0;
            } else {
                absent += 1;
                if absent >= RELEASE_SUB_BLOCKS {
                    break;
                }
            }
            if w.digit == Some(d) {
                run[n] = (idx, age);
                n += 1;
            }
        }
        if n < MIN_STRONG_WINDOWS {
            return None;
        }
        let run = &run[..n];
        let level = |i: usize| self.hist[i].low + self.hist[i].high;
        let peak = run.iter().map(|&(i, _)| level(i)).fold(0.0f32, f32::max);
        let strong = |i: usize| level(i) >= peak * self.t.strong;

        // Phase pairs only between strong windows one hop apart: across a hole the phase of
        // the resumed tone is arbitrary.
        let (mut p_low, mut p_high) = (Cplx::ZERO, Cplx::ZERO);
        let (mut m_low, mut m_high) = (0.0f32, 0.0f32);
        let (mut pairs, mut n_strong) = (0usize, 0usize);
        let (mut ref_low, mut ref_high, mut total) = (0.0f32, 0.0f32, 0.0f32);
        for (k, &(i, age)) in run.iter().enumerate() {
            if !strong(i) {
                continue;
            }
            n_strong += 1;
            ref_low += self.hist[i].low;
            ref_high += self.hist[i].high;
            total += self.hist[i].total;
            if let Some(&(older, older_age)) = run.get(k + 1) {
                if older_age == age + 1 && strong(older) {
                    let (a, b) = (&self.hist[i], &self.hist[older]);
                    let ql = a.x_low.mul_conj(b.x_low);
                    let qh = a.x_high.mul_conj(b.x_high);
                    p_low = p_low.add(ql);
                    p_high = p_high.add(qh);
                    m_low += ql.abs();
                    m_high += qh.abs();
                    pairs += 1;
                }
            }
        }
        // Duration: `MIN_STRONG_WINDOWS` strong windows, in one stretch or in two around a
        // hole (n_strong = pairs + stretches). A single burst is judged exactly as before.
        let stretches = n_strong - pairs;
        if n_strong < MIN_STRONG_WINDOWS || stretches > 2 {
            return None;
        }
        let (lo, hi) = tone_indices(d);
        // Remove the nominal advance over one hop; what is left is 2π·Δf·M/fs.
        let hz_per_rad = SAMPLE_RATE as f32 / (2.0 * std::f32::consts::PI * SUB_BLOCK as f32);
        let (dev_low, dev_high) = (
            p_low.mul(self.t.hop[lo]).arg() * hz_per_rad,
            p_high.mul(self.t.hop[hi]).arg() * hz_per_rad,
        );
        if dev_low.abs() > MAX_FREQ_DEVIATION * FREQUENCIES[lo]
            || dev_high.abs() > MAX_FREQ_DEVIATION * FREQUENCIES[hi]
            || p_low.abs() < MIN_COHERENCE * m_low
            || p_high.abs() < MIN_COHERENCE * m_high
        {
            return None;
        }
        // Twist and energy share on the tone levels corrected for the window's attenuation
        // of a tone `dev` Hz off its bin (≤ 1.6 dB at ±1.5 %): the caller's twist, and how
        // much of the signal the two tones are (close to 1 for DTMF, 0.97 at 15 dB SNR).
        let (ref_low, ref_high) = (ref_low / n_strong as f32, ref_high / n_strong as f32);
        let (level_low, level_high) = (
            ref_low / window_gain(dev_low),
            ref_high / window_gain(dev_high),
        );
        if level_low > level_high * self.t.normal_twist
            || level_high > level_low * self.t.reverse_twist
            || level_low + level_high < MIN_TONE_SHARE * (total / n_strong as f32)
        {
            return None;
        }
        Some((ref_low, ref_high))
    }
}

/// Power gain of the rectangular window for a sine `dev_hz` off the bin, relative to on-bin:
/// `(sin(πΔN/fs) / (N·sin(πΔ/fs)))²`.
fn window_gain(dev_hz: f32) -> f32 {
    let x = std::f32::consts::PI * dev_hz / SAMPLE_RATE as f32;
    if x.abs() < 1e-6 {
        return 1.0;
    }
    let g = (x * WINDOW as f32).sin() / (WINDOW as f32 * x.sin());
    g * g
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best
}

fn tone_indices(d: u8) -> (usize, usize) {
    (usize::from(d / 4), 4 + usize::from(d % 4))
}

fn digit_char(d: u8) -> char {
    KEYPAD[usize::from(d / 4)][usize::from(d % 4)]
}

/// Errors of [`detect_wav`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read WAV file {}: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error(
        "{}: unsupported WAV format ({channels} channel(s), {sample_rate} Hz, {bits}-bit {format}); \
         expected 8000 Hz mono 16-bit PCM",
        path.display()
    )]
    UnsupportedFormat {
        path: PathBuf,
        channels: u16,
        sample_rate: u32,
        bits: u16,
        format: &'static str,
    },
}

/// Detect the in-band DTMF key presses in an 8 kHz mono 16-bit PCM WAV file (for the
/// operator command `switchboard detect-dtmf FILE.wav`). The file is streamed, not loaded.
pub fn detect_wav(path: impl AsRef<Path>) -> Result<Vec<char>, Error> {
    let path = path.as_ref();
    let wav_err = |source| Error::Wav {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != SAMPLE_RATE
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(Error::UnsupportedFormat {
            path: path.to_path_buf(),
            channels: spec.channels,
            sample_rate: spec.sample_rate,
            bits: spec.bits_per_sample,
            format: match spec.sample_format {
                hound::SampleFormat::Int => "integer PCM",
                hound::SampleFormat::Float => "float",
            },
        });
    }
    let mut det = InbandDetector::new();
    let mut digits = Vec::new();
    let mut buf = [0i16; 160];
    let mut len = 0;
    for s in reader.samples::<i16>() {
        buf[len] = s.map_err(wav_err)?;
        len += 1;
        if len == buf.len() {
            det.process_with(&buf, |c| digits.push(c));
            len = 0;
        }
    }
    det.process_with(&buf[..len], |c| digits.push(c));
    Ok(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(lo: f64, hi: f64, amp_lo: f64, amp_hi: f64, samples: usize, phase: f64) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                let t = n as f64 / 8000.0;
                let v = amp_lo * (2.0 * std::f64::consts::PI * lo * t + phase).sin()
                    + amp_hi * (2.0 * std::f64::consts::PI * hi * t + 2.0 * phase).sin();
                v.round().clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    fn key(c: char) -> (f64, f64) {
        for (r, row) in KEYPAD.iter().enumerate() {
            for (col, k) in row.iter().enumerate() {
                if *k == c {
                    return (f64::from(FREQUENCIES[r]), f64::from(FREQUENCIES[4 + col]));
                }
            }
        }
        panic!("no key {c}");
    }

    #[test]
    fn goertzel_sub_blocks_combine_into_the_exact_window_dtft() {
        let x = tone(697.0, 1336.0, 5000.0, 3000.0, WINDOW, 0.3);
        let mut det = InbandDetector::new();
        det.process(&x);
        // After two sub-blocks the newest window result is that of the DTFT over all 106
        // samples, computed here directly.
        let got = det.hist[(det.hist_head + HISTORY - 1) % HISTORY];
        let mut direct = [Cplx::ZERO; 8];
        let mut energy = 0.0;
        for (i, d) in direct.iter_mut().enumerate() {
            let om = 2.0 * std::f64::consts::PI * f64::from(FREQUENCIES[i]) / 8000.0;
            let (mut re, mut im) = (0.0f64, 0.0f64);
            energy = 0.0;
            for (n, s) in x.iter().enumerate() {
                let v = f64::from(*s) / 32768.0;
                re += v * (om * n as f64).cos();
                im -= v * (om * n as f64).sin();
                energy += v * v;
            }
            *d = Cplx {
                re: re as f32,
                im: im as f32,
            };
        }
        let want = det.classify(&direct, energy as f32);
        for (g, w) in [(got.x_low, want.x_low), (got.x_high, want.x_high)] {
            assert!(g.sub(w).abs() < 1e-3 * w.abs(), "{g:?} vs {w:?}");
        }
        assert!((got.total - want.total).abs() < 1e-4 * want.total);
        assert_eq!(got.digit, Some(1), "697+1336 is '2'");
        assert_eq!(want.digit, Some(1));
    }

    #[test]
    fn every_key_is_reported_once() {
        for c in "123A456B789C*0#D".chars() {
            let (lo, hi) = key(c);
            let mut x = vec![0i16; 400];
            x.extend(tone(lo, hi, 6000.0, 6000.0, 800, 0.0));
            x.extend(vec![0i16; 400]);
            assert_eq!(InbandDetector::process_all(&x), vec![c]);
        }
    }

    #[test]
    fn frequency_is_measured_to_within_a_hertz() {
        // Offsets of 0.5 Hz .. 60 Hz on a 770 Hz tone: the estimate tracks them.
        for off in [-60.0, -30.0, -10.0, 0.0, 10.0, 30.0, 60.0f64] {
            let x = tone(770.0 + off, 1336.0, 6000.0, 6000.0, 8 * SUB_BLOCK + 10, 0.7);
            let mut det = InbandDetector::new();
            det.process(&x);
            let (mut p, mut m) = (Cplx::ZERO, 0.0);
            for k in 0..HISTORY - 1 {
                let a = det.hist[(det.hist_head + HISTORY - 1 - k) % HISTORY];
                let b = det.hist[(det.hist_head + HISTORY - 2 - k) % HISTORY];
                let q = a.x_low.mul_conj(b.x_low);
                p = p.add(q);
                m += q.abs();
            }
            let dev = p.mul(det.t.hop[1]).arg() * 8000.0
                / (2.0 * std::f32::consts::PI * SUB_BLOCK as f32);
            assert!(
                (f64::from(dev) - off).abs() < 1.0,
                "offset {off}: measured {dev}"
            );
            assert!(p.abs() > 0.99 * m);
        }
    }

    #[test]
    fn held_digit_is_released_after_a_pause_and_reset_clears_it() {
        let x = tone(852.0, 1477.0, 6000.0, 6000.0, 600, 0.0);
        let mut det = InbandDetector::new();
        let mut got = Vec::new();
        det.process_with(&x, |c| got.push(c));
        assert_eq!(got, ['9']);
        assert_eq!(det.held(), Some('9'));
        det.process_with(&[0; 160], |c| got.push(c));
        assert_eq!(det.held(), None);
        det.process_with(&x, |c| got.push(c));
        assert_eq!(got, ['9', '9']);
        det.reset();
        assert_eq!(det.held(), None);
        assert_eq!(det.hist_len, 0);
    }

    #[test]
    fn process_keeps_extra_digits_of_a_long_chunk() {
        let mut x = Vec::new();
        for c in "147*".chars() {
            let (lo, hi) = key(c);
            x.extend(tone(lo, hi, 6000.0, 6000.0, 400, 0.0));
            x.extend(vec![0i16; 400]);
        }
        let mut det = InbandDetector::new();
        let mut got: Vec<char> = det.process(&x).into_iter().collect();
        while let Some(c) = det.next_digit() {
            got.push(c);
        }
        assert_eq!(got.iter().collect::<String>(), "147*");
    }

    #[test]
    fn pending_queue_keeps_the_newest_when_full() {
        let mut q = Pending::EMPTY;
        for i in 0..20u8 {
            q.push(char::from(b'a' + i));
        }
        let got: String = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, "efghijklmnopqrst");
    }

    #[test]
    fn cross_group_leakage_is_removed() {
        // 941 Hz alone: its side lobe in the 1209 Hz bin is −21 dB; after the correction
        // the high-group bins hold (almost) nothing.
        let x = tone(941.0, 1209.0, 8000.0, 0.0, WINDOW, 0.4);
        let det = InbandDetector::new();
        let mut h = [Cplx::ZERO; 8];
        for (i, hi) in h.iter_mut().enumerate() {
            let om = 2.0 * std::f64::consts::PI * f64::from(FREQUENCIES[i]) / 8000.0;
            for (n, s) in x.iter().enumerate() {
                let v = f64::from(*s) / 32768.0;
                *hi = hi.add(Cplx::expj(-om * n as f64).scale(v as f32));
            }
        }
        let raw = h[4].norm_sqr() / h[3].norm_sqr();
        assert!(raw > 10f32.powf(-2.3), "leakage {}", 10.0 * raw.log10());
        // The strongest "high tone" is then the 1209 Hz bin, holding only leakage.
        let w = det.classify(&h, 1.0);
        assert!(
            w.high / w.low < 1e-4,
            "after correction {} dB",
            10.0 * (w.high / w.low).log10()
        );
    }

    #[test]
    fn state_is_small() {
        assert!(
            std::mem::size_of::<InbandDetector>() < 2048,
            "{}",
            std::mem::size_of::<InbandDetector>()
        );
    }

    #[test]
    fn silence_and_single_tones_are_not_digits() {
        assert!(InbandDetector::process_all(&[0; 8000]).is_empty());
        let single = tone(697.0, 1336.0, 8000.0, 0.0, 2000, 0.0);
        assert!(InbandDetector::process_all(&single).is_empty());
        let single = tone(697.0, 1336.0, 0.0, 8000.0, 2000, 0.0);
        assert!(InbandDetector::process_all(&single).is_empty());
    }
}
