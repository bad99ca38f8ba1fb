//! The campaign harness shared by the campaign tests (`campaign_sipp.rs`, `campaign_large.rs`,
//! `campaign_sms.rs`): the SIPp "customer farm" (`sip-test/uas_farm.xml`) and its message
//! trace, the server under test with a trunk to the farm, direct SQL on its SQLite file,
//! the per-ticket checks of a finished campaign against what each customer did, and the
//! caps measured on the farm's side.
//!
//! Included by the campaign tests (`#[path = "support/campaign.rs"] mod campaign;` next to
//! `mod support;`), so the other test binaries do not compile it.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::Timelike;
use serde_json::{json, Value};
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::support::{
    free_port, is_root, read_lossy, repo_root, rtp_ports, sipp, sipp_media_port, tail, udp_free,
    wait_child,
};

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
pub const TOKEN: &str = "campaign-sipp-test-token-7f3a9c";
/// The campaign caps the big run checks.
pub const MAX_CHANNELS: usize = 4;
pub const MAX_CPS: usize = 2;
/// Slack for the per-second check: SIPp timestamps a datagram when it reads it, a few ms
/// after the server's pacer let the dial go. Two dials exactly 1.000 s apart (allowed) may
/// look 0.998 s apart in the trace, so a "1-second window" is 1 s minus this.
pub const CPS_SLACK: Duration = Duration::from_millis(50);

/// A temp dir for one test; kept (and named on stderr) when SWITCHBOARD_TEST_KEEP is set.
pub fn test_dir(prefix: &str) -> tempfile::TempDir {
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

// Server RTP ranges and SIPp media ports come from `support` (`rtp_ports`,
// `sipp_media_port`): one allocator per kind for every test of the run.

// ---- small process / file helpers ------------------------------------------------------------

pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed: {st}");
}

pub fn make_pcap(dir: &Path, name: &str, args: &[&str]) {
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
pub fn http(
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

pub fn dechunk(mut s: &str) -> String {
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

pub use crate::support::DbRow;

/// Direct SQL on the server's SQLite file, as the ticket system would do.
pub struct Db {
    pub rt: tokio::runtime::Runtime,
    pub pool: SqlitePool,
}

impl Db {
    pub fn open(path: &Path) -> Db {
        let (rt, pool) = crate::support::open_sqlite(path, Duration::from_secs(10));
        Db { rt, pool }
    }

    pub fn to_map(row: &SqliteRow) -> DbRow {
        crate::support::TestDb::to_map(row)
    }

    pub fn rows(&self, sql: &str) -> Vec<DbRow> {
        let rows = self
            .rt
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(Self::to_map).collect()
    }

    pub fn count(&self, sql: &str) -> i64 {
        let r = self.rows(sql);
        r.first()
            .and_then(|r| r.values().next())
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("{sql}: no count"))
    }

    pub fn insert_ticket(&self, t: &Ticket) -> i64 {
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
    pub fn dump(&self, campaign: i64) -> String {
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
pub enum Behaviour {
    Press1,
    Press2,
    Press0,
    Ring,
    Busy,
    Machine,
    SlowPress1,
    /// Answers and presses 8: opts out (do-not-call from then on).
    OptOut,
    /// The carrier answers 404 (a number that does not exist): `failed`.
    NotFound,
}

impl Behaviour {
    pub fn digit(self) -> u8 {
        match self {
            Behaviour::Press1 => 1,
            Behaviour::Press2 => 2,
            Behaviour::Press0 => 3,
            Behaviour::Ring => 4,
            Behaviour::Busy => 5,
            Behaviour::Machine => 6,
            Behaviour::SlowPress1 => 7,
            Behaviour::OptOut => 8,
            Behaviour::NotFound => 9,
        }
    }

    /// (outcome choice, ticket resolution) of an answered call.
    pub fn choice(self) -> Option<(&'static str, Option<&'static str>)> {
        match self {
            Behaviour::Press1 | Behaviour::SlowPress1 => Some(("wait", Some("wait"))),
            Behaviour::Press2 => Some(("refund", Some("refund"))),
            Behaviour::Press0 => Some(("callback", None)),
            Behaviour::Machine => Some(("no_choice", None)),
            Behaviour::OptOut => Some(("opt_out", Some("opt_out"))),
            Behaviour::Ring | Behaviour::Busy | Behaviour::NotFound => None,
        }
    }

    /// Disposition of every attempt of an unanswered number.
    pub fn failure(self) -> Option<&'static str> {
        match self {
            Behaviour::Ring => Some("no_answer"),
            Behaviour::Busy => Some("busy"),
            Behaviour::NotFound => Some("failed"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ticket {
    pub order_id: String,
    pub phone: String,
    pub timezone: String,
    pub delay_days: i64,
    pub behaviour: Behaviour,
}

/// A zone in which the campaign window 00:00-23:59 is open now and for the next hour or two:
/// UTC, except around UTC midnight, where America/Chicago is mid-evening. `Etc/UTC`, not
/// `UTC`: the dialer reads the schema default `UTC` as "zone not set" and places the number
/// instead, and the test numbers (+1 555…) cannot be placed (`no_timezone`).
pub fn open_zone() -> &'static str {
    let h = chrono::Utc::now().hour();
    if (1..=21).contains(&h) {
        "Etc/UTC"
    } else {
        "America/Chicago"
    }
}

/// Tickets numbered `+1555010` + 3-digit index + behaviour digit (unique numbers, so the
/// 30-day cap per number never mixes customers).
pub fn tickets(series: u32, plan: &[Behaviour]) -> Vec<Ticket> {
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
pub struct Farm {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Farm {
    pub fn start(dir: &Path) -> Farm {
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
        make_pcap(
            dir,
            "farm_press8.pcap",
            &["--script", "2000:8", "--tail-ms", "40000"],
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
        Farm::spawn(dir, &scenario)
    }

    /// The answering-machine farm (`sip-test/uas_amd_farm.xml`): customer `numbers[i]` (an
    /// E.164 number) plays `dir/names[i].pcap` from the answer on (pcaps made by the caller).
    pub fn start_amd(dir: &Path, customers: &[(String, String)]) -> Farm {
        assert!(
            is_root(),
            "the farm's play_pcap_audio needs root (raw socket): run the SIP tests as root"
        );
        let template = std::fs::read_to_string(repo_root().join("sip-test/uas_amd_farm.xml"))
            .expect("read sip-test/uas_amd_farm.xml");
        let (mut eregs, mut routes, mut plays, mut labels) =
            (String::new(), String::new(), String::new(), String::new());
        for (i, (number, name)) in customers.iter().enumerate() {
            let digits = number.trim_start_matches('+');
            let _ = writeln!(
                eregs,
                r#"      <ereg regexp="INVITE sip:\+?{digits}@" search_in="msg" assign_to="c{i}"/>"#
            );
            let _ = writeln!(routes, r#"  <nop hide="true" test="c{i}" next="answer"/>"#);
            let _ = writeln!(plays, r#"  <nop hide="true" test="c{i}" next="p{i}"/>"#);
            let _ = writeln!(
                labels,
                r#"  <label id="p{i}"/>
  <nop next="wait_bye"><action><exec play_pcap_audio="{}/{name}.pcap"/></action></nop>"#,
                dir.display()
            );
        }
        // No match after the ACK cannot happen (the route answered only known numbers).
        plays.push_str("  <nop hide=\"true\" next=\"wait_bye\"/>\n");
        plays.push_str(&labels);
        let scenario = dir.join("uas_amd_farm.xml");
        std::fs::write(
            &scenario,
            template
                .replace("@EREGS@", &eregs)
                .replace("@ROUTES@", &routes)
                .replace("@PLAYS@", &plays),
        )
        .expect("write AMD farm scenario");
        Farm::spawn(dir, &scenario)
    }

    fn spawn(dir: &Path, scenario: &Path) -> Farm {
        let sipp = sipp();
        let port = free_port();
        let media = sipp_media_port();
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

    pub fn output(&self) -> String {
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
    pub fn stop(&mut self) -> Trace {
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
    pub fn failed_calls(&self) -> Option<u64> {
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
pub struct TraceMsg {
    /// Seconds, as SIPp stamped the message (its local wall clock).
    pub t: f64,
    pub received: bool,
    pub start_line: String,
    pub call_id: String,
    pub cseq: String,
}

impl TraceMsg {
    pub fn is_request(&self, method: &str) -> bool {
        self.start_line.starts_with(&format!("{method} "))
    }

    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.split_whitespace().next()?.parse().ok()
    }

    /// Request-URI user of a request (`INVITE sip:+1555...@host SIP/2.0`).
    pub fn ruri_user(&self) -> Option<&str> {
        let uri = self.start_line.split_whitespace().nth(1)?;
        let uri = uri.strip_prefix("sip:")?;
        uri.split('@').next()
    }
}

/// One outbound call as the farm saw it.
#[derive(Debug, Clone)]
pub struct FarmCall {
    pub number: String,
    /// First INVITE received.
    pub start: f64,
    /// When the server's channel was free again as far as the farm can tell: the server's
    /// BYE received, or our 486 / 487 / 404 sent. None: never ended.
    pub end: Option<f64>,
    /// Distinct (Call-ID, CSeq) INVITE transactions (retransmissions excluded).
    pub invites: usize,
    /// CANCEL requests received (one transaction: more are repeats).
    pub cancels: usize,
}

pub struct Trace {
    pub msgs: Vec<TraceMsg>,
}

impl Trace {
    pub fn parse(text: &str) -> Trace {
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

    pub fn calls(&self) -> Vec<FarmCall> {
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
pub fn max_concurrent(calls: &[FarmCall]) -> usize {
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
pub fn max_in_window(calls: &[FarmCall], width: Duration) -> usize {
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
pub struct ServerSetup {
    pub config: PathBuf,
    pub db_path: PathBuf,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub rtp: (u16, u16),
    pub dir: PathBuf,
}

/// What a test may change in the server's config.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The trunk's `max_channels` and `max_cps` (a campaign's caps must fit inside).
    pub trunk_channels: u32,
    pub trunk_cps: u32,
    /// Size of the server's RTP port range (two ports per call are plenty).
    pub rtp_ports: u32,
    /// `[server] dialplan_dir` (absolute), e.g. the repo's plans plus a short test plan.
    pub dialplan_dir: Option<PathBuf>,
    /// Appended to the config as is (e.g. an `[sms]` section).
    pub extra: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            trunk_channels: 8,
            trunk_cps: 5,
            rtp_ports: 40,
            dialplan_dir: None,
            extra: String::new(),
        }
    }
}

impl ServerSetup {
    /// `config/default.toml` with the spool in `dir`, no demo data, plus the trunk.
    pub fn new(dir: &Path, farm_port: u16) -> ServerSetup {
        Self::with(dir, farm_port, &ServerOptions::default())
    }

    /// Like `new`, with other trunk caps, RTP range, dialplans or extra config.
    pub fn with(dir: &Path, farm_port: u16, opts: &ServerOptions) -> ServerSetup {
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
            } else if key.starts_with("dialplan_dir") && opts.dialplan_dir.is_some() {
                let d = opts
                    .dialplan_dir
                    .as_deref()
                    .unwrap_or(Path::new("dialplans"));
                let _ = writeln!(text, "dialplan_dir = {:?}", d.display().to_string());
            } else {
                text.push_str(l);
                text.push('\n');
            }
        }
        let _ = write!(
            text,
            "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{farm_port}\"\ntransport = \"udp\"\n\
             inbound_cidrs = [\"127.0.0.1/32\"]\nmax_channels = {}\nmax_cps = {}\n",
            opts.trunk_channels,
            opts.trunk_cps
        );
        text.push('\n');
        text.push_str(&opts.extra);
        let config = dir.join("config.toml");
        std::fs::write(&config, text).expect("write test config");
        let (lo, _) = rtp_ports(opts.rtp_ports);
        ServerSetup {
            config,
            db_path: dir.join("switchboard.db"),
            sip: SocketAddr::from((LOCALHOST, free_port())),
            http: SocketAddr::from((LOCALHOST, free_port())),
            rtp: (lo, lo + opts.rtp_ports as u16 - 1),
            dir: dir.to_path_buf(),
        }
    }

    pub fn start(&self, generation: u32) -> Server {
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

pub fn health(addr: SocketAddr) -> Option<u16> {
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
pub struct Server {
    pub child: Option<Child>,
    pub http: SocketAddr,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Server {
    pub fn log(&self) -> String {
        format!(
            "---- server stdout ----\n{}\n---- server stderr ----\n{}",
            read_lossy(&self.stdout),
            tail(&read_lossy(&self.stderr), 150)
        )
    }

    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(self.http, method, path, Some(TOKEN), body)
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
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
    pub fn create_campaign(&self, spec: &Value) -> i64 {
        let (code, body) = self.api("POST", "/api/campaigns", Some(spec));
        assert_eq!(code, 201, "POST /api/campaigns: {body}\n{}", self.log());
        body["id"].as_i64().expect("campaign id")
    }

    /// Start a campaign; returns the state in the answer (`running`, or already
    /// `completed` when it had nothing to dial).
    pub fn start_campaign(&self, id: i64) -> String {
        let (code, body) = self.api("POST", &format!("/api/campaigns/{id}/start"), None);
        assert_eq!(code, 200, "start campaign {id}: {body}");
        text(&body["state"]).to_string()
    }

    /// Poll `GET /api/campaigns/{id}` until its state is `state`; returns the last answer.
    pub fn wait_state(&self, id: i64, state: &str, timeout: Duration, db: &Db) -> Value {
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

pub fn campaign_spec(name: &str, channels: usize, cps: usize) -> Value {
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
pub fn wait_records_flushed(db: &Db, campaign: i64, server: &Server) {
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

pub fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn by_i64(rows: Vec<DbRow>, key: &str) -> BTreeMap<i64, Vec<DbRow>> {
    let mut m: BTreeMap<i64, Vec<DbRow>> = BTreeMap::new();
    for r in rows {
        m.entry(r[key].as_i64().unwrap_or(-1)).or_default().push(r);
    }
    m
}

/// Everything the database says about the campaign's contacts, checked per ticket against
/// what its customer did. `may_repeat`: a contact may have one extra attempt whose first
/// attempt was cut by a server stop (restart test).
pub fn check_contacts(
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
                // Pressing 8 ends the contact `opted_out` (and on do-not-call), not `completed`.
                let end = if choice == "opt_out" {
                    "opted_out"
                } else {
                    "completed"
                };
                if c["state"] != end || c["outcome"] != choice {
                    errors.push(format!(
                        "{who}: contact {} outcome {}, expected {end} / {choice}",
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
                // After a restart an attempt cut by the stop (`interrupted`, `cancelled`)
                // may come first or in between; it counts toward the limit (it may have
                // rung the phone), so a cut number has one real attempt fewer or one more
                // attempt in all.
                let cut = |d: &&str| ["interrupted", "cancelled"].contains(d);
                let real: Vec<&str> = disps.iter().copied().filter(|d| !cut(d)).collect();
                let repeat_ok = may_repeat
                    && (2..=3).contains(&n)
                    && !real.is_empty()
                    && real.iter().all(|d| *d == disp);
                if c["state"] != "failed" || !(repeat_ok || (n == 2 && disps == [disp, disp])) {
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
pub fn interrupted_attempts(db: &Db, campaign: i64) -> HashMap<String, i64> {
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
pub fn check_dials_against_trace(
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

pub fn report(what: &str, errors: &[String], db: &Db, campaign: i64, extra: &str) {
    assert!(
        errors.is_empty(),
        "{what}: {} problem(s):\n  {}\n{}\n{extra}",
        errors.len(),
        errors.join("\n  "),
        db.dump(campaign)
    );
}
