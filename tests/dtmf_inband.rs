//! In-band DTMF detector (`switchboard::media::dtmf_inband`) against the ITU-T Q.24
//! receiver requirements of the product: frequency tolerance, tone duration, interruptions,
//! twist, noise, talk-off on the project's own speech prompts and music on hold, G.711
//! round trips and chunking invariance. Signals are generated here (exact sines, seeded
//! noise); the talk-off corpus is `audio/`.
//!
//! `cargo test --test suite -- dtmf_inband:: --nocapture` prints the measured boundaries and the
//! talk-off statistics; `cargo test --release --test dtmf_inband -- --ignored --nocapture
//! per_frame_cost` prints the per-frame cost.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use switchboard::media::codec::Codec;
use switchboard::media::dtmf_inband::{detect_wav, Error, InbandDetector, KEYPAD};

const KEYS: &str = "123A456B789C*0#D";
const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Per-tone peak amplitude of the test signals: −14.7 dBFS ≈ −11.5 dBm0.
const AMP: f64 = 6000.0;

fn ms(ms: f64) -> usize {
    (ms * 8.0).round() as usize
}

fn freqs(key: char) -> (f64, f64) {
    for (r, row) in KEYPAD.iter().enumerate() {
        if let Some(c) = row.iter().position(|k| *k == key) {
            return (LOW[r], HIGH[c]);
        }
    }
    panic!("not a DTMF key: {key}");
}

/// Small deterministic PRNG (SplitMix64) with Gaussian output.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    fn phase(&mut self) -> f64 {
        2.0 * PI * self.uniform()
    }
    /// Standard normal (Box–Muller).
    fn gauss(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * PI * self.uniform()).cos()
    }
}

/// A test signal under construction, in floating point until `pcm()`.
#[derive(Default, Clone)]
struct Sig(Vec<f64>);

impl Sig {
    fn new() -> Sig {
        Sig::default()
    }
    fn silence(mut self, n: usize) -> Sig {
        self.0.extend(std::iter::repeat_n(0.0, n));
        self
    }
    /// Two sines: `(frequency, amplitude, start phase)` each, `n` samples.
    fn dual(mut self, lo: (f64, f64, f64), hi: (f64, f64, f64), n: usize) -> Sig {
        self.0.extend((0..n).map(|i| {
            let t = i as f64 / 8000.0;
            lo.1 * (2.0 * PI * lo.0 * t + lo.2).sin() + hi.1 * (2.0 * PI * hi.0 * t + hi.2).sin()
        }));
        self
    }
    /// Key `key` at nominal frequencies and level, random start phases.
    fn key(self, key: char, n: usize, rng: &mut Rng) -> Sig {
        let (lo, hi) = freqs(key);
        self.dual((lo, AMP, rng.phase()), (hi, AMP, rng.phase()), n)
    }
    /// Add white Gaussian noise of standard deviation `sigma` to every sample.
    fn noise(mut self, sigma: f64, rng: &mut Rng) -> Sig {
        for v in &mut self.0 {
            *v += sigma * rng.gauss();
        }
        self
    }
    fn pcm(&self) -> Vec<i16> {
        self.0
            .iter()
            .map(|v| v.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

fn detect(x: &[i16]) -> String {
    InbandDetector::process_all(x).into_iter().collect()
}

/// `key` pressed for `tone` samples with `lead` samples of silence before and 400 after.
fn single(key: char, lead: usize, tone: usize, rng: &mut Rng) -> Vec<i16> {
    Sig::new()
        .silence(lead)
        .key(key, tone, rng)
        .silence(400)
        .pcm()
}

/// Each key of `keys`: `on` ms tone then `off` ms silence, after 100 ms of silence.
fn sequence(keys: &str, on: f64, off: f64, rng: &mut Rng) -> Sig {
    let mut s = Sig::new().silence(ms(100.0));
    for k in keys.chars() {
        s = s.key(k, ms(on), rng).silence(ms(off));
    }
    s
}

fn db(x: f64) -> f64 {
    10f64.powf(x / 20.0)
}

// ---------------------------------------------------------------------------------------
// Every key, 50 ms on / 50 ms off
// ---------------------------------------------------------------------------------------

#[test]
fn every_key_50ms_on_50ms_off() {
    let mut rng = Rng(1);
    for keys in [KEYS, "0123456789*#ABCD", "1111", "##**00DD", "1590*#AD7"] {
        let x = sequence(keys, 50.0, 50.0, &mut rng).pcm();
        assert_eq!(detect(&x), keys);
    }
}

// ---------------------------------------------------------------------------------------
// Frequency tolerance: ±1.5 % accepted, ±3.5 % rejected
// ---------------------------------------------------------------------------------------

fn offset_tone(key: char, dl: f64, dh: f64, n: usize, rng: &mut Rng) -> Vec<i16> {
    let (lo, hi) = freqs(key);
    Sig::new()
        .silence(ms(30.0))
        .dual(
            (lo * (1.0 + dl), AMP, rng.phase()),
            (hi * (1.0 + dh), AMP, rng.phase()),
            n,
        )
        .silence(ms(50.0))
        .pcm()
}

#[test]
fn frequency_offset_of_1_5_percent_is_accepted() {
    let mut rng = Rng(2);
    for key in KEYS.chars() {
        for (sl, sh) in [
            (-1., -1.),
            (-1., 0.),
            (-1., 1.),
            (0., -1.),
            (0., 1.),
            (1., -1.),
            (1., 0.),
            (1., 1.),
        ] {
            for _ in 0..4 {
                let x = offset_tone(key, 0.015 * sl, 0.015 * sh, ms(60.0), &mut rng);
                assert_eq!(
                    detect(&x),
                    key.to_string(),
                    "{key} offsets {sl:+}×1.5 % / {sh:+}×1.5 %"
                );
            }
        }
    }
}

#[test]
fn frequency_offset_of_3_5_percent_and_beyond_is_rejected() {
    let mut rng = Rng(3);
    for key in KEYS.chars() {
        for (sl, sh) in [
            (-1., -1.),
            (-1., 0.),
            (-1., 1.),
            (0., -1.),
            (0., 1.),
            (1., -1.),
            (1., 0.),
            (1., 1.),
        ] {
            for off in [0.035, 0.04, 0.05, 0.06] {
                let x = offset_tone(key, off * sl, off * sh, ms(300.0), &mut rng);
                assert_eq!(
                    detect(&x),
                    "",
                    "{key} offsets {:+.1} % / {:+.1} %",
                    100. * off * sl,
                    100. * off * sh
                );
            }
        }
    }
}

/// Sweep each of the 8 frequencies in 0.1 % steps (other tone nominal) and print where
/// detection stops; asserts the Q.24 bounds on the way.
#[test]
fn frequency_tolerance_boundaries() {
    let mut rng = Rng(4);
    println!("frequency tolerance (other tone nominal, 0.1 % steps, 4 random phases each):");
    for (i, f) in LOW.iter().chain(HIGH.iter()).enumerate() {
        let key = if i < 4 {
            KEYPAD[i][1]
        } else {
            KEYPAD[1][i - 4]
        };
        let mut edges = [(0.0f64, 0.0f64); 2];
        for (e, sign) in edges.iter_mut().zip([-1.0, 1.0]) {
            let hits: Vec<usize> = (0..=60)
                .map(|step| {
                    let off = sign * step as f64 * 0.001;
                    let (dl, dh) = if i < 4 { (off, 0.0) } else { (0.0, off) };
                    (0..4)
                        .filter(|_| {
                            detect(&offset_tone(key, dl, dh, ms(100.0), &mut rng))
                                == key.to_string()
                        })
                        .count()
                })
                .collect();
            for (step, h) in hits.iter().enumerate() {
                if step <= 15 {
                    assert_eq!(
                        *h,
                        4,
                        "{f} Hz {:+.1} % must be accepted",
                        sign * step as f64 * 0.1
                    );
                }
                if step >= 35 {
                    assert_eq!(
                        *h,
                        0,
                        "{f} Hz {:+.1} % must be rejected",
                        sign * step as f64 * 0.1
                    );
                }
            }
            // Always accepted up to, never accepted from.
            let acc = hits.iter().take_while(|h| **h == 4).count() - 1;
            let rej = hits.iter().rposition(|h| *h > 0).map_or(0, |p| p + 1);
            *e = (sign * acc as f64 * 0.1, sign * rej as f64 * 0.1);
        }
        println!(
            "  {f:6.0} Hz: always detected within {:+.1} % .. {:+.1} %, never beyond {:+.1} % .. {:+.1} %",
            edges[0].0, edges[1].0, edges[0].1, edges[1].1
        );
    }
}

// ---------------------------------------------------------------------------------------
// Duration: ≥ 40 ms accepted, < 23 ms rejected, at every sample alignment
// ---------------------------------------------------------------------------------------

#[test]
fn tone_of_40ms_is_accepted_at_every_alignment() {
    let mut rng = Rng(5);
    for key in KEYS.chars() {
        for lead in 400..400 + 106 {
            let x = single(key, lead, ms(40.0), &mut rng);
            assert_eq!(detect(&x), key.to_string(), "{key}, 40 ms, lead {lead}");
        }
    }
}

#[test]
fn tones_of_23ms_and_20ms_are_rejected_at_every_alignment() {
    let mut rng = Rng(6);
    for key in KEYS.chars() {
        for dur in [23.0, 20.0] {
            for lead in 400..400 + 106 {
                let x = single(key, lead, ms(dur), &mut rng);
                assert_eq!(detect(&x), "", "{key}, {dur} ms, lead {lead}");
            }
        }
    }
}

#[test]
fn short_tone_off_nominal_or_in_noise_is_still_rejected() {
    // The worst cases for the duration check: a 23 ms tone at +1.5 % (partial windows lose
    // less to the offset than whole ones), and in 15 dB SNR noise.
    let mut rng = Rng(7);
    for key in KEYS.chars() {
        let (lo, hi) = freqs(key);
        for lead in 400..400 + 53 {
            for d in [-0.015, 0.015] {
                let x = Sig::new()
                    .silence(lead)
                    .dual(
                        (lo * (1.0 + d), AMP, rng.phase()),
                        (hi * (1.0 + d), AMP, rng.phase()),
                        ms(23.0),
                    )
                    .silence(400)
                    .pcm();
                assert_eq!(detect(&x), "", "{key}, 23 ms at {d:+}, lead {lead}");
            }
            let sigma = (AMP * AMP / 10f64.powf(1.5)).sqrt();
            let x = Sig::new()
                .silence(lead)
                .key(key, ms(23.0), &mut rng)
                .silence(400)
                .noise(sigma, &mut rng)
                .pcm();
            assert_eq!(detect(&x), "", "{key}, 23 ms in noise, lead {lead}");
        }
    }
}

#[test]
fn duration_boundary() {
    let mut rng = Rng(8);
    println!("duration: share of (16 keys × 53 alignments) detected");
    for d in [
        22.0, 24.0, 26.0, 28.0, 30.0, 32.0, 34.0, 36.0, 38.0, 39.0, 40.0,
    ] {
        let mut hits = 0;
        for key in KEYS.chars() {
            for lead in 400..400 + 53 {
                hits += usize::from(detect(&single(key, lead, ms(d), &mut rng)) == key.to_string());
            }
        }
        println!(
            "  {d:4.0} ms: {:5.1} %",
            100.0 * hits as f64 / (16.0 * 53.0)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Interruptions: ≤ 10 ms bridged, ≥ 40 ms pause = two key presses
// ---------------------------------------------------------------------------------------

#[test]
fn interruption_of_10ms_in_a_100ms_tone_gives_one_digit() {
    let mut rng = Rng(9);
    for key in KEYS.chars() {
        let (lo, hi) = freqs(key);
        for gap_at in [20.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0] {
            let (n1, gap, n2) = (ms(gap_at), ms(10.0), ms(90.0 - gap_at));
            for lead in (400..400 + 53).step_by(4) {
                // The tone resumes with its phase continuing (gated generator), or with an
                // arbitrary phase jump (worst case: cancellation inside a window).
                for resume in 0..3 {
                    let (pl, ph) = (rng.phase(), rng.phase());
                    let w = |f: f64| 2.0 * PI * f * (n1 + gap) as f64 / 8000.0;
                    let (ql, qh) = match resume {
                        0 => (pl + w(lo), ph + w(hi)),
                        1 => (pl + w(lo) + PI, ph + w(hi) + PI),
                        _ => (rng.phase(), rng.phase()),
                    };
                    let x = Sig::new()
                        .silence(lead)
                        .dual((lo, AMP, pl), (hi, AMP, ph), n1)
                        .silence(gap)
                        .dual((lo, AMP, ql), (hi, AMP, qh), n2)
                        .silence(400)
                        .pcm();
                    assert_eq!(
                        detect(&x),
                        key.to_string(),
                        "{key}: gap at {gap_at} ms, lead {lead}, resume {resume}"
                    );
                }
            }
        }
    }
}

/// The shape: every key of `KEYS` as a tone of `first` ms, a hole of `gap` ms, a tone
/// of `second` ms, then 70 ms of silence, after `lead` samples of silence. The tone resumes
/// after the hole as in the 100 ms test above (`resume`: 0 phase continuing, 1 phase jump of
/// π, 2 random phases).
fn holed_keys(first: f64, gap: f64, second: f64, lead: usize, resume: u8, rng: &mut Rng) -> Sig {
    let mut s = Sig::new().silence(lead);
    for key in KEYS.chars() {
        let (lo, hi) = freqs(key);
        let (n1, gap, n2) = (ms(first), ms(gap), ms(second));
        let (pl, ph) = (rng.phase(), rng.phase());
        let w = |f: f64| 2.0 * PI * f * (n1 + gap) as f64 / 8000.0;
        let (ql, qh) = match resume {
            0 => (pl + w(lo), ph + w(hi)),
            1 => (pl + w(lo) + PI, ph + w(hi) + PI),
            _ => (rng.phase(), rng.phase()),
        };
        s = s
            .dual((lo, AMP, pl), (hi, AMP, ph), n1)
            .silence(gap)
            .dual((lo, AMP, ql), (hi, AMP, qh), n2)
            .silence(ms(70.0));
    }
    s
}

#[test]
fn keys_of_70ms_with_a_10ms_hole_in_the_middle_are_all_reported() {
    // Q.24: an interruption of up to 10 ms neither splits nor loses a key, and the tone's
    // duration is that of the whole tone: 30 ms + 10 ms hole + 30 ms is one 70 ms key,
    // although neither half is a key on its own (the duration rule needs ~36 ms).
    let mut rng = Rng(29);
    for lead in (0..53).step_by(3) {
        for resume in 0..3 {
            let x = holed_keys(30.0, 10.0, 30.0, lead, resume, &mut rng).pcm();
            assert_eq!(
                detect(&x),
                KEYS,
                "30+10+30 ms, lead {lead}, resume {resume}"
            );
        }
        // The same keys without the hole (70 ms tones, 70 ms pauses).
        let x = holed_keys(35.0, 0.0, 35.0, lead, 0, &mut rng).pcm();
        assert_eq!(detect(&x), KEYS, "70 ms, lead {lead}");
    }
    // Hole off-centre, and in 15 dB SNR noise.
    let sigma = noise_sigma(AMP, AMP, 15.0);
    for (first, second) in [(25.0, 35.0), (35.0, 25.0), (30.0, 40.0), (40.0, 30.0)] {
        for lead in (0..53).step_by(5) {
            for resume in 0..3 {
                let x = holed_keys(first, 10.0, second, lead, resume, &mut rng).pcm();
                assert_eq!(
                    detect(&x),
                    KEYS,
                    "{first}+10+{second} ms, lead {lead}, resume {resume}"
                );
                let x = holed_keys(30.0, 10.0, 30.0, lead, resume, &mut rng)
                    .noise(sigma, &mut rng)
                    .pcm();
                assert_eq!(
                    detect(&x),
                    KEYS,
                    "30+10+30 ms at 15 dB SNR, lead {lead}, resume {resume}"
                );
            }
        }
    }
}

#[test]
fn a_hole_is_not_bridged_into_a_key_across_a_pause() {
    // Bridging holes must not defeat the duration rule: two 20 ms bursts of the same key
    // 40 ms apart (a pause, Q.24) stay two rejected bursts, never one key.
    let mut rng = Rng(30);
    for lead in 0..53 {
        for resume in 0..3 {
            let x = holed_keys(20.0, 40.0, 20.0, lead, resume, &mut rng).pcm();
            assert_eq!(detect(&x), "", "20+40+20 ms, lead {lead}, resume {resume}");
        }
    }
}

#[test]
fn detect_wav_reports_every_key_of_the_holed_sequence() {
    // The operator's view (`switchboard detect-dtmf FILE.wav`): the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(31);
    let path = dir.path().join("holed.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create");
    for s in holed_keys(30.0, 10.0, 30.0, 800, 0, &mut rng).pcm() {
        w.write_sample(s).expect("write");
    }
    w.finalize().expect("finalize");
    let got: String = detect_wav(&path).expect("detect").into_iter().collect();
    assert_eq!(got, KEYS);
}

#[test]
fn pause_of_40ms_separates_two_presses_of_the_same_key() {
    let mut rng = Rng(10);
    for key in KEYS.chars() {
        for lead in 400..400 + 53 {
            for (on, off) in [(50.0, 40.0), (40.0, 40.0), (100.0, 40.0), (50.0, 60.0)] {
                let x = Sig::new()
                    .silence(lead)
                    .key(key, ms(on), &mut rng)
                    .silence(ms(off))
                    .key(key, ms(on), &mut rng)
                    .silence(400)
                    .pcm();
                assert_eq!(
                    detect(&x),
                    format!("{key}{key}"),
                    "{key}: {on} ms / {off} ms, lead {lead}"
                );
            }
        }
    }
}

#[test]
fn different_keys_without_pause_are_both_reported() {
    let mut rng = Rng(11);
    let x = Sig::new()
        .silence(400)
        .key('1', ms(60.0), &mut rng)
        .key('9', ms(60.0), &mut rng)
        .key('1', ms(60.0), &mut rng)
        .silence(400)
        .pcm();
    assert_eq!(detect(&x), "191");
}

// ---------------------------------------------------------------------------------------
// Twist
// ---------------------------------------------------------------------------------------

/// Key with the low group `twist_db` louder than the high group (negative: reverse twist);
/// the louder tone at `AMP`.
fn twisted(key: char, twist_db: f64, rng: &mut Rng) -> Vec<i16> {
    let (lo, hi) = freqs(key);
    let (al, ah) = if twist_db >= 0.0 {
        (AMP, AMP / db(twist_db))
    } else {
        (AMP / db(-twist_db), AMP)
    };
    Sig::new()
        .silence(ms(30.0))
        .dual((lo, al, rng.phase()), (hi, ah, rng.phase()), ms(60.0))
        .silence(ms(50.0))
        .pcm()
}

#[test]
fn normal_twist_8db_and_reverse_twist_4db_are_accepted() {
    let mut rng = Rng(12);
    for key in KEYS.chars() {
        for twist in [8.0, 6.0, 4.0, -4.0, -2.0] {
            for _ in 0..8 {
                assert_eq!(
                    detect(&twisted(key, twist, &mut rng)),
                    key.to_string(),
                    "{key}, twist {twist} dB"
                );
            }
        }
    }
}

#[test]
fn excessive_twist_is_rejected() {
    let mut rng = Rng(13);
    for key in KEYS.chars() {
        for twist in [12.0, 15.0, -10.0, -12.0] {
            for _ in 0..8 {
                assert_eq!(
                    detect(&twisted(key, twist, &mut rng)),
                    "",
                    "{key}, twist {twist} dB"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Noise
// ---------------------------------------------------------------------------------------

/// σ of white noise that is `snr_db` below the power of a dual tone with amplitudes
/// `a`, `b`.
fn noise_sigma(a: f64, b: f64, snr_db: f64) -> f64 {
    ((a * a + b * b) / 2.0 / 10f64.powf(snr_db / 10.0)).sqrt()
}

#[test]
fn all_keys_at_15db_snr_across_seeds() {
    let sigma = noise_sigma(AMP, AMP, 15.0);
    for seed in 0..100 {
        let mut rng = Rng(1000 + seed);
        let x = sequence(KEYS, 50.0, 50.0, &mut rng)
            .noise(sigma, &mut rng)
            .pcm();
        assert_eq!(detect(&x), KEYS, "seed {seed}");
    }
}

#[test]
fn combined_worst_cases_at_15db_snr() {
    // Not required by Q.24 together, but a receiver should cope: 15 dB SNR plus 8 dB normal
    // or 4 dB reverse twist, or plus ±1.5 % offsets, or plus 40 ms tones.
    let mut rng = Rng(14);
    for key in KEYS.chars() {
        let (lo, hi) = freqs(key);
        for _ in 0..20 {
            for (al, ah, dl, dh, dur) in [
                (AMP, AMP / db(8.0), 0.0, 0.0, 60.0),
                (AMP / db(4.0), AMP, 0.0, 0.0, 60.0),
                (AMP, AMP, 0.015, -0.015, 60.0),
                (AMP, AMP, -0.015, 0.015, 60.0),
                (AMP, AMP, 0.0, 0.0, 40.0),
            ] {
                let x = Sig::new()
                    .silence(ms(30.0) + (rng.next_u64() % 53) as usize)
                    .dual(
                        (lo * (1.0 + dl), al, rng.phase()),
                        (hi * (1.0 + dh), ah, rng.phase()),
                        ms(dur),
                    )
                    .silence(ms(50.0))
                    .noise(noise_sigma(al, ah, 15.0), &mut rng)
                    .pcm();
                assert_eq!(
                    detect(&x),
                    key.to_string(),
                    "{key}: {al:.0}/{ah:.0} {dl:+}/{dh:+} {dur} ms"
                );
            }
        }
    }
}

#[test]
fn noise_alone_gives_no_digits() {
    let mut rng = Rng(15);
    for sigma in [30.0, 300.0, 3000.0, 10000.0] {
        let x = Sig::new()
            .silence(ms(10_000.0))
            .noise(sigma, &mut rng)
            .pcm();
        assert_eq!(detect(&x), "", "σ = {sigma}");
    }
}

#[test]
fn sensitivity() {
    // Each tone at −30 dBFS (≈ −27 dBm0) is detected; at −45 dBFS it is not.
    let mut rng = Rng(16);
    for key in KEYS.chars() {
        let (lo, hi) = freqs(key);
        for (level, want) in [(-30.0, key.to_string()), (-45.0, String::new())] {
            let a = 32768.0 * db(level);
            let x = Sig::new()
                .silence(200)
                .dual((lo, a, rng.phase()), (hi, a, rng.phase()), ms(60.0))
                .silence(400)
                .pcm();
            assert_eq!(detect(&x), want, "{key} at {level} dBFS");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Talk-off: speech prompts and music on hold
// ---------------------------------------------------------------------------------------

fn read_wav(path: &Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16),
        "{}",
        path.display()
    );
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

fn wavs_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    v.sort();
    v
}

#[test]
fn talk_off_speech_prompts_and_music_on_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut groups: Vec<(&str, Vec<PathBuf>)> = vec![
        ("audio/en", wavs_in("audio/en")),
        ("audio/zh", wavs_in("audio/zh")),
        ("audio/test", wavs_in("audio/test")),
        ("audio/moh.wav", vec![root.join("audio/moh.wav")]),
    ];
    assert!(
        groups[0].1.len() > 100 && groups[1].1.len() > 100,
        "speech prompts missing"
    );
    let mut false_digits = Vec::new();
    let mut total_s = 0.0;
    let mut processed_s = 0.0;
    for (name, files) in &mut groups {
        let mut seconds = 0.0;
        let mut all = Vec::new();
        for path in files.iter() {
            let x = read_wav(path);
            seconds += x.len() as f64 / 8000.0;
            // At the recorded level (−3 dBFS peak) and 10 and 20 dB lower; linear and after
            // a μ-law round trip.
            for gain_db in [0.0, -10.0, -20.0] {
                let g = db(gain_db);
                let y: Vec<i16> = x
                    .iter()
                    .map(|s| (f64::from(*s) * g).round() as i16)
                    .collect();
                let u: Vec<i16> = y
                    .iter()
                    .map(|s| Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(*s)))
                    .collect();
                for (variant, signal) in [("linear", &y), ("μ-law", &u)] {
                    processed_s += signal.len() as f64 / 8000.0;
                    let got = detect(signal);
                    if !got.is_empty() {
                        false_digits.push(format!(
                            "{} ({gain_db} dB, {variant}): {got}",
                            path.display()
                        ));
                    }
                }
            }
            all.extend(x);
        }
        // Also as one continuous stream (no detector reset between prompts).
        processed_s += all.len() as f64 / 8000.0;
        let got = detect(&all);
        if !got.is_empty() {
            false_digits.push(format!("{name} concatenated: {got}"));
        }
        println!("talk-off: {name}: {} file(s), {seconds:.1} s", files.len());
        total_s += seconds;
    }
    println!("talk-off: {total_s:.1} s of distinct audio, {processed_s:.1} s processed in all variants, {} false digits", false_digits.len());
    assert!(
        false_digits.is_empty(),
        "false digits:\n{}",
        false_digits.join("\n")
    );
}

/// A vowel: harmonics of `f0` (1/k source spectrum up to 3.4 kHz) shaped by three
/// formants `(frequency, bandwidth)`, in steady 100 ms segments, one per `f0`, each
/// harmonic phase-continuous across segments.
fn vowel(formants: &[(f64, f64)], f0s: &[f64], amp: f64) -> Vec<i16> {
    let mut out = Vec::with_capacity(f0s.len() * 800);
    let mut phase = [0.0f64; 48];
    for &f0 in f0s {
        let nh = ((3400.0 / f0) as usize).min(phase.len() - 1);
        let gains: Vec<f64> = (1..=nh)
            .map(|k| {
                let f = k as f64 * f0;
                formants.iter().fold(1.0 / k as f64, |g, &(fi, bi)| {
                    g / ((1.0 - (f / fi).powi(2)).powi(2) + (f * bi / (fi * fi)).powi(2)).sqrt()
                })
            })
            .collect();
        let rms = (gains.iter().map(|g| g * g).sum::<f64>() / 2.0).sqrt();
        for _ in 0..800 {
            let mut v = 0.0;
            for (k, g) in gains.iter().enumerate() {
                phase[k + 1] += 2.0 * PI * (k + 1) as f64 * f0 / 8000.0;
                v += g * phase[k + 1].sin();
            }
            out.push((amp * v / rms).round().clamp(-32768.0, 32767.0) as i16);
        }
    }
    out
}

#[test]
fn talk_off_synthetic_vowels_with_steady_pitch() {
    // Held vowels are the classic talk-off risk: steady harmonics, some of them near DTMF
    // frequencies. Formants after Peterson & Barney; F0 80–300 Hz in 0.5 Hz steps.
    let vowels: [(&str, [(f64, f64); 3]); 5] = [
        ("a", [(730.0, 90.0), (1090.0, 110.0), (2440.0, 170.0)]),
        ("i", [(270.0, 60.0), (2290.0, 100.0), (3010.0, 120.0)]),
        ("u", [(300.0, 60.0), (870.0, 80.0), (2240.0, 120.0)]),
        ("e", [(530.0, 70.0), (1840.0, 100.0), (2480.0, 150.0)]),
        ("o", [(570.0, 80.0), (840.0, 80.0), (2410.0, 150.0)]),
    ];
    let f0s: Vec<f64> = (0..440).map(|i| 80.0 + 0.5 * i as f64).collect();
    let mut seconds = 0.0;
    for (name, formants) in &vowels {
        let x = vowel(formants, &f0s, 8000.0);
        seconds += x.len() as f64 / 8000.0;
        assert_eq!(detect(&x), "", "vowel {name}");
    }
    println!("talk-off: {seconds:.0} s of synthetic vowels, 0 false digits");
}

#[test]
fn digits_over_music_on_hold_are_detected() {
    // Keys pressed while music plays 10 dB below each tone.
    let moh = read_wav(&Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/moh.wav"));
    let mut rng = Rng(17);
    let keys = sequence(KEYS, 60.0, 60.0, &mut rng).pcm();
    let music_peak = moh.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(1) as f64;
    let g = AMP * db(-10.0) / music_peak;
    let x: Vec<i16> = keys
        .iter()
        .zip(moh.iter().skip(8000))
        .map(|(k, m)| (f64::from(*k) + f64::from(*m) * g).round() as i16)
        .collect();
    assert_eq!(detect(&x), KEYS);
}

// ---------------------------------------------------------------------------------------
// G.711 round trips
// ---------------------------------------------------------------------------------------

#[test]
fn digits_survive_g711_round_trips() {
    let mut rng = Rng(18);
    for codec in [Codec::Pcmu, Codec::Pcma] {
        for level_db in [0.0, -10.0, -20.0] {
            let s = sequence(KEYS, 50.0, 50.0, &mut rng);
            let g = db(level_db);
            let x: Vec<i16> =
                s.0.iter()
                    .map(|v| {
                        codec.decode_sample(
                            codec.encode_sample((v * g).round().clamp(-32768.0, 32767.0) as i16),
                        )
                    })
                    .collect();
            assert_eq!(detect(&x), KEYS, "{codec:?} at {level_db} dB");
        }
    }
}

/// G.722 legs without telephone-event also get in-band detection (on the decoded low band,
/// 8 kHz): keys must survive the ADPCM round trip at every level, packet by packet.
#[test]
fn digits_survive_g722_round_trips() {
    use switchboard::media::codec::{Decoder, Encoder};
    let mut rng = Rng(28);
    for level_db in [0.0, -10.0, -20.0] {
        let s = sequence(KEYS, 50.0, 50.0, &mut rng);
        let g = db(level_db);
        let pcm: Vec<i16> =
            s.0.iter()
                .map(|v| (v * g).round().clamp(-32768.0, 32767.0) as i16)
                .collect();
        let mut enc = Encoder::new(Codec::G722).expect("encoder");
        let mut dec = Decoder::new(Codec::G722).expect("decoder");
        let mut x = Vec::with_capacity(pcm.len());
        let (mut payload, mut back) = ([0u8; 160], [0i16; 160]);
        for frame in pcm.chunks(160) {
            let n = enc.encode_8k(frame, &mut payload).expect("encode");
            let m = dec.decode_8k(&payload[..n], &mut back).expect("decode");
            x.extend_from_slice(&back[..m]);
        }
        assert_eq!(detect(&x), KEYS, "G.722 at {level_db} dB");
    }
}

// ---------------------------------------------------------------------------------------
// Chunking invariance and the API
// ---------------------------------------------------------------------------------------

#[test]
fn chunk_size_does_not_change_the_result() {
    let mut rng = Rng(19);
    let sigma = noise_sigma(AMP, AMP, 20.0);
    let x = sequence("1234567890*#ABCD1", 45.0, 45.0, &mut rng)
        .noise(sigma, &mut rng)
        .pcm();
    let whole = detect(&x);
    assert_eq!(whole, "1234567890*#ABCD1");
    for chunk in [1, 7, 53, 160, 1000, 4321] {
        let mut det = InbandDetector::new();
        let mut got = String::new();
        for c in x.chunks(chunk) {
            got.extend(det.process(c));
            got.extend(std::iter::from_fn(|| det.next_digit()));
        }
        assert_eq!(got, whole, "process, chunks of {chunk}");
        let mut det = InbandDetector::new();
        let mut got = String::new();
        for c in x.chunks(chunk) {
            det.process_with(c, |d| got.push(d));
        }
        assert_eq!(got, whole, "process_with, chunks of {chunk}");
    }
    // Irregular chunks.
    let mut det = InbandDetector::new();
    let mut got = String::new();
    let mut rest = &x[..];
    while !rest.is_empty() {
        let n = ((rng.next_u64() % 300) as usize).min(rest.len());
        let (a, b) = rest.split_at(n);
        got.extend(det.process(a));
        rest = b;
    }
    assert_eq!(got, whole, "irregular chunks");
}

#[test]
fn rtp_frames_report_each_digit_in_the_frame_that_confirms_it() {
    let mut rng = Rng(20);
    let x = sequence("59", 80.0, 80.0, &mut rng).pcm();
    let mut det = InbandDetector::new();
    let mut frames = Vec::new();
    for (i, f) in x.chunks(160).enumerate() {
        if let Some(d) = det.process(f) {
            frames.push((i, d));
        }
        assert_eq!(
            det.next_digit(),
            None,
            "a 160-sample frame holds at most one detection"
        );
    }
    // 100 ms lead-in = frames 0-4; '5' starts with frame 5 (100 ms) and is confirmed about
    // 40 ms later, in frame 6 (120-140 ms) or 7; '9' starts at 260 ms, frame 13.
    assert_eq!(frames.iter().map(|f| f.1).collect::<String>(), "59");
    assert!(
        (6..=7).contains(&frames[0].0) && (14..=15).contains(&frames[1].0),
        "{frames:?}"
    );
}

// ---------------------------------------------------------------------------------------
// WAV files
// ---------------------------------------------------------------------------------------

#[test]
fn harness_wav_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/harness/audio");
    for (file, want) in [("dtmf_12hash.wav", "12#"), ("dtmf_inband_1.wav", "1")] {
        let path = dir.join(file);
        if !path.exists() {
            eprintln!("note: {} absent, skipped", path.display());
            continue;
        }
        let got: String = detect_wav(&path)
            .expect("readable WAV")
            .into_iter()
            .collect();
        assert_eq!(got, want, "{}", path.display());
    }
}

#[test]
fn detect_wav_reads_a_file_and_reports_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(21);
    let x = sequence("0#", 60.0, 60.0, &mut rng).pcm();
    let write = |name: &str, rate: u32, channels: u16| {
        let path = dir.path().join(name);
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for s in &x {
            w.write_sample(*s).expect("write");
        }
        w.finalize().expect("finalize");
        path
    };
    let ok = write("ok.wav", 8000, 1);
    assert_eq!(detect_wav(&ok).expect("detect"), ['0', '#']);

    let wide = write("wide.wav", 16000, 1);
    let err = detect_wav(&wide).expect_err("16 kHz must be refused");
    assert!(
        matches!(
            err,
            Error::UnsupportedFormat {
                sample_rate: 16000,
                channels: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("expected 8000 Hz mono 16-bit PCM"),
        "{err}"
    );

    let stereo = write("stereo.wav", 8000, 2);
    assert!(matches!(
        detect_wav(&stereo),
        Err(Error::UnsupportedFormat { channels: 2, .. })
    ));

    let missing = dir.path().join("missing.wav");
    let err = detect_wav(&missing).expect_err("missing file");
    assert!(matches!(err, Error::Wav { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.wav"), "{err}");

    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"not a wav file at all").expect("write");
    assert!(matches!(detect_wav(&garbage), Err(Error::Wav { .. })));
}

// ---------------------------------------------------------------------------------------
// Cost
// ---------------------------------------------------------------------------------------

/// `cargo test --release --test suite -- --ignored --nocapture dtmf_inband::per_frame_cost`
#[test]
#[ignore = "timing; run in release mode"]
fn per_frame_cost() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rng = Rng(22);
    // Speech, music and keys in noise: every code path.
    let mut x = read_wav(&root.join("audio/en/main-menu.wav"));
    x.extend(read_wav(&root.join("audio/moh.wav")));
    x.extend(
        sequence(KEYS, 50.0, 50.0, &mut rng)
            .noise(noise_sigma(AMP, AMP, 15.0), &mut rng)
            .pcm(),
    );
    let frames = x.len() / 160;
    let mut det = InbandDetector::new();
    let mut digits = 0usize;
    let rounds = 20;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        det.reset();
        for f in x.chunks_exact(160) {
            digits +=
                usize::from(std::hint::black_box(det.process(std::hint::black_box(f))).is_some());
        }
    }
    let elapsed = start.elapsed();
    let ns = elapsed.as_nanos() as f64 / (rounds * frames) as f64;
    println!(
        "per-frame cost: {ns:.0} ns per 160-sample frame ({:.2} ns/sample, {:.4} % of one core in real time), {} frames, {digits} digits",
        ns / 160.0,
        ns / 20e6 * 100.0,
        rounds * frames
    );
}
