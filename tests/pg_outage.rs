//! Database outage (issue: the shared ticket database): PostgreSQL is stopped while calls are
//! in progress; the calls go on (no media or IVR step waits on the database), their records
//! go to the spool, and when PostgreSQL is back they arrive exactly once — call record,
//! keypad events, outcome and the ticket's resolution. A ticket lookup made while the
//! database is down gives up within `lookup_timeout_ms` and takes the dialplan's
//! `unavailable` path. Uses its own throwaway PostgreSQL server so it can stop and start it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    free_port, http_get_status, is_root, read_lossy, render_scenario, repo_root, sipp_media_port,
    tail, Scenario, SippProcess,
};
use sqlx::Row;

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Run a PostgreSQL server binary, as the `postgres` user when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str], cwd: &Path) -> bool {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

struct Pg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Pg {
    /// A fresh cluster on a free port, started; None (skip) without server binaries.
    fn init() -> Option<Pg> {
        let Some(bin) = pg_bin() else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must have PostgreSQL server binaries (scripts/test installs them)"
            );
            eprintln!("PostgreSQL server binaries not found: skipped");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("switchboard-pg-outage-")
            .tempdir()
            .expect("dir");
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .status();
        }
        let pg_srv = Pg {
            bin,
            port: free_port(),
            dir,
        };
        assert!(
            pg(
                &pg_srv.bin,
                "initdb",
                &[
                    "-D",
                    &pg_srv.data(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--no-locale"
                ],
                pg_srv.dir.path()
            ),
            "initdb failed"
        );
        pg_srv.start();
        Some(pg_srv)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        assert!(
            pg(
                &self.bin,
                "pg_ctl",
                &["-D", &self.data(), "-o", &opts, "-w", "-t", "30", "start"],
                self.dir.path()
            ),
            "pg_ctl start failed"
        );
    }

    /// `mode`: `fast` (clients are told) or `immediate` (the processes are killed at once,
    /// as a crash or a pulled cable looks to clients; recovery runs at the next start).
    fn stop(&self, mode: &str) {
        assert!(
            pg(
                &self.bin,
                "pg_ctl",
                &["-D", &self.data(), "-m", mode, "-w", "-t", "30", "stop"],
                self.dir.path()
            ),
            "pg_ctl stop -m {mode} failed"
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ],
            self.dir.path(),
        );
    }
}

/// The switchboard binary on `url`, its spool in a temp folder; killed on drop.
struct Switchboard {
    child: Child,
    sip: SocketAddr,
    spool: PathBuf,
    log: PathBuf,
    work: tempfile::TempDir,
}

impl Switchboard {
    /// `rtp_blocks`: how many 40-port blocks of RTP ports (20 calls each) it gets.
    fn start(url: &str, rtp_blocks: usize) -> Switchboard {
        let work = tempfile::tempdir().expect("work dir");
        let default =
            std::fs::read_to_string(repo_root().join("config/default.toml")).expect("config");
        let spool = work.path().join("spool");
        let cfg: String = default
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("spool_dir") {
                    format!("spool_dir = {:?}", spool.display().to_string())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(work.path().join("config.toml"), cfg).expect("write config");
        let (sip_port, http_port) = (free_port(), free_port());
        let rtp = support::rtp_ports(40 * rtp_blocks as u32);
        let log = work.path().join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(work.path().join("config.toml"))
            .args([
                "--database",
                url,
                "--sip-listen",
                &format!("127.0.0.1:{sip_port}"),
                "--http-listen",
                &format!("127.0.0.1:{http_port}"),
            ])
            .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start server");
        let http = SocketAddr::from(([127, 0, 0, 1], http_port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get_status(http, "/healthz") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "server never healthy\n{}",
                read_lossy(&log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Switchboard {
            child,
            sip: SocketAddr::from(([127, 0, 0, 1], sip_port)),
            spool,
            log,
            work,
        }
    }

    fn log(&self) -> String {
        tail(&read_lossy(&self.log), 80)
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Queries from the test, as another program would make them (a new connection each time,
/// so a restarted server is simply reconnected to).
struct Sql {
    rt: tokio::runtime::Runtime,
    url: String,
}

impl Sql {
    fn new(url: &str) -> Sql {
        Sql {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt"),
            url: url.to_string(),
        }
    }

    fn count(&self, sql: &str) -> Option<i64> {
        self.rt.block_on(async {
            let pool = sqlx::PgPool::connect(&self.url).await.ok()?;
            let n = sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .ok()?
                .try_get::<i64, _>(0)
                .ok();
            pool.close().await;
            n
        })
    }

    /// Rows of text columns (cast them in the query); panics on error.
    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.rt.block_on(async {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
            let rows = sqlx::query(sql).fetch_all(&pool).await.expect(sql);
            pool.close().await;
            rows.iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).expect("text column"))
                        .collect()
                })
                .collect()
        })
    }

    fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
            sqlx::raw_sql(sql).execute(&pool).await.expect(sql);
            pool.close().await;
        })
    }
}

#[test]
fn postgres_outage_during_a_call_loses_nothing_and_duplicates_nothing() {
    let Some(pg_srv) = Pg::init() else { return };
    let url = pg_srv.url();
    let server = Switchboard::start(&url, 1);
    let db = Sql::new(&url);

    // The refund call: 2 at 1.5 s (delayed order), 2 at 9 s (refund).
    let sipp_dir = server.work.path().join("sipp");
    std::fs::create_dir_all(&sipp_dir).expect("sipp dir");
    let call = SippProcess::spawn(
        &Scenario::call_with_digits(&[(1500, '2'), (9000, '2')], 1000, 20_000),
        server.sip,
        &sipp_dir,
        &["-set", "caller", "+15551230001"],
    );
    // Once the caller's ticket has been found (the one read this call needs), take the
    // database away for the rest of the call: the refund choice, the outcome and the end
    // must then travel through the spool.
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.count("SELECT COUNT(*) FROM call_events WHERE kind = 'lookup' AND detail = 'found'")
        != Some(1)
    {
        assert!(Instant::now() < deadline, "ticket lookup never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg_srv.stop("fast");
    let run = call.wait();
    assert_eq!(
        run.code,
        Some(0),
        "the call must complete while the database is down\n{}\n{}",
        run.text,
        server.log()
    );
    assert!(
        server.spool.join("spool.jsonl").exists(),
        "records were spooled\n{}",
        server.log()
    );

    pg_srv.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = db.count("SELECT COUNT(*) FROM call_records WHERE ended_at IS NOT NULL")
            == Some(1)
            && db.count("SELECT COUNT(*) FROM call_outcomes WHERE choice = 'refund'") == Some(1);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spooled records never arrived\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(db.count("SELECT COUNT(*) FROM call_records"), Some(1));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM call_events WHERE kind = 'dtmf'"),
        Some(2),
        "both key presses, once each"
    );
    assert_eq!(db.count("SELECT COUNT(*) FROM refund_requests"), Some(1));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM tickets WHERE order_id = '1001' AND resolution = 'refund'"),
        Some(1)
    );
}

/// How long a lookup may take during the outage before the call moves on: the server's
/// `lookup_timeout_ms` (1000, the default) plus scheduling slack on a loaded 2-core box.
const LOOKUP_PROMPT: Duration = Duration::from_millis(2000);
/// Calls per SIPp process, one every 1.5 s; 12 at a time at most per process.
const CALLS_PER_GROUP: usize = 28;
const OUTAGE: Duration = Duration::from_secs(30);

/// One group of callers: its own tickets, SIPp process and keys.
struct Group {
    name: &'static str,
    phone_prefix: &'static str,
    second_key: char,
    choice: &'static str,
}

const GROUPS: [Group; 2] = [
    Group {
        name: "refund",
        phone_prefix: "+1555910",
        second_key: '2',
        choice: "refund",
    },
    Group {
        name: "wait",
        phone_prefix: "+1555920",
        second_key: '1',
        choice: "wait",
    },
];

/// The Call-IDs of the INVITEs SIPp sent, from its message trace.
fn sipp_call_ids(messages: &Path) -> BTreeSet<String> {
    let text = read_lossy(messages);
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("Call-ID:")
                .or_else(|| l.strip_prefix("Call-Id:"))
        })
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Issue 5, criterion "a fault test that stops PostgreSQL during live SIPp calls for 30 s":
/// two SIPp processes call the hotline from 56 numbers (one call every 1.5 s each, up to ~20
/// at once), each caller with its own delayed ticket, pressing 2 (delayed order, found by
/// calling number) then 2 (refund) or 1 (keep waiting). A few seconds in, PostgreSQL is
/// killed (`pg_ctl stop -m immediate`) for 30 s while calls are in progress and new ones
/// keep starting, then started again. Checked:
/// - SIPp: every call passed (answered, IVR to the end, BYE), 0 failed;
/// - each SIPp Call-ID has exactly one `call_records` row, answered and ended, and no other
///   rows exist;
/// - each call's `call_events` are complete (seq 1..n without a gap), its keys are the ones
///   SIPp sent while it was up, once each, and it has exactly one `lookup` event;
/// - a call whose lookup found its ticket has exactly one outcome with its group's choice, its
///   ticket carries that resolution, and a refund call has one refund request; some of these
///   outcomes were chosen during the outage (so they came through the spool);
/// - a call whose lookup came while the database was down got `lookup` = `unavailable`
///   within `LOOKUP_PROMPT` of its key press and took the dialplan's unavailable path (the
///   agent queue, "agents busy", goodbye): no outcome, and still a normal call;
/// - the spool is replayed and removed, nothing was dead-lettered.
#[test]
fn postgres_killed_for_30_s_during_many_sipp_calls_loses_and_duplicates_nothing() {
    let t_test = Instant::now();
    let Some(pg_srv) = Pg::init() else { return };
    let url = pg_srv.url();
    let server = Switchboard::start(&url, 3);
    let db = Sql::new(&url);

    // The ticket owner's rows: one delayed ticket per caller.
    let mut sql = String::new();
    for g in &GROUPS {
        for i in 0..CALLS_PER_GROUP {
            sql.push_str(&format!(
                "INSERT INTO tickets (order_id, customer_name, phone, status, delay_days, new_eta) \
                 VALUES ('{}{i:02}', 'Caller {i}', '{}{i:04}', 'delayed', 3, DATE '2027-01-10');\n",
                if g.name == "refund" { "71" } else { "72" },
                g.phone_prefix
            ));
        }
    }
    db.exec(&sql);

    let mut sipps = Vec::new();
    for g in &GROUPS {
        let dir = server.work.path().join(format!("sipp-{}", g.name));
        std::fs::create_dir_all(&dir).expect("sipp dir");
        let scenario =
            Scenario::call_with_digits(&[(1500, '2'), (9000, g.second_key)], 1000, 20_000);
        let file = render_scenario(&scenario, &dir);
        // One caller per call: From/Contact user from the injection file.
        let xml = std::fs::read_to_string(&file)
            .expect("scenario")
            .replace("[$caller]", "[field0]")
            .replace("<Global variables=\"caller\"/>", "");
        std::fs::write(&file, xml).expect("scenario");
        let mut csv = String::from("SEQUENTIAL\n");
        for i in 0..CALLS_PER_GROUP {
            csv.push_str(&format!("{}{i:04};\n", g.phone_prefix));
        }
        std::fs::write(dir.join("callers.csv"), csv).expect("csv");
        let port = free_port().to_string();
        let media = sipp_media_port().to_string();
        let total = CALLS_PER_GROUP.to_string();
        let errors = dir.join("errors.log").display().to_string();
        let messages = dir.join("calls.msg").display().to_string();
        let inf = dir.join("callers.csv").display().to_string();
        sipps.push(SippProcess::spawn_file(
            &file,
            server.sip,
            &dir,
            &[
                "-i",
                "127.0.0.1",
                "-p",
                &port,
                "-mp",
                &media,
                "-inf",
                &inf,
                "-m",
                &total,
                "-l",
                "12",
                "-r",
                "1",
                "-rp",
                "1500",
                "-nostdin",
                "-timeout",
                "80s",
                "-timeout_error",
                "-trace_err",
                "-error_file",
                &errors,
                "-trace_msg",
                "-message_file",
                &messages,
                "-s",
                "hotline",
            ],
            Duration::from_secs(80),
        ));
    }

    // Take the database away once a few calls have found their tickets (their choices,
    // outcomes and ends then travel through the spool) and more calls keep coming.
    let deadline = Instant::now() + Duration::from_secs(20);
    while db
        .count("SELECT COUNT(*) FROM call_events WHERE kind = 'lookup' AND detail = 'found'")
        .unwrap_or(0)
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "no ticket lookups within 20 s\n{}\n{}",
            ["refund", "wait"]
                .iter()
                .map(|g| {
                    let d = server.work.path().join(format!("sipp-{g}"));
                    format!(
                        "{}{}{}",
                        read_lossy(&d.join("stderr.log")),
                        read_lossy(&d.join("errors.log")),
                        tail(&read_lossy(&d.join("stdout.log")), 30)
                    )
                })
                .collect::<String>(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_at = switchboard::store::now_ts();
    let t_stop = Instant::now();
    pg_srv.stop("immediate");
    let mut spooled_seen = false;
    while t_stop.elapsed() < OUTAGE {
        spooled_seen |= server.spool.join("spool.jsonl").exists();
        std::thread::sleep(Duration::from_millis(200));
    }
    pg_srv.start();
    let restarted_at = switchboard::store::now_ts();
    assert!(
        spooled_seen,
        "records were spooled during the outage\n{}",
        server.log()
    );

    let runs: Vec<_> = sipps.into_iter().map(|s| s.wait()).collect();
    let mut sipp_ids: BTreeMap<String, &Group> = BTreeMap::new();
    for (g, run) in GROUPS.iter().zip(&runs) {
        let text: String = run.text.lines().take(200).collect::<Vec<_>>().join("\n");
        assert_eq!(
            run.code,
            Some(0),
            "SIPp group {}: every call must pass, also during the outage\n{text}\n{}",
            g.name,
            server.log()
        );
        let dir = server.work.path().join(format!("sipp-{}", g.name));
        let ids = sipp_call_ids(&dir.join("calls.msg"));
        assert_eq!(
            ids.len(),
            CALLS_PER_GROUP,
            "SIPp group {} made {CALLS_PER_GROUP} calls: {ids:?}",
            g.name
        );
        for id in ids {
            sipp_ids.insert(id, g);
        }
    }
    let total = sipp_ids.len() as i64;

    // Everything arrives once the spool is replayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count("SELECT COUNT(*) FROM call_records WHERE ended_at IS NOT NULL") != Some(total)
        || server.spool.join("spool.jsonl").exists()
    {
        assert!(
            Instant::now() < deadline,
            "the calls' records never all arrived: {:?} of {total} ended\n{}",
            db.count("SELECT COUNT(*) FROM call_records WHERE ended_at IS NOT NULL"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // One more writer round-trip: nothing straggles in after the count matched.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(db.count("SELECT COUNT(*) FROM call_records"), Some(total));
    // The reports' per-15-minute totals (ADR 0009), kept by triggers while the spool
    // replayed the outage's rows late: the same as the raw rows grouped.
    assert_eq!(
        db.count(
            "SELECT COUNT(*) FROM (SELECT CAST(FLOOR(EXTRACT(EPOCH FROM started_at) / 900) AS BIGINT) * 900 AS bucket, \
             direction, COALESCE(disposition, 'in_progress') AS disposition, COUNT(*) AS calls, \
             SUM(CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END) AS answered, \
             SUM(CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL \
                 THEN CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT) ELSE 0 END) AS talk_s \
             FROM call_records GROUP BY 1, 2, 3) r \
             FULL JOIN (SELECT * FROM report_call_totals WHERE calls <> 0) t USING (bucket, direction, disposition) \
             WHERE r.calls IS DISTINCT FROM t.calls OR r.answered IS DISTINCT FROM t.answered \
             OR r.talk_s IS DISTINCT FROM t.talk_s"
        ),
        Some(0),
        "report_call_totals differ from call_records"
    );
    assert_eq!(
        db.count("SELECT CAST(SUM(calls) AS BIGINT) FROM report_call_totals"),
        Some(total)
    );

    let records = db.rows(
        "SELECT sip_call_id, id, caller, CAST(answered_at IS NOT NULL AS TEXT), disposition, hangup_cause, \
         CAST(ticket_id AS TEXT) FROM call_records",
    );
    let mut by_sip: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for r in records {
        let sip = r[0].clone().expect("sip_call_id");
        assert!(
            by_sip.insert(sip.clone(), r).is_none(),
            "two records for {sip}"
        );
    }
    assert_eq!(
        by_sip.keys().cloned().collect::<BTreeSet<_>>(),
        sipp_ids.keys().cloned().collect::<BTreeSet<_>>(),
        "one record per SIPp call, no other"
    );

    let events = db.rows(
        "SELECT call_id, CAST(seq AS TEXT), kind, detail, \
         CAST(EXTRACT(EPOCH FROM at) * 1000 AS BIGINT)::TEXT FROM call_events ORDER BY call_id, seq",
    );
    let mut ev: BTreeMap<String, Vec<(i64, String, String, i64)>> = BTreeMap::new();
    for e in events {
        let f = |i: usize| e[i].clone().unwrap_or_default();
        ev.entry(f(0)).or_default().push((
            f(1).parse().expect("seq"),
            f(2),
            f(3),
            f(4).parse().expect("ms"),
        ));
    }
    let outcomes: BTreeMap<String, (String, String)> = db
        .rows(&format!(
            "SELECT call_id, choice, CAST(at >= CAST('{stopped_at}' AS TIMESTAMPTZ) \
             AND at < CAST('{restarted_at}' AS TIMESTAMPTZ) AS TEXT) FROM call_outcomes"
        ))
        .into_iter()
        .map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                (
                    r[1].clone().unwrap_or_default(),
                    r[2].clone().unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert_eq!(
        db.count("SELECT COUNT(*) - COUNT(DISTINCT call_id) FROM call_outcomes"),
        Some(0)
    );

    let (mut found, mut unavailable, mut chosen_in_outage, mut slowest) = (0, 0, 0, 0i64);
    for (sip, g) in &sipp_ids {
        let r = &by_sip[sip];
        let id = r[1].clone().expect("id");
        let caller = r[2].clone().unwrap_or_default();
        assert!(caller.starts_with(g.phone_prefix), "{sip}: caller {caller}");
        assert_eq!(r[3].as_deref(), Some("true"), "{sip} answered: {r:?}");
        assert_eq!(r[4].as_deref(), Some("answered"), "{sip}: {r:?}");
        assert_eq!(
            r[5].as_deref(),
            Some("dialplan_hangup"),
            "{sip}: the IVR ran to its end: {r:?}"
        );
        let mut e = ev.get(&id).cloned().unwrap_or_default();
        e.sort_by_key(|x| x.0);
        let seqs: Vec<i64> = e.iter().map(|x| x.0).collect();
        assert_eq!(
            seqs,
            (1..=e.len() as i64).collect::<Vec<_>>(),
            "{sip}: every event once, none lost: {e:?}"
        );
        let keys: Vec<&str> = e
            .iter()
            .filter(|x| x.1 == "dtmf")
            .map(|x| x.2.as_str())
            .collect();
        let sent = ["2".to_string(), g.second_key.to_string()];
        assert!(
            !keys.is_empty() && keys.len() <= 2 && keys.iter().zip(&sent).all(|(a, b)| a == b),
            "{sip}: keys {keys:?}, SIPp sent {sent:?}"
        );
        let lookups: Vec<_> = e.iter().filter(|x| x.1 == "lookup").collect();
        assert_eq!(lookups.len(), 1, "{sip}: one lookup: {e:?}");
        let outcome = outcomes.get(&id);
        match lookups[0].2.as_str() {
            "found" => {
                found += 1;
                assert_eq!(keys, sent, "{sip}: both keys, once each");
                let (choice, in_outage) = outcome.unwrap_or_else(|| panic!("{sip}: no outcome"));
                assert_eq!(choice, g.choice, "{sip}");
                if in_outage == "true" {
                    chosen_in_outage += 1;
                }
                let resolution = db.rows(&format!(
                    "SELECT resolution FROM tickets WHERE phone = '{caller}'"
                ));
                assert_eq!(
                    resolution,
                    vec![vec![Some(g.choice.to_string())]],
                    "{sip}: the ticket carries the choice"
                );
                assert_eq!(
                    r[6].as_deref().map(|t| !t.is_empty()),
                    Some(true),
                    "{sip}: linked to its ticket"
                );
            }
            "unavailable" => {
                unavailable += 1;
                assert!(outcome.is_none(), "{sip}: no outcome without a ticket");
                // The lookup starts on the key press that chose it.
                let press = e
                    .iter()
                    .filter(|x| x.1 == "dtmf" && x.0 < lookups[0].0)
                    .map(|x| x.3)
                    .next_back()
                    .unwrap_or_else(|| panic!("{sip}: no key before the lookup: {e:?}"));
                let waited = lookups[0].3 - press;
                slowest = slowest.max(waited);
                assert!(
                    waited <= LOOKUP_PROMPT.as_millis() as i64,
                    "{sip}: the lookup held the call {waited} ms: {e:?}"
                );
                assert!(
                    e.iter().any(|x| x.1 == "enqueue" && x.2 == "support"),
                    "{sip}: the unavailable path (an agent) was taken: {e:?}"
                );
            }
            other => panic!("{sip}: lookup {other}"),
        }
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM refund_requests"),
        Some(
            sipp_ids
                .iter()
                .filter(|(sip, g)| {
                    g.choice == "refund"
                        && outcomes.contains_key(by_sip[*sip][1].as_deref().unwrap_or(""))
                })
                .count() as i64
        ),
        "one refund request per refund call"
    );
    assert!(
        found >= 6,
        "calls found their tickets before and after the outage: {found}"
    );
    assert!(
        unavailable >= 10,
        "calls made their lookup during the outage: {unavailable}"
    );
    assert!(
        chosen_in_outage >= 2,
        "some outcomes were chosen during the outage (spooled): {chosen_in_outage}"
    );
    assert!(
        !server.spool.join("spool.dead.jsonl").exists(),
        "nothing dead-lettered"
    );
    eprintln!(
        "pg_outage: {total} calls, {found} found their ticket ({chosen_in_outage} chose during the outage), \
         {unavailable} looked up during the outage (slowest {slowest} ms to the unavailable path); {:.1} s",
        t_test.elapsed().as_secs_f64()
    );
}

/// One REGISTER over UDP from `sock`, with `auth` when given; the answer, or "" on timeout.
fn register_udp(
    sock: &std::net::UdpSocket,
    server: SocketAddr,
    user: &str,
    cseq: u32,
    auth: Option<&str>,
) -> String {
    let local = sock.local_addr().expect("addr");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKpg{cseq}\r\n\
         From: <sip:{user}@{server}>;tag=p1\r\nTo: <sip:{user}@{server}>\r\nCall-ID: reg-pg-{user}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\nExpires: 600\r\n{auth}\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), server).expect("send");
    let mut buf = [0u8; 4096];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Issue 15, "the registrar answers REGISTER from an in-memory credential cache and writes
/// bindings off the request path": with PostgreSQL stopped, an agent's phone still registers
/// (401, then 200 within a short bound: no query is awaited), and once PostgreSQL is back its
/// binding is in the `registrations` table (written through the record writer's spool).
#[test]
fn a_phone_registers_while_postgres_is_down_and_its_binding_arrives_after() {
    let Some(pg_srv) = Pg::init() else { return };
    let url = pg_srv.url();
    // The account exists before the server starts: its credential cache is loaded at start.
    let (st, out, err) = support::run_binary(
        &[
            "agent",
            "add",
            "pgphone",
            "--password",
            "pw-pg",
            "--queue",
            "support",
            "--database",
            &url,
        ],
        Duration::from_secs(20),
    );
    assert!(st.success(), "agent add failed: {out}{err}");
    let server = Switchboard::start(&url, 1);
    let db = Sql::new(&url);
    pg_srv.stop("immediate");

    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let t = Instant::now();
    let challenge = register_udp(&sock, server.sip, "pgphone", 1, None);
    assert!(
        challenge.starts_with("SIP/2.0 401"),
        "{challenge:?}\n{}",
        server.log()
    );
    let www = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
        .expect("MD5 challenge")
        .trim_start_matches("WWW-Authenticate:")
        .trim()
        .to_string();
    let ch = switchboard::sip::auth::parse_challenge(&www).expect("challenge parses");
    let creds = switchboard::sip::auth::answer_challenge(
        &ch,
        "REGISTER",
        &format!("sip:{}", server.sip),
        "pgphone",
        "pw-pg",
        "c0ffee",
        1,
    );
    let answer = register_udp(&sock, server.sip, "pgphone", 2, Some(&creds));
    let took = t.elapsed();
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "the phone registers while PostgreSQL is down: {answer:?}\n{}",
        server.log()
    );
    assert!(
        took < Duration::from_secs(1),
        "both round trips answered at once, not after a database timeout: {took:?}"
    );
    let contact = format!("sip:pgphone@{}", sock.local_addr().expect("addr"));
    assert!(answer.contains(&contact), "{answer}");

    pg_srv.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = format!(
        "SELECT COUNT(*) FROM registrations WHERE aor = 'pgphone' AND contact = '{contact}' \
         AND expires_at > now()"
    );
    while db.count(&query) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "the binding never reached the database after the outage\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
