//! The record writer: one task that owns every write of call records, events and outcomes.
//!
//! Calls `submit` ops without waiting (bounded mailbox, `try_send`). The writer drains the
//! mailbox in batches (one transaction per batch). When the database is unreachable, batches
//! go to an append-only spool file (JSON lines, fsynced per batch) and are replayed in order
//! once it answers again; a replay after a crash is safe because every op is idempotent. An op
//! the database rejects as bad data is isolated and written to a dead-letter file instead of
//! blocking the ones behind it. With a [`Journal`], every op is on disk before it is queued,
//! so a process killed with ops still in the mailbox loses none of them (see `journal.rs`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::journal::Journal;
use super::ops::{apply, StoreOp};
use super::Db;

pub const MAILBOX: usize = 65_536;
const BATCH: usize = 512;
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct WriterStats {
    pub written: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub dead_letters: AtomicU64,
    pub mailbox_full: AtomicU64,
}

/// One op in the mailbox, with the journal generation that holds its copy on disk.
#[derive(Debug)]
pub struct Queued {
    gen: Option<u64>,
    op: StoreOp,
}

impl Queued {
    /// The op itself (tests that read a mailbox without a writer).
    pub fn into_op(self) -> StoreOp {
        self.op
    }
}

/// Cheap, cloneable way for calls to hand ops to the writer.
#[derive(Clone, Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Queued>,
    journal: Option<Arc<Journal>>,
    pub stats: Arc<WriterStats>,
}

impl StoreHandle {
    /// Never waits. A full mailbox (65 536 ops) means the writer is far behind even its spool;
    /// the op is counted in `mailbox_full` and logged.
    ///
    /// With a journal the op is appended to it first; an op lost to a full mailbox then
    /// stays in the journal and is written at the next start.
    pub fn submit(&self, op: StoreOp) {
        // Call counts and setup times for `/metrics`: once per call event.
        match &op {
            StoreOp::CallStarted { id, direction, .. } => {
                crate::metrics::global().call_started(id, direction)
            }
            StoreOp::CallAnswered { id, .. } => crate::metrics::global().call_answered(id),
            StoreOp::CallEnded {
                id, disposition, ..
            } => crate::metrics::global().call_ended(id, disposition),
            _ => {}
        }
        let gen = self.journal.as_ref().and_then(|j| j.append(&op));
        if let Err(e) = self.tx.try_send(Queued { gen, op }) {
            // Count every loss; log the first of each burst with the op, not a flood.
            let n = self.stats.mailbox_full.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                let op = format!("{:?}", e.into_inner().op);
                error!(lost_so_far = n + 1, op = %op.chars().take(200).collect::<String>(), "store mailbox full or closed: record op lost");
            }
        }
    }

    /// The journal behind this handle, if any (the writer reports progress to it).
    pub fn journal(&self) -> Option<Arc<Journal>> {
        self.journal.clone()
    }
}

/// A mailbox without a journal (tests, benchmarks of the bare writer).
pub fn channel() -> (StoreHandle, mpsc::Receiver<Queued>) {
    channel_with_journal(None)
}

/// A mailbox whose ops are journaled before they are queued (what the server uses).
pub fn channel_with_journal(
    journal: Option<Arc<Journal>>,
) -> (StoreHandle, mpsc::Receiver<Queued>) {
    let (tx, rx) = mpsc::channel(MAILBOX);
    (
        StoreHandle {
            tx,
            journal,
            stats: Arc::new(WriterStats::default()),
        },
        rx,
    )
}

/// Whether an error says the data is bad (retrying will never help) rather than the
/// database being unavailable.
fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                if let Ok(n) = code.parse::<i64>() {
                    // SQLite primary result codes: 1 SQL error, 19 constraint, 20 mismatch, 25 range.
                    matches!(n & 0xFF, 1 | 19 | 20 | 25)
                } else {
                    // PostgreSQL SQLSTATE classes 22 data exception, 23 integrity, 42 syntax.
                    code.starts_with("22") || code.starts_with("23") || code.starts_with("42")
                }
            }
            None => false,
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

/// Whether PostgreSQL rolled the transaction back because it lost a race with another
/// transaction: SQLSTATE 40P01 (deadlock detected) or 40001 (serialization failure). The
/// database is up and nothing of the transaction stayed, so running it again is right.
///
/// Why it happens (measured with two and three nodes, bench/cluster.sh): the report-totals
/// triggers (migration 0016) upsert rows keyed by quarter-hour bucket; a batch that touches
/// bucket A then bucket B (a call that started last quarter ends, a new call starts) and
/// another node's batch that touches B then A wait for each other, and PostgreSQL aborts
/// one of them. Before this retry the aborted batch was treated as an outage and spooled.
fn is_lost_race(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c == "40P01" || c == "40001"))
}

/// How often a batch that lost a race is run again before it counts as an outage.
const RACE_ATTEMPTS: u32 = 5;

async fn write_batch(db: &Db, ops: &[StoreOp]) -> Result<(), sqlx::Error> {
    let mut attempt = 1;
    loop {
        match write_batch_once(db, ops).await {
            Err(e) if is_lost_race(&e) && attempt < RACE_ATTEMPTS => {
                // A random pause (10–40 ms times the attempt) so the two writers do not
                // meet again in lockstep.
                let ms = u64::from(attempt) * rand::Rng::gen_range(&mut rand::thread_rng(), 10..40);
                debug!(error = %e, attempt, "batch lost a race with another writer; running it again");
                tokio::time::sleep(Duration::from_millis(ms)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

async fn write_batch_once(db: &Db, ops: &[StoreOp]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    for op in ops {
        apply(&mut tx, db.dialect, op).await?;
    }
    tx.commit().await
}

/// Write a batch; isolate bad ops. Err means "database unavailable": nothing is lost, the
/// caller spools the whole batch (idempotent ops make partial earlier success harmless).
async fn write_or_isolate(
    db: &Db,
    ops: &[StoreOp],
    dead_letter: &Path,
    stats: &WriterStats,
) -> Result<(), sqlx::Error> {
    match write_batch(db, ops).await {
        Ok(()) => {
            stats.written.fetch_add(ops.len() as u64, Ordering::Relaxed);
            Ok(())
        }
        Err(e) if is_data_error(&e) => {
            for op in ops {
                match write_batch(db, std::slice::from_ref(op)).await {
                    Ok(()) => {
                        stats.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if is_data_error(&e) => {
                        stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                        error!(error = %e, ?op, "record rejected by the database; kept in dead-letter file");
                        let _ = append_lines(dead_letter, std::slice::from_ref(op));
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn append_lines(path: &Path, ops: &[StoreOp]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut buf = Vec::with_capacity(ops.len() * 160);
    for op in ops {
        serde_json::to_writer(&mut buf, op).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    // A crash can leave a torn last line without its newline: never glue a new op onto it.
    let len = f.metadata()?.len();
    if len > 0 {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    f.write_all(&buf)?;
    f.sync_data()
}

fn read_spool(path: &Path) -> std::io::Result<Vec<StoreOp>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(op) => ops.push(op),
            // A torn last line from a crash mid-append: the op was never acknowledged.
            Err(e) => warn!(line = i + 1, error = %e, "skipping unreadable spool line"),
        }
    }
    Ok(ops)
}

/// Replay the spool into the database. Ok(true) when it is now empty.
pub async fn replay_spool(
    db: &Db,
    spool: &Path,
    dead_letter: &Path,
    stats: &WriterStats,
) -> Result<bool, sqlx::Error> {
    let ops = match read_spool(spool) {
        Ok(ops) => ops,
        Err(e) => {
            error!(path = %spool.display(), error = %e, "cannot read spool");
            return Ok(false);
        }
    };
    if ops.is_empty() {
        let _ = std::fs::remove_file(spool);
        return Ok(true);
    }
    for chunk in ops.chunks(BATCH) {
        write_or_isolate(db, chunk, dead_letter, stats).await?;
        stats
            .replayed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    if let Err(e) = std::fs::remove_file(spool) {
        error!(path = %spool.display(), error = %e, "cannot remove replayed spool");
    }
    info!(ops = ops.len(), "spool replayed into the database");
    Ok(true)
}

/// The writer task. Ends when every `StoreHandle` is dropped, or `close` is cancelled, and
/// the mailbox is drained.
pub async fn run(
    db: Db,
    rx: mpsc::Receiver<Queued>,
    spool: PathBuf,
    stats: Arc<WriterStats>,
    close: tokio_util::sync::CancellationToken,
) {
    run_journaled(db, rx, spool, stats, close, None).await
}

/// [`run`], reporting every op it has committed, dead-lettered or spooled to `journal`.
pub async fn run_journaled(
    db: Db,
    mut rx: mpsc::Receiver<Queued>,
    spool: PathBuf,
    stats: Arc<WriterStats>,
    close: tokio_util::sync::CancellationToken,
    journal: Option<Arc<Journal>>,
) {
    let mut closing = false;
    let dead_letter = spool.with_extension("dead.jsonl");
    // Records left by an earlier run or outage go first, so order is kept.
    let mut outage = match replay_spool(&db, &spool, &dead_letter, &stats).await {
        Ok(done) => !done,
        Err(e) => {
            warn!(error = %e, "database unavailable at start; spooling");
            true
        }
    };
    let mut batch: Vec<StoreOp> = Vec::with_capacity(BATCH);
    let mut gens: Vec<Option<u64>> = Vec::with_capacity(BATCH); // aligned with `batch`
    let mut incoming: Vec<Queued> = Vec::with_capacity(BATCH);
    let mut flat: Vec<u64> = Vec::with_capacity(BATCH);
    let mut done = |gens: &mut Vec<Option<u64>>| {
        if let Some(j) = &journal {
            flat.clear();
            flat.extend(gens.iter().flatten());
            j.processed(&flat);
        }
        gens.clear();
    };
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = close.cancelled(), if !closing => {
                // Refuse new ops; what is already queued is still written below.
                closing = true;
                rx.close();
                continue;
            }
            _ = retry.tick(), if outage => {
                match replay_spool(&db, &spool, &dead_letter, &stats).await {
                    Ok(true) => {
                        outage = false;
                        info!("database reachable again; spool drained");
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "database still unavailable"),
                }
                continue;
            }
            n = rx.recv_many(&mut incoming, BATCH) => {
                if n == 0 {
                    break;
                }
                for q in incoming.drain(..) {
                    gens.push(q.gen);
                    batch.push(q.op);
                }
            }
        }
        if !outage {
            match write_or_isolate(&db, &batch, &dead_letter, &stats).await {
                Ok(()) => {
                    batch.clear();
                    done(&mut gens);
                    continue;
                }
                Err(e) => {
                    error!(error = %e, "database unavailable: spooling call records to {}", spool.display());
                    outage = true;
                }
            }
        }
        match append_lines(&spool, &batch) {
            Ok(()) => {
                stats
                    .spooled
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
                done(&mut gens);
            }
            Err(e) => {
                // Disk full or read-only: keep the batch and try again on the next wake-up,
                // up to a bound; beyond it the oldest ops are dropped and counted.
                error!(error = %e, ops = batch.len(), "cannot write spool; holding records in memory");
                if batch.len() > MAILBOX {
                    let excess = batch.len() - MAILBOX;
                    batch.drain(..excess);
                    // Not reported: a journaled op dropped here is written at the next start.
                    gens.drain(..excess);
                    stats
                        .mailbox_full
                        .fetch_add(excess as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if outage {
        // Last chance at shutdown; whatever is left stays in the spool for the next start.
        let _ = replay_spool(&db, &spool, &dead_letter, &stats).await;
    }
    if let Some(j) = &journal {
        // Everything queued is now in the database or the spool.
        j.close();
    }
}
