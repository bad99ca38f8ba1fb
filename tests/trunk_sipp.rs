//! Outbound trunks end to end: the real `switchboard` binary dials SIPp UASes playing
//! carrier trunks (scenarios `sip-test/uas_trunk_*.xml`, `sip-test/uas_registrar.xml`),
//! driven by campaigns created through the API like `tests/campaign_sipp.rs`.
//!
//! - a trunk answering the first INVITE with 407: our second INVITE carries
//!   Proxy-Authorization, SIPp verifies the digest, the call completes and is recorded
//!   (with the trunk's name and P-Asserted-Identity);
//! - a trunk's own `max_channels = 2` holds across two campaigns (SIPp's trace never
//!   shows more than 2 calls at once);
//! - failover: 503 on trunk A and, separately, no answer at all from A (Timer B) put the
//!   call on trunk B; 486 on A is final (B never sees an INVITE);
//! - registration: a SIPp registrar challenges with 401, then grants 3 s; the API shows
//!   the trunk registered, refreshes arrive, and SIGTERM sends `Expires: 0`.
//!
//! Every check reads SIPp's own message trace or the database, not the server's word.
//! Needs SIPp (`$SWITCHBOARD_SIPP`, else `sipp` on PATH); no root (no RTP is played).
//! Run: `cargo test --test suite -- trunk_sipp:: --test-threads=1` (about 70 s, most of it the
//! Timer B case's 32 s).

use crate::support;

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::Timelike;
use serde_json::{json, Value};

use crate::support::{free_port, read_lossy, repo_root, sipp, tail, wait_child, Server};

const TOKEN: &str = "trunk-sipp-test-token-31b7";

// ---- HTTP ----------------------------------------------------------------------------------

fn api(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n"
    );
    let _ = write!(
        req,
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    );
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read HTTP answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
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

// ---- SIPp as a trunk -----------------------------------------------------------------------

/// One SIPp UAS on its own port, tracing every message; killed on drop.
struct Uas {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    name: String,
}

impl Uas {
    fn start(dir: &Path, name: &str, scenario: &str, extra: &[&str]) -> Uas {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).expect("uas dir");
        let port = free_port();
        let media = free_port();
        let mut args: Vec<String> = vec![
            "-sf".into(),
            // An absolute path is a scenario the test wrote; else one of sip-test/.
            repo_root()
                .join("sip-test")
                .join(scenario)
                .display()
                .to_string(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-mi".into(),
            "127.0.0.1".into(),
            "-mp".into(),
            media.to_string(),
            "-nostdin".into(),
            "-trace_msg".into(),
            "-message_file".into(),
            dir.join("messages.log").display().to_string(),
            "-trace_err".into(),
            "-error_file".into(),
            dir.join("errors.log").display().to_string(),
            "-timeout".into(),
            "120s".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(sipp())
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("stdout"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sipp: {e}"));
        let mut uas = Uas {
            child: Some(child),
            port,
            dir,
            name: name.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            if let Some(Ok(Some(st))) = uas.child.as_mut().map(|c| c.try_wait()) {
                panic!("SIPp {name} exited at start with {st}\n{}", uas.output());
            }
            assert!(Instant::now() < deadline, "SIPp {name} did not bind {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        uas
    }

    fn output(&self) -> String {
        let mut s = String::new();
        for f in ["stdout.log", "stderr.log", "errors.log"] {
            let _ = writeln!(
                s,
                "---- {} {f} ----\n{}",
                self.name,
                tail(&read_lossy(&self.dir.join(f)), 30)
            );
        }
        s
    }

    /// Wait for SIPp to end by itself (`-m N` reached); None when it did not in time.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        let st = wait_child(c, timeout);
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// Every message in the trace so far.
    fn trace(&self) -> Vec<Msg> {
        parse_trace(&read_lossy(&self.dir.join("messages.log")))
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One message of a SIPp `-trace_msg` file.
#[derive(Debug, Clone)]
struct Msg {
    t: f64,
    received: bool,
    text: String,
}

impl Msg {
    fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or("").trim()
    }

    fn is_request(&self, method: &str) -> bool {
        self.start_line().starts_with(&format!("{method} "))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

fn parse_trace(text: &str) -> Vec<Msg> {
    const SEP: &str = "----------------------------------------------- ";
    let mut out = Vec::new();
    for block in text.split(SEP).skip(1) {
        let mut lines = block.lines();
        let Some(t) = lines.next().and_then(|s| {
            chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|d| d.and_utc().timestamp_micros() as f64 / 1e6)
        }) else {
            continue;
        };
        let Some(kind) = lines.next() else { continue };
        let body: Vec<&str> = lines
            .map(|l| l.trim_end_matches('\r'))
            .skip_while(|l| l.trim().is_empty())
            .collect();
        if body.is_empty() {
            continue;
        }
        out.push(Msg {
            t,
            received: kind.contains("received"),
            text: body.join("\n"),
        });
    }
    out
}

// ---- the server ------------------------------------------------------------------------------

/// `config/default.toml` (spool in `dir`, no demo data) plus `trunks` (TOML text).
fn write_config(dir: &Path, trunks: &str) -> PathBuf {
    let default = std::fs::read_to_string(repo_root().join("config/default.toml"))
        .expect("read config/default.toml");
    let mut text = String::new();
    for l in default.lines() {
        let key = l.trim_start();
        if key.starts_with("spool_dir") {
            let _ = writeln!(
                text,
                "spool_dir = {:?}",
                dir.join("spool").display().to_string()
            );
        } else if key.starts_with("demo_data") {
            text.push_str("demo_data = false\n");
        } else {
            text.push_str(l);
            text.push('\n');
        }
    }
    text.push('\n');
    text.push_str(trunks);
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_server(dir: &Path, trunks: &str) -> Server {
    let config = write_config(dir, trunks);
    Server::start(&[
        "--config",
        &config.display().to_string(),
        "--api-token",
        TOKEN,
        "--no-demo-data",
    ])
}

fn trunk(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[trunk]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nmax_channels = 4\nmax_cps = 10\n{extra}\n"
    )
}

/// A zone whose 00:00-23:59 window is open for the next hour (UTC, except near midnight).
/// `Etc/UTC`: the dialer reads the schema default `UTC` as "not set" (docs/schema.md).
fn open_zone() -> &'static str {
    if (1..=21).contains(&chrono::Utc::now().hour()) {
        "Etc/UTC"
    } else {
        "America/Chicago"
    }
}

/// Insert `n` delayed tickets with numbers `+1555020<series><i>`; their ids.
fn tickets(server: &Server, series: u32, n: u32) -> Vec<i64> {
    let db = server.db();
    (0..n)
        .map(|i| {
            db.exec(&format!(
                "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                 status, delay_days, new_eta) VALUES ('T{series}{i:02}', 'Customer', \
                 '+1555020{series}{i:02}', 'en', 'standard', '{}', 'delayed', 2, '2026-12-24')",
                open_zone()
            ));
            db.row(&format!(
                "SELECT id FROM tickets WHERE order_id = 'T{series}{i:02}'"
            ))["id"]
                .as_i64()
                .expect("ticket id")
        })
        .collect()
}

/// Create and start a campaign on `trunk` for `ids`; no retries (one attempt each).
fn run_campaign(server: &Server, name: &str, trunk: &str, ids: &[i64], channels: u32) -> i64 {
    let once = json!({"after_s": 60, "max_attempts": 1});
    let spec = json!({
        "name": name,
        "dialplan": "delay-notify",
        "trunk": trunk,
        "caller_id": "+15550100",
        "ticket_ids": ids,
        "max_channels": channels,
        "max_cps": 10,
        "ring_timeout_s": 15,
        "window": {"start": "00:00", "end": "23:59"},
        "retry": {"busy": once, "no_answer": once, "failed": once, "machine": once}
    });
    let (code, body) = api(server.http_addr, "POST", "/api/campaigns", Some(&spec));
    assert_eq!(code, 201, "create campaign: {body}\n{}", server.log());
    let id = body["id"].as_i64().expect("campaign id");
    let (code, body) = api(
        server.http_addr,
        "POST",
        &format!("/api/campaigns/{id}/start"),
        None,
    );
    assert_eq!(code, 200, "start campaign: {body}");
    id
}

/// Wait until the campaign's calls all ended in the database; its call records.
fn wait_calls(server: &Server, campaign: i64, n: usize, timeout: Duration) -> Vec<support::DbRow> {
    let db = server.db();
    let deadline = Instant::now() + timeout;
    loop {
        let rows = db.rows(&format!(
            "SELECT id, disposition, hangup_cause, sip_status, answered_at, trunk, from_uri \
             FROM call_records WHERE campaign_id = {campaign} AND ended_at IS NOT NULL ORDER BY started_at"
        ));
        if rows.len() >= n {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "campaign {campaign}: {} of {n} calls ended within {timeout:?}\n{}\n{}",
            rows.len(),
            db.dump(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tmp(prefix: &str) -> tempfile::TempDir {
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

fn received<'a>(trace: &'a [Msg], method: &str) -> Vec<&'a Msg> {
    trace
        .iter()
        .filter(|m| m.received && m.is_request(method))
        .collect()
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn proxy_auth_407_is_answered_and_the_call_recorded() {
    let dir = tmp("trunk-auth-");
    let mut uas = Uas::start(dir.path(), "carrier", "uas_trunk_auth.xml", &["-m", "1"]);
    let server = start_server(
        dir.path(),
        &trunk(
            "carrier",
            uas.port,
            "username = \"trunkuser\"\npassword = \"trunkpass\"\npai = true",
        ),
    );
    let ids = tickets(&server, 1, 1);
    let c = run_campaign(&server, "auth", "carrier", &ids, 1);
    let rows = wait_calls(&server, c, 1, Duration::from_secs(30));
    let r = &rows[0];
    assert_eq!(r["sip_status"], 200, "answered after the digest: {r:?}");
    assert!(r["answered_at"].is_string(), "{r:?}");
    assert_eq!(r["trunk"], "carrier", "{r:?}");
    assert_eq!(r["from_uri"], "sip:+15550100@127.0.0.1", "{r:?}");
    // SIPp's verdict: `-m 1` reached with the call passing every check_it.
    let st = uas.wait(Duration::from_secs(15));
    assert!(
        st.is_some_and(|s| s.success()),
        "SIPp: {st:?}\n{}",
        uas.output()
    );
    let trace = uas.trace();
    let invites = received(&trace, "INVITE");
    assert_eq!(invites.len(), 2, "407 then the authorized INVITE");
    assert!(invites[0].header("Proxy-Authorization").is_none());
    let auth = invites[1]
        .header("Proxy-Authorization")
        .expect("credentials");
    assert!(
        auth.contains("realm=\"carrier.test\"") && auth.contains("qop=auth"),
        "{auth}"
    );
    assert_ne!(
        invites[0].header("CSeq"),
        invites[1].header("CSeq"),
        "a new transaction"
    );
    assert_eq!(
        invites[1].header("P-Asserted-Identity"),
        Some("<sip:+15550100@127.0.0.1>")
    );
    // The digest, checked like a registrar would: MD5, qop=auth, password "trunkpass".
    use switchboard::sip::auth;
    let creds = auth::parse_credentials(auth).expect("Digest credentials");
    let uri = invites[1]
        .start_line()
        .split_whitespace()
        .nth(1)
        .expect("Request-URI");
    assert_eq!(creds.uri, uri, "digest-uri is the Request-URI");
    let ha1 = auth::ha1(creds.algorithm, "trunkuser", "carrier.test", "trunkpass");
    let qop = creds.qop.map(|q| {
        (
            q,
            creds.nc.as_deref().unwrap_or(""),
            creds.cnonce.as_deref().unwrap_or(""),
        )
    });
    let expected = auth::compute_response(creds.algorithm, &ha1, &creds.nonce, "INVITE", uri, qop);
    assert_eq!(creds.response, expected, "digest for trunkpass");
}

#[test]
fn trunk_max_channels_holds_across_campaigns() {
    let dir = tmp("trunk-channels-");
    let uas = Uas::start(
        dir.path(),
        "carrier",
        "uas_trunk_answer.xml",
        &["-d", "1500"],
    );
    let server = start_server(
        dir.path(),
        &format!(
            "[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{}\"\nmax_channels = 2\nmax_cps = 20\n",
            uas.port
        ),
    );
    // Two campaigns, each allowed the trunk's 2 channels: only the trunk's gate keeps the
    // total at 2 (without it the farm would see 4 at once).
    let a = run_campaign(&server, "ch-a", "carrier", &tickets(&server, 2, 3), 2);
    let b = run_campaign(&server, "ch-b", "carrier", &tickets(&server, 3, 3), 2);
    let ra = wait_calls(&server, a, 3, Duration::from_secs(40));
    let rb = wait_calls(&server, b, 3, Duration::from_secs(40));
    for r in ra.iter().chain(&rb) {
        assert_eq!(r["sip_status"], 200, "{r:?}");
    }
    let trace = uas.trace();
    // Calls as the trunk saw them: INVITE received .. our BYE sent.
    let mut events: Vec<(f64, i32)> = Vec::new();
    for m in &trace {
        if m.received && m.is_request("INVITE") {
            events.push((m.t, 1));
        } else if !m.received && m.is_request("BYE") {
            events.push((m.t, -1));
        }
    }
    assert_eq!(
        events.iter().filter(|e| e.1 == 1).count(),
        6,
        "6 calls, no retransmitted INVITE"
    );
    events.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut max) = (0, 0);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    assert_eq!(max, 2, "most concurrent calls on the trunk");
}

/// Trunk A refuses (or is silent), trunk B answers: the record names B and A's failure is
/// in the call's events.
fn failover_case(refuse: bool, code: u16, timeout: Duration) {
    let dir = tmp("trunk-failover-");
    // Not refusing: A is a socket that reads and never answers (Timer B).
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let a = refuse.then(|| {
        let template = std::fs::read_to_string(repo_root().join("sip-test/uas_trunk_refuse.xml"))
            .expect("read uas_trunk_refuse.xml");
        let path = dir.path().join(format!("refuse_{code}.xml"));
        std::fs::write(&path, template.replace("@CODE@", &code.to_string())).expect("write");
        Uas::start(dir.path(), "a", &path.display().to_string(), &["-m", "1"])
    });
    let a_port = a
        .as_ref()
        .map_or_else(|| silent.local_addr().expect("addr").port(), |u| u.port);
    let b = Uas::start(dir.path(), "b", "uas_trunk_answer.xml", &["-d", "500"]);
    let server = start_server(
        dir.path(),
        &format!(
            "{}{}",
            trunk("a", a_port, "failover = \"b\""),
            trunk("b", b.port, "")
        ),
    );
    let c = run_campaign(&server, "fo", "a", &tickets(&server, 4, 1), 1);
    let rows = wait_calls(&server, c, 1, timeout);
    let r = &rows[0];
    let b_trace = b.trace();
    let b_invites = received(&b_trace, "INVITE");
    if code == 486 {
        assert_eq!(r["sip_status"], 486, "{r:?}");
        assert_eq!(r["disposition"], "busy", "{r:?}");
        assert_eq!(r["trunk"], "a", "{r:?}");
        assert!(b_invites.is_empty(), "486 is final: no INVITE on B");
        return;
    }
    assert_eq!(r["sip_status"], 200, "completed on B: {r:?}");
    assert_eq!(r["trunk"], "b", "{r:?}");
    assert_eq!(b_invites.len(), 1, "one INVITE on B");
    let ev = server.db().rows(&format!(
        "SELECT detail FROM call_events WHERE call_id = '{}' AND kind = 'failover'",
        r["id"].as_str().unwrap_or("")
    ));
    assert_eq!(ev.len(), 1, "one failover event");
    assert_eq!(ev[0]["detail"], format!("a>b {code}"));
    if let Some(a) = &a {
        let a_trace = a.trace();
        let a_invites = received(&a_trace, "INVITE");
        assert_eq!(a_invites.len(), 1);
        assert_eq!(
            a_invites[0].header("Call-ID"),
            b_invites[0].header("Call-ID"),
            "same call, new transaction"
        );
        assert_ne!(a_invites[0].header("Via"), b_invites[0].header("Via"));
    } else {
        // The silent trunk got the INVITE and its Timer A retransmissions.
        silent
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while let Ok(len) = silent.recv(&mut buf) {
            if buf[..len].starts_with(b"INVITE ") {
                n += 1;
            }
        }
        assert!(n >= 5, "INVITE + Timer A retransmissions on A: {n}");
    }
}

#[test]
fn failover_on_503() {
    failover_case(true, 503, Duration::from_secs(30));
}

#[test]
fn failover_when_the_first_trunk_never_answers() {
    failover_case(false, 408, Duration::from_secs(60));
}

#[test]
fn busy_486_does_not_fail_over() {
    failover_case(true, 486, Duration::from_secs(30));
}

#[test]
fn registration_challenge_refresh_api_and_unregister_at_sigterm() {
    let dir = tmp("trunk-register-");
    let mut registrar = Uas::start(dir.path(), "registrar", "uas_registrar.xml", &["-m", "1"]);
    let mut server = start_server(
        dir.path(),
        &trunk(
            "carrier",
            registrar.port,
            "username = \"trunkuser\"\npassword = \"trunkpass\"\nregister = true\nregister_expires = 60",
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let entry = loop {
        let (code, body) = api(server.http_addr, "GET", "/api/trunks", None);
        assert_eq!(code, 200, "{body}");
        let t = body["trunks"][0].clone();
        if t["registered"] == true {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "not registered within 10 s: {t}\n{}\n{}",
            registrar.output(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(entry["name"], "carrier");
    assert!(
        entry["expires_in"].as_u64().is_some_and(|e| e <= 3),
        "{entry}"
    );
    assert_eq!(entry["registration_state"], "registered", "{entry}");
    assert_eq!(entry["active_channels"], 0);
    // Granted 3 s: refreshes at ~2.4 s intervals, each answered 200.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = received(&registrar.trace(), "REGISTER").len();
        if n >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} REGISTERs: no refreshes\n{}",
            registrar.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, body) = api(server.http_addr, "GET", "/api/trunks", None);
    let t = &body["trunks"][0];
    assert!(t["registrations"].as_u64().is_some_and(|n| n >= 2), "{t}");
    assert_eq!(t["registered"], true, "still bound after refreshes: {t}");
    assert!(t["last_error"].is_null(), "{t}");
    server.sigterm();
    assert!(
        server
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "clean exit after SIGTERM\n{}",
        server.log()
    );
    // The registrar's scenario ends (-m 1) only on a REGISTER with Expires: 0.
    let st = registrar.wait(Duration::from_secs(5));
    assert!(
        st.is_some_and(|s| s.success()),
        "registrar: {st:?}\n{}",
        registrar.output()
    );
    let trace = registrar.trace();
    let regs = received(&trace, "REGISTER");
    let last = regs.last().expect("REGISTERs");
    assert_eq!(last.header("Expires"), Some("0"), "unregister last");
    assert!(regs[0].header("Authorization").is_none());
    assert!(regs[1..]
        .iter()
        .all(|m| m.header("Authorization").is_some()));
    let call_ids: std::collections::HashSet<_> =
        regs.iter().filter_map(|m| m.header("Call-ID")).collect();
    assert_eq!(call_ids.len(), 1, "one Call-ID for the binding");
    let contact = regs[0].header("Contact").unwrap_or("");
    assert!(
        contact.starts_with("<sip:trunkuser@127.0.0.1:"),
        "{contact}"
    );
}
