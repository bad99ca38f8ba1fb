//! The write-ahead journal: every record op is on disk before a call hands it to the writer.
//!
//! The writer's mailbox is memory; a `kill -9` (or an OOM kill, a panic in another thread
//! that aborts) would lose whatever sat in it or in the batch being committed. So
//! [`crate::store::writer::StoreHandle::submit`] first appends the op as one JSON line to the
//! current journal generation (`journal-<gen>.jsonl` beside the spool; a `write(2)` into the
//! page cache, which survives the death of the process) and only then queues it. The writer
//! reports each op it has committed, dead-lettered or spooled; a generation that is sealed
//! and has no op outstanding is deleted. At start, before the spool is replayed, every
//! journal generation left behind is appended to the spool (fsynced) and removed: replaying
//! ops that were already committed is harmless because every op is idempotent
//! (`ON CONFLICT DO NOTHING`, guarded updates, last-write-wins agent state in journal order).
//!
//! Not fsynced: the journal protects against the process dying, not the machine losing
//! power (the spool, written during outages, is fsynced per batch). The cost is one mutex and
//! one `write(2)` per op — a handful per call, never per RTP packet.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{error, warn};

use super::ops::StoreOp;

/// A generation is sealed once it holds this many bytes or is this old (and has ops), so a
/// restart never replays more than a few seconds of already-committed ops.
const ROTATE_BYTES: u64 = 1 << 20;
const ROTATE_AGE: Duration = Duration::from_secs(2);

const PREFIX: &str = "journal-";
const SUFFIX: &str = ".jsonl";

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
struct Inner {
    gen: u64,
    file: File,
    bytes: u64,
    opened: Instant,
    /// Ops appended but not yet reported processed, per generation (the current one too).
    outstanding: BTreeMap<u64, u64>,
    line: Vec<u8>,
    broken: bool,
}

/// One process's journal. Shared by every `StoreHandle` (behind an `Arc`).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn gen_path(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{gen:020}{SUFFIX}"))
}

/// The generations present in `dir`, oldest first.
fn list_generations(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut gens = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
        else {
            continue;
        };
        if let Ok(g) = num.parse::<u64>() {
            gens.push((g, entry.path()));
        }
    }
    gens.sort();
    Ok(gens)
}

/// At start, before anything else touches the spool: move every op of every generation left
/// by an earlier run (crashed or not) to the end of the spool, then delete the generations.
/// Returns how many ops were moved.
pub fn recover_into_spool(dir: &Path, spool: &Path) -> Result<usize, JournalError> {
    let mut moved = 0;
    for (_, path) in list_generations(dir)? {
        let text = std::fs::read(&path).map_err(io(&path))?;
        let mut ops = Vec::new();
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<StoreOp>(line) {
                Ok(op) => ops.push(op),
                // A line torn by the crash was never handed to the writer either.
                Err(e) => {
                    warn!(path = %path.display(), line = i + 1, error = %e, "skipping unreadable journal line")
                }
            }
        }
        if !ops.is_empty() {
            super::writer::append_lines(spool, &ops).map_err(io(spool))?;
            moved += ops.len();
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(moved)
}

impl Journal {
    /// Open a new generation in `dir` (after [`recover_into_spool`] has emptied it).
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let gen = list_generations(dir)?
            .last()
            .map(|(g, _)| g + 1)
            .unwrap_or(1);
        let path = gen_path(dir, gen);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Journal {
            dir: dir.to_owned(),
            inner: Mutex::new(Inner {
                gen,
                file,
                bytes: 0,
                opened: Instant::now(),
                outstanding: BTreeMap::new(),
                line: Vec::with_capacity(512),
                broken: false,
            }),
        })
    }

    /// Append `op`; returns its generation, or None when the journal could not take it (the
    /// op then travels unjournaled, as before the journal existed, and that is logged once).
    pub fn append(&self, op: &StoreOp) -> Option<u64> {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let inner = &mut *guard;
        inner.line.clear();
        if serde_json::to_writer(&mut inner.line, op).is_err() {
            return None;
        }
        inner.line.push(b'\n');
        match inner.file.write_all(&inner.line) {
            Ok(()) => {
                if inner.broken {
                    inner.broken = false;
                    warn!("journal writable again");
                }
                inner.bytes += inner.line.len() as u64;
                *inner.outstanding.entry(inner.gen).or_insert(0) += 1;
                Some(inner.gen)
            }
            Err(e) => {
                if !inner.broken {
                    inner.broken = true;
                    error!(error = %e, dir = %self.dir.display(), "cannot append to the journal; records are only in memory until written");
                }
                None
            }
        }
    }

    /// The writer has committed, dead-lettered or spooled these ops: forget them, delete any
    /// sealed generation that has nothing left, and seal the current one when it is due.
    pub fn processed(&self, gens: &[u64]) {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let inner = &mut *guard;
        for g in gens {
            if let Some(n) = inner.outstanding.get_mut(g) {
                *n = n.saturating_sub(1);
            }
        }
        let current = inner.gen;
        let done: Vec<u64> = inner
            .outstanding
            .iter()
            .filter(|(g, n)| **g != current && **n == 0)
            .map(|(g, _)| *g)
            .collect();
        for g in done {
            inner.outstanding.remove(&g);
            let path = gen_path(&self.dir, g);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot remove a finished journal generation");
            }
        }
        if inner.bytes > 0 && (inner.bytes >= ROTATE_BYTES || inner.opened.elapsed() >= ROTATE_AGE)
        {
            self.rotate(inner);
        }
    }

    fn rotate(&self, inner: &mut Inner) {
        let next = inner.gen + 1;
        let path = gen_path(&self.dir, next);
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(file) => {
                let old = inner.gen;
                inner.file = file;
                inner.gen = next;
                inner.bytes = 0;
                inner.opened = Instant::now();
                // A sealed generation whose ops are all processed goes at once.
                if inner.outstanding.get(&old).copied().unwrap_or(0) == 0 {
                    inner.outstanding.remove(&old);
                    let _ = std::fs::remove_file(gen_path(&self.dir, old));
                }
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open a new journal generation; keeping the current one")
            }
        }
    }

    /// Clean shutdown with every op processed: remove every generation.
    pub fn close(&self) {
        let guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.outstanding.values().any(|n| *n > 0) {
            warn!("ops still outstanding at shutdown; the journal is kept for the next start");
            return;
        }
        if let Ok(gens) = list_generations(&self.dir) {
            for (_, path) in gens {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Ops appended and not yet processed (for tests and the status page).
    pub fn outstanding(&self) -> u64 {
        match self.inner.lock() {
            Ok(g) => g.outstanding.values().sum(),
            Err(poisoned) => poisoned.into_inner().outstanding.values().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: i64) -> StoreOp {
        StoreOp::CallEvent {
            call_id: "c1".into(),
            seq: i,
            at: "2026-12-02T00:00:00Z".into(),
            kind: "dtmf".into(),
            detail: "1".into(),
        }
    }

    #[test]
    fn unprocessed_ops_are_recovered_in_order_and_processed_ones_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path()).expect("open");
        let g1 = j.append(&op(1)).expect("journaled");
        let g2 = j.append(&op(2)).expect("journaled");
        assert_eq!(j.outstanding(), 2);
        j.processed(&[g1]);
        // Still one op outstanding: the generation must survive a crash.
        drop(j); // "kill -9": no close()
        let spool = dir.path().join("spool.jsonl");
        assert_eq!(recover_into_spool(dir.path(), &spool).expect("recover"), 2);
        let text = std::fs::read_to_string(&spool).expect("spool");
        let ops: Vec<StoreOp> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("op"))
            .collect();
        assert_eq!(ops, vec![op(1), op(2)], "both replayed, in order (g2={g2})");
        assert!(list_generations(dir.path()).expect("list").is_empty());
    }

    #[test]
    fn sealed_generations_with_nothing_outstanding_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path()).expect("open");
        let g = j.append(&op(1)).expect("journaled");
        {
            let mut inner = j.inner.lock().expect("lock");
            inner.opened = Instant::now() - ROTATE_AGE * 2;
        }
        j.processed(&[g]);
        let gens = list_generations(dir.path()).expect("list");
        assert_eq!(gens.len(), 1, "only the fresh generation is left: {gens:?}");
        assert!(gens[0].0 > g);
        let g2 = j.append(&op(2)).expect("journaled");
        assert!(g2 > g);
        j.processed(&[g2]);
        j.close();
        assert!(list_generations(dir.path()).expect("list").is_empty());
    }

    #[test]
    fn torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path()).expect("open");
        j.append(&op(1)).expect("journaled");
        drop(j);
        let (_, path) = list_generations(dir.path()).expect("list").remove(0);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"{\"op\":\"call_ev").expect("write");
        let spool = dir.path().join("spool.jsonl");
        assert_eq!(recover_into_spool(dir.path(), &spool).expect("recover"), 1);
    }
}
