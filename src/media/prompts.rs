//! Prompt library: every WAV under the audio folder, loaded and pre-encoded once at start.
//!
//! Layout: `<audio_dir>/<language>/<name>.wav`, 8 kHz mono 16-bit PCM (see audio/README.md).
//! Prompts are stored already encoded for each G.711 law so the per-packet path is a
//! `copy_from_slice`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::codec::Codec;

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
}

impl Prompt {
    pub fn from_pcm(name: &str, pcm: &[i16]) -> Prompt {
        Prompt {
            name: name.to_string(),
            ulaw: pcm.iter().map(|s| Codec::Pcmu.encode_sample(*s)).collect(),
            alaw: pcm.iter().map(|s| Codec::Pcma.encode_sample(*s)).collect(),
        }
    }

    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.ulaw,
            Codec::Pcma => &self.alaw,
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

    pub fn has(&self, lang: &str, name: &str) -> bool {
        self.get(lang, name).is_some()
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
