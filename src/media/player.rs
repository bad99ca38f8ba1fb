//! Prompt player: a playlist of pre-encoded prompts and silences, read out 20 ms at a time.
//!
//! `fill` never allocates: it copies from the current prompt's encoded bytes into the frame
//! and pads with the codec's silence byte. The playlist itself is built when a prompt starts
//! (once per prompt, not per packet).

use std::sync::Arc;

use super::codec::Codec;
use super::prompts::Prompt;

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

    /// Fill one frame with the next audio. Loops restart from the first item.
    pub fn fill(&mut self, codec: Codec, frame: &mut [u8]) -> FillResult {
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
        if self.is_playing() {
            FillResult::Playing
        } else {
            self.items.clear();
            self.index = 0;
            FillResult::Finished
        }
    }
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
        assert_eq!(p.fill(Codec::Pcmu, &mut f), FillResult::Playing);
        assert!(f.iter().all(|b| *b == Codec::Pcmu.encode_sample(1000)));
        assert_eq!(p.fill(Codec::Pcmu, &mut f), FillResult::Finished);
        assert_eq!(&f[..40], &[Codec::Pcmu.encode_sample(1000); 40][..]);
        assert!(f[40..].iter().all(|b| *b == 0xFF));
        assert_eq!(p.fill(Codec::Pcmu, &mut f), FillResult::Idle);
    }

    #[test]
    fn loops_until_stopped() {
        let mut p = Player::default();
        p.play(vec![PlayItem::Prompt(prompt(100))], true);
        let mut f = [0u8; 160];
        for _ in 0..10 {
            assert_eq!(p.fill(Codec::Pcma, &mut f), FillResult::Playing);
        }
        p.stop();
        assert_eq!(p.fill(Codec::Pcma, &mut f), FillResult::Idle);
        p.play(vec![PlayItem::Silence(0)], true);
        assert_ne!(p.fill(Codec::Pcma, &mut f), FillResult::Playing);
    }
}
