//! Call recording to WAV (8 kHz, 16-bit; stereo: channel 0 = caller, channel 1 = agent)
//! without ever blocking the call.
//!
//! The media path decodes a packet's payload (G.711 here by table; G.722/Opus by the leg's
//! own decoder, then [`Recorder::push_pcm`]) into a fixed-size [`Frame`] on the stack
//! and hands it to a bounded `std::sync::mpsc::sync_channel` with `try_send`: the channel's
//! slots are allocated once, so recording adds no allocation and no lock to the per-packet
//! path. A dedicated writer thread places frames on a timeline by their arrival time (so
//! the two legs, received by two different actors, line up), fills gaps with silence, and
//! writes through `hound`. When the disk is slow the channel fills and frames are dropped
//! and counted; when the disk fails (full) the writer stops writing and counts the rest as
//! dropped. Either way the call goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use super::codec::Codec;

pub const SAMPLE_RATE: u32 = 8000;
/// Most samples in one frame (20 ms at 8 kHz; longer packets are split).
pub const FRAME_SAMPLES: usize = 160;
/// Frames buffered between the call and the disk (~5 s of both channels).
const QUEUE_FRAMES: usize = 500;
/// The writer keeps this much (in samples) unflushed, to wait for the other channel.
const REORDER_WINDOW: usize = 4000;

#[derive(Clone, Copy)]
pub struct Frame {
    channel: u8,
    /// Sample index since the recording started (from the arrival time).
    at: u64,
    len: u16,
    samples: [i16; FRAME_SAMPLES],
}

/// Counters shared by the call side and the writer.
#[derive(Debug, Default)]
pub struct RecordingStats {
    pub frames_written: AtomicU64,
    pub frames_dropped: AtomicU64,
}

/// The call side of one recording. Cloned into each leg that records.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Frame>,
    start: Instant,
    stats: Arc<RecordingStats>,
    path: Arc<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: String,
        #[source]
        source: hound::Error,
    },
    #[error("cannot start the writer thread: {0}")]
    Thread(std::io::Error),
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

impl Recorder {
    /// Create a stereo file (0 = caller, 1 = agent) and start its writer thread.
    pub fn start(path: &Path, now: Instant) -> Result<Recorder, RecorderError> {
        Recorder::start_with(path, now, 2)
    }

    /// Create a file with 1 (the caller only) or 2 channels and start its writer thread.
    pub fn start_with(path: &Path, now: Instant, channels: u16) -> Result<Recorder, RecorderError> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let channels = channels.clamp(1, 2);
        let spec = hound::WavSpec {
            channels,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| RecorderError::Create {
            path: path.display().to_string(),
            source: e,
        })?;
        let (tx, rx) = sync_channel(QUEUE_FRAMES);
        let stats = Arc::new(RecordingStats::default());
        let st = stats.clone();
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_loop(rx, writer, &st, channels))
            .map_err(RecorderError::Thread)?;
        Ok(Recorder {
            tx,
            start: now,
            stats,
            path: Arc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &RecordingStats {
        &self.stats
    }

    /// `frames_written=N frames_dropped=M`, as recorded in `call_events`.
    pub fn summary(&self) -> String {
        format!(
            "frames_written={} frames_dropped={}",
            self.stats.frames_written.load(Ordering::Relaxed),
            self.stats.frames_dropped.load(Ordering::Relaxed)
        )
    }

    /// Record one G.711 packet's payload on `channel` (0 caller, 1 agent). Never waits.
    /// Stateful codecs (G.722, Opus) are decoded by the leg's own decoder and go through
    /// [`Recorder::push_pcm`].
    pub fn push(&self, now: Instant, channel: u8, codec: Codec, payload: &[u8]) {
        let mut pcm = [0i16; FRAME_SAMPLES];
        for (i, chunk) in payload.chunks(FRAME_SAMPLES).enumerate() {
            for (s, b) in pcm.iter_mut().zip(chunk) {
                *s = codec.decode_sample(*b);
            }
            self.push_at(now, i * FRAME_SAMPLES, channel, &pcm[..chunk.len()]);
        }
    }

    /// Record decoded 8 kHz PCM (one packet's worth) on `channel`. Never waits.
    pub fn push_pcm(&self, now: Instant, channel: u8, pcm: &[i16]) {
        for (i, chunk) in pcm.chunks(FRAME_SAMPLES).enumerate() {
            self.push_at(now, i * FRAME_SAMPLES, channel, chunk);
        }
    }

    fn push_at(&self, now: Instant, offset: usize, channel: u8, chunk: &[i16]) {
        let base = (now.saturating_duration_since(self.start).as_micros() as u64 * 8) / 1000;
        let mut f = Frame {
            channel,
            at: base + offset as u64,
            len: chunk.len() as u16,
            samples: [0; FRAME_SAMPLES],
        };
        f.samples[..chunk.len()].copy_from_slice(chunk);
        match self.tx.try_send(f) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Place frames on the stereo timeline and flush what both channels had time to fill.
fn write_loop(
    rx: Receiver<Frame>,
    mut w: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    stats: &RecordingStats,
    channels: u16,
) {
    // Interleaved samples from index `flushed` on.
    let mut pending: std::collections::VecDeque<[i16; 2]> = std::collections::VecDeque::new();
    let mut flushed: u64 = 0;
    let mut failed = false;
    let mut flush = |pending: &mut std::collections::VecDeque<[i16; 2]>,
                     upto: u64,
                     flushed: &mut u64,
                     failed: &mut bool| {
        while *flushed < upto {
            let Some([l, r]) = pending.pop_front() else {
                break;
            };
            let ok = if channels == 1 {
                w.write_sample(l).is_ok()
            } else {
                w.write_sample(l).is_ok() && w.write_sample(r).is_ok()
            };
            if !*failed && !ok {
                *failed = true;
                tracing::warn!("recording write failed (disk full?); the rest is dropped");
            }
            *flushed += 1;
        }
    };
    let mut latest: u64 = 0;
    while let Ok(f) = rx.recv() {
        if failed {
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if f.at < flushed {
            // Arrived after its place was written: too late.
            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let end = f.at + f.len as u64;
        let need = (end - flushed) as usize;
        if pending.len() < need {
            pending.resize(need, [0, 0]);
        }
        let ch = (f.channel as usize).min(1);
        for (k, s) in f.samples[..f.len as usize].iter().enumerate() {
            pending[(f.at - flushed) as usize + k][ch] = *s;
        }
        stats.frames_written.fetch_add(1, Ordering::Relaxed);
        latest = latest.max(end);
        let upto = latest.saturating_sub(REORDER_WINDOW as u64);
        flush(&mut pending, upto, &mut flushed, &mut failed);
    }
    let all = flushed + pending.len() as u64;
    flush(&mut pending, all, &mut flushed, &mut failed);
    if let Err(e) = w.finalize() {
        tracing::warn!(error = %e, "recording could not be finalized");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn two_channels_line_up_by_arrival_time() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.wav");
        let t0 = Instant::now();
        let rec = Recorder::start(&path, t0).expect("start");
        let loud = [Codec::Pcmu.encode_sample(8000); 160];
        let quiet = [Codec::Pcmu.encode_sample(-4000); 160];
        for i in 0..50u64 {
            let t = t0 + Duration::from_millis(20 * i);
            rec.push(t, 0, Codec::Pcmu, &loud);
            rec.push(t, 1, Codec::Pcmu, &quiet);
        }
        let stats = rec.stats.clone();
        drop(rec);
        // The writer finishes once every sender is gone.
        for _ in 0..100 {
            if hound::WavReader::open(&path).is_ok_and(|r| r.duration() >= 8000) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut r = hound::WavReader::open(&path).expect("wav");
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.duration(), 8000, "1 s of stereo");
        let s: Vec<i16> = r.samples::<i16>().map(|x| x.expect("sample")).collect();
        assert!(s[0] > 7000 && s[1] < -3000, "L {} R {}", s[0], s[1]);
        assert_eq!(stats.frames_written.load(Ordering::Relaxed), 100);
        assert_eq!(stats.frames_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("r.wav");
        let t0 = Instant::now();
        let rec = Recorder::start(&path, t0).expect("start");
        let payload = [0xFFu8; 160];
        let begun = Instant::now();
        for i in 0..20_000u64 {
            rec.push(t0 + Duration::from_millis(20 * i), 0, Codec::Pcmu, &payload);
        }
        // 20 000 pushes never wait on the disk.
        assert!(begun.elapsed() < Duration::from_secs(5));
        let s = rec.stats.clone();
        drop(rec);
        let total =
            || s.frames_written.load(Ordering::Relaxed) + s.frames_dropped.load(Ordering::Relaxed);
        for _ in 0..250 {
            if total() == 20_000 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(total(), 20_000, "every frame is accounted for");
    }
}
