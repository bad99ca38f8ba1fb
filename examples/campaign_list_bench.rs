//! Campaign list-building benchmark (issue 6): how long it takes to build a campaign's contact
//! list from a large ticket table, through the code the API uses.
//!
//! 1. Opens a fresh database with `Db::connect` (the project's migrations), fills `tickets`
//!    with `--tickets N` rows (default 1 000 000) in batched multi-row INSERTs: unique order
//!    ids and phones (E.164, 16 country codes, 14 NANP area codes), a realistic status mix (10 %
//!    `delayed`, the rest processing / shipped / delivered / cancelled / refunded), varied
//!    IANA time zones (a fifth left at the schema default `UTC` = unknown), languages,
//!    segments, delay days and ETAs; one delayed ticket in ten already has a resolution.
//!    Then `ANALYZE` (a database in service has statistics).
//! 2. Times `store::campaigns::create` — the call `POST /api/campaigns` makes — with the
//!    filter the API builds from `{"status": "delayed"}` (unresolved tickets only): the
//!    campaign row and the `INSERT … SELECT` of its `campaign_contacts` in one transaction.
//!    Also with a segment priority rule (`"segments": {"vip": {"priority": 1}}`), and the
//!    plain filter again (repeatability).
//! 3. Times the dialer's and the API's reads on the built list: the first `due` fetch (200
//!    contacts, what a runner reads on start), `open_contacts` and `progress` (every
//!    `GET /api/campaigns/{id}`).
//!
//! Peak RSS: the process's `VmHWM`; it is reset (`/proc/self/clear_refs` = 5) after the fill
//! so the figure printed for each build is the peak during that build only. With PostgreSQL
//! the work happens in the database server, so the client's RSS says little.
//!
//! Usage: campaign_list_bench [--database URL] [--tickets N] [--batch ROWS]
//! Run through `bench/campaign_list.sh`, which prints the figures quoted in
//! docs/benchmarks.md.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use switchboard::store::campaigns::{self, TicketFilter};
use switchboard::store::{now_ts, Db, Dialect};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Country code and the IANA zone(s) of its customers.
const COUNTRIES: &[(&str, &[&str])] = &[
    ("44", &["Europe/London"]),
    ("49", &["Europe/Berlin"]),
    ("33", &["Europe/Paris"]),
    ("34", &["Europe/Madrid"]),
    ("39", &["Europe/Rome"]),
    ("31", &["Europe/Amsterdam"]),
    ("86", &["Asia/Shanghai"]),
    ("81", &["Asia/Tokyo"]),
    ("82", &["Asia/Seoul"]),
    ("91", &["Asia/Kolkata"]),
    (
        "61",
        &["Australia/Sydney", "Australia/Perth", "Australia/Brisbane"],
    ),
    ("55", &["America/Sao_Paulo"]),
    ("52", &["America/Mexico_City"]),
    ("65", &["Asia/Singapore"]),
    ("852", &["Asia/Hong_Kong"]),
];

/// NANP area codes and their zones (the US/Canada are most of the customers).
const NANP: &[(u16, &str)] = &[
    (212, "America/New_York"),
    (617, "America/New_York"),
    (305, "America/New_York"),
    (416, "America/Toronto"),
    (312, "America/Chicago"),
    (713, "America/Chicago"),
    (214, "America/Chicago"),
    (303, "America/Denver"),
    (602, "America/Phoenix"),
    (415, "America/Los_Angeles"),
    (206, "America/Los_Angeles"),
    (604, "America/Vancouver"),
    (907, "America/Anchorage"),
    (808, "Pacific/Honolulu"),
];

struct Ticket {
    order_id: String,
    name: String,
    phone: String,
    language: &'static str,
    segment: &'static str,
    timezone: &'static str,
    status: &'static str,
    delay_days: i64,
    new_eta: Option<String>,
    resolution: Option<String>,
}

/// Ticket `i` of the synthetic table (`i` < 8 000 000). Phones are unique: `u`, a
/// permutation of `i` modulo 8 000 000 (multiplier coprime with it), gives the 7 digits after
/// a NANP area code (exchange digit 2-9 = 2 + u / 10^6) or the 8 digits after `+CC 7`.
fn ticket(i: u64, rng: &mut rand::rngs::StdRng) -> Ticket {
    let u = i * 7_654_321 % 8_000_000;
    let (phone, zone): (String, &'static str) = if rng.gen_bool(0.6) {
        let (area, tz) = NANP[rng.gen_range(0..NANP.len())];
        (
            format!("+1{area}{}{:06}", 2 + u / 1_000_000, u % 1_000_000),
            tz,
        )
    } else {
        let (cc, zones) = COUNTRIES[rng.gen_range(0..COUNTRIES.len())];
        (
            format!("+{cc}7{u:08}"),
            zones[rng.gen_range(0..zones.len())],
        )
    };
    // A fifth of the tickets carry no zone (schema default UTC = unknown: derived from the
    // number when dialing).
    let timezone = if rng.gen_bool(0.2) { "UTC" } else { zone };
    let r: f64 = rng.gen();
    let status = match r {
        x if x < 0.10 => "delayed",
        x if x < 0.30 => "processing",
        x if x < 0.60 => "shipped",
        x if x < 0.95 => "delivered",
        x if x < 0.98 => "cancelled",
        _ => "refunded",
    };
    let delayed = status == "delayed";
    let delay_days = if delayed { rng.gen_range(1..15) } else { 0 };
    let new_eta = delayed.then(|| format!("2026-12-{:02}", rng.gen_range(1..29)));
    // One delayed customer in ten has already answered (an earlier campaign or the hotline).
    let resolution = if delayed && rng.gen_bool(0.1) {
        Some(if rng.gen_bool(0.7) { "wait" } else { "refund" }.to_string())
    } else if status == "refunded" {
        Some("refund".to_string())
    } else {
        None
    };
    let segment = match rng.gen_range(0..100) {
        0..=4 => "vip",
        5..=19 => "business",
        _ => "standard",
    };
    Ticket {
        order_id: format!("ORD-{i:08}"),
        name: format!("Customer {i}"),
        phone,
        language: if rng.gen_bool(0.15) { "zh" } else { "en" },
        segment,
        timezone,
        status,
        delay_days,
        new_eta,
        resolution,
    }
}

async fn fill(db: &Db, n: u64, batch: usize) -> Result<u64, Box<dyn std::error::Error>> {
    const COLS: usize = 11;
    let d = db.dialect;
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut done = 0u64;
    let per_tx = 20_000u64;
    while done < n {
        let mut tx = db.pool.begin().await?;
        let tx_end = (done + per_tx).min(n);
        while done < tx_end {
            let rows = ((tx_end - done) as usize).min(batch);
            let mut sql = String::from(
                "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                 status, delay_days, new_eta, resolution, updated_at) VALUES ",
            );
            for r in 0..rows {
                let b = r * COLS;
                if r > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, {}, ${}, {})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    d.date(b + 9),
                    b + 10,
                    d.ts(b + 11)
                ));
            }
            let now = now_ts();
            let tickets: Vec<Ticket> = (done..done + rows as u64)
                .map(|i| ticket(i, &mut rng))
                .collect();
            let mut q = sqlx::query(&sql);
            for t in &tickets {
                q = q
                    .bind(t.order_id.clone())
                    .bind(t.name.clone())
                    .bind(t.phone.clone())
                    .bind(t.language)
                    .bind(t.segment)
                    .bind(t.timezone)
                    .bind(t.status)
                    .bind(t.delay_days)
                    .bind(t.new_eta.clone())
                    .bind(t.resolution.clone())
                    .bind(now.clone());
            }
            q.execute(&mut *tx).await?;
            done += rows as u64;
        }
        tx.commit().await?;
    }
    Ok(done)
}

async fn count(db: &Db, sql: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(&db.pool)
        .await
        .and_then(|r| r.try_get::<i64, _>(0))
        .unwrap_or(-1)
}

#[tokio::main]
async fn main() {
    let url = arg(
        "--database",
        "sqlite:///tmp/switchboard-campaign-list-bench.db",
    );
    let n: u64 = arg("--tickets", "1000000").parse().unwrap_or(1_000_000);
    // Rows per INSERT: sqlx's Any driver gets slower per row as a statement's bound
    // parameters grow (500 rows: 3 000 rows/s; 25 rows: 65 000 rows/s on SQLite).
    let batch: usize = arg("--batch", "25").parse().unwrap_or(25);
    if n > 8_000_000 {
        eprintln!("campaign_list_bench: at most 8 000 000 tickets (unique phone scheme)");
        std::process::exit(2);
    }
    if let Some(path) = url.strip_prefix("sqlite://") {
        for f in [
            path.to_string(),
            format!("{path}-wal"),
            format!("{path}-shm"),
        ] {
            let _ = std::fs::remove_file(f);
        }
    }
    let db = match Db::connect(&url).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("campaign_list_bench: {e}");
            std::process::exit(2);
        }
    };
    let engine = match db.dialect {
        Dialect::Sqlite => "sqlite",
        Dialect::Postgres => "postgresql",
    };
    if db.dialect == Dialect::Postgres {
        // A throwaway database is expected; start from empty tables either way.
        if let Err(e) = sqlx::query(
            "TRUNCATE tickets, campaigns, campaign_contacts, campaign_attempts RESTART IDENTITY",
        )
        .execute(&db.pool)
        .await
        {
            eprintln!("campaign_list_bench: truncate: {e}");
            std::process::exit(2);
        }
    }
    let t0 = Instant::now();
    let inserted = match fill(&db, n, batch).await {
        Ok(k) => k,
        Err(e) => {
            eprintln!("campaign_list_bench: fill: {e}");
            std::process::exit(1);
        }
    };
    let fill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let _ = sqlx::query("ANALYZE").execute(&db.pool).await;
    let analyze_s = t1.elapsed().as_secs_f64();
    let rows = count(&db, "SELECT COUNT(*) FROM tickets").await;
    let eligible = count(
        &db,
        "SELECT COUNT(*) FROM tickets WHERE status = 'delayed' AND resolution IS NULL",
    )
    .await;
    let distinct_phones = count(&db, "SELECT COUNT(DISTINCT phone) FROM tickets").await;
    let zones = count(&db, "SELECT COUNT(DISTINCT timezone) FROM tickets").await;
    println!(
        "engine={engine} tickets_inserted={inserted} rows={rows} distinct_phones={distinct_phones} zones={zones} \
         delayed_unresolved={eligible} fill_seconds={fill_s:.1} fill_rows_per_s={:.0} analyze_seconds={analyze_s:.2} rss_after_fill_mib={} peak_rss_fill_mib={}",
        inserted as f64 / fill_s,
        mib(status_kib("VmRSS:")),
        mib(status_kib("VmHWM:")),
    );

    // The API's filter for {"status": "delayed"} (include_resolved defaults to false).
    let filter = TicketFilter {
        status: Some("delayed".into()),
        unresolved_only: true,
        ..Default::default()
    };
    let vip = vec![("vip".to_string(), 1i64)];
    let runs: [(&str, &[(String, i64)]); 3] =
        [("plain", &[]), ("segments_vip", &vip), ("plain_again", &[])];
    let mut ok = true;
    let mut first_id = None;
    for (k, (label, prios)) in runs.iter().enumerate() {
        let name = format!("bench-delayed-{k}");
        let mut spec = serde_json::json!({
            "name": name, "dialplan": "delay-notify", "trunk": "carrier",
            "caller_id": "+15550100", "tickets": {"status": "delayed"},
            "max_channels": 200, "max_cps": 50,
        });
        if !prios.is_empty() {
            spec["segments"] = serde_json::json!({"vip": {"priority": 1}});
        }
        let reset = reset_peak_rss();
        let rss0 = status_kib("VmRSS:");
        let t = Instant::now();
        let r = campaigns::create(
            &db,
            &name,
            "delay-notify",
            "carrier",
            "+15550100",
            &spec,
            &filter,
            prios,
            100,
        )
        .await;
        let secs = t.elapsed().as_secs_f64();
        let peak = status_kib("VmHWM:");
        match r {
            Ok((id, contacts)) => {
                first_id.get_or_insert(id);
                let stored = count(
                    &db,
                    &format!("SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {id}"),
                )
                .await;
                if contacts as i64 != eligible || stored != eligible {
                    ok = false;
                }
                println!(
                    "engine={engine} build={label} campaign={id} list_size={contacts} stored={stored} seconds={secs:.3} \
                     contacts_per_s={:.0} rss_before_mib={} peak_rss_during_build_mib={}{}",
                    contacts as f64 / secs,
                    mib(rss0),
                    mib(peak),
                    if reset { "" } else { " (peak not reset: whole process)" }
                );
            }
            Err(e) => {
                ok = false;
                println!("engine={engine} build={label} error={e}");
            }
        }
    }

    // What reads the built list: a runner's first fetch, its completion check, the API's
    // progress (GET /api/campaigns/{id}).
    if let Some(id) = first_id {
        let t = Instant::now();
        let due = campaigns::due(
            &db,
            id,
            &now_ts(),
            200,
            campaigns::Lease {
                node: "bench",
                ttl_s: 15,
            },
        )
        .await
        .map(|v| v.len())
        .unwrap_or(0);
        let due_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let open = campaigns::open_contacts(&db, id).await.unwrap_or(-1);
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let states = campaigns::progress(&db, id)
            .await
            .map(|(s, _)| s.len())
            .unwrap_or(0);
        let progress_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "engine={engine} reads campaign={id} due_200_ms={due_ms:.1} (got {due}) open_contacts_ms={open_ms:.1} (open {open}) progress_ms={progress_ms:.1} ({states} states)"
        );
    }
    println!(
        "engine={engine} process_peak_rss_mib={} (VmHWM since the last reset)",
        mib(status_kib("VmHWM:"))
    );
    if !ok {
        eprintln!("campaign_list_bench: a list does not hold every unresolved delayed ticket");
        std::process::exit(1);
    }
}
