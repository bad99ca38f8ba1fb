//! Store write-throughput benchmark (issue: the shared ticket database).
//!
//! Submits call records the way call actors do — `StoreHandle::submit`, never waiting —
//! and measures (1) how long a submit takes (what a call sees) and (2) sustained rows/s the
//! writer lands in the database. Run through `bench/store.sh`, which prints the figures
//! quoted in docs/benchmarks.md.
//!
//! Usage: store_bench [--database URL] [--calls N] [--events-per-call K]

use std::time::{Duration, Instant};

use switchboard::store::ops::StoreOp;
use switchboard::store::{now_ts, writer, Db};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() {
    let url = arg("--database", "sqlite:///tmp/switchboard-store-bench.db");
    let calls: usize = arg("--calls", "20000").parse().unwrap_or(20000);
    let events: usize = arg("--events-per-call", "10").parse().unwrap_or(10);
    if let Some(path) = url.strip_prefix("sqlite://") {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(format!("{path}-wal"));
        let _ = std::fs::remove_file(format!("{path}-shm"));
    }
    let db = match Db::connect(&url).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("store_bench: {e}");
            std::process::exit(2);
        }
    };
    let _ = sqlx::query("DELETE FROM call_events")
        .execute(&db.pool)
        .await;
    let _ = sqlx::query("DELETE FROM call_records")
        .execute(&db.pool)
        .await;
    let spool = std::env::temp_dir().join(format!("store-bench-{}.jsonl", std::process::id()));
    // `--journal on`: as the server runs it, every submit first appends the op to the
    // write-ahead journal (one mutex and one write(2)), which is what a call pays.
    let journal_on = arg("--journal", "off") == "on";
    let journal_dir = std::env::temp_dir().join(format!("store-bench-j-{}", std::process::id()));
    let journal = if journal_on {
        match switchboard::store::journal::Journal::open(&journal_dir) {
            Ok(j) => Some(std::sync::Arc::new(j)),
            Err(e) => {
                eprintln!("store_bench: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let (handle, rx) = writer::channel_with_journal(journal.clone());
    let stats = handle.stats.clone();
    let close = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(writer::run_journaled(
        db.clone(),
        rx,
        spool.clone(),
        stats.clone(),
        close.clone(),
        journal,
    ));
    let rows_per_call = events + 2; // record (insert + end update) and events
    let total_rows = calls * rows_per_call;
    let mut submit_ns: Vec<u64> = Vec::with_capacity(total_rows);
    let t0 = Instant::now();
    // Pace submissions in bursts like calls would (1 000 calls at a time), yielding between.
    for chunk in 0..calls.div_ceil(1000) {
        for c in chunk * 1000..((chunk + 1) * 1000).min(calls) {
            let id = format!("bench-{c}");
            let ts = now_ts();
            let mut ops = Vec::with_capacity(rows_per_call);
            ops.push(StoreOp::CallStarted {
                id: id.clone(),
                sip_call_id: format!("{c}@bench"),
                direction: "inbound".into(),
                from_uri: "sip:+15551230001@127.0.0.1".into(),
                to_uri: "sip:hotline@127.0.0.1".into(),
                caller: Some("+15551230001".into()),
                dialplan: Some("hotline".into()),
                campaign_id: None,
                started_at: ts.clone(),
                node: None,
            });
            for e in 0..events {
                ops.push(StoreOp::CallEvent {
                    call_id: id.clone(),
                    seq: e as i64 + 1,
                    at: ts.clone(),
                    kind: "dtmf".into(),
                    detail: "1".into(),
                });
            }
            ops.push(StoreOp::CallEnded {
                id,
                ended_at: ts,
                disposition: "answered".into(),
                hangup_cause: "caller_hangup".into(),
                sip_status: Some(200),
                queue: None,
                agent: None,
                wait_ms: None,
            });
            for op in ops {
                let s = Instant::now();
                handle.submit(op);
                submit_ns.push(s.elapsed().as_nanos() as u64);
            }
        }
        tokio::task::yield_now().await;
        // Keep the mailbox below its bound: a real system's calls arrive over time.
        while stats.written.load(std::sync::atomic::Ordering::Relaxed)
            + (writer::MAILBOX as u64 / 2)
            < ((chunk + 1) * 1000 * rows_per_call) as u64
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    close.cancel();
    drop(handle);
    let _ = task.await;
    let elapsed = t0.elapsed();
    let written = stats.written.load(std::sync::atomic::Ordering::Relaxed);
    submit_ns.sort_unstable();
    let pct = |p: f64| submit_ns[((submit_ns.len() as f64 * p) as usize).min(submit_ns.len() - 1)];
    let engine = if url.starts_with("postgres") {
        "postgresql"
    } else {
        "sqlite"
    };
    println!("engine={engine} journal={} calls={calls} rows={written} seconds={:.2} rows_per_s={:.0} submit_p50_ns={} submit_p99_ns={} submit_max_ns={} mailbox_full={} spooled={}",
        if journal_on { "on" } else { "off" }, elapsed.as_secs_f64(), written as f64 / elapsed.as_secs_f64(), pct(0.50), pct(0.99), submit_ns.last().copied().unwrap_or(0),
        stats.mailbox_full.load(std::sync::atomic::Ordering::Relaxed), stats.spooled.load(std::sync::atomic::Ordering::Relaxed));
    let _ = std::fs::remove_file(&spool);
    let _ = std::fs::remove_dir_all(&journal_dir);
    if written as usize != total_rows {
        eprintln!("store_bench: wrote {written} of {total_rows} rows");
        std::process::exit(1);
    }
}
