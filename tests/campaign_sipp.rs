//! Outbound campaigns end to end: the real `switchboard` binary dials a SIPp "customer farm"
//! (`sip-test/uas_farm.xml`, ONE SIPp UAS) that plays the carrier trunk. The last digit of
//! each customer's number picks what the customer does:
//! 1 answers and presses 1 (keep waiting), 2 presses 2 (refund), 3 presses 0 (agent, which
//! becomes a callback since no queue is served yet), 4 rings until the server CANCELs,
//! 5 answers 486 Busy Here, 6 is a "machine" (answers, sends RTP silence, never presses),
//! 7 presses 1 only after 6 s.
//!
//! What is checked, from the database and from SIPp's own message trace (not from the
//! server's word): every contact's end state, attempts and outcome rows; retries of busy and
//! no-answer numbers; the campaign's channel and calls-per-second caps; call records; the
//! API's validation answers; and a SIGTERM + restart in the middle of a campaign.
//!
//! Two tests reproduced server bugs (a CANCEL storm after ring timeout, shutdown cutting a call
//! reported as no choice); both are fixed and the tests run normally.
//!
//! Needs SIPp (`$SWITCHBOARD_SIPP`, else `sipp` on PATH; absent = failure), python3 (pcap
//! generator) and root (SIPp's `play_pcap_audio` uses a raw socket). About 2 minutes.
//! Run: `cargo test --test campaign_sipp -- --test-threads=1`; `SWITCHBOARD_TEST_KEEP=1`
//! keeps each test's folder (config, database, server logs, the farm's SIPp traces).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Timelike;

mod support;

use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};
use support::{free_port, is_root, read_lossy, repo_root, sipp, tail, wait_child};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const TOKEN: &str = "campaign-sipp-test-token-7f3a9c";
/// The campaign caps the big run checks.
const MAX_CHANNELS: usize = 4;
const MAX_CPS: usize = 2;
/// Slack for the per-second check: SIPp timestamps a datagram when it reads it, a few ms
/// after the server's pacer let the dial go. Two dials exactly 1.000 s apart (allowed) may
/// look 0.998 s apart in the trace, so a "1-second window" is 1 s minus this.
const CPS_SLACK: Duration = Duration::from_millis(50);

/// A temp dir for one test; kept (and named on stderr) when SWITCHBOARD_TEST_KEEP is set.
fn test_dir(prefix: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("SWITCHBOARD_TEST_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(keep)
        .tempdir()
        .expect("temp dir");
    if keep {
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

// ---- ports ---------------------------------------------------------------------------------

static NEXT_BLOCK: AtomicU32 = AtomicU32::new(0);

fn udp_free(port: u16) -> bool {
    UdpSocket::bind((LOCALHOST, port)).is_ok()
}

/// A block of `size` UDP ports below the ephemeral range, all free now; distinct per call
/// in this process (the pid spreads parallel test binaries apart).
fn port_block(base: u32, span: u32, size: u32) -> u16 {
    let slots = span / size;
    for _ in 0..slots {
        let n = (NEXT_BLOCK.fetch_add(1, Ordering::Relaxed) + std::process::id() * 7) % slots;
        let lo = base + n * size;
        if (lo..lo + size).all(|p| udp_free(p as u16)) {
            return lo as u16;
        }
    }
    panic!(
        "no free block of {size} UDP ports in {base}..{}",
        base + span
    );
}

// ---- small process / file helpers ------------------------------------------------------------

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed: {st}");
}

fn make_pcap(dir: &Path, name: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg(repo_root().join("sip-test/make_dtmf_pcap.py"))
        .args(args)
        .arg("-o")
        .arg(dir.join(name))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 make_dtmf_pcap.py: {e} (python3 is required)"));
    assert!(
        out.status.success(),
        "make_dtmf_pcap.py {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- HTTP ----------------------------------------------------------------------------------

/// One HTTP/1.1 request (Connection: close); returns the status and the JSON body (Null
/// when the body is empty or not JSON).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        let _ = write!(req, "Authorization: Bearer {t}\r\n");
    }
    if body.is_some() {
        let _ = write!(
            req,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
    } else {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP status in {text:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked { dechunk(body) } else { body.into() };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

// ---- database ------------------------------------------------------------------------------

type DbRow = BTreeMap<String, Value>;

/// Direct SQL on the server's SQLite file, as the ticket system would do.
struct Db {
    rt: tokio::runtime::Runtime,
    pool: SqlitePool,
}

impl Db {
    fn open(path: &Path) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10));
        let pool = rt
            .block_on(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts),
            )
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Db { rt, pool }
    }

    fn to_map(row: &SqliteRow) -> DbRow {
        let mut m = BTreeMap::new();
        for (i, col) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i).expect("column");
            let v = if raw.is_null() {
                Value::Null
            } else {
                match raw.type_info().name() {
                    "INTEGER" => Value::from(row.try_get::<i64, _>(i).expect("integer")),
                    "REAL" => Value::from(row.try_get::<f64, _>(i).expect("real")),
                    _ => Value::from(row.try_get::<String, _>(i).unwrap_or_default()),
                }
            };
            m.insert(col.name().to_string(), v);
        }
        m
    }

    fn rows(&self, sql: &str) -> Vec<DbRow> {
        let rows = self
            .rt
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(Self::to_map).collect()
    }

    fn count(&self, sql: &str) -> i64 {
        let r = self.rows(sql);
        r.first()
            .and_then(|r| r.values().next())
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{sql}: no count"))
    }

    fn insert_ticket(&self, t: &Ticket) -> i64 {
        let sql = "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                   status, delay_days, new_eta) VALUES ($1, $2, $3, 'en', 'standard', $4, 'delayed', $5, $6)";
        let done = self
            .rt
            .block_on(
                sqlx::query(sql)
                    .bind(&t.order_id)
                    .bind(format!("Customer {}", t.order_id))
                    .bind(&t.phone)
                    .bind(&t.timezone)
                    .bind(t.delay_days)
                    .bind("2026-12-24")
                    .execute(&self.pool),
            )
            .unwrap_or_else(|e| panic!("insert ticket {t:?}: {e}"));
        done.last_insert_rowid()
    }

    /// The campaign tables, for failure messages.
    fn dump(&self, campaign: i64) -> String {
        let mut s = String::from("---- database ----\n");
        for (t, q) in [
            ("campaign_contacts", format!("SELECT id, ticket_id, phone, state, attempts, last_disposition, outcome, next_attempt_at FROM campaign_contacts WHERE campaign_id = {campaign} ORDER BY id")),
            ("campaign_attempts", format!("SELECT a.contact_id, a.attempt, a.phone, a.disposition, a.started_at, a.ended_at FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = {campaign} ORDER BY a.contact_id, a.attempt")),
            ("call_outcomes", "SELECT ticket_id, choice, call_id FROM call_outcomes ORDER BY id".to_string()),
            ("call_records", format!("SELECT id, caller, ticket_id, campaign_id, direction, disposition, hangup_cause, sip_status FROM call_records WHERE campaign_id = {campaign} ORDER BY started_at")),
        ] {
            let _ = writeln!(s, "{t}:");
            for r in self.rows(&q) {
                let _ = writeln!(s, "  {}", serde_json::to_string(&r).unwrap_or_default());
            }
        }
        s
    }
}

// ---- the customers -------------------------------------------------------------------------

/// What the farm does for a number ending in this digit (see sip-test/uas_farm.xml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Behaviour {
    Press1,
    Press2,
    Press0,
    Ring,
    Busy,
    Machine,
    SlowPress1,
}

impl Behaviour {
    fn digit(self) -> u8 {
        match self {
            Behaviour::Press1 => 1,
            Behaviour::Press2 => 2,
            Behaviour::Press0 => 3,
            Behaviour::Ring => 4,
            Behaviour::Busy => 5,
            Behaviour::Machine => 6,
            Behaviour::SlowPress1 => 7,
        }
    }

    /// (outcome choice, ticket resolution) of an answered call.
    fn choice(self) -> Option<(&'static str, Option<&'static str>)> {
        match self {
            Behaviour::Press1 | Behaviour::SlowPress1 => Some(("wait", Some("wait"))),
            Behaviour::Press2 => Some(("refund", Some("refund"))),
            Behaviour::Press0 => Some(("callback", None)),
            Behaviour::Machine => Some(("no_choice", None)),
            Behaviour::Ring | Behaviour::Busy => None,
        }
    }

    /// Disposition of every attempt of an unanswered number.
    fn failure(self) -> Option<&'static str> {
        match self {
            Behaviour::Ring => Some("no_answer"),
            Behaviour::Busy => Some("busy"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Ticket {
    order_id: String,
    phone: String,
    timezone: String,
    delay_days: i64,
    behaviour: Behaviour,
}

/// A zone in which the campaign window 00:00-23:59 is open now and for the next hour or two:
/// UTC, except around UTC midnight, where America/Chicago is mid-evening.
fn open_zone() -> &'static str {
    let h = chrono::Utc::now().hour();
    if (1..=21).contains(&h) {
        "UTC"
    } else {
        "America/Chicago"
    }
}

/// Tickets numbered `+1555010` + 3-digit index + behaviour digit (unique numbers, so the
/// 30-day cap per number never mixes customers).
fn tickets(series: u32, plan: &[Behaviour]) -> Vec<Ticket> {
    plan.iter()
        .enumerate()
        .map(|(i, b)| Ticket {
            order_id: format!("{series}{i:03}"),
            phone: format!("+1555010{:03}{}", series as usize * 100 + i, b.digit()),
            timezone: open_zone().to_string(),
            delay_days: 2 + (i as i64 % 3),
            behaviour: *b,
        })
        .collect()
}

// ---- the customer farm (SIPp UAS) ----------------------------------------------------------

/// The farm: one SIPp UAS for every customer; SIGTERM on drop.
struct Farm {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Farm {
    fn start(dir: &Path) -> Farm {
        let sipp = sipp();
        assert!(
            is_root(),
            "the farm's play_pcap_audio needs root (raw socket): run the SIP tests as root"
        );
        std::fs::create_dir_all(dir).expect("farm dir");
        make_pcap(
            dir,
            "farm_press1.pcap",
            &["--script", "2000:1", "--tail-ms", "40000"],
        );
        make_pcap(
            dir,
            "farm_press2.pcap",
            &["--script", "2000:2", "--tail-ms", "40000"],
        );
        make_pcap(
            dir,
            "farm_press0.pcap",
            &["--script", "2000:0", "--tail-ms", "40000"],
        );
        make_pcap(
            dir,
            "farm_slow1.pcap",
            &["--script", "6000:1", "--tail-ms", "40000"],
        );
        make_pcap(dir, "farm_silence.pcap", &["--lead-ms", "90000"]);
        let template = std::fs::read_to_string(repo_root().join("sip-test/uas_farm.xml"))
            .expect("read sip-test/uas_farm.xml");
        let scenario = dir.join("uas_farm.xml");
        std::fs::write(
            &scenario,
            template.replace("@PCAP_DIR@", &dir.display().to_string()),
        )
        .expect("write farm scenario");
        let port = free_port();
        let media = port_block(22_000, 8_000, 4);
        let args: Vec<String> = vec![
            "-sf".into(),
            scenario.display().to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            media.to_string(),
            "-nostdin".into(),
            "-aa".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            dir.join("messages.log").display().to_string(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.join("errors.log").display().to_string(),
            // A stop-gap: the test ends the farm long before.
            "-timeout".into(),
            "600s".into(),
        ];
        let child = Command::new(&sipp)
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("farm stdout"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("farm stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sipp.display()));
        let mut farm = Farm {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
        };
        // Ready when SIPp holds its SIP port (and is still running).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = farm.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "the farm (SIPp) exited at start with {st}\n{}",
                        farm.output()
                    );
                }
            }
            if !udp_free(port) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the farm did not bind 127.0.0.1:{port} within 10 s\n{}",
                farm.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        farm
    }

    fn output(&self) -> String {
        let mut s = String::new();
        for f in ["stdout.log", "stderr.log", "errors.log"] {
            let _ = writeln!(
                s,
                "---- farm {f} ----\n{}",
                tail(&read_lossy(&self.dir.join(f)), 40)
            );
        }
        s
    }

    /// Stop SIPp (SIGTERM: it writes its final statistics) and return the trace.
    fn stop(&mut self) -> Trace {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            if wait_child(&mut c, Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        Trace::parse(&read_lossy(&self.dir.join("messages.log")))
    }

    /// Calls SIPp counted as failed (unexpected message, timeout), from its final screen.
    fn failed_calls(&self) -> Option<u64> {
        let out = read_lossy(&self.dir.join("stdout.log"));
        let line = out.lines().rev().find(|l| l.contains("Failed call"))?;
        line.split('|')
            .nth(2)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One SIP message in SIPp's `-trace_msg` file.
#[derive(Debug, Clone)]
struct TraceMsg {
    /// Seconds, as SIPp stamped the message (its local wall clock).
    t: f64,
    received: bool,
    start_line: String,
    call_id: String,
    cseq: String,
}

impl TraceMsg {
    fn is_request(&self, method: &str) -> bool {
        self.start_line.starts_with(&format!("{method} "))
    }

    fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Request-URI user of a request (`INVITE sip:+1555...@host SIP/2.0`).
    fn ruri_user(&self) -> Option<&str> {
        let uri = self.start_line.split_whitespace().nth(1)?;
        let uri = uri.strip_prefix("sip:")?;
        uri.split('@').next()
    }
}

/// One outbound call as the farm saw it.
#[derive(Debug, Clone)]
struct FarmCall {
    number: String,
    /// First INVITE received.
    start: f64,
    /// When the server's channel was free again as far as the farm can tell: the server's
    /// BYE received, or our 486 / 487 / 404 sent. None: never ended.
    end: Option<f64>,
    /// Distinct (Call-ID, CSeq) INVITE transactions (retransmissions excluded).
    invites: usize,
    /// CANCEL requests received (one transaction: more are repeats).
    cancels: usize,
}

struct Trace {
    msgs: Vec<TraceMsg>,
}

impl Trace {
    fn parse(text: &str) -> Trace {
        const SEP: &str = "----------------------------------------------- ";
        let mut msgs = Vec::new();
        let mut blocks = text.split(SEP).skip(1);
        for block in blocks.by_ref() {
            let mut lines = block.lines();
            let Some(stamp) = lines.next() else { continue };
            // "2026-11-23 16:49:51.956036" (local time; only differences matter)
            let Some(t) =
                chrono::NaiveDateTime::parse_from_str(stamp.trim(), "%Y-%m-%d %H:%M:%S%.f")
                    .ok()
                    .map(|d| d.and_utc().timestamp_micros() as f64 / 1e6)
            else {
                continue;
            };
            let Some(kind) = lines.next() else { continue };
            let received = kind.contains("received");
            let mut start_line = String::new();
            let mut call_id = String::new();
            let mut cseq = String::new();
            for l in lines {
                let l = l.trim_end_matches('\r');
                if start_line.is_empty() {
                    if !l.trim().is_empty() {
                        start_line = l.trim().to_string();
                    }
                    continue;
                }
                if l.is_empty() {
                    break; // end of headers
                }
                if let Some((name, value)) = l.split_once(':') {
                    let name = name.trim().to_ascii_lowercase();
                    if name == "call-id" || name == "i" {
                        call_id = value.trim().to_string();
                    } else if name == "cseq" {
                        cseq = value.trim().to_string();
                    }
                }
            }
            if !start_line.is_empty() && !call_id.is_empty() {
                msgs.push(TraceMsg {
                    t,
                    received,
                    start_line,
                    call_id,
                    cseq,
                });
            }
        }
        Trace { msgs }
    }

    fn calls(&self) -> Vec<FarmCall> {
        let mut calls: BTreeMap<String, FarmCall> = BTreeMap::new();
        let mut transactions: HashMap<String, HashSet<String>> = HashMap::new();
        for m in &self.msgs {
            if m.received && m.is_request("INVITE") {
                transactions
                    .entry(m.call_id.clone())
                    .or_default()
                    .insert(m.cseq.clone());
                calls.entry(m.call_id.clone()).or_insert_with(|| FarmCall {
                    number: m.ruri_user().unwrap_or("").to_string(),
                    start: m.t,
                    end: None,
                    invites: 0,
                    cancels: 0,
                });
                continue;
            }
            let Some(c) = calls.get_mut(&m.call_id) else {
                continue;
            };
            if m.received && m.is_request("CANCEL") {
                c.cancels += 1;
            }
            let ends = (m.received && m.is_request("BYE"))
                || (!m.received && matches!(m.status(), Some(486 | 487 | 404)));
            if ends && c.end.is_none() {
                c.end = Some(m.t);
            }
        }
        let mut out: Vec<FarmCall> = calls
            .into_iter()
            .map(|(id, mut c)| {
                c.invites = transactions.get(&id).map_or(0, HashSet::len);
                c
            })
            .collect();
        out.sort_by(|a, b| a.start.total_cmp(&b.start));
        out
    }
}

/// Most calls in progress at once (an end at the same instant as a start frees first).
fn max_concurrent(calls: &[FarmCall]) -> usize {
    let mut events: Vec<(f64, i32)> = Vec::new();
    for c in calls {
        events.push((c.start, 1));
        events.push((c.end.unwrap_or(f64::INFINITY), -1));
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Most new calls within any half-open window `[t, t + width)`.
fn max_in_window(calls: &[FarmCall], width: Duration) -> usize {
    let starts: Vec<f64> = calls.iter().map(|c| c.start).collect();
    let w = width.as_secs_f64();
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|&&t| t < starts[i] + w)
                .count()
        })
        .max()
        .unwrap_or(0)
}

// ---- the server under test -----------------------------------------------------------------

/// Ports, paths and config of one server; `start` may be called again (restart).
struct ServerSetup {
    config: PathBuf,
    db_path: PathBuf,
    sip: SocketAddr,
    http: SocketAddr,
    rtp: (u16, u16),
    dir: PathBuf,
}

impl ServerSetup {
    /// `config/default.toml` with the spool in `dir`, no demo data, plus the trunk.
    fn new(dir: &Path, farm_port: u16) -> ServerSetup {
        let default = std::fs::read_to_string(repo_root().join("config/default.toml"))
            .expect("read config/default.toml");
        let spool = dir.join("spool");
        let mut text = String::new();
        for l in default.lines() {
            let key = l.trim_start();
            if key.starts_with("spool_dir") {
                let _ = writeln!(text, "spool_dir = {:?}", spool.display().to_string());
            } else if key.starts_with("demo_data") {
                text.push_str("demo_data = false\n");
            } else {
                text.push_str(l);
                text.push('\n');
            }
        }
        let _ = write!(
            text,
            "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{farm_port}\"\ntransport = \"udp\"\n\
             inbound_cidrs = [\"127.0.0.1/32\"]\nmax_channels = 8\nmax_cps = 5\n"
        );
        let config = dir.join("config.toml");
        std::fs::write(&config, text).expect("write test config");
        let lo = port_block(12_000, 8_000, 40);
        ServerSetup {
            config,
            db_path: dir.join("switchboard.db"),
            sip: SocketAddr::from((LOCALHOST, free_port())),
            http: SocketAddr::from((LOCALHOST, free_port())),
            rtp: (lo, lo + 39),
            dir: dir.to_path_buf(),
        }
    }

    fn start(&self, generation: u32) -> Server {
        let stdout = self.dir.join(format!("server{generation}.stdout"));
        let stderr = self.dir.join(format!("server{generation}.stderr"));
        let args: Vec<String> = vec![
            "run".into(),
            "--config".into(),
            self.config.display().to_string(),
            "--database".into(),
            format!("sqlite://{}", self.db_path.display()),
            "--sip-listen".into(),
            self.sip.to_string(),
            "--http-listen".into(),
            self.http.to_string(),
            "--rtp-ports".into(),
            format!("{}-{}", self.rtp.0, self.rtp.1),
            "--api-token".into(),
            TOKEN.into(),
            "--no-demo-data".into(),
        ];
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(&args)
            .current_dir(repo_root())
            .env(
                "RUST_LOG",
                std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("server stdout"))
            .stderr(std::fs::File::create(&stderr).expect("server stderr"))
            .spawn()
            .expect("spawn the switchboard binary");
        let mut server = Server {
            child: Some(child),
            http: self.http,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    server.child = None;
                    panic!("server exited during start with {st}\n{}", server.log());
                }
            }
            if health(self.http) == Some(200) {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "GET /healthz not 200 within 20 s\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn health(addr: SocketAddr) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The running binary; killed on drop (the log is printed when the test failed).
struct Server {
    child: Option<Child>,
    http: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    fn log(&self) -> String {
        format!(
            "---- server stdout ----\n{}\n---- server stderr ----\n{}",
            read_lossy(&self.stdout),
            tail(&read_lossy(&self.stderr), 150)
        )
    }

    fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(self.http, method, path, Some(TOKEN), body)
    }

    /// SIGTERM and wait for the exit.
    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("server is running");
        signal(c.id(), "TERM");
        match wait_child(&mut c, timeout) {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "server still running {timeout:?} after SIGTERM\n{}",
                    self.log()
                );
            }
        }
    }

    /// Create a campaign (201 expected) and return its id.
    fn create_campaign(&self, spec: &Value) -> i64 {
        let (code, body) = self.api("POST", "/api/campaigns", Some(spec));
        assert_eq!(code, 201, "POST /api/campaigns: {body}\n{}", self.log());
        body["id"].as_i64().expect("campaign id")
    }

    /// Start a campaign; returns the state in the answer (`running`, or already
    /// `completed` when it had nothing to dial).
    fn start_campaign(&self, id: i64) -> String {
        let (code, body) = self.api("POST", &format!("/api/campaigns/{id}/start"), None);
        assert_eq!(code, 200, "start campaign {id}: {body}");
        text(&body["state"]).to_string()
    }

    /// Poll `GET /api/campaigns/{id}` until its state is `state`; returns the last answer.
    fn wait_state(&self, id: i64, state: &str, timeout: Duration, db: &Db) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.api("GET", &format!("/api/campaigns/{id}"), None);
            assert_eq!(code, 200, "GET campaign {id}: {body}");
            if body["state"] == state {
                return body;
            }
            if Instant::now() >= deadline {
                panic!(
                    "campaign {id} not {state} within {timeout:?}; last answer {body}\n{}\n{}",
                    db.dump(id),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("==== server log (test failed) ====\n{}", self.log());
        }
    }
}

fn campaign_spec(name: &str, channels: usize, cps: usize) -> Value {
    json!({
        "name": name,
        "dialplan": "delay-notify",
        "trunk": "carrier",
        "caller_id": "+15550100",
        "tickets": {"status": "delayed"},
        "max_channels": channels,
        "max_cps": cps,
        "ring_timeout_s": 15,
        "window": {"start": "00:00", "end": "23:59"},
        "retry": {
            "busy": {"after_s": 2, "max_attempts": 2},
            "no_answer": {"after_s": 2, "max_attempts": 2},
            "failed": {"after_s": 2, "max_attempts": 2},
            "machine": {"after_s": 2, "max_attempts": 2}
        }
    })
}

/// The store writer batches call records: wait until every call of the campaign has ended
/// in the database and each attempt has its record (except attempts found unfinished at a
/// restart: the dialer never learnt their call's id).
fn wait_records_flushed(db: &Db, campaign: i64, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open = db.count(&format!(
            "SELECT COUNT(*) FROM call_records WHERE campaign_id = {campaign} AND ended_at IS NULL"
        ));
        let missing = db.count(&format!(
            "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
             WHERE c.campaign_id = {campaign} AND a.disposition IS NOT 'interrupted' \
             AND (a.call_id IS NULL OR a.call_id NOT IN (SELECT id FROM call_records))"
        ));
        if open == 0 && missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} call records still open, {missing} attempts without a record\n{}\n{}",
            db.dump(campaign),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn by_i64(rows: Vec<DbRow>, key: &str) -> BTreeMap<i64, Vec<DbRow>> {
    let mut m: BTreeMap<i64, Vec<DbRow>> = BTreeMap::new();
    for r in rows {
        m.entry(r[key].as_i64().unwrap_or(-1)).or_default().push(r);
    }
    m
}

/// Everything the database says about the campaign's contacts, checked per ticket against
/// what its customer did. `may_repeat`: a contact may have one extra attempt whose first
/// attempt was cut by a server stop (restart test).
fn check_contacts(
    db: &Db,
    campaign: i64,
    tickets: &[(i64, Ticket)],
    may_repeat: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    let contacts = db.rows(&format!(
        "SELECT c.id, c.ticket_id, c.phone, c.state, c.attempts, c.outcome, t.resolution \
         FROM campaign_contacts c JOIN tickets t ON t.id = c.ticket_id WHERE c.campaign_id = {campaign}"
    ));
    let contacts: BTreeMap<i64, DbRow> = contacts
        .into_iter()
        .map(|r| (r["ticket_id"].as_i64().unwrap_or(-1), r))
        .collect();
    let attempts = by_i64(
        db.rows(&format!(
            "SELECT a.contact_id, a.attempt, a.disposition, a.call_id, a.ended_at FROM campaign_attempts a \
             JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = {campaign} ORDER BY a.attempt"
        )),
        "contact_id",
    );
    let outcomes = by_i64(
        db.rows("SELECT ticket_id, choice, call_id FROM call_outcomes"),
        "ticket_id",
    );
    let refunds = by_i64(
        db.rows("SELECT ticket_id, call_id FROM refund_requests"),
        "ticket_id",
    );
    let records: HashMap<String, DbRow> = db
        .rows("SELECT id, direction, campaign_id, ticket_id, disposition, caller FROM call_records")
        .into_iter()
        .map(|r| (text(&r["id"]).to_string(), r))
        .collect();
    let records_per_ticket = by_i64(records.values().cloned().collect(), "ticket_id");
    for (tid, t) in tickets {
        let who = format!("ticket {tid} {} ({:?})", t.phone, t.behaviour);
        let Some(c) = contacts.get(tid) else {
            errors.push(format!("{who}: no campaign contact"));
            continue;
        };
        let cid = c["id"].as_i64().unwrap_or(-1);
        let n = c["attempts"].as_i64().unwrap_or(-1);
        let rows = attempts.get(&cid).cloned().unwrap_or_default();
        let numbers: Vec<i64> = rows.iter().filter_map(|r| r["attempt"].as_i64()).collect();
        let expected: Vec<i64> = (1..=n).collect();
        if numbers != expected {
            errors.push(format!("{who}: attempt rows {numbers:?}, expected 1..={n}"));
        }
        let disps: Vec<&str> = rows.iter().map(|r| text(&r["disposition"])).collect();
        // Each attempt's call record: outbound, this campaign and ticket, same disposition.
        for r in &rows {
            let call = text(&r["call_id"]);
            if r["call_id"].is_null() && r["disposition"] == "interrupted" {
                continue; // recovered at start-up; its record is counted below
            }
            match records.get(call) {
                None => errors.push(format!(
                    "{who}: attempt {} has no call record ({call:?})",
                    r["attempt"]
                )),
                Some(rec) => {
                    if rec["direction"] != "outbound"
                        || rec["campaign_id"].as_i64() != Some(campaign)
                        || rec["ticket_id"].as_i64() != Some(*tid)
                        || rec["disposition"] != r["disposition"]
                    {
                        errors.push(format!(
                            "{who}: call record {rec:?} does not match attempt {r:?}"
                        ));
                    }
                }
            }
        }
        let n_records = records_per_ticket.get(tid).map_or(0, Vec::len) as i64;
        let unsent = disps.iter().filter(|d| **d == "interrupted").count() as i64;
        if n_records > n || n_records < n - unsent {
            errors.push(format!(
                "{who}: {n_records} call records for {n} attempts ({unsent} interrupted)"
            ));
        }
        let outs = outcomes.get(tid).cloned().unwrap_or_default();
        let refs = refunds.get(tid).map_or(0, Vec::len);
        match (t.behaviour.choice(), t.behaviour.failure()) {
            (Some((choice, resolution)), _) => {
                let first_ok = if may_repeat {
                    n == 1
                        || (n == 2
                            && ["interrupted", "cancelled"].contains(&disps[0])
                            && disps.get(1) == Some(&"answered"))
                } else {
                    n == 1
                };
                if !first_ok || disps.last() != Some(&"answered") {
                    errors.push(format!("{who}: attempts {n} with dispositions {disps:?}"));
                }
                if c["state"] != "completed" || c["outcome"] != choice {
                    errors.push(format!(
                        "{who}: contact {} outcome {}, expected completed / {choice}",
                        c["state"], c["outcome"]
                    ));
                }
                let choices: Vec<&str> = outs.iter().map(|o| text(&o["choice"])).collect();
                if choices != [choice] {
                    errors.push(format!(
                        "{who}: call_outcomes {choices:?}, expected exactly [{choice:?}]"
                    ));
                }
                if c["resolution"].as_str() != resolution {
                    errors.push(format!(
                        "{who}: ticket resolution {}, expected {resolution:?}",
                        c["resolution"]
                    ));
                }
                let want_refunds = usize::from(choice == "refund");
                if refs != want_refunds {
                    errors.push(format!(
                        "{who}: {refs} refund_requests rows, expected {want_refunds}"
                    ));
                }
            }
            (None, Some(disp)) => {
                if c["state"] != "failed" || n != 2 || disps != [disp, disp] {
                    errors.push(format!(
                        "{who}: contact {} after {n} attempts {disps:?}, expected failed after [{disp}, {disp}]",
                        c["state"]
                    ));
                }
                if !outs.is_empty() || refs != 0 || !c["resolution"].is_null() {
                    errors.push(format!(
                        "{who}: an unanswered number has outcomes {outs:?} / resolution {}",
                        c["resolution"]
                    ));
                }
            }
            (None, None) => unreachable!("every behaviour answers or fails"),
        }
    }
    errors
}

/// Attempts per number that ended `interrupted` (the server stopped during the attempt).
fn interrupted_attempts(db: &Db, campaign: i64) -> HashMap<String, i64> {
    db.rows(&format!(
        "SELECT a.phone, COUNT(*) AS n FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
         WHERE c.campaign_id = {campaign} AND a.disposition = 'interrupted' GROUP BY a.phone"
    ))
    .into_iter()
    .map(|r| (text(&r["phone"]).to_string(), r["n"].as_i64().unwrap_or(0)))
    .collect()
}

/// The farm's view: every number was dialed exactly as often as the database has attempts
/// (INVITE retransmissions excluded; an `interrupted` attempt may not have been sent), each
/// dial once (one INVITE transaction per Call-ID), and every call ended.
fn check_dials_against_trace(
    db: &Db,
    campaign: i64,
    calls: &[FarmCall],
    tickets: &[(i64, Ticket)],
) -> Vec<String> {
    let mut errors = Vec::new();
    let mut per_number: HashMap<&str, usize> = HashMap::new();
    for c in calls {
        *per_number.entry(c.number.as_str()).or_default() += 1;
        if c.invites != 1 {
            errors.push(format!(
                "{}: {} INVITE transactions in one call",
                c.number, c.invites
            ));
        }
        if c.end.is_none() {
            errors.push(format!(
                "{}: call started at {:.3} never ended in the trace",
                c.number, c.start
            ));
        }
    }
    let attempts: HashMap<String, i64> = db
        .rows(&format!(
            "SELECT phone, attempts FROM campaign_contacts WHERE campaign_id = {campaign}"
        ))
        .into_iter()
        .map(|r| {
            (
                text(&r["phone"]).to_string(),
                r["attempts"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let interrupted = interrupted_attempts(db, campaign);
    for (_, t) in tickets {
        let dialed = per_number.get(t.phone.as_str()).copied().unwrap_or(0) as i64;
        let recorded = attempts.get(&t.phone).copied().unwrap_or(-1);
        // An attempt claimed just as the server stopped may never have reached the wire.
        let unsent = interrupted.get(&t.phone).copied().unwrap_or(0);
        if dialed > recorded || dialed < recorded - unsent {
            errors.push(format!(
                "{}: the farm got {dialed} calls, the database has {recorded} attempts \
                 ({unsent} of them interrupted)",
                t.phone
            ));
        }
    }
    let known: HashSet<&str> = tickets.iter().map(|(_, t)| t.phone.as_str()).collect();
    for n in per_number.keys() {
        if !known.contains(n) {
            errors.push(format!("the farm was called at an unknown number {n}"));
        }
    }
    errors
}

fn report(what: &str, errors: &[String], db: &Db, campaign: i64, extra: &str) {
    assert!(
        errors.is_empty(),
        "{what}: {} problem(s):\n  {}\n{}\n{extra}",
        errors.len(),
        errors.join("\n  "),
        db.dump(campaign)
    );
}

// ---- the tests -----------------------------------------------------------------------------

/// 30 customers of every kind through one campaign (4 channels, 2 calls/s): outcomes,
/// retries, caps, call records, and the farm's own count of dials.
#[test]
fn campaign_dials_the_farm_with_outcomes_retries_and_caps() {
    let t0 = Instant::now();
    let dir = test_dir("switchboard-campaign-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let setup = ServerSetup::new(dir.path(), farm.port);
    let server = setup.start(1);
    let db = Db::open(&setup.db_path);

    use Behaviour::*;
    // The machine first: it holds a channel for the whole notice (~55 s) while the rest flows.
    let mut plan = vec![Machine];
    plan.extend([Press1, Busy, Press2, Press0].repeat(4));
    plan.extend([
        Ring, Busy, Press1, Ring, Press2, Busy, Press1, Ring, Busy, Press0, Press1, Busy, Press2,
    ]);
    assert_eq!(plan.len(), 30);
    let tickets: Vec<(i64, Ticket)> = tickets(1, &plan)
        .into_iter()
        .map(|t| (db.insert_ticket(&t), t))
        .collect();

    let id = server.create_campaign(&campaign_spec("farm-30", MAX_CHANNELS, MAX_CPS));
    let (_, created) = server.api("GET", &format!("/api/campaigns/{id}"), None);
    assert_eq!(created["progress"]["total"], 30, "{created}");
    let started = Instant::now();
    assert_eq!(server.start_campaign(id), "running");
    let done = server.wait_state(id, "completed", Duration::from_secs(200), &db);
    let campaign_secs = started.elapsed().as_secs_f64();
    wait_records_flushed(&db, id, &server);
    // The last BYE may still be in flight to the farm.
    std::thread::sleep(Duration::from_millis(500));
    let trace = farm.stop();
    let calls = trace.calls();

    let errors = check_contacts(&db, id, &tickets, false);
    report("contacts", &errors, &db, id, &server.log());
    let errors = check_dials_against_trace(&db, id, &calls, &tickets);
    report("farm trace vs database", &errors, &db, id, &farm.output());

    // No attempt number twice for a contact (also a UNIQUE constraint), no stray rows.
    let dup = db.count(&format!(
        "SELECT COUNT(*) FROM (SELECT a.contact_id, a.attempt FROM campaign_attempts a JOIN campaign_contacts c \
         ON c.id = a.contact_id WHERE c.campaign_id = {id} GROUP BY a.contact_id, a.attempt HAVING COUNT(*) > 1)"
    ));
    assert_eq!(dup, 0, "an attempt number was used twice");
    let attempts_total = db.count(&format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = {id}"
    ));
    assert_eq!(calls.len() as i64, attempts_total, "farm calls vs attempts");

    // Caps, measured on the farm's side.
    let concurrent = max_concurrent(&calls);
    let per_sec_strict = max_in_window(&calls, Duration::from_secs(1));
    let per_sec = max_in_window(&calls, Duration::from_secs(1) - CPS_SLACK);
    let min_gap3 = calls
        .windows(MAX_CPS + 1)
        .map(|w| w[MAX_CPS].start - w[0].start)
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "campaign farm-30: {} calls in {campaign_secs:.1} s; max concurrent {concurrent} (cap {MAX_CHANNELS}); \
         max new calls per 1 s window {per_sec_strict} strict / {per_sec} with {CPS_SLACK:?} slack (cap {MAX_CPS}); \
         shortest span of {} consecutive dials {min_gap3:.3} s; CANCELs per unanswered call {:?}; \
         progress {}; SIPp failed calls {:?}",
        calls.len(),
        MAX_CPS + 1,
        calls.iter().filter(|c| c.cancels > 0).map(|c| c.cancels).collect::<Vec<_>>(),
        done["progress"],
        farm.failed_calls()
    );
    assert!(
        concurrent <= MAX_CHANNELS,
        "{concurrent} calls at once (cap {MAX_CHANNELS})\n{calls:#?}"
    );
    assert!(
        concurrent >= MAX_CHANNELS - 1,
        "only {concurrent} calls at once: the campaign did not use its channels"
    );
    assert!(
        per_sec <= MAX_CPS,
        "{per_sec} new calls within {:?} (cap {MAX_CPS}/s)\n{calls:#?}",
        Duration::from_secs(1) - CPS_SLACK
    );
    assert_eq!(
        farm.failed_calls(),
        Some(0),
        "SIPp counted failed calls\n{}",
        farm.output()
    );
    eprintln!("test runtime {:.1} s", t0.elapsed().as_secs_f64());
}

/// The API's refusals: token, unknown fields, unknown trunk, duplicate name, start twice.
#[test]
fn campaign_api_refuses_bad_requests() {
    let dir = test_dir("switchboard-campaign-api-");
    // No farm needed: nothing is dialed. The trunk points at a closed port.
    let setup = ServerSetup::new(dir.path(), free_port());
    let server = setup.start(1);
    let db = Db::open(&setup.db_path);
    let spec = campaign_spec("api-1", 2, 1);

    // Bearer token: missing, wrong, wrong scheme.
    for token in [None, Some("nope"), Some(&TOKEN[1..])] {
        let (code, body) = http(server.http, "POST", "/api/campaigns", token, Some(&spec));
        assert_eq!(code, 401, "token {token:?}: {body}");
        assert!(
            body["error"].is_string(),
            "401 without a JSON error: {body}"
        );
        let (code, _) = http(server.http, "GET", "/api/campaigns", token, None);
        assert_eq!(code, 401, "GET with token {token:?}");
    }
    let mut s = TcpStream::connect(server.http).expect("connect");
    write!(
        s,
        "GET /api/campaigns HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(buf.starts_with("HTTP/1.1 401"), "Basic scheme: {buf}");

    // Unknown fields, top level and nested, are named.
    let mut bad = spec.clone();
    bad["max_chanels"] = json!(3);
    let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert!(text(&body["error"]).contains("max_chanels"), "{body}");
    let mut bad = spec.clone();
    bad["window"]["begin"] = json!("08:00");
    let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert!(text(&body["error"]).contains("begin"), "{body}");

    // Segment rules name loaded dialplans and sane language tags.
    let mut bad = spec.clone();
    bad["segments"] = json!({"vip": {"priority": 1, "dialplan": "no-such-plan"}});
    let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert!(
        text(&body["error"]).contains("segments.vip.dialplan"),
        "{body}"
    );
    let mut bad = spec.clone();
    bad["segments"] = json!({"vip": {"language": "zh cn"}});
    let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert!(
        text(&body["error"]).contains("segments.vip.language"),
        "{body}"
    );

    // Unknown trunk.
    let mut bad = spec.clone();
    bad["trunk"] = json!("nowhere");
    let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
    assert_eq!(code, 400, "{body}");
    assert!(text(&body["error"]).starts_with("trunk"), "{body}");
    assert!(text(&body["error"]).contains("nowhere"), "{body}");

    // Not JSON at all.
    let mut s2 = TcpStream::connect(server.http).expect("connect");
    write!(
        s2,
        "POST /api/campaigns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{nop}}"
    )
    .expect("write");
    let mut buf = String::new();
    let _ = s2.read_to_string(&mut buf);
    assert!(buf.starts_with("HTTP/1.1 400"), "broken JSON: {buf}");

    // Same name twice: 409 naming the name.
    let id = server.create_campaign(&spec);
    let (code, body) = server.api("POST", "/api/campaigns", Some(&spec));
    assert_eq!(code, 409, "{body}");
    assert!(text(&body["error"]).contains("api-1"), "{body}");
    assert_eq!(
        db.count("SELECT COUNT(*) FROM campaigns WHERE name = 'api-1'"),
        1
    );

    // No tickets match: starting completes it at once; a second start is a conflict.
    let (_, got) = server.api("GET", &format!("/api/campaigns/{id}"), None);
    assert_eq!(got["progress"]["total"], 0, "{got}");
    let state = server.start_campaign(id);
    assert!(state == "running" || state == "completed", "{state}");
    server.wait_state(id, "completed", Duration::from_secs(10), &db);
    let (code, body) = server.api("POST", &format!("/api/campaigns/{id}/start"), None);
    assert_eq!(code, 409, "start a completed campaign: {body}");
    assert!(text(&body["error"]).contains("completed"), "{body}");
    let (code, _) = server.api("POST", "/api/campaigns/999999/start", None);
    assert_eq!(code, 404);
}

/// What a SIGTERM + restart run left behind.
struct RestartRun {
    // Field order = drop order: server, farm, then the files.
    server: Server,
    farm: Farm,
    db: Db,
    campaign: i64,
    tickets: Vec<(i64, Ticket)>,
    calls: Vec<FarmCall>,
    /// Tickets whose call was in progress when SIGTERM was sent.
    in_flight: HashSet<i64>,
    /// Database, first server's log, second server's log: for failure messages.
    context: String,
    _dir: tempfile::TempDir,
}

/// 10 customers (press 1 at 2 s or at 6 s), 4 channels, 2 calls/s: SIGTERM once 3 attempts
/// exist, start the binary again on the same database and config; it must resume the
/// running campaign by itself. Returns after the campaign completed.
fn sigterm_and_restart_mid_campaign() -> RestartRun {
    let dir = test_dir("switchboard-campaign-restart-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let setup = ServerSetup::new(dir.path(), farm.port);
    let mut server = setup.start(1);
    let db = Db::open(&setup.db_path);

    let plan = [Behaviour::Press1, Behaviour::SlowPress1].repeat(5);
    let tickets: Vec<(i64, Ticket)> = tickets(2, &plan)
        .into_iter()
        .map(|t| (db.insert_ticket(&t), t))
        .collect();
    let id = server.create_campaign(&campaign_spec("restart-10", MAX_CHANNELS, MAX_CPS));
    assert_eq!(server.start_campaign(id), "running");

    let attempts_sql = format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = {id}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count(&attempts_sql) < 3 {
        assert!(
            Instant::now() < deadline,
            "fewer than 3 attempts after 30 s\n{}\n{}",
            db.dump(id),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sigterm_at = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let status = server.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        server.log()
    );
    let first_log = server.log();
    let at_stop = db.dump(id);
    let state = db.rows(&format!("SELECT state FROM campaigns WHERE id = {id}"));
    assert_eq!(
        state.first().map(|r| r["state"].clone()),
        Some(json!("running")),
        "a SIGTERM must leave the campaign running (to be resumed)\n{at_stop}"
    );
    let in_flight: HashSet<i64> = db
        .rows(&format!(
            "SELECT DISTINCT c.ticket_id FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
             WHERE c.campaign_id = {id} AND (a.ended_at IS NULL OR a.ended_at >= '{sigterm_at}')"
        ))
        .into_iter()
        .filter_map(|r| r["ticket_id"].as_i64())
        .collect();

    drop(server);
    let server = setup.start(2);
    server.wait_state(id, "completed", Duration::from_secs(120), &db);
    wait_records_flushed(&db, id, &server);
    std::thread::sleep(Duration::from_millis(500));
    let calls = farm.stop().calls();
    let context = format!(
        "==== database at SIGTERM ({sigterm_at}) ====\n{at_stop}\n==== first server ====\n{}\n==== second server ====\n{}",
        tail(&first_log, 80),
        server.log()
    );
    RestartRun {
        server,
        farm,
        db,
        campaign: id,
        tickets,
        calls,
        in_flight,
        context,
        _dir: dir,
    }
}

/// The rules that hold for every contact of the restart run, in flight at SIGTERM or not:
/// finished, at most one extra attempt (numbered 2, after an `interrupted` or `cancelled`
/// first one), attempts numbered 1..n, one call record per attempt, at most one outcome.
fn check_restart_invariants(run: &RestartRun) -> Vec<String> {
    let (db, id) = (&run.db, run.campaign);
    let mut errors = Vec::new();
    for (tid, t) in &run.tickets {
        let who = format!("ticket {tid} {} ({:?})", t.phone, t.behaviour);
        let c = db.rows(&format!(
            "SELECT id, state, attempts FROM campaign_contacts WHERE campaign_id = {id} AND ticket_id = {tid}"
        ));
        let Some(c) = c.first() else {
            errors.push(format!("{who}: no contact"));
            continue;
        };
        let n = c["attempts"].as_i64().unwrap_or(-1);
        let rows = db.rows(&format!(
            "SELECT attempt, disposition FROM campaign_attempts WHERE contact_id = {} ORDER BY attempt",
            c["id"]
        ));
        let numbers: Vec<i64> = rows.iter().filter_map(|r| r["attempt"].as_i64()).collect();
        let disps: Vec<&str> = rows.iter().map(|r| text(&r["disposition"])).collect();
        if c["state"] != "completed" {
            errors.push(format!("{who}: contact ends {}", c["state"]));
        }
        if numbers != (1..=n).collect::<Vec<_>>() || !(1..=2).contains(&n) {
            errors.push(format!("{who}: {n} attempts numbered {numbers:?}"));
        }
        if n == 2 && !["interrupted", "cancelled"].contains(&disps[0]) {
            errors.push(format!(
                "{who}: a second attempt after a first one that ended {:?}",
                disps[0]
            ));
        }
        let records = db.count(&format!(
            "SELECT COUNT(*) FROM call_records WHERE ticket_id = {tid}"
        ));
        let unsent = disps.iter().filter(|d| **d == "interrupted").count() as i64;
        if records > n || records < n - unsent {
            errors.push(format!(
                "{who}: {records} call records for {n} attempts ({unsent} interrupted)"
            ));
        }
        let outcomes = db.count(&format!(
            "SELECT COUNT(*) FROM call_outcomes WHERE ticket_id = {tid}"
        ));
        if outcomes > 1 {
            errors.push(format!("{who}: {outcomes} outcome rows"));
        }
    }
    errors.extend(check_dials_against_trace(db, id, &run.calls, &run.tickets));
    errors
}

/// SIGTERM in the middle of a campaign, start again on the same database: the campaign
/// resumes by itself, nobody is dialed beyond the rules, and every customer whose call was
/// not cut by the stop gets exactly their result. (The customers whose calls were cut are
/// checked strictly by `campaign_restart_gives_cut_calls_their_result`.)
#[test]
fn campaign_resumes_after_sigterm_without_double_dials() {
    let t0 = Instant::now();
    let run = sigterm_and_restart_mid_campaign();
    let mut errors = check_restart_invariants(&run);
    let settled: Vec<(i64, Ticket)> = run
        .tickets
        .iter()
        .filter(|(tid, _)| !run.in_flight.contains(tid))
        .cloned()
        .collect();
    errors.extend(check_contacts(&run.db, run.campaign, &settled, true));
    let cut_wrong: Vec<String> = check_contacts(
        &run.db,
        run.campaign,
        &run.tickets
            .iter()
            .filter(|(tid, _)| run.in_flight.contains(tid))
            .cloned()
            .collect::<Vec<_>>(),
        true,
    );
    report(
        "after restart",
        &errors,
        &run.db,
        run.campaign,
        &run.context,
    );
    let repeated = run.db.count(&format!(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {} AND attempts > 1",
        run.campaign
    ));
    eprintln!(
        "restart: {} farm calls for 10 contacts, {} in flight at SIGTERM, {repeated} dialed twice, \
         {} problem(s) with the cut calls' results (see campaign_restart_gives_cut_calls_their_result); \
         SIPp failed calls {:?}; test runtime {:.1} s",
        run.calls.len(),
        run.in_flight.len(),
        cut_wrong.len(),
        run.farm.failed_calls(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        run.server.child.is_some(),
        "the second server is still running"
    );
}

/// The strict form of the restart test: a customer whose answered call was hung up by the
/// SIGTERM before choosing must be called again (attempt 2 after an `interrupted` or
/// `cancelled` attempt 1) and end with their choice, like everybody else.
#[test]
fn campaign_restart_gives_cut_calls_their_result() {
    let run = sigterm_and_restart_mid_campaign();
    let mut errors = check_restart_invariants(&run);
    errors.extend(check_contacts(&run.db, run.campaign, &run.tickets, true));
    report(
        &format!(
            "after restart ({} call(s) in flight at SIGTERM: tickets {:?})",
            run.in_flight.len(),
            run.in_flight
        ),
        &errors,
        &run.db,
        run.campaign,
        &run.context,
    );
}

/// A number that rings until the ring timeout gets ONE CANCEL: the server must not start a
/// new CANCEL once the first one's 200 came back while the 487 is still on its way.
#[test]
fn no_answer_call_is_cancelled_exactly_once() {
    let dir = test_dir("switchboard-campaign-cancel-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let setup = ServerSetup::new(dir.path(), farm.port);
    let server = setup.start(1);
    let db = Db::open(&setup.db_path);
    let tickets: Vec<(i64, Ticket)> = tickets(3, &[Behaviour::Ring, Behaviour::Ring])
        .into_iter()
        .map(|t| (db.insert_ticket(&t), t))
        .collect();
    let mut spec = campaign_spec("cancel-once", 2, 2);
    spec["retry"]["no_answer"] = json!({"after_s": 2, "max_attempts": 1});
    let id = server.create_campaign(&spec);
    assert_eq!(server.start_campaign(id), "running");
    server.wait_state(id, "completed", Duration::from_secs(60), &db);
    std::thread::sleep(Duration::from_millis(500));
    let calls = farm.stop().calls();
    assert_eq!(calls.len(), tickets.len(), "{calls:#?}");
    for c in &calls {
        assert_eq!(
            c.cancels,
            1,
            "{}: the farm received {} CANCELs for one ring timeout (one transaction, sent \
             within microseconds: not Timer E retransmissions)\n{}",
            c.number,
            c.cancels,
            farm.output()
        );
    }
    assert_eq!(farm.failed_calls(), Some(0), "{}", farm.output());
}
