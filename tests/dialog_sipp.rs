//! Dialog-level SIP end to end against the real `switchboard` binary (issue 3, dialog
//! part): RFC 4028 session timers (the caller refreshing by UPDATE and then falling silent,
//! 422 below our minimum, the server refreshing by re-INVITE and retrying after a 491),
//! overlapping re-INVITEs (500 + Retry-After, 491), hold/unhold by re-INVITE with the
//! server's RTP captured, INFO DTMF driving the hotline, a CANCEL crossing the 200, a
//! whole call under SIPp's `-lost 10`, and retransmitted INVITEs, INFOs, UPDATEs and BYEs
//! answered by the router's transactions. SIPp scenarios are in `sip-test/`; the results are
//! checked through the database as another program would see them.
//!
//! Needs SIPp (`$SWITCHBOARD_SIPP` or `sipp` on PATH); the loss test also needs root
//! (SIPp's pcap play). Run: `cargo test --test suite -- dialog_sipp:: --test-threads=1`.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{
    repo_root, sdp_offer, wait_for, DbRow, Scenario, Server, SippProcess, SippRun, TestDb,
};
use tempfile::TempDir;

const DB_WAIT: Duration = Duration::from_secs(5);

/// The smallest session interval the timer tests configure (RFC 4028's floor is 90 s; the
/// server allows less so that a test can watch a session expire in seconds).
const MIN_SE: u32 = 2;

/// A server on a copy of `config/default.toml` with `edits` applied: each `(prefix, line)`
/// replaces the first line starting with `prefix` (the spool always moves to a temp dir).
fn server_with(edits: &[(&str, &str)]) -> (Server, TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("switchboard-dialog-")
        .tempdir()
        .expect("temp dir");
    let mut text = std::fs::read_to_string(repo_root().join("config/default.toml"))
        .expect("read config/default.toml");
    let spool = format!(
        "spool_dir = {:?}",
        dir.path().join("spool").display().to_string()
    );
    let mut all: Vec<(&str, &str)> = vec![("spool_dir", spool.as_str())];
    all.extend_from_slice(edits);
    for (prefix, line) in all {
        let start = text
            .lines()
            .position(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("config/default.toml has no line starting with {prefix}"));
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines[start] = line.to_string();
        text = lines.join("\n") + "\n";
    }
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let cfg = path.display().to_string();
    (Server::start(&["--config", &cfg]), dir)
}

fn timer_server() -> (Server, TempDir) {
    let min = format!("session_min_se_s = {MIN_SE}");
    server_with(&[("session_min_se_s", &min)])
}

/// Run a `sip-test/` scenario (after `@TOKEN@` replacements) once against `server`.
fn run_scenario(
    server: &Server,
    template: &str,
    replace: &[(&str, &str)],
    args: &[&str],
    budget: Duration,
) -> SippRun {
    spawn_scenario(server, template, replace, args, budget).wait()
}

fn spawn_scenario(
    server: &Server,
    template: &str,
    replace: &[(&str, &str)],
    args: &[&str],
    budget: Duration,
) -> SippProcess {
    let dir: PathBuf = server
        .dir
        .path()
        .join(format!("sipp-{}", support::unique("s")));
    std::fs::create_dir_all(&dir).expect("sipp dir");
    let mut text =
        std::fs::read_to_string(repo_root().join("sip-test").join(template)).expect("scenario");
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    let file = dir.join(template);
    std::fs::write(&file, text).expect("write scenario");
    SippProcess::spawn_caller_file(&file, server.sip_addr, &dir, args, budget)
}

/// The one ended call record of `caller`.
fn ended_call(server: &Server, caller: &str) -> DbRow {
    server.wait_db(DB_WAIT, &format!("an ended call from {caller}"), |db| {
        db.rows(&format!(
            "SELECT *, (julianday(ended_at) - julianday(answered_at)) * 86400.0 AS talk_s \
             FROM call_records WHERE caller = '{caller}' AND ended_at IS NOT NULL"
        ))
        .pop()
    })
}

fn events(db: &TestDb, call: &DbRow) -> Vec<(String, String)> {
    db.call_events(call["id"].as_str().expect("call id"))
}

fn has(ev: &[(String, String)], kind: &str, detail: &str) -> bool {
    ev.iter().any(|(k, d)| k == kind && d == detail)
}

fn caller(n: &str) -> [&str; 3] {
    ["-set", "caller", n]
}

/// Session timer, the caller refreshing: 200 with Session-Expires + Require (SIPp checks),
/// one UPDATE refresh answered with Session-Expires, then silence: the server sends BYE
/// SE − SE/3 after the refresh and records `session_expired`.
#[test]
fn session_timer_refreshed_by_update_then_expires_with_bye() {
    let (server, _cfg) = timer_server();
    run_scenario(
        &server,
        "uac_session_timer.xml",
        &[],
        &caller("+15552000001"),
        Duration::from_secs(20),
    )
    .assert_ok(&server);
    let call = ended_call(&server, "+15552000001");
    assert_eq!(call["hangup_cause"], "session_expired", "{call:#?}");
    assert_eq!(call["disposition"], "answered", "{call:#?}");
    // UPDATE at 0.5 s restarts the 2 s interval: BYE at 0.5 + 2 − 2/3 ≈ 1.83 s after the
    // answer (without the restart it would come at 1.33 s).
    let talk = call["talk_s"].as_f64().expect("talk_s");
    assert!(
        (1.6..3.5).contains(&talk),
        "BYE {talk:.2} s after the answer"
    );
    let ev = events(&server.db(), &call);
    assert!(has(&ev, "session_timer", "2;refresher=uac"), "{ev:#?}");
    assert!(has(&ev, "update", "refresh"), "{ev:#?}");
}

/// Below `session_min_se_s`: 422 with Min-SE (SIPp checks the value), recorded as failed.
#[test]
fn session_interval_too_small_gets_422_with_min_se() {
    let (server, _cfg) = timer_server();
    let min = MIN_SE.to_string();
    run_scenario(
        &server,
        "uac_session_too_small.xml",
        &[("@MIN_SE@", &min)],
        &caller("+15552000002"),
        Duration::from_secs(10),
    )
    .assert_ok(&server);
    let call = server.wait_db(DB_WAIT, "the refused call", |db| {
        db.rows("SELECT * FROM call_records WHERE caller = '+15552000002' AND ended_at IS NOT NULL")
            .pop()
    });
    assert_eq!(call["sip_status"], 422, "{call:#?}");
    assert_eq!(call["hangup_cause"], "session_interval_too_small");
    assert!(call["answered_at"].is_null(), "{call:#?}");
}

/// A re-INVITE before the ACK of the INVITE's 200 gets 500 with Retry-After 0..10 (SIPp
/// checks); once ACKed, a re-INVITE is answered 200 and the call ends normally.
#[test]
fn reinvite_before_ack_gets_500_with_retry_after() {
    let server = Server::start(&[]);
    run_scenario(
        &server,
        "uac_reinvite_overlap.xml",
        &[],
        &caller("+15552000003"),
        Duration::from_secs(15),
    )
    .assert_ok(&server);
    let call = ended_call(&server, "+15552000003");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    let ev = events(&server.db(), &call);
    let reinvites = ev.iter().filter(|(k, _)| k == "reinvite").count();
    assert_eq!(
        reinvites, 1,
        "only the second re-INVITE was accepted: {ev:#?}"
    );
}

/// Hold and resume: sendonly → our answer recvonly, inactive → inactive, sendrecv →
/// sendrecv (SIPp checks each answer); the server's RTP, captured at the SDP's port, stops
/// while held and resumes after; the record has the hold and unhold events.
#[test]
fn reinvite_hold_inactive_resume() {
    let server = Server::start(&[]);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port().to_string();
    let sipp = spawn_scenario(
        &server,
        "uac_reinvite_hold.xml",
        &[],
        &[
            "-set",
            "caller",
            "+15552000004",
            "-set",
            "rtp_port",
            &rtp_port,
        ],
        Duration::from_secs(25),
    );
    // Arrival times of the server's RTP over the whole scenario (~7 s).
    let start = Instant::now();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 1500];
    while start.elapsed() < Duration::from_secs(9) {
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            if n > 12 {
                arrivals.push(start.elapsed());
            }
        }
    }
    sipp.wait().assert_ok(&server);
    assert!(arrivals.len() > 100, "{} RTP packets", arrivals.len());
    let (gap_at, gap) = arrivals
        .windows(2)
        .map(|w| (w[0], w[1] - w[0]))
        .max_by_key(|(_, g)| *g)
        .expect("packets");
    // Held for 3 s (1.5 s sendonly + 1.5 s inactive): no RTP from us meanwhile.
    assert!(
        gap >= Duration::from_millis(2500),
        "largest RTP gap {gap:?} at {gap_at:?}: the server kept sending while held"
    );
    let after = arrivals.iter().filter(|t| **t > gap_at + gap).count();
    assert!(after >= 40, "audio resumed after unhold: {after} packets");
    let call = ended_call(&server, "+15552000004");
    let ev = events(&server.db(), &call);
    assert!(has(&ev, "hold", "caller:recvonly"), "{ev:#?}");
    assert!(has(&ev, "hold", "caller:inactive"), "{ev:#?}");
    assert!(has(&ev, "unhold", "caller:sendrecv"), "{ev:#?}");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
}

/// The delayed-order refund flow (2, then 2) keyed by INFO — `application/dtmf-relay` for
/// the first digit, `application/dtmf` for the second — resolves the ticket as RFC 4733
/// digits do (tests/hotline_sipp.rs).
#[test]
fn info_dtmf_drives_the_hotline_to_a_refund() {
    let server = Server::start(&[]);
    run_scenario(
        &server,
        "uac_info_dtmf.xml",
        &[],
        &[
            "-set",
            "caller",
            "+15551230001",
            "-set",
            "d1",
            "2",
            "-set",
            "d2",
            "2",
        ],
        Duration::from_secs(40),
    )
    .assert_ok(&server);
    let call = ended_call(&server, "+15551230001");
    let db = server.db();
    let ev = events(&db, &call);
    let digits: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "dtmf")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(digits, ["2", "2"], "{ev:#?}");
    assert!(has(&ev, "menu", "main_menu=2"), "{ev:#?}");
    assert!(has(&ev, "menu", "delayed_menu=2"), "{ev:#?}");
    let outcome = db.row("SELECT choice, call_id FROM call_outcomes");
    assert_eq!(outcome["choice"], "refund");
    assert_eq!(outcome["call_id"], call["id"]);
    let t = db.row("SELECT resolution FROM tickets WHERE order_id = '1001'");
    assert_eq!(t["resolution"], "refund");
}

/// A CANCEL right behind the INVITE to a route that answers at once crosses the 200: the
/// call ends cleanly with exactly one record, either cancelled (487) or answered and hung
/// up by the caller.
#[test]
fn cancel_crossing_the_200_ends_with_one_clean_record() {
    let (server, _cfg) = server_with(&[("ring_ms = 1000", "ring_ms = 0")]);
    run_scenario(
        &server,
        "uac_cancel_race.xml",
        &[],
        &caller("+15552000005"),
        Duration::from_secs(15),
    )
    .assert_ok(&server);
    let call = ended_call(&server, "+15552000005");
    let records = server
        .db()
        .count("call_records WHERE caller = '+15552000005'");
    assert_eq!(records, 1);
    let cancelled = call["disposition"] == "cancelled" && call["sip_status"] == 487;
    let answered = call["disposition"] == "answered"
        && call["hangup_cause"] == "caller_hangup"
        && call["answered_at"].is_string();
    assert!(cancelled || answered, "{call:#?}");
    // Nothing left over: no active call once it ended.
    let status = server.wait_db(DB_WAIT, "no active calls", |_| {
        let (_, body) = server.api_get("/api/status")?;
        body.contains("\"active_calls\":0").then_some(body)
    });
    assert!(status.contains("active_calls"), "{status}");
}

/// `--database sqlite::memory:` (issue: it failed at start with "no such table: tickets",
/// each pooled connection getting its own empty database): the server starts on one shared
/// in-memory database, answers /api/status, takes a call and writes its record.
#[test]
fn server_runs_on_an_in_memory_database() {
    let server = Server::start_on(Some("sqlite::memory:"), &[]);
    let (code, body) = server.api_get("/api/status").expect("status answers");
    assert_eq!(code, 200, "{body}");
    server
        .run_sipp(
            &Scenario::HangupEarly { hold_ms: 1500 },
            &caller("+15551230009"),
        )
        .assert_ok(&server);
    // CallStarted, events, CallEnded: written by the writer, none spooled.
    let status = wait_for(DB_WAIT, "the call's records written", || {
        let (_, body) = server.api_get("/api/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["active_calls"] == 0 && v["store"]["written"].as_u64().unwrap_or(0) >= 2).then_some(v)
    });
    assert_eq!(status["store"]["spooled"], 0, "{status}");
    assert_eq!(status["store"]["dead_letters"], 0, "{status}");
    let log = server.log();
    assert!(!log.contains("no such table"), "{log}");
}

/// A whole hotline call (refund by RFC 4733 digits) with SIPp losing 10 % of the SIP
/// messages it sends and receives: retransmissions on both sides carry it through; the
/// record is complete and SIPp exits 0. Repeated 3 times for different loss patterns.
#[test]
fn call_completes_under_ten_percent_sip_loss() {
    for round in 0..3 {
        let server = Server::start(&[]);
        let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '2')], 1000, 20_000);
        let run = server.run_sipp(
            &scenario,
            &["-lost", "10", "-set", "caller", "+15551230001"],
        );
        run.assert_ok(&server);
        let call = ended_call(&server, "+15551230001");
        assert_eq!(call["disposition"], "answered", "round {round}: {call:#?}");
        assert_eq!(call["sip_status"], 200, "round {round}: {call:#?}");
        assert!(call["answered_at"].is_string(), "round {round}: {call:#?}");
        let db = server.db();
        let outcome = db.row("SELECT choice FROM call_outcomes");
        assert_eq!(outcome["choice"], "refund", "round {round}");
        let ev = events(&db, &call);
        let digits = ev.iter().filter(|(k, _)| k == "dtmf").count();
        assert_eq!(digits, 2, "round {round}: {ev:#?}");
    }
}

// ---- the server as refresher, raw SIP ---------------------------------------------------

/// One UDP peer speaking raw SIP (requests and responses both arrive here).
struct Peer {
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
}

impl Peer {
    fn new(server: SocketAddr) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let local = sock.local_addr().expect("addr");
        Peer {
            sock,
            local,
            server,
        }
    }

    fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server)
            .expect("send");
    }

    /// The next message whose first line starts with `start` (others are skipped).
    #[track_caller]
    fn expect(&self, start: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                panic!("no '{start}' within {timeout:?}");
            };
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with(start) {
                    return text;
                }
            }
        }
    }
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    let head = msg.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .skip(1)
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or("")
}

/// Our answer to a request of the server: its Via, From, To, Call-ID and CSeq copied.
fn answer(req: &str, code: u16, reason: &str, peer: &Peer, body: &str) -> String {
    let ct = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "SIP/2.0 {code} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:peer@{}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        header(req, "Via"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        peer.local,
        body.len()
    )
}

/// The caller asks the server to refresh (refresher=uas) and does not allow UPDATE: the
/// server sends re-INVITEs at SE/2 carrying Session-Expires and our SDP. A 491 to one is
/// ACKed and retried within 0..2 s (RFC 3261 §14.1); our own re-INVITE sent while the
/// server's is outstanding gets 491; answering the refresh keeps the call up past SE.
#[test]
fn server_refreshes_by_reinvite_and_retries_after_491() {
    let (server, _cfg) = timer_server();
    let peer = Peer::new(server.sip_addr);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    let sdp = sdp_offer(
        rtp.local_addr().expect("addr").port(),
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    let call_id = support::unique("refresh-");
    let from = format!("<sip:+15552000006@{}>;tag=peer1", peer.local);
    let invite = format!(
        "INVITE sip:hotline@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:hotline@{srv}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:+15552000006@{me}>\r\nAllow: INVITE, ACK, BYE, CANCEL\r\n\
         Supported: timer\r\nSession-Expires: 6;refresher=uas\r\nContent-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        srv = server.sip_addr,
        me = peer.local,
        len = sdp.len()
    );
    peer.send(&invite);
    let ok = peer.expect("SIP/2.0 200", Duration::from_secs(5));
    assert_eq!(header(&ok, "Session-Expires"), "6;refresher=uas", "{ok}");
    assert_eq!(header(&ok, "Require"), "timer", "{ok}");
    let to = header(&ok, "To").to_string();
    let in_dialog = |method: &str, cseq: u32, branch: &str, body: &str| {
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        format!(
            "{method} sip:hotline@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:+15552000006@{me}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            srv = server.sip_addr,
            me = peer.local,
        )
    };
    peer.send(&in_dialog("ACK", 1, "z9hG4bKack1", ""));
    let answered = Instant::now();

    // First refresh at SE/2 = 3 s: a re-INVITE with our SDP, Session-Expires refresher=uas.
    // (SE 6 s: the 0..2 s retry after a 491 still lands before the session expires.)
    let r1 = peer.expect("INVITE ", Duration::from_secs(5));
    let t1 = answered.elapsed();
    assert!(
        (Duration::from_millis(2800)..Duration::from_millis(4000)).contains(&t1),
        "refresh at {t1:?}, SE/2 = 3 s"
    );
    assert_eq!(header(&r1, "Session-Expires"), "6;refresher=uas", "{r1}");
    assert!(r1.contains("m=audio"), "the re-INVITE offers our SDP: {r1}");
    peer.send(&answer(&r1, 491, "Request Pending", &peer, ""));
    let ack = peer.expect("ACK ", Duration::from_secs(2));
    assert_eq!(
        header(&ack, "CSeq").split_whitespace().next(),
        header(&r1, "CSeq").split_whitespace().next(),
        "the ACK of the 491 has the re-INVITE's CSeq number"
    );
    // The retry: a new re-INVITE (higher CSeq) within 0..2 s (plus scheduling slack).
    let sent_491 = Instant::now();
    let r2 = loop {
        let m = peer.expect("INVITE ", Duration::from_secs(3));
        if header(&m, "CSeq") != header(&r1, "CSeq") {
            break m;
        }
    };
    assert!(
        sent_491.elapsed() < Duration::from_millis(2600),
        "retry after {:?}",
        sent_491.elapsed()
    );
    // Glare: our own re-INVITE while the server's is outstanding gets 491.
    let ours = in_dialog("INVITE", 2, "z9hG4bKre2", &sdp);
    peer.send(&ours);
    let r491 = peer.expect("SIP/2.0 491", Duration::from_secs(2));
    assert!(header(&r491, "CSeq").starts_with("2 INVITE"), "{r491}");
    peer.send(&in_dialog("ACK", 2, "z9hG4bKre2", ""));
    // Now answer the server's refresh: it ACKs, the session is refreshed.
    peer.send(&answer(&r2, 200, "OK", &peer, &sdp));
    let ack2 = peer.expect("ACK ", Duration::from_secs(2));
    assert_eq!(
        header(&ack2, "CSeq").split_whitespace().next(),
        header(&r2, "CSeq").split_whitespace().next(),
    );
    // The next refresh comes SE/2 later: answer it at once; the call stays up past SE.
    let r3 = peer.expect("INVITE ", Duration::from_secs(5));
    peer.send(&answer(&r3, 200, "OK", &peer, &sdp));
    peer.expect("ACK ", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    peer.send(&in_dialog("BYE", 3, "z9hG4bKbye3", ""));
    peer.expect("SIP/2.0 200", Duration::from_secs(2));
    let call = ended_call(&server, "+15552000006");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    let talk = call["talk_s"].as_f64().expect("talk_s");
    assert!(talk > 6.0, "the refreshed session outlived SE: {talk:.2} s");
}

/// A raw INVITE from `peer` (Via branch `branch`) to the hotline, with an SDP offer.
fn raw_invite(server: &Server, peer: &Peer, call_id: &str, caller: &str, branch: &str) -> String {
    let sdp = sdp_offer(
        40_000,
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    format!(
        "INVITE sip:hotline@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{caller}@{me}>;tag=rx1\r\nTo: <sip:hotline@{srv}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{caller}@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        srv = server.sip_addr,
        me = peer.local,
        len = sdp.len()
    )
}

/// A request in the INVITE's dialog (or an ACK/CANCEL of it) from the raw peer.
fn raw_request(
    server: &Server,
    peer: &Peer,
    invite: &str,
    method: &str,
    cseq: u32,
    branch: &str,
    to: &str,
) -> String {
    format!(
        "{method} sip:hotline@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        srv = server.sip_addr,
        me = peer.local,
        from = header(invite, "From"),
        call_id = header(invite, "Call-ID"),
    )
}

/// Whether any message starting with `start` arrives within `wait`.
fn quiet(peer: &Peer, start: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    let mut buf = vec![0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        peer.sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        if let Ok((n, _)) = peer.sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(start) {
                return Some(text);
            }
        }
    }
    None
}

/// INVITE retransmissions are the router's transaction's (RFC 3261 §17.2.1, RFC 6026):
/// while ringing a retransmitted INVITE gets the 180 again (same To tag); after the 200 it
/// is absorbed and the call retransmits its 200 until the ACK (new branch), which reaches
/// the call (no 200 after it). A CANCELled call's 487 is retransmitted on Timer G after the
/// call has ended, a retransmitted INVITE gets the 487 again, and the ACK stops it. Each
/// call leaves exactly one record.
#[test]
fn invite_retransmissions_are_answered_by_the_transaction() {
    let (server, _cfg) = server_with(&[]);
    let peer = Peer::new(server.sip_addr);
    let call_id = support::unique("rexmit-");
    let invite = raw_invite(&server, &peer, &call_id, "+15552000010", "z9hG4bKrx1");
    peer.send(&invite);
    peer.expect("SIP/2.0 100", Duration::from_secs(2));
    let ringing = peer.expect("SIP/2.0 180", Duration::from_secs(2));
    let to = header(&ringing, "To").to_string();
    assert!(to.contains("tag="), "{ringing}");
    peer.send(&invite);
    let again = peer.expect("SIP/2.0 ", Duration::from_secs(1));
    assert!(
        again.starts_with("SIP/2.0 180"),
        "the last provisional: {again}"
    );
    assert_eq!(header(&again, "To"), to);
    let ok = peer.expect("SIP/2.0 200", Duration::from_secs(3));
    assert_eq!(header(&ok, "To"), to, "{ok}");
    // Accepted: the INVITE is absorbed; what comes is the call's own 200 retransmission.
    peer.send(&invite);
    let next = peer.expect("SIP/2.0 ", Duration::from_secs(2));
    assert!(next.starts_with("SIP/2.0 200"), "{next}");
    assert_eq!(header(&next, "To"), to);
    peer.send(&raw_request(
        &server,
        &peer,
        &invite,
        "ACK",
        1,
        "z9hG4bKrx1ack",
        &to,
    ));
    assert_eq!(
        quiet(&peer, "SIP/2.0 200", Duration::from_millis(1500)),
        None,
        "the ACK reached the call: no more 200s"
    );
    peer.send(&raw_request(
        &server,
        &peer,
        &invite,
        "BYE",
        2,
        "z9hG4bKrx1bye",
        &to,
    ));
    peer.expect("SIP/2.0 200", Duration::from_secs(2));
    let call = ended_call(&server, "+15552000010");
    assert_eq!(call["disposition"], "answered", "{call:#?}");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    assert_eq!(
        server
            .db()
            .count("call_records WHERE caller = '+15552000010'"),
        1
    );

    // Non-2xx: CANCEL while ringing, no ACK at first.
    let call_id = support::unique("rexmit-");
    let invite = raw_invite(&server, &peer, &call_id, "+15552000011", "z9hG4bKrx2");
    peer.send(&invite);
    let ringing = peer.expect("SIP/2.0 180", Duration::from_secs(2));
    let to = header(&ringing, "To").to_string();
    let plain_to = header(&invite, "To").to_string();
    peer.send(&raw_request(
        &server,
        &peer,
        &invite,
        "CANCEL",
        1,
        "z9hG4bKrx2",
        &plain_to,
    ));
    let first = peer.expect("SIP/2.0 487", Duration::from_secs(2));
    let sent = Instant::now();
    assert_eq!(header(&first, "To"), to);
    // Timer G: again after T1 (the call is over by now; the router's transaction sends it).
    let g = peer.expect("SIP/2.0 487", Duration::from_secs(2));
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "Timer G, T1 = 500 ms: {:?}",
        sent.elapsed()
    );
    assert_eq!(header(&g, "To"), to);
    peer.send(&invite);
    let again = peer.expect("SIP/2.0 ", Duration::from_secs(1));
    assert!(again.starts_with("SIP/2.0 487"), "the final again: {again}");
    peer.send(&raw_request(
        &server,
        &peer,
        &invite,
        "ACK",
        1,
        "z9hG4bKrx2",
        &to,
    ));
    assert_eq!(
        quiet(&peer, "SIP/2.0 487", Duration::from_millis(2500)),
        None,
        "the ACK stopped Timer G"
    );
    let call = ended_call(&server, "+15552000011");
    assert_eq!(call["disposition"], "cancelled", "{call:#?}");
    assert_eq!(call["sip_status"], 487, "{call:#?}");
    assert_eq!(
        server
            .db()
            .count("call_records WHERE caller = '+15552000011'"),
        1
    );
}

/// In-dialog retransmissions are the router's non-INVITE server transactions' (RFC 3261
/// §17.2.2). A caller sends its INFO digit, its UPDATE and its BYE twice each (same branch,
/// same CSeq, as after a lost 200): every copy gets the very same 200 again, and the call
/// sees each request once — one digit, one refresh. The BYE's copy comes after the call
/// task has ended: its 200 lives on in the router's Completed transaction (Timer J), while
/// a BYE of another transaction (new branch) finds no call: 481. One record.
///
/// A raw UDP peer, not SIPp: SIPp takes a response identical to one it already received
/// for a retransmission and re-sends its request (an endless loop against a transaction
/// that answers every copy the same, as RFC 3261 wants).
#[test]
fn in_dialog_retransmissions_are_answered_by_the_router() {
    let (server, _cfg) = server_with(&[]);
    let peer = Peer::new(server.sip_addr);
    let call_id = support::unique("indlg-");
    let invite = raw_invite(&server, &peer, &call_id, "+15552000021", "z9hG4bKid1");
    peer.send(&invite);
    let ok = peer.expect("SIP/2.0 200", Duration::from_secs(5));
    let to = header(&ok, "To").to_string();
    let req = |method: &str, cseq: u32, branch: &str| {
        raw_request(&server, &peer, &invite, method, cseq, branch, &to)
    };
    peer.send(&req("ACK", 1, "z9hG4bKid1ack"));
    std::thread::sleep(Duration::from_millis(1500));
    let body = "Signal=2\r\nDuration=160\r\n";
    let info = req("INFO", 2, "z9hG4bKid1info").replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let update = req("UPDATE", 3, "z9hG4bKid1upd");
    let bye = req("BYE", 4, "z9hG4bKid1bye");
    for (name, request) in [("INFO", &info), ("UPDATE", &update)] {
        peer.send(request);
        let first = peer.expect("SIP/2.0 ", Duration::from_secs(2));
        assert!(first.starts_with("SIP/2.0 200"), "{name}: {first}");
        peer.send(request);
        let again = peer.expect("SIP/2.0 ", Duration::from_secs(2));
        assert_eq!(again, first, "{name}: the transaction repeats its response");
    }
    peer.send(&bye);
    let first = peer.expect("SIP/2.0 200", Duration::from_secs(2));
    assert!(header(&first, "CSeq").ends_with("BYE"), "{first}");
    let call = ended_call(&server, "+15552000021");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    // The call task is gone by now (its record is the last thing it submits).
    std::thread::sleep(Duration::from_millis(300));
    peer.send(&bye);
    let again = peer.expect("SIP/2.0 ", Duration::from_secs(2));
    assert_eq!(again, first, "the BYE's 200 outlives the call");
    peer.send(&req("BYE", 5, "z9hG4bKid1bye2"));
    let other = peer.expect("SIP/2.0 ", Duration::from_secs(2));
    assert!(other.starts_with("SIP/2.0 481"), "{other}");
    let db = server.db();
    let ev = events(&db, &call);
    let digits: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "dtmf")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(digits, ["2"], "the INFO's copy is no second key: {ev:#?}");
    let updates = ev.iter().filter(|(k, _)| k == "update").count();
    assert_eq!(
        updates, 1,
        "the UPDATE's copy is no second refresh: {ev:#?}"
    );
    assert_eq!(db.count("call_records WHERE caller = '+15552000021'"), 1);
}

/// The next response from the server whose CSeq is `cseq` (others, e.g. the call's
/// retransmissions of an earlier 200, are skipped).
#[track_caller]
fn expect_cseq(peer: &Peer, cseq: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no response to {cseq} within {timeout:?}"));
        let m = peer.expect("SIP/2.0 ", left);
        if header(&m, "CSeq") == cseq {
            return m;
        }
    }
}

/// Re-INVITE retransmissions are the router's INVITE server transactions' too (RFC 3261
/// §17.2.1, RFC 6026): the call answers each re-INVITE once. A re-INVITE before the ACK of
/// the INVITE's 200 gets 500 + Retry-After (the dialog's glare rule); that 500 is
/// retransmitted on Timer G, a copy of the re-INVITE gets the very same 500, and its ACK
/// (same branch) stops it without reaching the call. An accepted re-INVITE's copy is
/// absorbed: what comes is the call's own retransmission of its 200, until the ACK (new
/// branch). One `reinvite` event, one record.
#[test]
fn reinvite_retransmissions_are_answered_by_the_router() {
    let (server, _cfg) = server_with(&[]);
    let peer = Peer::new(server.sip_addr);
    let call_id = support::unique("reinv-");
    let invite = raw_invite(&server, &peer, &call_id, "+15552000031", "z9hG4bKri1");
    peer.send(&invite);
    let ok = peer.expect("SIP/2.0 200", Duration::from_secs(5));
    let to = header(&ok, "To").to_string();
    let req = |method: &str, cseq: u32, branch: &str| {
        raw_request(&server, &peer, &invite, method, cseq, branch, &to)
    };
    // Before the ACK: glare with our unACKed 200.
    let early = req("INVITE", 2, "z9hG4bKri1re1");
    peer.send(&early);
    let refused = expect_cseq(&peer, "2 INVITE", Duration::from_secs(2));
    let sent = Instant::now();
    assert!(refused.starts_with("SIP/2.0 500"), "{refused}");
    assert!(!header(&refused, "Retry-After").is_empty(), "{refused}");
    let g = expect_cseq(&peer, "2 INVITE", Duration::from_secs(2));
    assert!(
        sent.elapsed() >= Duration::from_millis(400),
        "Timer G, T1 = 500 ms: {:?}",
        sent.elapsed()
    );
    assert_eq!(g, refused, "the router repeats the call's 500");
    peer.send(&early);
    let again = expect_cseq(&peer, "2 INVITE", Duration::from_secs(1));
    assert_eq!(
        again, refused,
        "a copy gets the same 500, not a new verdict"
    );
    peer.send(&req("ACK", 2, "z9hG4bKri1re1"));
    peer.send(&req("ACK", 1, "z9hG4bKri1ack"));
    let mut buf = vec![0u8; 65_536];
    let until = Instant::now() + Duration::from_millis(2500);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        peer.sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        if let Ok((n, _)) = peer.sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                !text.starts_with("SIP/2.0 500"),
                "the ACK stopped Timer G: {text}"
            );
        }
    }
    // Accepted: the copy of the re-INVITE is absorbed; the call retransmits its 200.
    let reinvite = req("INVITE", 3, "z9hG4bKri1re2");
    peer.send(&reinvite);
    let first = expect_cseq(&peer, "3 INVITE", Duration::from_secs(2));
    assert!(first.starts_with("SIP/2.0 200"), "{first}");
    let answered = Instant::now();
    peer.send(&reinvite);
    let next = expect_cseq(&peer, "3 INVITE", Duration::from_secs(2));
    assert_eq!(next, first, "the call's own retransmission of its 200");
    assert!(
        answered.elapsed() >= Duration::from_millis(400),
        "on the call's T1 timer, not an answer to the copy: {:?}",
        answered.elapsed()
    );
    peer.send(&req("ACK", 3, "z9hG4bKri1re2ack"));
    assert_eq!(
        quiet(&peer, "SIP/2.0 200", Duration::from_millis(1500)),
        None,
        "the ACK reached the call: no more 200s"
    );
    peer.send(&req("BYE", 4, "z9hG4bKri1bye"));
    expect_cseq(&peer, "4 BYE", Duration::from_secs(2));
    let call = ended_call(&server, "+15552000031");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    let db = server.db();
    let ev = events(&db, &call);
    let reinvites = ev.iter().filter(|(k, _)| k == "reinvite").count();
    assert_eq!(
        reinvites, 1,
        "one accepted re-INVITE, answered once: {ev:#?}"
    );
    assert_eq!(db.count("call_records WHERE caller = '+15552000031'"), 1);
}
