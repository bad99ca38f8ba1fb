//! Answering-machine detection (`switchboard::media::amd`) on the project's recorded
//! fixtures (`audio/test/greeting-*.wav`) and on a synthesized corpus built from the
//! espeak-ng prompts in `audio/en` and `audio/zh`: short human-like answers ("Hello?") and
//! long machine-like greetings, each with leading silence of 0 / 300 / 1000 / 3000 ms,
//! no noise or white noise at −50 / −40 dBFS (RMS relative to 32768, seeded PRNG), and
//! linear or after a G.711 μ-law round trip; the same with white or pink noise 15 / 10 dB
//! under the speech; and recorded human speech (the speaker-test phrases of Debian's
//! `alsa-utils`, `/usr/share/sounds/alsa`) as answers and as long announcements, clean and
//! noisy.
//!
//! `cargo test --test suite -- amd:: --nocapture` prints the accuracy tables.

use std::path::PathBuf;

use switchboard::media::amd::{
    classify_wav, reason, Amd, AmdConfig, AmdError, AmdResult, Verdict, FRAME_SAMPLES,
};
use switchboard::media::codec::Codec;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn load(rel: &str) -> Vec<i16> {
    let mut r = hound::WavReader::open(path(rel)).expect("open wav");
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    r.samples::<i16>().map(|s| s.expect("sample")).collect()
}

fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * 8]
}

/// Concatenation of prompts (`"en/hello"`) and pauses (`"300"` = 300 ms of silence).
fn speech(parts: &[&str]) -> Vec<i16> {
    let mut v = Vec::new();
    for p in parts {
        match p.parse::<u32>() {
            Ok(ms) => v.extend(silence(ms)),
            Err(_) => v.extend(load(&format!("audio/{p}.wav"))),
        }
    }
    v
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
    /// Standard normal (Box–Muller).
    fn gauss(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

/// The speech signals of the corpus: (name, expected verdict, signal).
fn greetings() -> Vec<(&'static str, Verdict, Vec<i16>)> {
    use Verdict::{Human, Machine};
    let human: [(&str, &[&str]); 6] = [
        ("fixture Hello?", &["test/greeting-human"]),
        ("en hello", &["en/hello"]),
        ("zh 您好", &["zh/hello"]),
        ("oh (short)", &["en/oh"]),
        ("hello 300ms hello", &["en/hello", "300", "en/hello"]),
        ("oh 200ms hello", &["en/oh", "200", "en/hello"]),
    ];
    let machine: [(&str, &[&str]); 6] = [
        ("fixture voicemail+beep", &["test/greeting-machine"]),
        ("en voicemail-message", &["en/voicemail-message"]),
        ("welcome+please-hold", &["en/welcome", "en/please-hold"]),
        (
            "this-is-shop+order 427",
            &[
                "en/this-is-shop",
                "en/order-number",
                "en/digit-4",
                "en/digit-2",
                "en/digit-7",
            ],
        ),
        ("agents-busy+goodbye", &["en/agents-busy", "en/goodbye"]),
        ("zh voicemail-message", &["zh/voicemail-message"]),
    ];
    let mut v = Vec::new();
    for (name, parts) in human {
        v.push((name, Human, speech(parts)));
    }
    for (name, parts) in machine {
        v.push((name, Machine, speech(parts)));
    }
    v
}

const LEVELS_DB: [f64; 2] = [0.0, -15.0];
const LEADS_MS: [u32; 4] = [0, 300, 1000, 3000];
const NOISES_DBFS: [Option<f64>; 3] = [None, Some(-50.0), Some(-40.0)];

struct Vector {
    name: &'static str,
    expected: Verdict,
    level_db: f64,
    lead_ms: u32,
    noise_dbfs: Option<f64>,
    /// Label of a noise given relative to the speech (`"white 15 dB SNR"`), else empty.
    line: String,
    ulaw: bool,
    pcm: Vec<i16>,
}

/// `lead_ms` of silence, the speech scaled by `gain_db`, 4 s of silence; white Gaussian
/// noise of RMS `noise_dbfs` (re 32768) over all of it; optionally through μ-law.
fn build(
    speech: &[i16],
    lead_ms: u32,
    gain_db: f64,
    noise_dbfs: Option<f64>,
    ulaw: bool,
    seed: u64,
) -> Vec<i16> {
    let mut rng = Rng(seed);
    let gain = 10f64.powf(gain_db / 20.0);
    let noise_rms = noise_dbfs.map_or(0.0, |db| 32768.0 * 10f64.powf(db / 20.0));
    silence(lead_ms)
        .into_iter()
        .chain(speech.iter().copied())
        .chain(silence(4000))
        .map(|s| {
            let mut x = f64::from(s) * gain;
            if noise_rms > 0.0 {
                x += noise_rms * rng.gauss();
            }
            let s = x.round().clamp(-32768.0, 32767.0) as i16;
            if ulaw {
                Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(s))
            } else {
                s
            }
        })
        .collect()
}

/// Every greeting × level × leading silence × noise × codec.
fn corpus(levels_db: &[f64]) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut seed = 1;
    for (name, expected, sp) in greetings() {
        for &level_db in levels_db {
            for lead_ms in LEADS_MS {
                for noise_dbfs in NOISES_DBFS {
                    for ulaw in [false, true] {
                        seed += 1;
                        out.push(Vector {
                            name,
                            expected,
                            level_db,
                            lead_ms,
                            noise_dbfs,
                            line: String::new(),
                            ulaw,
                            pcm: build(&sp, lead_ms, level_db, noise_dbfs, ulaw, seed),
                        });
                    }
                }
            }
        }
    }
    out
}

fn classify(pcm: &[i16], cfg: &AmdConfig, chunk: usize) -> AmdResult {
    let mut amd = Amd::new(cfg).expect("config");
    for c in pcm.chunks(chunk) {
        if let Some(r) = amd.process(c) {
            return r;
        }
    }
    amd.finish()
}

#[derive(Default, Clone, Copy)]
struct Tally {
    n: u32,
    human: u32,
    machine: u32,
    not_sure: u32,
    correct: u32,
    sum_ms: u64,
    /// Decision time after the start of the speech, over the vectors whose speech started
    /// before the decision.
    sum_after_speech_ms: u64,
    n_after_speech: u32,
}

impl Tally {
    fn add(&mut self, expected: Verdict, lead_ms: u32, r: AmdResult) {
        self.n += 1;
        if r.after_ms > lead_ms {
            self.n_after_speech += 1;
            self.sum_after_speech_ms += u64::from(r.after_ms - lead_ms);
        }
        match r.verdict {
            Verdict::Human => self.human += 1,
            Verdict::Machine => self.machine += 1,
            Verdict::NotSure => self.not_sure += 1,
        }
        if r.verdict == expected {
            self.correct += 1;
        }
        self.sum_ms += u64::from(r.after_ms);
    }
    fn pct(&self) -> f64 {
        100.0 * f64::from(self.correct) / f64::from(self.n.max(1))
    }
    fn mean_ms(&self) -> f64 {
        self.sum_ms as f64 / f64::from(self.n.max(1))
    }
    fn row(&self, label: &str) -> String {
        let after_speech = if self.n_after_speech == self.n {
            format!(
                "{:.0}",
                self.sum_after_speech_ms as f64 / f64::from(self.n.max(1))
            )
        } else {
            "–".to_string()
        };
        format!(
            "| {label} | {} | {} | {} | {} | {:.1} % | {:.0} | {after_speech} |",
            self.n,
            self.human,
            self.machine,
            self.not_sure,
            self.pct(),
            self.mean_ms(),
        )
    }
}

/// Results grouped by (row label, expected class); rows keep their first-seen order.
#[derive(Default)]
struct Report {
    rows: Vec<(String, [Tally; 2])>,
    misses: Vec<String>,
}

impl Report {
    fn add(&mut self, label: String, v: &Vector, r: AmdResult) {
        let k = usize::from(v.expected == Verdict::Machine);
        match self.rows.iter_mut().find(|(l, _)| *l == label) {
            Some((_, t)) => t[k].add(v.expected, v.lead_ms, r),
            None => {
                let mut t = [Tally::default(); 2];
                t[k].add(v.expected, v.lead_ms, r);
                self.rows.push((label, t));
            }
        }
    }
    fn get(&self, label: &str) -> [Tally; 2] {
        self.rows
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("no row {label}"))
    }
    fn print(&self, title: &str) {
        println!("\n### {title}\n");
        println!(
            "| vectors | N | → Human | → Machine | → NotSure | correct | \
             mean decision, ms after answer | ms after speech start |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for (label, t) in &self.rows {
            for (k, class) in ["human-like", "machine-like"].iter().enumerate() {
                if t[k].n > 0 {
                    println!("{}", t[k].row(&format!("{class}, {label}")));
                }
            }
        }
        for m in &self.misses {
            println!("miss: {m}");
        }
    }
}

impl Vector {
    fn noise(&self) -> String {
        if self.line.is_empty() {
            noise_label(self.noise_dbfs)
        } else {
            self.line.clone()
        }
    }
}

fn noise_label(noise_dbfs: Option<f64>) -> String {
    noise_dbfs.map_or("no noise".to_string(), |d| format!("noise {d} dBFS"))
}

fn codec_label(ulaw: bool) -> &'static str {
    if ulaw {
        "μ-law"
    } else {
        "linear"
    }
}

fn evaluate(vectors: &[Vector], cfg: &AmdConfig) -> Report {
    let mut rep = Report::default();
    // Fix the row order: totals, leading silence, level, noise × codec, greeting.
    let mut labels = vec![
        "all vectors".to_string(),
        "speech starts < 2.5 s: all".to_string(),
    ];
    labels.extend(LEADS_MS.iter().map(|l| format!("lead {l} ms")));
    let mut seen = Vec::new();
    for v in vectors {
        for l in [
            format!("level {} dB, lead < 2.5 s", v.level_db),
            format!("{}, {}, lead < 2.5 s", v.noise(), codec_label(v.ulaw)),
            format!("greeting {}, lead < 2.5 s", v.name),
        ] {
            if !seen.contains(&l) {
                seen.push(l);
            }
        }
    }
    seen.sort_by_key(|l| {
        (
            !l.starts_with("level"),
            !l.contains("noise"),
            l.starts_with("greeting"),
        )
    });
    labels.extend(seen);
    rep.rows = labels
        .into_iter()
        .map(|l| (l, [Tally::default(); 2]))
        .collect();

    for v in vectors {
        let r = classify(&v.pcm, cfg, FRAME_SAMPLES);
        let (noise, codec) = (v.noise(), codec_label(v.ulaw));
        rep.add("all vectors".into(), v, r);
        rep.add(format!("lead {} ms", v.lead_ms), v, r);
        if v.lead_ms < cfg.initial_silence_ms {
            rep.add("speech starts < 2.5 s: all".into(), v, r);
            rep.add(format!("level {} dB, lead < 2.5 s", v.level_db), v, r);
            rep.add(format!("{noise}, {codec}, lead < 2.5 s"), v, r);
            rep.add(format!("greeting {}, lead < 2.5 s", v.name), v, r);
            if r.verdict != v.expected {
                rep.misses.push(format!(
                    "{} level {} dB lead {} ms {noise} {codec}: {:?} {} at {} ms",
                    v.name, v.level_db, v.lead_ms, r.verdict, r.reason, r.after_ms
                ));
            }
        }
    }
    rep
}

/// The accuracy measurement of the product's defaults (the tables of the module
/// documentation come from here).
#[test]
fn accuracy_on_the_synthesized_corpus() {
    let cfg = AmdConfig::default();
    let vectors = corpus(&LEVELS_DB);
    let rep = evaluate(&vectors, &cfg);
    rep.print("default config; levels 0 / −15 dB");

    let [h, m] = rep.get("speech starts < 2.5 s: all");
    assert_eq!((h.n, m.n), (216, 216));
    let [all_h, all_m] = rep.get("all vectors");
    assert_eq!((all_h.n, all_m.n), (288, 288));
    assert!(h.pct() >= 95.0, "human accuracy {:.1} %", h.pct());
    assert!(m.pct() >= 95.0, "machine accuracy {:.1} %", m.pct());
    // The costly error (a person hears a voicemail message, or is hung up on) never
    // happens on this corpus, whatever the noise, codec or level.
    for (label, t) in &rep.rows {
        assert_eq!(t[0].machine, 0, "human classified machine in {label}");
        assert_eq!(t[1].human, 0, "machine classified human in {label}");
    }
    // Decisions come quickly: a human is known 0.8 s after "hello", a machine well
    // before the end of its greeting.
    assert!(h.mean_ms() < 2000.0 && m.mean_ms() < 2000.0);
    // Speech after the initial-silence limit: NotSure by design, at exactly 2.5 s.
    for v in vectors
        .iter()
        .filter(|v| v.lead_ms >= cfg.initial_silence_ms)
    {
        let r = classify(&v.pcm, &cfg, FRAME_SAMPLES);
        assert_eq!(
            (r.verdict, r.reason, r.after_ms),
            (Verdict::NotSure, reason::INITIAL_SILENCE, 2500)
        );
    }
}

/// The same corpus with Asterisk's fixed threshold (no noise adaptation): the reason for
/// `noise_margin_db`. At −40 dBFS the line noise is louder than the threshold, so every
/// human is taken for a machine.
#[test]
fn fixed_threshold_fails_in_minus_40_dbfs_noise() {
    let cfg = AmdConfig {
        noise_margin_db: None,
        voicing: false,
        ..AmdConfig::default()
    };
    let rep = evaluate(&corpus(&LEVELS_DB), &cfg);
    rep.print("fixed threshold 256 (Asterisk), levels 0 / −15 dB");
    for codec in ["linear", "μ-law"] {
        let [h, _] = rep.get(&format!("noise -40 dBFS, {codec}, lead < 2.5 s"));
        assert_eq!(h.machine, h.n, "{codec}");
        let [h, m] = rep.get(&format!("noise -50 dBFS, {codec}, lead < 2.5 s"));
        assert_eq!((h.pct(), m.pct()), (100.0, 100.0), "{codec}");
    }
}

/// Very quiet speech (−25 dB: vowels near −40 dBFS, the level of the fixed threshold and
/// of the loudest noise): the limit of an energy detector. Reported, and the one property
/// that still holds is asserted: a human is not taken for a machine.
#[test]
fn very_quiet_speech_is_the_limit() {
    let cfg = AmdConfig::default();
    let rep = evaluate(&corpus(&[-25.0]), &cfg);
    rep.print("default config; level −25 dB (very quiet)");
    let [h, m] = rep.get("speech starts < 2.5 s: all");
    assert_eq!(h.machine, 0);
    println!(
        "\nlevel −25 dB: human correct {:.1} %, machine correct {:.1} %",
        h.pct(),
        m.pct()
    );
}

#[test]
fn project_fixtures() {
    let cfg = AmdConfig::default();
    let m = classify_wav(path("audio/test/greeting-machine.wav"), &cfg).expect("machine");
    println!("greeting-machine.wav: {m:?}");
    assert_eq!(m.verdict, Verdict::Machine);
    assert!(m.after_ms < 3000, "{m:?}");
    let h = classify_wav(path("audio/test/greeting-human.wav"), &cfg).expect("human");
    println!("greeting-human.wav: {h:?}");
    assert_eq!(
        (h.verdict, h.reason),
        (Verdict::Human, reason::HUMAN_AFTER_GREETING_SILENCE)
    );
    // "Hello?" ends at 0.50 s; a human is declared after 800 ms of silence.
    assert!((1200..=1400).contains(&h.after_ms), "{h:?}");
}

#[test]
fn result_does_not_depend_on_chunking() {
    let cfg = AmdConfig::default();
    let vectors = corpus(&[0.0]);
    for v in vectors.iter().step_by(7) {
        let reference = classify(&v.pcm, &cfg, FRAME_SAMPLES);
        for chunk in [1, 13, 80, 159, 161, 480, 4096, v.pcm.len()] {
            assert_eq!(
                classify(&v.pcm, &cfg, chunk),
                reference,
                "{} chunk {chunk}",
                v.name
            );
        }
    }
}

#[test]
fn classify_wav_errors() {
    let cfg = AmdConfig::default();
    assert!(matches!(
        classify_wav(path("audio/test/no-such-file.wav"), &cfg),
        Err(AmdError::Wav { .. })
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let stereo = dir.path().join("stereo.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&stereo, spec).expect("create");
    for _ in 0..320 {
        w.write_sample(0i16).expect("write");
    }
    w.finalize().expect("finalize");
    assert!(matches!(
        classify_wav(&stereo, &cfg),
        Err(AmdError::UnsupportedFormat { channels: 2, .. })
    ));
    let bad = AmdConfig {
        noise_margin_db: Some(f32::NAN),
        ..cfg
    };
    assert!(matches!(
        classify_wav(path("audio/test/greeting-human.wav"), &bad),
        Err(AmdError::InvalidConfig(_))
    ));
    // A file that ends before any decision.
    let short = dir.path().join("short.wav");
    let mut w = hound::WavWriter::create(
        &short,
        hound::WavSpec {
            channels: 1,
            ..spec
        },
    )
    .expect("create");
    for _ in 0..8000 {
        w.write_sample(0i16).expect("write");
    }
    w.finalize().expect("finalize");
    let r = classify_wav(&short, &cfg).expect("short");
    assert_eq!(
        (r.verdict, r.reason, r.after_ms),
        (Verdict::NotSure, reason::END_OF_INPUT, 1000)
    );
}

/// `cargo test --release --test suite -- --ignored --nocapture amd::per_frame_cost`
///
/// Gaussian noise at RMS 300 (above the fixed threshold, so with `voicing` every frame
/// gets the periodicity search, and none stops it early) and at RMS 100 (below it: the
/// search is skipped), each with and without `voicing`.
#[test]
#[ignore]
fn per_frame_cost() {
    for voicing in [false, true] {
        for rms in [300.0, 100.0] {
            let cfg = AmdConfig {
                total_analysis_time_ms: u32::MAX,
                initial_silence_ms: u32::MAX,
                maximum_word_length_ms: u32::MAX,
                greeting_ms: u32::MAX,
                voicing,
                ..AmdConfig::default()
            };
            let mut rng = Rng(7);
            let pcm: Vec<i16> = (0..8000 * 60).map(|_| (rng.gauss() * rms) as i16).collect();
            let mut amd = Amd::new(&cfg).expect("config");
            let t = std::time::Instant::now();
            for c in pcm.chunks(FRAME_SAMPLES) {
                assert!(amd.process(c).is_none());
            }
            let per_frame = t.elapsed().as_secs_f64() / (pcm.len() / FRAME_SAMPLES) as f64;
            println!(
                "voicing {voicing}, noise RMS {rms}: per 20 ms frame {:.0} ns",
                per_frame * 1e9
            );
        }
    }
}

/// Parameter exploration behind the defaults (fixed threshold × noise margin, per speech
/// level): `cargo test --test suite -- --ignored --nocapture amd::parameter_sweep`.
#[test]
#[ignore]
fn parameter_sweep() {
    for level in [0.0, -15.0, -25.0] {
        let vs = corpus(&[level]);
        for thr in [128u16, 256] {
            for margin in [None, Some(5.0), Some(6.0), Some(7.0)] {
                let cfg = AmdConfig {
                    silence_threshold: thr,
                    noise_margin_db: margin,
                    ..AmdConfig::default()
                };
                let rep = evaluate(&vs, &cfg);
                let [h, m] = rep.get("speech starts < 2.5 s: all");
                println!(
                    "level {level} thr {thr} margin {margin:?}: human {}/{} (→M {}) machine {}/{} (→H {}) ms {:.0}/{:.0}",
                    h.correct, h.n, h.machine, m.correct, m.n, m.human, h.mean_ms(), m.mean_ms()
                );
            }
        }
    }
}

/// What timing alone cannot tell, shown on two constructed cases (the limits every
/// energy/timing detector, Asterisk's included, shares): a person who answers with a
/// whole sentence is taken for a machine, and a machine whose greeting starts with a
/// lone "Hello." and a pause is taken for a person.
#[test]
fn known_limits_of_timing_alone() {
    let cfg = AmdConfig::default();
    let talkative_human = build(
        &speech(&["en/hello", "150", "en/this-is-shop"]),
        300,
        0.0,
        None,
        false,
        1,
    );
    let r = classify(&talkative_human, &cfg, FRAME_SAMPLES);
    println!("human 'Hello, this is Acme Shop, calling about your order': {r:?}");
    assert_eq!(r.verdict, Verdict::Machine);

    let hello_machine = build(
        &speech(&["en/hello", "1200", "en/voicemail-message"]),
        300,
        0.0,
        None,
        false,
        2,
    );
    let r = classify(&hello_machine, &cfg, FRAME_SAMPLES);
    println!("machine 'Hello.' + 1.2 s + message: {r:?}");
    assert_eq!(r.verdict, Verdict::Human);
}

/// Noise colour of a line.
#[derive(Clone, Copy, PartialEq)]
enum Colour {
    White,
    Pink,
}

/// `n` samples of unit-RMS Gaussian noise, white or pink (Paul Kellett's filter, −3 dB per
/// octave), seeded.
fn unit_noise(n: usize, colour: Colour, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    let mut b = [0.0f64; 7];
    let raw: Vec<f64> = (0..n)
        .map(|_| {
            let w = rng.gauss();
            match colour {
                Colour::White => w,
                Colour::Pink => {
                    b[0] = 0.99886 * b[0] + w * 0.0555179;
                    b[1] = 0.99332 * b[1] + w * 0.0750759;
                    b[2] = 0.96900 * b[2] + w * 0.1538520;
                    b[3] = 0.86650 * b[3] + w * 0.3104856;
                    b[4] = 0.55000 * b[4] + w * 0.5329522;
                    b[5] = -0.7616 * b[5] - w * 0.0168980;
                    let p = b[..6].iter().sum::<f64>() + b[6] + w * 0.5362;
                    b[6] = w * 0.115926;
                    p
                }
            }
        })
        .collect();
    let rms = (raw.iter().map(|x| x * x).sum::<f64>() / n.max(1) as f64).sqrt();
    raw.into_iter().map(|x| x / rms.max(1e-12)).collect()
}

/// Each greeting × line (`None`: no noise, else noise colour and SNR in dB under the
/// greeting's RMS, over the lead, the speech and 4 s after it) × leading silence × linear /
/// μ-law. Seeds count up from `seed` in that order.
fn mixed_corpus(
    greetings: &[(&'static str, Verdict, Vec<i16>)],
    lines: &[Option<(Colour, f64)>],
    leads_ms: &[u32],
    mut seed: u64,
) -> Vec<Vector> {
    let mut out = Vec::new();
    for (name, expected, sp) in greetings {
        let speech_rms =
            (sp.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / sp.len() as f64).sqrt();
        for &line in lines {
            for &lead_ms in leads_ms {
                for ulaw in [false, true] {
                    seed += 1;
                    let clean = build(sp, lead_ms, 0.0, None, false, seed);
                    let (noise, k) = match line {
                        Some((colour, snr_db)) => (
                            unit_noise(clean.len(), colour, seed),
                            speech_rms / 10f64.powf(snr_db / 20.0),
                        ),
                        None => (vec![0.0; clean.len()], 0.0),
                    };
                    let pcm = clean
                        .iter()
                        .zip(&noise)
                        .map(|(&s, &n)| {
                            let s = (f64::from(s) + k * n).round().clamp(-32768.0, 32767.0) as i16;
                            if ulaw {
                                Codec::Pcmu.decode_sample(Codec::Pcmu.encode_sample(s))
                            } else {
                                s
                            }
                        })
                        .collect();
                    let line = match line {
                        Some((Colour::White, snr)) => format!("white {snr} dB SNR"),
                        Some((Colour::Pink, snr)) => format!("pink {snr} dB SNR"),
                        None => "no noise".to_string(),
                    };
                    out.push(Vector {
                        name,
                        expected: *expected,
                        level_db: 0.0,
                        lead_ms,
                        noise_dbfs: None,
                        line,
                        ulaw,
                        pcm,
                    });
                }
            }
        }
    }
    out
}

/// Lines as noisy as the real-call corpus (`sip-test/make_amd_corpus.sh`): white or pink
/// noise `snr_db` under the speech's RMS, over the lead, the speech and 4 s after it.
fn noisy_corpus(snrs_db: &[f64]) -> Vec<Vector> {
    let lines: Vec<_> = snrs_db
        .iter()
        .flat_map(|&snr| [Some((Colour::White, snr)), Some((Colour::Pink, snr))])
        .collect();
    mixed_corpus(&greetings(), &lines, &[0, 300, 700, 1000], 1000)
}

/// Human decisions of `vectors` under `cfg`: (how many, the latest after the answer, the
/// latest after the start of the speech, how many later than 2.5 s after the speech).
/// Also prints how many came later than 2.5 s after the answer: a person who starts
/// speaking 1 s after answering and says "Hello? … Hello?" is still talking then.
fn human_decision_times(vectors: &[Vector], cfg: &AmdConfig) -> (usize, u32, u32, usize) {
    let mut n = 0;
    let (mut max_answer, mut max_speech, mut late, mut late_answer) = (0, 0, 0, 0);
    for v in vectors.iter().filter(|v| v.expected == Verdict::Human) {
        let r = classify(&v.pcm, cfg, FRAME_SAMPLES);
        if r.verdict == Verdict::Human {
            n += 1;
            max_answer = max_answer.max(r.after_ms);
            let after_speech = r.after_ms.saturating_sub(v.lead_ms);
            max_speech = max_speech.max(after_speech);
            if after_speech > 2500 {
                late += 1;
            }
            if r.after_ms > 2500 {
                late_answer += 1;
            }
        }
    }
    println!("human decisions later than 2.5 s after the answer: {late_answer} of {n}");
    (n, max_answer, max_speech, late)
}

/// Humans and machines on lines with noise 15 and 10 dB under the speech (−35 … −25 dBFS,
/// louder than `max_noise_floor`), white and pink, as in the real-call corpus. With
/// `voicing` (the default) the target of issue 19 is met; by energy alone it is not (the
/// noise makes false words and hides the pause after "hello").
#[test]
fn noisy_lines_15_and_10_db_snr() {
    let vectors = noisy_corpus(&[15.0, 10.0]);
    let energy = AmdConfig {
        voicing: false,
        ..AmdConfig::default()
    };
    let rep = evaluate(&vectors, &energy);
    let [h0, m0] = rep.get("speech starts < 2.5 s: all");
    println!(
        "\nnoisy lines, energy alone (voicing = false): human correct {:.1} % ({} H / {} M / {} NotSure), \
         machine correct {:.1} % (→ human {})",
        h0.pct(),
        h0.human,
        h0.machine,
        h0.not_sure,
        m0.pct(),
        m0.human
    );
    assert!(h0.pct() < 95.0, "energy alone is below the target");

    let cfg = AmdConfig::default();
    let rep = evaluate(&vectors, &cfg);
    rep.print("default config; white / pink noise 15 / 10 dB SNR, level 0 dB");
    let [h, m] = rep.get("speech starts < 2.5 s: all");
    let (n, max_answer, max_speech, late) = human_decision_times(&vectors, &cfg);
    println!(
        "\nnoisy lines: human correct {:.1} % (→ machine {}), machine correct {:.1} % (→ human {}); \
         {n} human decisions: latest {max_answer} ms after answer, {max_speech} ms after the \
         start of the speech, {late} later than 2.5 s after it",
        h.pct(),
        h.machine,
        m.pct(),
        m.human,
    );
    // Issue 19's target: ≥ 95 % of people right, each within 2.5 s of starting to speak;
    // machines never taken for a person.
    assert!(
        h.pct() >= 95.0,
        "noisy-line human accuracy {:.1} %",
        h.pct()
    );
    assert_eq!(late, 0, "human decided later than 2.5 s after the speech");
    assert_eq!(m.human, 0, "machine taken for a human on a noisy line");
    assert!(
        m.pct() >= 99.0,
        "noisy-line machine accuracy {:.1} %",
        m.pct()
    );
}

/// Where Debian's `alsa-utils` installs its speaker-test recordings: a person saying
/// "Front left", "Rear center", … (48 kHz mono 16-bit; GPL-2, as the package).
const ALSA_SOUNDS: &str = "/usr/share/sounds/alsa";

/// The eight spoken names of `alsa-utils` (not `Noise.wav`).
const ALSA_PHRASES: [&str; 8] = [
    "Front_Center",
    "Front_Left",
    "Front_Right",
    "Rear_Center",
    "Rear_Left",
    "Rear_Right",
    "Side_Left",
    "Side_Right",
];

/// An `alsa-utils` recording at 8 kHz: low-passed at 3.5 kHz (121-tap Blackman-windowed
/// sinc) and decimated, then trimmed of the leading and trailing samples under 1 % of its
/// peak (as `sip-test/make_amd_corpus.sh` trims its speech), so that SNRs are relative to
/// the speech.
fn load_alsa(name: &str) -> Vec<i16> {
    let file = format!("{ALSA_SOUNDS}/{name}.wav");
    let mut r = hound::WavReader::open(&file).unwrap_or_else(|e| {
        panic!("{file}: {e} (recorded speech from Debian's alsa-utils; scripts/test installs it)")
    });
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{file}");
    assert_eq!(spec.sample_rate % 8000, 0, "{file}");
    let step = (spec.sample_rate / 8000) as usize;
    let x: Vec<f64> = r
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    let taps = 121usize;
    let mid = (taps / 2) as f64;
    let fc = 3500.0 / f64::from(spec.sample_rate);
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let t = n as f64 - mid;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
            };
            let a = 2.0 * std::f64::consts::PI * n as f64 / (taps - 1) as f64;
            sinc * (0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos())
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    let y: Vec<i16> = (0..x.len() / step)
        .map(|k| {
            let c = k * step;
            let v: f64 = h
                .iter()
                .enumerate()
                .filter_map(|(n, hn)| {
                    (c + n)
                        .checked_sub(taps / 2)
                        .and_then(|i| x.get(i))
                        .map(|xi| hn * xi)
                })
                .sum();
            v.round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let peak = y.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    let quiet = |s: &i16| u32::from(s.unsigned_abs()) * 100 < u32::from(peak);
    let start = y.iter().position(|s| !quiet(s)).unwrap_or(0);
    let end = y.iter().rposition(|s| !quiet(s)).map_or(0, |e| e + 1);
    y[start..end].to_vec()
}

/// Recorded (not synthesized) speech: the eight phrases of `alsa-utils` as human answers
/// (two words, 0.9–1.3 s, as "Hello, hello?"), and three announcements made of them as
/// machine greetings ("Front left, front center, …": 9 s, the same reversed, and four of
/// them: 4.5 s).
fn recorded_greetings() -> Vec<(&'static str, Verdict, Vec<i16>)> {
    let mut v: Vec<_> = ALSA_PHRASES
        .iter()
        .map(|&n| (n, Verdict::Human, load_alsa(n)))
        .collect();
    let join = |names: &[&str]| names.iter().flat_map(|n| load_alsa(n)).collect::<Vec<_>>();
    let mut reversed = ALSA_PHRASES;
    reversed.reverse();
    v.push(("all eight", Verdict::Machine, join(&ALSA_PHRASES)));
    v.push(("all eight reversed", Verdict::Machine, join(&reversed)));
    v.push((
        "four sides",
        Verdict::Machine,
        join(&["Front_Left", "Front_Right", "Side_Left", "Side_Right"]),
    ));
    v
}

/// Recorded human speech (Debian `alsa-utils`), clean and with white or pink noise 20, 15
/// and 10 dB under it, leads 0–1000 ms, linear and μ-law.
#[test]
fn recorded_speech_clean_and_noisy() {
    let lines = [
        None,
        Some((Colour::White, 20.0)),
        Some((Colour::Pink, 20.0)),
        Some((Colour::White, 15.0)),
        Some((Colour::Pink, 15.0)),
        Some((Colour::White, 10.0)),
        Some((Colour::Pink, 10.0)),
    ];
    let vectors = mixed_corpus(&recorded_greetings(), &lines, &[0, 300, 700, 1000], 5000);
    let energy = AmdConfig {
        voicing: false,
        ..AmdConfig::default()
    };
    let [h0, m0] = evaluate(&vectors, &energy).get("speech starts < 2.5 s: all");
    println!(
        "\nrecorded speech, energy alone (voicing = false): human correct {:.1} % ({} H / {} M / \
         {} NotSure), machine correct {:.1} % (→ human {})",
        h0.pct(),
        h0.human,
        h0.machine,
        h0.not_sure,
        m0.pct(),
        m0.human
    );
    let cfg = AmdConfig::default();
    let rep = evaluate(&vectors, &cfg);
    rep.print("default config; recorded speech (alsa-utils), clean and noisy lines");
    let [h, m] = rep.get("speech starts < 2.5 s: all");
    let (n, max_answer, max_speech, late) = human_decision_times(&vectors, &cfg);
    println!(
        "\nrecorded speech: human correct {:.1} % (→ machine {}), machine correct {:.1} % \
         (→ human {}); {n} human decisions: latest {max_answer} ms after answer, {max_speech} ms \
         after the start of the speech, {late} later than 2.5 s after it",
        h.pct(),
        h.machine,
        m.pct(),
        m.human,
    );
    assert_eq!((h.n, m.n), (448, 168));
    assert!(h.pct() >= 95.0, "recorded human accuracy {:.1} %", h.pct());
    assert_eq!(late, 0, "human decided later than 2.5 s after the speech");
    assert_eq!(
        m.human, 0,
        "recorded machine-like greeting taken for a human"
    );
    let [clean_h, clean_m] = rep.get("no noise, linear, lead < 2.5 s");
    assert_eq!((clean_h.pct(), clean_m.pct()), (100.0, 100.0));
}
