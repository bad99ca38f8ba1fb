//! Prompt library: every WAV under the audio folder, loaded and pre-encoded once at start.
//!
//! Layout: `<audio_dir>/<language>/<name>.wav`, 8 kHz mono 16-bit PCM (see audio/README.md).
//! Prompts are stored already encoded so the per-packet path is a `copy_from_slice`:
//! - G.711 (both laws) at load, 1 octet per sample each (16 kB per second of prompt);
//! - G.722 is not stored: the player encodes it live from the μ-law copy (see player.rs:
//!   an adaptive codec cannot be spliced from pre-encoded pieces);
//! - Opus (20 ms packets, ~12–16 kbit/s VBR: ~1.5–2 kB per second of prompt) once per
//!   prompt, on the first call that plays it in Opus (a `OnceLock`: after the first encode
//!   every read is a plain atomic load, no lock), or for the whole library at start with
//!   [`PromptLibrary::preencode`]. Lazily by default because encoding the whole shipped
//!   library would add Opus encode time to every start for a codec most deployments never
//!   negotiate; a prompt encodes far faster than it plays (a 5 s prompt is 250 frames,
//!   a few ms), so the first caller does not notice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::codec::{self, Codec, Encoder};

/// Library "language" under which music-on-hold prompts are kept.
pub const MOH_LANG: &str = "_moh";

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: cannot read audio folder: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Wav { path: PathBuf, reason: String },
}

/// One prompt, pre-encoded.
#[derive(Debug)]
pub struct Prompt {
    pub name: String,
    pub ulaw: Box<[u8]>,
    pub alaw: Box<[u8]>,
    opus: OnceLock<OpusFrames>,
}

/// A prompt as a sequence of Opus packets, one per 20 ms (the last one padded with
/// silence): all packets back to back in `data`, packet `i` ending at `ends[i]`.
#[derive(Debug, Default)]
pub struct OpusFrames {
    data: Box<[u8]>,
    ends: Box<[u32]>,
}

impl OpusFrames {
    /// Encode 8 kHz PCM with a fresh encoder. An encoder error (there is none for valid
    /// 160-sample frames) leaves the rest of the prompt out rather than failing the call.
    pub fn encode(pcm: &[i16]) -> OpusFrames {
        let Ok(mut enc) = Encoder::new(Codec::Opus) else {
            return OpusFrames::default();
        };
        let mut data = Vec::with_capacity(pcm.len() / 4);
        let mut ends = Vec::with_capacity(pcm.len().div_ceil(codec::FRAME_8K));
        let mut frame = [0i16; codec::FRAME_8K];
        let mut packet = [0u8; codec::opus::MAX_ENCODED];
        for chunk in pcm.chunks(codec::FRAME_8K) {
            frame.fill(0);
            frame[..chunk.len()].copy_from_slice(chunk);
            let Ok(n) = enc.encode_8k(&frame, &mut packet) else {
                break;
            };
            data.extend_from_slice(&packet[..n]);
            ends.push(data.len() as u32);
        }
        OpusFrames {
            data: data.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Packet `i` (20 ms).
    pub fn frame(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(start, |e| *e as usize);
        self.data.get(start..end).unwrap_or(&[])
    }

    /// Memory held, for the documentation's cost figures and tests.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.ends.len()
    }
}

/// One 20 ms Opus packet of digital silence (the player's filler between prompts).
pub fn opus_silence_frame() -> &'static [u8] {
    static F: OnceLock<OpusFrames> = OnceLock::new();
    F.get_or_init(|| OpusFrames::encode(&[0; codec::FRAME_8K]))
        .frame(0)
}

impl Prompt {
    pub fn from_pcm(name: &str, pcm: &[i16]) -> Prompt {
        Prompt {
            name: name.to_string(),
            ulaw: pcm.iter().map(|s| Codec::Pcmu.encode_sample(*s)).collect(),
            alaw: pcm.iter().map(|s| Codec::Pcma.encode_sample(*s)).collect(),
            opus: OnceLock::new(),
        }
    }

    /// The 8 kHz PCM, recovered from μ-law (what G.722/Opus encode from: prompts are
    /// G.711-quality sources already, and this keeps 2 bytes/sample of PCM out of memory).
    fn pcm(&self) -> Vec<i16> {
        self.ulaw
            .iter()
            .map(|b| Codec::Pcmu.decode_sample(*b))
            .collect()
    }

    /// The prompt in a G.711 law, one octet per 8 kHz sample. G.722 is encoded live from
    /// the μ-law copy and Opus has [`Prompt::opus`]; for those this returns the μ-law.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcma => &self.alaw,
            _ => &self.ulaw,
        }
    }

    /// The prompt as Opus packets (encoded on first use).
    pub fn opus(&self) -> &OpusFrames {
        self.opus.get_or_init(|| OpusFrames::encode(&self.pcm()))
    }

    /// Encode for `codec` now (start-up or tests), so no call pays for it. Only Opus has
    /// anything to do: G.711 is encoded at load and G.722 live.
    pub fn preencode(&self, codec: Codec) {
        if codec == Codec::Opus {
            self.opus();
        }
    }

    pub fn duration_ms(&self) -> u64 {
        self.ulaw.len() as u64 / 8
    }
}

/// All prompts by (language, name).
#[derive(Debug, Default)]
pub struct PromptLibrary {
    prompts: HashMap<String, HashMap<String, Arc<Prompt>>>,
}

impl PromptLibrary {
    pub fn load(dir: &Path) -> Result<PromptLibrary, PromptError> {
        let mut lib = PromptLibrary::default();
        let entries = std::fs::read_dir(dir).map_err(|e| PromptError::Dir {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let mut langs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        langs.sort();
        for lang_dir in langs {
            let Some(lang) = lang_dir
                .file_name()
                .and_then(|s| s.to_str())
                .filter(|n| is_language_tag(n))
                .map(str::to_string)
            else {
                continue;
            };
            let files = std::fs::read_dir(&lang_dir).map_err(|e| PromptError::Dir {
                path: lang_dir.clone(),
                source: e,
            })?;
            for f in files.filter_map(|e| e.ok()).map(|e| e.path()) {
                if f.extension().and_then(|e| e.to_str()) != Some("wav") {
                    continue;
                }
                let Some(name) = f.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
                    continue;
                };
                let pcm = read_wav_8k_mono(&f)?;
                lib.insert(&lang, Prompt::from_pcm(&name, &pcm));
            }
        }
        Ok(lib)
    }

    pub fn insert(&mut self, lang: &str, prompt: Prompt) {
        self.prompts
            .entry(lang.to_string())
            .or_default()
            .insert(prompt.name.clone(), Arc::new(prompt));
    }

    pub fn get(&self, lang: &str, name: &str) -> Option<&Arc<Prompt>> {
        self.prompts.get(lang).and_then(|m| m.get(name))
    }

    /// A dialplan prompt as played (docs/dialplan.md "Playlists"): (`lang`, `name`), else
    /// (`lang`, `fallback`), else (`en`, `name`). The flag is true when it is that English
    /// copy in a call of another language, so the caller's trail can say so.
    pub fn resolve(
        &self,
        lang: &str,
        name: &str,
        fallback: Option<&str>,
    ) -> Option<(&Arc<Prompt>, bool)> {
        match self
            .get(lang, name)
            .or_else(|| fallback.and_then(|f| self.get(lang, f)))
        {
            Some(p) => Some((p, false)),
            None => self.get("en", name).map(|p| (p, lang != "en")),
        }
    }

    pub fn has(&self, lang: &str, name: &str) -> bool {
        self.get(lang, name).is_some()
    }

    /// Encode every prompt for `codec` now (G.711 always is); see the module comment.
    pub fn preencode(&self, codec: Codec) {
        for p in self.prompts.values().flat_map(HashMap::values) {
            p.preencode(codec);
        }
    }

    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.prompts.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Language folders are short tags (`en`, `zh`, `pt-BR`); others (e.g. `test/`) are not prompts.
fn is_language_tag(name: &str) -> bool {
    let mut parts = name.split('-');
    let primary = parts.next().unwrap_or("");
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Read a WAV that must be 8 kHz mono 16-bit PCM; anything else is refused with the reason.
pub fn read_wav_8k_mono(path: &Path) -> Result<Vec<i16>, PromptError> {
    let err = |reason: String| PromptError::Wav {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(err(format!(
            "must be 8000 Hz mono 16-bit PCM, is {} Hz {} ch {}-bit {:?}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    reader
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Decoder;

    fn tone(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (6000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn resolve_prefers_the_language_then_its_fallback_then_english() {
        let mut lib = PromptLibrary::default();
        for (lang, name) in [("en", "a"), ("en", "b"), ("zh", "a"), ("zh", "unknown")] {
            lib.insert(lang, Prompt::from_pcm(name, &tone(160)));
        }
        let got = |lang: &str, name: &str, fb: Option<&str>| {
            lib.resolve(lang, name, fb)
                .map(|(p, english)| (p.name.clone(), english))
        };
        assert_eq!(got("zh", "a", None), Some(("a".into(), false)));
        assert_eq!(
            got("zh", "x", Some("unknown")),
            Some(("unknown".into(), false))
        );
        // Missing in Mandarin: the English copy, flagged.
        assert_eq!(got("zh", "b", Some("none")), Some(("b".into(), true)));
        assert!(Arc::ptr_eq(
            lib.resolve("zh", "b", None).expect("b").0,
            lib.get("en", "b").expect("en b")
        ));
        // An English call is never flagged.
        assert_eq!(got("en", "b", None), Some(("b".into(), false)));
        assert_eq!(got("zh", "c", None), None);
    }

    #[test]
    fn opus_is_encoded_once_and_lazily() {
        let p = Prompt::from_pcm("t", &tone(8010));
        assert!(p.opus.get().is_none(), "lazy");
        let first = p.opus().frame(0).as_ptr();
        assert_eq!(p.opus().frame(0).as_ptr(), first, "encoded once");
        let frames = p.opus();
        assert_eq!(frames.len(), 51, "8010 samples -> 51 packets of 20 ms");
        // ~16 kbit/s: ~2 kB per second of prompt (vs 8 kB for each G.711 law).
        assert!(frames.bytes() < 3_000, "{} bytes", frames.bytes());
        let mut dec = Decoder::new(Codec::Opus).expect("decoder");
        let mut pcm = [0i16; codec::MAX_DECODED_8K];
        for i in 0..frames.len() {
            assert_eq!(
                dec.decode_8k(frames.frame(i), &mut pcm).expect("decode"),
                160
            );
        }
        assert!(frames.frame(51).is_empty());
        assert_eq!(
            dec.decode_8k(opus_silence_frame(), &mut pcm)
                .expect("silence"),
            160
        );
        assert!(pcm[..160].iter().all(|s| s.abs() < 64));
    }
}
