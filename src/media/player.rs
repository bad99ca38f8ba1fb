//! Prompt player: a playlist of pre-encoded prompts and silences, read out 20 ms at a time.
//!
//! `fill` never allocates: it copies from the current prompt's encoded bytes into the frame
//! and pads with the codec's silence byte. The playlist itself is built when a prompt starts
//! (once per prompt, not per packet).
//!
//! G.711 is cut at any sample, so prompts and silences join seamlessly inside a frame.
//! G.722 is encoded live, 160 samples per packet, by this player's own encoder from the
//! prompt's μ-law copy: G.722 is backward-adaptive ADPCM, and a prompt pre-encoded from a
//! fresh encoder state, spliced after other audio, leaves the remote decoder's predictor
//! out of step (measured: ~2 dB SNR for 100+ ms after the join — audible garbage). One
//! encoder per stream keeps both ends in lock-step at every join, for ~5 µs per packet
//! and no allocation. Opus is a packet per 20 ms, pre-encoded per prompt (Opus decoders
//! are built for arbitrary packet sequences — loss, DTX — so splicing is safe): every item
//! is played as a whole number of packets (a prompt's last packet was padded at encode
//! time; a silence is rounded up to 20 ms), so items start on a packet boundary.

use std::sync::Arc;

use super::codec::{g722, Codec, FRAME_8K, ULAW_TO_LINEAR};
use super::prompts::{opus_silence_frame, Prompt};

/// One item of a playlist.
#[derive(Debug, Clone)]
pub enum PlayItem {
    Prompt(Arc<Prompt>),
    /// Silence of this many samples (8 kHz).
    Silence(usize),
}

/// What `fill` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillResult {
    /// Nothing is playing: the frame is silence.
    Idle,
    /// The frame carries playlist audio; more follows.
    Playing,
    /// The frame carries the last audio of the playlist (possibly padded); it is now idle.
    Finished,
}

#[derive(Debug, Default)]
pub struct Player {
    items: Vec<PlayItem>,
    index: usize,
    offset: usize,
    looping: bool,
    /// The outgoing G.722 stream's encoder state (used only on G.722 legs).
    g722: g722::Encoder,
}

impl Player {
    pub fn play(&mut self, items: Vec<PlayItem>, looping: bool) {
        self.items = items;
        self.index = 0;
        self.offset = 0;
        self.looping = looping;
    }

    pub fn stop(&mut self) {
        self.items.clear();
        self.index = 0;
        self.offset = 0;
        self.looping = false;
    }

    pub fn is_playing(&self) -> bool {
        self.index < self.items.len()
    }

    /// Write the next 20 ms payload for `codec` into `out` (at least 160 octets, or
    /// [`crate::media::codec::opus::MAX_ENCODED`] for Opus); returns what it is and its
    /// length. Loops restart from the first item.
    pub fn fill(&mut self, codec: Codec, out: &mut [u8]) -> (FillResult, usize) {
        let n = FRAME_8K.min(out.len());
        match codec {
            Codec::Pcmu | Codec::Pcma => (self.fill_octets(codec, &mut out[..n]), n),
            Codec::G722 => {
                let mut law = [0u8; FRAME_8K];
                let r = self.fill_octets(Codec::Pcmu, &mut law);
                let mut pcm = [0i16; FRAME_8K];
                for (p, b) in pcm.iter_mut().zip(&law) {
                    *p = ULAW_TO_LINEAR[*b as usize];
                }
                (r, self.g722.encode_8k(&pcm[..n], &mut out[..n]))
            }
            Codec::Opus => self.fill_packet(out),
        }
    }

    /// One Opus packet: the next frame of the current item.
    fn fill_packet(&mut self, out: &mut [u8]) -> (FillResult, usize) {
        let mut guard = 0;
        let len = loop {
            let Some(item) = self.items.get(self.index) else {
                return (FillResult::Idle, copy_into(out, opus_silence_frame()));
            };
            let (packet, frames) = match item {
                PlayItem::Prompt(p) => {
                    let f = p.opus();
                    (f.frame(self.offset), f.len())
                }
                PlayItem::Silence(n) => (opus_silence_frame(), n.div_ceil(FRAME_8K)),
            };
            if self.offset < frames {
                self.offset += 1;
                let len = copy_into(out, packet);
                if self.offset >= frames {
                    self.advance();
                }
                break len;
            }
            // An empty item: skip it (a looping playlist of nothing stops after one lap).
            self.advance();
            guard += 1;
            if guard > self.items.len() {
                self.stop();
            }
        };
        (self.finish_state(), len)
    }

    fn advance(&mut self) {
        self.index += 1;
        self.offset = 0;
        if self.looping && self.index >= self.items.len() {
            let total: usize = self.items.iter().map(item_len).sum();
            if total == 0 {
                self.stop();
            } else {
                self.index = 0;
            }
        }
    }

    fn finish_state(&mut self) -> FillResult {
        if self.is_playing() {
            FillResult::Playing
        } else {
            self.items.clear();
            self.index = 0;
            FillResult::Finished
        }
    }

    /// Fill one frame of an octet-per-sample codec.
    fn fill_octets(&mut self, codec: Codec, frame: &mut [u8]) -> FillResult {
        if !self.is_playing() {
            frame.fill(codec.silence_byte());
            return FillResult::Idle;
        }
        let mut written = 0;
        while written < frame.len() {
            let Some(item) = self.items.get(self.index) else {
                break;
            };
            let remaining = match item {
                PlayItem::Prompt(p) => {
                    let src = p.encoded(codec);
                    let n = (src.len() - self.offset.min(src.len())).min(frame.len() - written);
                    frame[written..written + n].copy_from_slice(&src[self.offset..self.offset + n]);
                    written += n;
                    self.offset += n;
                    src.len() - self.offset
                }
                PlayItem::Silence(len) => {
                    let n = (len - self.offset.min(*len)).min(frame.len() - written);
                    frame[written..written + n].fill(codec.silence_byte());
                    written += n;
                    self.offset += n;
                    len - self.offset
                }
            };
            if remaining == 0 {
                self.index += 1;
                self.offset = 0;
                if self.looping && self.index >= self.items.len() {
                    // A looping playlist restarts; one with no audio at all would spin forever.
                    let total: usize = self.items.iter().map(item_len).sum();
                    if total == 0 {
                        self.stop();
                        break;
                    }
                    self.index = 0;
                }
            }
        }
        if written < frame.len() {
            frame[written..].fill(codec.silence_byte());
        }
        self.finish_state()
    }
}

fn copy_into(out: &mut [u8], packet: &[u8]) -> usize {
    let n = packet.len().min(out.len());
    out[..n].copy_from_slice(&packet[..n]);
    n
}

fn item_len(item: &PlayItem) -> usize {
    match item {
        PlayItem::Prompt(p) => p.ulaw.len(),
        PlayItem::Silence(n) => *n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(samples: usize) -> Arc<Prompt> {
        Arc::new(Prompt::from_pcm("p", &vec![1000i16; samples]))
    }

    #[test]
    fn plays_items_in_order_then_reports_finished_once() {
        let mut p = Player::default();
        p.play(
            vec![PlayItem::Prompt(prompt(200)), PlayItem::Silence(100)],
            false,
        );
        let mut f = [0u8; 160];
        assert_eq!(p.fill(Codec::Pcmu, &mut f).0, FillResult::Playing);
        assert!(f.iter().all(|b| *b == Codec::Pcmu.encode_sample(1000)));
        assert_eq!(p.fill(Codec::Pcmu, &mut f).0, FillResult::Finished);
        assert_eq!(&f[..40], &[Codec::Pcmu.encode_sample(1000); 40][..]);
        assert!(f[40..].iter().all(|b| *b == 0xFF));
        assert_eq!(p.fill(Codec::Pcmu, &mut f).0, FillResult::Idle);
    }

    #[test]
    fn loops_until_stopped() {
        let mut p = Player::default();
        p.play(vec![PlayItem::Prompt(prompt(100))], true);
        let mut f = [0u8; 160];
        for _ in 0..10 {
            assert_eq!(p.fill(Codec::Pcma, &mut f).0, FillResult::Playing);
        }
        p.stop();
        assert_eq!(p.fill(Codec::Pcma, &mut f).0, FillResult::Idle);
        p.play(vec![PlayItem::Silence(0)], true);
        assert_ne!(p.fill(Codec::Pcma, &mut f).0, FillResult::Playing);
    }

    #[test]
    fn opus_plays_whole_packets_per_item() {
        let mut p = Player::default();
        // 250 samples -> 2 packets; 100 samples of silence -> 1 packet.
        p.play(
            vec![PlayItem::Prompt(prompt(250)), PlayItem::Silence(100)],
            false,
        );
        let mut out = [0u8; crate::media::codec::opus::MAX_ENCODED];
        let (r, n) = p.fill(Codec::Opus, &mut out);
        assert_eq!(r, FillResult::Playing);
        assert!(n > 0 && out[..n] != *opus_silence_frame());
        assert_eq!(p.fill(Codec::Opus, &mut out).0, FillResult::Playing);
        let (r, n) = p.fill(Codec::Opus, &mut out);
        assert_eq!((r, &out[..n]), (FillResult::Finished, opus_silence_frame()));
        let (r, n) = p.fill(Codec::Opus, &mut out);
        assert_eq!((r, &out[..n]), (FillResult::Idle, opus_silence_frame()));
        // Looping and empty playlists behave as for G.711.
        p.play(vec![PlayItem::Prompt(prompt(100))], true);
        for _ in 0..5 {
            assert_eq!(p.fill(Codec::Opus, &mut out).0, FillResult::Playing);
        }
        p.play(vec![PlayItem::Silence(0)], true);
        assert_ne!(p.fill(Codec::Opus, &mut out).0, FillResult::Playing);
    }

    #[test]
    fn g722_prompt_after_silence_decodes_cleanly() {
        use crate::media::codec::Decoder;
        let pcm: Vec<i16> = (0..1600)
            .map(|i| {
                (6000.0 * (2.0 * std::f64::consts::PI * 700.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let mut p = Player::default();
        p.play(
            vec![
                PlayItem::Silence(400),
                PlayItem::Prompt(Arc::new(Prompt::from_pcm("t", &pcm))),
            ],
            false,
        );
        let mut dec = Decoder::new(Codec::G722).expect("decoder");
        let mut out = Vec::new();
        let mut f = [0u8; 160];
        let mut pcm_out = [0i16; 160];
        for _ in 0..13 {
            let (_, n) = p.fill(Codec::G722, &mut f);
            assert_eq!(n, 160);
            let m = dec.decode_8k(&f, &mut pcm_out).expect("decode");
            out.extend_from_slice(&pcm_out[..m]);
        }
        assert!(out[..400].iter().all(|s| s.abs() < 16), "silence is silent");
        // The prompt was encoded from a fresh encoder state but the remote decoder has been
        // running through the silence: it must still track within a few milliseconds.
        let (mut s, mut e) = (0f64, 0f64);
        for (a, b) in pcm[160..].iter().zip(&out[560..2000]) {
            s += (*a as f64).powi(2);
            e += (*a as f64 - *b as f64).powi(2);
        }
        let db = 10.0 * (s / e).log10();
        assert!(db > 20.0, "SNR after the join {db:.1} dB");
    }
}
