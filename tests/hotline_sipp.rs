//! Acceptance tests of the walking skeleton (customer hotline), black-box: the real
//! `switchboard` binary with a temporary SQLite database, called by SIPp with RFC 4733 digits
//! (`sip-test/`), checked through the database as another program would see it.
//!
//! Needs SIPp (`$SWITCHBOARD_SIPP` or `sipp` on PATH) and root (SIPp's pcap play); both are
//! failures when missing, never silent passes. Run: `scripts/test hotline_sipp`.

use crate::support;

use std::time::{Duration, Instant};

use crate::support::{run_binary, DbRow, Scenario, Server, TestDb};
use serde_json::Value;

/// How long the writer may take to make a finished call visible (it batches).
const DB_WAIT: Duration = Duration::from_secs(5);

fn caller(number: &str) -> [&str; 3] {
    ["-set", "caller", number]
}

/// The one call record of `caller`, once it has ended (waits for the writer).
fn ended_call(server: &Server, caller: &str) -> DbRow {
    server.wait_db(
        DB_WAIT,
        &format!("an ended call record from {caller}"),
        |db| {
            db.rows(&format!(
                "SELECT * FROM call_records WHERE caller = '{caller}' AND ended_at IS NOT NULL"
            ))
            .pop()
        },
    )
}

fn events(db: &TestDb, call_id: &Value) -> Vec<(String, String)> {
    db.call_events(call_id.as_str().expect("call id is text"))
}

fn has_event(events: &[(String, String)], kind: &str, detail: &str) -> bool {
    events.iter().any(|(k, d)| k == kind && d == detail)
}

/// Criterion 1: the caller of delayed order 1001 presses 2 (delayed order, found by calling
/// number), hears the delay and presses 2 (refund): the ticket is resolved as a refund, with
/// one outcome row, one refund request, the digits and menu choice in the events, and a
/// complete inbound call record.
#[test]
fn delayed_order_refund_resolves_ticket_and_records_call() {
    let server = Server::start(&[]);
    let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '2')], 1000, 20_000);
    server
        .run_sipp(&scenario, &caller("+15551230001"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15551230001");
    let db = server.db();
    let ticket = server.wait_db(DB_WAIT, "ticket 1001 resolved", |db| {
        let t = db.row("SELECT id, resolution, resolved_at FROM tickets WHERE order_id = '1001'");
        (!t["resolution"].is_null()).then_some(t)
    });
    let ticket_id = ticket["id"].as_i64().expect("ticket id");
    assert_eq!(ticket["resolution"], "refund", "{ticket:?}");
    assert!(
        ticket["resolved_at"].is_string(),
        "resolved_at set: {ticket:?}"
    );

    let call_id = call["id"].as_str().expect("call id");
    let outcomes = db.rows("SELECT call_id, ticket_id, choice FROM call_outcomes");
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    assert_eq!(outcomes[0]["choice"], "refund");
    assert_eq!(outcomes[0]["ticket_id"], ticket_id);
    assert_eq!(outcomes[0]["call_id"], call_id);

    let refunds = db.rows("SELECT ticket_id, call_id FROM refund_requests");
    assert_eq!(refunds.len(), 1, "{refunds:#?}");
    assert_eq!(refunds[0]["ticket_id"], ticket_id);
    assert_eq!(refunds[0]["call_id"], call_id);

    let ev = events(&db, &call["id"]);
    let digits: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "dtmf")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(
        digits,
        ["2", "2"],
        "exactly two DTMF events, both '2': {ev:#?}"
    );
    assert!(ev.iter().any(|(k, _)| k == "menu"), "a menu event: {ev:#?}");
    assert!(
        has_event(&ev, "menu", "main_menu=2") && has_event(&ev, "menu", "delayed_menu=2"),
        "{ev:#?}"
    );

    assert_eq!(call["direction"], "inbound", "{call:#?}");
    assert_eq!(call["disposition"], "answered", "{call:#?}");
    assert!(
        call["answered_at"].is_string() && call["ended_at"].is_string(),
        "{call:#?}"
    );
    assert_eq!(call["ticket_id"], ticket_id, "{call:#?}");
    assert_eq!(call["sip_status"], 200, "{call:#?}");
    let from = call["from_uri"].as_str().unwrap_or("");
    assert!(from.contains("+15551230001"), "from_uri {from}");
}

/// Criterion 2: pressing 2 then 1 (keep waiting) resolves demo order 1002 as 'wait', with no
/// refund request.
#[test]
fn delayed_order_wait_sets_resolution_wait() {
    let server = Server::start(&[]);
    let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '1')], 1000, 20_000);
    server
        .run_sipp(&scenario, &caller("+15551230002"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15551230002");
    let ticket = server.wait_db(DB_WAIT, "ticket 1002 resolved", |db| {
        let t = db.row("SELECT id, resolution, resolved_at FROM tickets WHERE order_id = '1002'");
        (!t["resolution"].is_null()).then_some(t)
    });
    assert_eq!(ticket["resolution"], "wait", "{ticket:?}");
    assert!(ticket["resolved_at"].is_string(), "{ticket:?}");
    let db = server.db();
    let outcome = db.row("SELECT call_id, ticket_id, choice FROM call_outcomes");
    assert_eq!(outcome["choice"], "wait");
    assert_eq!(outcome["ticket_id"], ticket["id"]);
    assert_eq!(outcome["call_id"], call["id"]);
    assert_eq!(db.count("refund_requests"), 0);
    assert_eq!(
        db.count("tickets WHERE resolution IS NOT NULL"),
        1,
        "only order 1002 changed"
    );
}

/// Criterion 3: a caller who hangs up mid-prompt (BYE 1.5 s after the ACK, no digits) leaves a
/// complete record: answered, ended by the caller, and no outcome.
#[test]
fn caller_hangup_mid_prompt_leaves_complete_record() {
    let server = Server::start(&[]);
    server
        .run_sipp(
            &Scenario::HangupEarly { hold_ms: 1500 },
            &caller("+15551230003"),
        )
        .assert_ok(&server);

    let call = ended_call(&server, "+15551230003");
    assert_eq!(call["disposition"], "answered", "{call:#?}");
    assert_eq!(call["hangup_cause"], "caller_hangup", "{call:#?}");
    assert!(
        call["answered_at"].is_string() && call["ended_at"].is_string(),
        "{call:#?}"
    );
    let db = server.db();
    assert_eq!(db.count("call_outcomes"), 0);
    let ev = events(&db, &call["id"]);
    assert!(
        ev.iter().all(|(k, _)| k != "dtmf"),
        "no digits were sent: {ev:#?}"
    );
}

/// Criterion 4: CANCEL while ringing (the route rings 1000 ms, the caller cancels after
/// 300 ms): 487 to the INVITE, recorded as cancelled and never answered.
#[test]
fn cancel_before_answer_is_recorded_cancelled() {
    let server = Server::start(&[]);
    server
        .run_sipp(&Scenario::Cancel { ring_ms: 300 }, &caller("+15551230005"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15551230005");
    assert_eq!(call["disposition"], "cancelled", "{call:#?}");
    assert_eq!(call["sip_status"], 487, "{call:#?}");
    assert!(call["answered_at"].is_null(), "{call:#?}");
    assert_eq!(server.db().count("call_outcomes"), 0);
}

/// Criterion 5: order status path. A caller with an unknown number presses 1 and keys
/// `1003#`: the digits are collected, the order is found by its number, and (being a status
/// enquiry) no outcome is written.
#[test]
fn order_status_by_keyed_order_number() {
    let server = Server::start(&[]);
    let digits = [
        (1500, '1'),
        (4500, '1'),
        (4800, '0'),
        (5100, '0'),
        (5400, '3'),
        (5700, '#'),
    ];
    let scenario = Scenario::call_with_digits(&digits, 1000, 25_000);
    server
        .run_sipp(&scenario, &caller("+15559990001"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15559990001");
    let db = server.db();
    let ev = events(&db, &call["id"]);
    assert!(has_event(&ev, "menu", "main_menu=1"), "{ev:#?}");
    assert!(has_event(&ev, "collect", "order_number=1003"), "{ev:#?}");
    assert!(has_event(&ev, "lookup", "found"), "{ev:#?}");
    assert_eq!(db.count("call_outcomes"), 0);
    assert_eq!(db.count("tickets WHERE resolution IS NOT NULL"), 0);
}

/// Criterion 6: tickets are shared with other systems. A ticket another program inserts while
/// the server runs (new phone number) is found by the next call from that number, and the
/// caller's choice (2 then 1: wait) lands on it.
#[test]
fn ticket_inserted_by_another_program_is_found_by_next_call() {
    let server = Server::start(&[]);
    let db = server.db();
    let inserted = db.exec(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
         VALUES ('7001', 'Outside Program', '+15557770001', 'en', 'standard', 'UTC', 'delayed', 2, '2030-01-15')",
    );
    assert_eq!(inserted, 1);
    let ticket_id = db.row("SELECT id FROM tickets WHERE order_id = '7001'")["id"].clone();

    let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '1')], 1000, 20_000);
    server
        .run_sipp(&scenario, &caller("+15557770001"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15557770001");
    let ticket = server.wait_db(DB_WAIT, "ticket 7001 resolved", |db| {
        let t = db.row("SELECT id, resolution FROM tickets WHERE order_id = '7001'");
        (!t["resolution"].is_null()).then_some(t)
    });
    assert_eq!(ticket["resolution"], "wait", "{ticket:?}");
    assert_eq!(call["ticket_id"], ticket_id, "{call:#?}");
    let outcome = db.row("SELECT ticket_id, choice FROM call_outcomes");
    assert_eq!(
        (&outcome["ticket_id"], &outcome["choice"]),
        (&ticket_id, &Value::from("wait"))
    );
}

/// Criterion 7: SIGTERM during an active call. The server hangs the call up (the caller gets
/// a BYE), writes its end (cause 'shutdown') and exits with status 0 within 10 s.
#[test]
fn sigterm_during_call_hangs_up_records_and_exits_zero() {
    let mut server = Server::start(&[]);
    // Silence only (no digits) for 20 s; the caller would wait 30 s for a BYE.
    let scenario = Scenario::Call {
        pcap_args: vec!["--lead-ms".into(), "20000".into()],
        hold_ms: 30_000,
    };
    let sipp = server.spawn_sipp(&scenario, &caller("+15551230004"));
    server.wait_db(Duration::from_secs(10), "the call to be answered", |db| {
        db.rows("SELECT id FROM call_records WHERE answered_at IS NOT NULL")
            .pop()
    });
    std::thread::sleep(Duration::from_millis(500)); // media and the dialplan are running

    server.sigterm();
    let sent = Instant::now();
    let status = server.wait_exit(Duration::from_secs(15));
    let took = sent.elapsed();
    let status = status
        .unwrap_or_else(|| panic!("server still running 15 s after SIGTERM\n{}", server.log()));
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        server.log()
    );
    assert!(
        took <= Duration::from_secs(10),
        "shutdown took {took:?}\n{}",
        server.log()
    );

    sipp.wait().assert_ok(&server); // it received the server's BYE and answered it
    let call = server.db().row("SELECT * FROM call_records");
    assert!(call["ended_at"].is_string(), "{call:#?}");
    assert_eq!(call["hangup_cause"], "shutdown", "{call:#?}");
    assert_eq!(call["disposition"], "answered", "{call:#?}");
}

/// Criterion 8: the server refuses to start on a bad configuration or dialplan, with a
/// non-zero exit and an error naming FILE:LINE: (a route to a missing dialplan; a dialplan
/// whose step goes to a step that does not exist).
#[test]
fn bad_config_or_dialplan_is_refused_at_start_with_file_and_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = support::repo_root();
    let common = |config: &std::path::Path| -> Vec<String> {
        vec![
            "--config".into(),
            config.display().to_string(),
            "--database".into(),
            format!("sqlite://{}", tmp.path().join("t.db").display()),
            "--sip-listen".into(),
            format!("127.0.0.1:{}", support::free_port()),
            "--http-listen".into(),
            format!("127.0.0.1:{}", support::free_port()),
        ]
    };
    let assert_refused = |args: Vec<String>, file: &str, line: usize| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stdout, stderr) = run_binary(&args, Duration::from_secs(15));
        assert!(
            !status.success(),
            "expected a refusal, got {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        let want = format!("{file}:{line}:");
        assert!(
            stderr.contains(&want),
            "stderr should contain '{want}'\nstderr:\n{stderr}"
        );
    };

    // A route naming a dialplan that does not exist (line 8 is its `[[route]]`).
    let cfg = tmp.path().join("missing-plan.toml");
    let text = format!(
        "[server]\ndialplan_dir = {:?}\nspool_dir = {:?}\n\n[[route]]\nto = \"hotline\"\ndialplan = \"hotline\"\n[[route]]\nto = \"sales\"\ndialplan = \"no_such_plan\"\n\n[[queue]]\nname = \"support\"\n",
        root.join("dialplans").display().to_string(),
        tmp.path().join("spool").display().to_string(),
    );
    std::fs::write(&cfg, text).expect("write config");
    assert_refused(common(&cfg), &cfg.display().to_string(), 8);

    // A dialplan folder with the hotline plus a plan whose goto target is missing (line 7).
    let plans = tmp.path().join("plans");
    std::fs::create_dir(&plans).expect("plans dir");
    std::fs::copy(
        root.join("dialplans/hotline.toml"),
        plans.join("hotline.toml"),
    )
    .expect("copy hotline");
    let broken = plans.join("broken.toml");
    std::fs::write(&broken, "[dialplan]\nname = \"broken\"\nstart = \"a\"\n\n[steps.a]\naction = \"goto\"\nnext = \"nowhere\"\n")
        .expect("write broken dialplan");
    let cfg = tmp.path().join("broken-plan.toml");
    let default =
        std::fs::read_to_string(root.join("config/default.toml")).expect("default config");
    let text = default.replace(
        "dialplan_dir = \"dialplans\"",
        &format!("dialplan_dir = {:?}", plans.display().to_string()),
    );
    assert_ne!(
        text, default,
        "config/default.toml has a `dialplan_dir = \"dialplans\"` line to replace"
    );
    std::fs::write(&cfg, text).expect("write config");
    assert_refused(common(&cfg), &broken.display().to_string(), 7);
}

/// The value of one series in a Prometheus text scrape (0 when the series is absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// `promtool check metrics` on a scrape: exit 0 and no lint problems. promtool
/// (`$SWITCHBOARD_PROMTOOL`, else on PATH; Debian `prometheus`) missing is a failure.
fn promtool_check(text: &str) {
    use std::io::Write as _;
    let promtool = std::env::var("SWITCHBOARD_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{promtool} not runnable ({e}): install Debian `prometheus` (scripts/test does)")
        });
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(text.as_bytes())
        .expect("write the scrape to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}): {}{}\n--- scrape ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `GET /metrics`: refused without a token, Prometheus text that `promtool check metrics`
/// accepts with one, and the call counters, setup histogram, SIP and RTP counters move with a
/// real SIPp call (docs/operations.md "Metrics").
#[test]
fn metrics_scrape_passes_promtool_and_counts_a_call() {
    let server = Server::start(&["--log-format", "json"]);
    let anon = support::http_get(server.http_addr, "/metrics").expect("HTTP answers");
    assert_eq!(anon.0, 401, "no token, not public: {anon:?}");
    let scrape = || {
        let (status, body) = server.api_get("/metrics").expect("HTTP answers");
        assert_eq!(status, 200, "{body}");
        body
    };
    let before = scrape();
    promtool_check(&before);
    let answered = r#"switchboard_calls_total{direction="inbound",disposition="answered"}"#;
    let rtp_in = r#"switchboard_rtp_packets_total{direction="received"}"#;
    let rtp_out = r#"switchboard_rtp_packets_total{direction="sent"}"#;
    let invites = r#"switchboard_sip_requests_total{method="INVITE"}"#;
    let setups = "switchboard_call_setup_seconds_count";
    for name in [
        "switchboard_calls_active{direction=\"inbound\"}",
        "switchboard_queue_waiting{queue=\"support\"}",
        "switchboard_agents{state=\"available\"}",
        "switchboard_store_spooled_total",
    ] {
        assert!(
            before.contains(name),
            "{name} in the first scrape:\n{before}"
        );
    }

    let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '1')], 1000, 20_000);
    server
        .run_sipp(&scenario, &caller("+15551230002"))
        .assert_ok(&server);
    ended_call(&server, "+15551230002");

    let after = scrape();
    promtool_check(&after);
    assert_eq!(
        series(&after, answered),
        series(&before, answered) + 1.0,
        "{after}"
    );
    assert!(
        series(&after, invites) >= series(&before, invites) + 1.0,
        "{after}"
    );
    assert!(
        series(&after, setups) >= series(&before, setups) + 1.0,
        "{after}"
    );
    // ~10 s of media each way at 50 packets a second, flushed when the session ended.
    assert!(
        series(&after, rtp_in) >= series(&before, rtp_in) + 100.0,
        "{after}"
    );
    assert!(
        series(&after, rtp_out) >= series(&before, rtp_out) + 100.0,
        "{after}"
    );
    assert!(
        after.contains("switchboard_sip_responses_total{code=\"200\"}"),
        "{after}"
    );
    assert_eq!(
        series(&after, "switchboard_calls_active{direction=\"inbound\"}"),
        0.0,
        "{after}"
    );

    // `--log-format json`: every line on standard error is one JSON object.
    let log = server.log();
    let stderr = log.split("---- server stderr ----").nth(1).unwrap_or("");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "{log}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }

    // Every HTTP answer carries the request id: the client's, or a new one.
    use std::io::{Read as _, Write as _};
    let ask = |extra: &str| {
        let mut s = std::net::TcpStream::connect(server.http_addr).expect("connect");
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
        )
        .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text.lines()
            .find_map(|l| l.strip_prefix("x-request-id: ").map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(ask("X-Request-Id: proxy-42\r\n"), "proxy-42");
    assert_eq!(ask("").len(), 32, "a new UUID (simple form)");
}

/// Issue 19: the language before the first word. A Mandarin customer (ticket language `zh`,
/// calling from a +1 number, so the ticket must win over the prefix table) hears the hotline
/// in Mandarin from the welcome on, and presses 2 then 2: the refund lands on the ticket.
#[test]
fn mandarin_ticket_caller_hears_mandarin_from_the_first_word_and_refunds() {
    let server = Server::start(&[]);
    let db = server.db();
    let inserted = db.exec(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
         VALUES ('8601', '王芳', '+15557778601', 'zh', 'standard', 'Asia/Shanghai', 'delayed', 3, '2030-12-20')",
    );
    assert_eq!(inserted, 1);
    let scenario = Scenario::call_with_digits(&[(2000, '2'), (11000, '2')], 1000, 25_000);
    server
        .run_sipp(&scenario, &caller("+15557778601"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15557778601");
    let ev = events(&db, &call["id"]);
    assert!(has_event(&ev, "language", "zh:ticket"), "{ev:#?}");
    let prompts: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(
        prompts.first(),
        Some(&"welcome"),
        "no language menu: {ev:#?}"
    );
    assert!(
        !prompts.iter().any(|p| p.contains("choose-language")),
        "{ev:#?}"
    );
    assert!(
        has_event(&ev, "menu", "main_menu=2") && has_event(&ev, "menu", "delayed_menu=2"),
        "{ev:#?}"
    );
    let ticket = server.wait_db(DB_WAIT, "ticket 8601 resolved", |db| {
        let t = db.row("SELECT resolution FROM tickets WHERE order_id = '8601'");
        (!t["resolution"].is_null()).then_some(t)
    });
    assert_eq!(ticket["resolution"], "refund", "{ticket:?}");
}

/// Issue 19: a +86 number without a ticket is Mandarin by the prefix table; a number no
/// prefix decides (+33) hears the bilingual choice first, and 1 switches to Mandarin.
#[test]
fn language_by_prefix_else_bilingual_choice_first() {
    let server = Server::start(&[]);
    let db = server.db();
    // +86: straight to the welcome, in Mandarin; hang up after it.
    let scenario = Scenario::call_with_digits(&[], 1000, 3_000);
    let _ = server.run_sipp(&scenario, &caller("+8613800138000"));
    let call = ended_call(&server, "+8613800138000");
    let ev = events(&db, &call["id"]);
    assert!(has_event(&ev, "language", "zh:prefix"), "{ev:#?}");
    let first = ev
        .iter()
        .find(|(k, _)| k == "prompt")
        .map(|(_, d)| d.as_str());
    assert_eq!(first, Some("welcome"), "{ev:#?}");

    // +33: nothing decides, so the bilingual menu comes first; 1 = Mandarin, then the welcome.
    let scenario = Scenario::call_with_digits(&[(2500, '1')], 1000, 8_000);
    let _ = server.run_sipp(&scenario, &caller("+33612345678"));
    let call = ended_call(&server, "+33612345678");
    let ev = events(&db, &call["id"]);
    assert!(has_event(&ev, "language", "-:unknown"), "{ev:#?}");
    let prompts: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(
        prompts.get(..2),
        Some(&["choose-language", "welcome"][..]),
        "{ev:#?}"
    );
    assert!(has_event(&ev, "menu", "choose_language=1"), "{ev:#?}");
}

/// Issue 19: `[service] hours` closed now (a one-hour range three hours from now, every day):
/// the caller hears the welcome, then the closed branch; pressing the agent key (0) asks for
/// a callback on the next business morning instead of queueing: the `hours` event says
/// closed, the outcome is `callback`, and the call never reaches a queue.
#[test]
fn outside_business_hours_the_agent_key_books_a_callback_and_never_queues() {
    use chrono::Timelike;
    let dir = tempfile::tempdir().expect("tempdir");
    let h = chrono::Utc::now().hour();
    let start = (h + 3) % 24;
    let range = format!("{start:02}:00-{:02}:00", start + 1);
    let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| format!("{d} = \"{range}\""))
        .collect();
    let config = support::config_with(
        dir.path(),
        &format!(
            "[service]\ntimezone = \"Etc/UTC\"\nhours = {{ {} }}\n",
            days.join(", ")
        ),
    );
    let config = config.to_str().expect("utf-8 path");
    let server = Server::start(&["--config", config]);
    let scenario = Scenario::call_with_digits(&[(3000, '0')], 1000, 20_000);
    server
        .run_sipp(&scenario, &caller("+15551230001"))
        .assert_ok(&server);

    let call = ended_call(&server, "+15551230001");
    let db = server.db();
    let ev = events(&db, &call["id"]);
    assert!(has_event(&ev, "hours", "closed"), "{range}: {ev:#?}");
    assert!(!has_event(&ev, "hours", "open"), "{range}: {ev:#?}");
    let prompts: Vec<&str> = ev
        .iter()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, d)| d.as_str())
        .collect();
    assert_eq!(
        prompts.get(..2),
        Some(&["welcome", "service-closed"][..]),
        "{ev:#?}"
    );
    assert!(prompts.contains(&"callback-next-morning"), "{ev:#?}");
    assert!(has_event(&ev, "menu", "closed_menu=0"), "{ev:#?}");
    assert!(
        !ev.iter().any(|(k, _)| k == "enqueue" || k == "queue"),
        "{ev:#?}"
    );
    let outcome = server.wait_db(DB_WAIT, "the callback outcome", |db| {
        db.rows("SELECT choice, call_id FROM call_outcomes").pop()
    });
    assert_eq!(outcome["choice"], "callback", "{outcome:?}");
    assert_eq!(outcome["call_id"], call["id"], "{outcome:?}");
    assert!(call["queue"].is_null(), "never queued: {call:#?}");
    assert_eq!(db.count("queue_log"), 0, "never queued");
}
