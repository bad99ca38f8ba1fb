//! ACD acceptance tests with real clients: SIPp agents that REGISTER with digest auth and
//! answer (echoing RTP back), SIPp callers that press 0 in the hotline and land in queue
//! `support`. Checked: the bridge carries audio both ways (packets counted per direction),
//! `call_records.queue/agent/wait_ms`, the exact `queue_log` sequence, the live API views,
//! and that no agent is left stuck whoever hangs up first, and when the caller abandons.

use crate::{campaign, support};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    free_port, repo_root, run_binary, sipp, sipp_media_port, wait_for, DbRow, Scenario, Server,
    SippProcess, SippRun,
};
use serde_json::Value;

/// REGISTER `name` from 127.0.0.1:`port` (the port the agent's UAS then listens on).
pub(crate) fn register(server: &Server, port: u16, name: &str, password: &str) {
    register_at(
        server,
        server.sip_addr,
        &repo_root().join("sip-test/uac_register.xml"),
        port,
        name,
        password,
    );
}

/// As [`register`], sent to `target` (the server, or a proxy in front of it such as the
/// Kamailio edge) with the REGISTER scenario `file`; the SIPp output is returned.
pub(crate) fn register_at(
    server: &Server,
    target: SocketAddr,
    file: &Path,
    port: u16,
    name: &str,
    password: &str,
) -> String {
    let dir = server.dir.path().join(format!("reg-{name}-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(sipp())
        .arg("-sf")
        .arg(file)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-s", name])
        .args(["-au", name, "-ap", password, "-set", "expires", "300"])
        .args(["-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error"])
        .args(["-trace_msg", "-message_file", "messages.log"])
        .arg(target.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp register");
    let text = format!(
        "{}{}\n---- messages ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        support::read_lossy(&dir.join("messages.log"))
    );
    assert!(out.status.success(), "REGISTER {name} failed: {text}");
    text
}

/// An agent phone answering one call after `ring_ms`, hanging up itself after `hold_ms`
/// (unless the server's BYE comes first), echoing RTP.
pub(crate) struct AgentPhone {
    sipp: SippProcess,
}

impl AgentPhone {
    /// Waits for the phone's SIPp to end and asserts that its scenario passed.
    pub(crate) fn finish(self, who: &str) -> SippRun {
        let run = self.sipp.wait();
        assert_eq!(run.code, Some(0), "{who} failed\n{}", run.text);
        run
    }
}

pub(crate) fn agent_phone(
    server: &Server,
    name: &str,
    port: u16,
    ring_ms: u32,
    hold_ms: u32,
) -> AgentPhone {
    agent_phone_at(server, server.sip_addr, name, port, ring_ms, hold_ms)
}

/// As [`agent_phone`], for a phone whose requests go to `target` (the proxy it registered
/// through); its SIPp run's text has the message trace (`-trace_msg`).
pub(crate) fn agent_phone_at(
    server: &Server,
    target: SocketAddr,
    name: &str,
    port: u16,
    ring_ms: u32,
    hold_ms: u32,
) -> AgentPhone {
    let (ring, hold) = (ring_ms.to_string(), hold_ms.to_string());
    let subs = [("RING_MS", ring.as_str()), ("HOLD_MS", &hold), ("PLAY", "")];
    let budget = ring_ms + hold_ms + 40_000;
    AgentPhone {
        sipp: phone_at(
            server,
            target,
            "uas_agent.xml",
            name,
            port,
            &subs,
            1,
            budget,
        ),
    }
}

/// As [`agent_phone_at`], answering `calls` calls one after the other.
pub(crate) fn agent_phone_calls_at(
    server: &Server,
    target: SocketAddr,
    name: &str,
    port: u16,
    hold_ms: u32,
    calls: u32,
    budget_ms: u32,
) -> AgentPhone {
    let hold = hold_ms.to_string();
    let subs = [("RING_MS", "300"), ("HOLD_MS", hold.as_str()), ("PLAY", "")];
    AgentPhone {
        sipp: phone_at(
            server,
            target,
            "uas_agent.xml",
            name,
            port,
            &subs,
            calls,
            budget_ms,
        ),
    }
}

/// A SIPp UAS phone: `sip-test/TEMPLATE` with `@KEY@` placeholders replaced, run from
/// 127.0.0.1:`port` (where the agent registered from) for `calls` calls, echoing RTP.
fn phone(
    server: &Server,
    template: &str,
    label: &str,
    port: u16,
    subs: &[(&str, &str)],
    calls: u32,
    budget_ms: u32,
) -> SippProcess {
    phone_at(
        server,
        server.sip_addr,
        template,
        label,
        port,
        subs,
        calls,
        budget_ms,
    )
}

/// As [`phone`], with `target` as SIPp's remote address.
#[allow(clippy::too_many_arguments)]
fn phone_at(
    server: &Server,
    target: SocketAddr,
    template: &str,
    label: &str,
    port: u16,
    subs: &[(&str, &str)],
    calls: u32,
    budget_ms: u32,
) -> SippProcess {
    let dir = server.dir.path().join(format!("phone-{label}-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut text = std::fs::read_to_string(repo_root().join("sip-test").join(template))
        .unwrap_or_else(|e| panic!("read {template}: {e}"));
    for (k, v) in subs {
        text = text.replace(&format!("@{k}@"), v);
    }
    let file = dir.join(template);
    std::fs::write(&file, text).expect("write scenario");
    let media = sipp_media_port().to_string();
    let port = port.to_string();
    let calls = calls.to_string();
    let timeout = format!("{}s", budget_ms / 1000);
    let errors = dir.join("errors.log").display().to_string();
    let messages = dir.join("messages.log").display().to_string();
    let args: Vec<&str> = vec![
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-mp",
        &media,
        "-rtp_echo",
        "-m",
        &calls,
        "-nostdin",
        "-timeout",
        &timeout,
        "-timeout_error",
        "-trace_err",
        "-error_file",
        &errors,
        "-trace_msg",
        "-message_file",
        &messages,
    ];
    SippProcess::spawn_file(
        &file,
        target,
        &dir,
        &args,
        Duration::from_millis(budget_ms as u64),
    )
}

pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    http_body(addr, method, path, token, "")
}

fn http_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("");
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub(crate) fn agent_state(server: &Server, name: &str) -> String {
    let (code, v) = http(
        server.http_addr,
        "GET",
        "/api/agents",
        Some(&server.api_token()),
    );
    assert_eq!(code, 200, "GET /api/agents: {v}");
    v.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .and_then(|x| x["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

pub(crate) fn wait_agent_state(server: &Server, name: &str, state: &str, timeout: Duration) {
    wait_for(timeout, &format!("agent {name} to be {state}"), || {
        (agent_state(server, name) == state).then_some(())
    });
}

fn caller(number: &str) -> [&str; 3] {
    ["-set", "caller", number]
}

/// The ended inbound call of `number`.
pub(crate) fn ended_call(server: &Server, number: &str) -> DbRow {
    server.wait_db(Duration::from_secs(15), "the caller's record to end", |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE caller = '{number}' AND direction = 'inbound' AND ended_at IS NOT NULL"
        ))
        .pop()
    })
}

fn queue_events(server: &Server, call_id: &str) -> Vec<(String, Option<String>)> {
    server
        .db()
        .rows(&format!(
            "SELECT event, agent FROM queue_log WHERE call_id = '{call_id}' ORDER BY at, rowid"
        ))
        .into_iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap_or("").to_string(),
                r["agent"].as_str().map(str::to_string),
            )
        })
        .collect()
}

pub(crate) fn event_detail(server: &Server, call_id: &str, kind: &str) -> Option<String> {
    server
        .db()
        .rows(&format!(
            "SELECT detail FROM call_events WHERE call_id = '{call_id}' AND kind = '{kind}'"
        ))
        .pop()
        .and_then(|r| r["detail"].as_str().map(str::to_string))
}

pub(crate) fn packets(detail: &str, key: &str) -> u64 {
    detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn setup_agent(server: &Server, name: &str) -> u16 {
    server.add_agent(name, "s3cret-pw", &[]);
    let port = free_port();
    register(server, port, name, "s3cret-pw");
    wait_agent_state(server, name, "available", Duration::from_secs(5));
    port
}

/// Caller presses 0, alice answers, audio flows both ways, alice hangs up first: the caller
/// is hung up, the record names queue, agent and wait, queue_log is exact, alice wraps up
/// and becomes available again.
#[test]
fn agent_answers_audio_both_ways_agent_hangs_up() {
    let server = Server::start(&[]);
    let port = setup_agent(&server, "alice");
    let phone = agent_phone(&server, "alice", port, 500, 4000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 12_000, 40_000),
        &caller("+15551239001"),
    );
    phone.finish("agent phone");
    call.wait().assert_ok(&server);

    let rec = ended_call(&server, "+15551239001");
    assert_eq!(rec["queue"], "support");
    assert_eq!(rec["agent"], "alice");
    assert_eq!(rec["hangup_cause"], "agent_hangup");
    assert_eq!(rec["disposition"], "answered");
    let wait_ms = rec["wait_ms"].as_i64().expect("wait_ms");
    assert!((400..10_000).contains(&wait_ms), "wait_ms {wait_ms}");
    let id = rec["id"].as_str().expect("id").to_string();

    let bridge = server.wait_db(Duration::from_secs(5), "bridge counters", |_| {
        event_detail(&server, &id, "bridge_packets")
    });
    // 4 s of talk at 50 packets/s each way; allow for start-up and echo latency.
    assert!(packets(&bridge, "caller_to_agent") >= 100, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 100, "{bridge}");

    let events = server.wait_db(Duration::from_secs(5), "queue_log complete", |_| {
        let e = queue_events(&server, &id);
        e.iter().any(|(ev, _)| ev == "complete").then_some(e)
    });
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        ["enter", "offer", "connect", "complete"],
        "{events:?}"
    );
    assert!(events[1..]
        .iter()
        .all(|(_, a)| a.as_deref() == Some("alice")));
    let complete = server.db().row(&format!(
        "SELECT * FROM queue_log WHERE call_id = '{id}' AND event = 'complete'"
    ));
    assert_eq!(complete["reason"], "agent");
    assert!(
        complete["talk_ms"].as_i64().unwrap_or(0) >= 3000,
        "{complete:?}"
    );

    // Wrap-up (5 s by default) then available again.
    let st = agent_state(&server, "alice");
    assert!(st == "wrap_up" || st == "available", "alice is {st}");
    wait_agent_state(&server, "alice", "available", Duration::from_secs(10));
    let (code, q) = http(
        server.http_addr,
        "GET",
        "/api/queues",
        Some(&server.api_token()),
    );
    assert_eq!(code, 200);
    let support = q
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "support"))
        .cloned()
        .expect("queue support");
    assert_eq!(support["stats"]["answered"], 1, "{support}");
    assert_eq!(support["stats"]["completed"], 1, "{support}");
    assert_eq!(support["service_level"], 1.0, "{support}");
}

/// A hotline call that reaches agent `agent` (who answers after 300 ms and hangs up 3 s
/// later) with the post-call survey switched on (`after_agent = "survey"` uncommented in a
/// copy of the shipped dialplans): the caller `number` presses `digits` (0 first, for the
/// agent) and is hung up by the server; `speech` is audio (a prompt's WAV under `audio/`) the
/// caller plays at the given ms of its stream (its message). Holds the server (and the folders
/// it reads) so the test can look at the database; `survey` is the call's `call_surveys` row.
struct SurveyedCall {
    server: Server,
    rec: DbRow,
    id: String,
    survey: DbRow,
    _dirs: [tempfile::TempDir; 2],
}

fn surveyed_call(
    agent: &str,
    number: &str,
    digits: &[(u32, char)],
    speech: &[(u32, &str)],
) -> SurveyedCall {
    let plans = tempfile::tempdir().expect("dialplan dir");
    for entry in std::fs::read_dir(repo_root().join("dialplans")).expect("dialplans") {
        let path = entry.expect("entry").path();
        let mut text = std::fs::read_to_string(&path).expect("read dialplan");
        if path.file_name().is_some_and(|n| n == "hotline.toml") {
            let on = text.replace("# after_agent = \"survey\"", "after_agent = \"survey\"");
            assert_ne!(on, text, "hotline.toml has the commented after_agent line");
            text = on;
        }
        std::fs::write(plans.path().join(path.file_name().expect("name")), text).expect("copy");
    }
    let plan_dir = format!("{:?}", plans.path().display().to_string());
    let (cfg_dir, cfg) = config_with(&[("dialplan_dir", &plan_dir)]);
    let server = Server::start(&["--config", &cfg]);
    let port = setup_agent(&server, agent);
    let phone = agent_phone(&server, agent, port, 300, 3000);
    let script: Vec<String> = digits.iter().map(|(at, d)| format!("{at}:{d}")).collect();
    let mut pcap_args = vec![
        "--script".to_string(),
        script.join(","),
        "--tail-ms".into(),
        "4000".into(),
    ];
    for (at, wav) in speech {
        let path = repo_root().join("audio").join(wav);
        pcap_args.extend(["--audio-at".into(), format!("{at}:{}", path.display())]);
    }
    let call = server.spawn_sipp(
        &Scenario::Call {
            pcap_args,
            hold_ms: 45_000,
        },
        &caller(number),
    );
    phone.finish(&format!("{agent}'s phone"));
    call.wait().assert_ok(&server);

    let rec = ended_call(&server, number);
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(rec["agent"], agent, "{rec:?}");
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["disposition"], "answered", "{rec:?}");
    let survey = server.wait_db(Duration::from_secs(5), "the survey row", |db| {
        db.rows(&format!(
            "SELECT * FROM call_surveys WHERE call_id = '{id}'"
        ))
        .pop()
    });
    assert_eq!(survey["agent"], agent, "{survey:?}");
    assert_eq!(survey["queue"], "support", "{survey:?}");
    assert_eq!(survey["ticket_id"], rec["ticket_id"], "{survey:?} {rec:?}");
    let complete = server.db().row(&format!(
        "SELECT * FROM queue_log WHERE call_id = '{id}' AND event = 'complete'"
    ));
    assert_eq!(complete["reason"], "agent");
    SurveyedCall {
        server,
        rec,
        id,
        survey,
        _dirs: [plans, cfg_dir],
    }
}

impl SurveyedCall {
    /// The call's events of the given kinds, as `kind:detail`, in order.
    fn events(&self, kinds: &[&str]) -> Vec<String> {
        self.server
            .db()
            .call_events(&self.id)
            .into_iter()
            .filter(|(k, _)| kinds.contains(&k.as_str()))
            .map(|(k, d)| format!("{k}:{d}"))
            .collect()
    }
}

/// Post-call survey (issue 19): with the hotline's `after_agent = "survey"` switched on, the
/// agent hangs up first and the caller stays on the line: it is asked for a score, presses 4,
/// says a message ("goodbye", 2.3 s) ended by `#`, hears thanks and is hung up.
/// `call_surveys` has one row with score, agent, queue, ticket and the message's file (also
/// the call's `recording_path`); the events show the way back.
#[test]
fn agent_hangs_up_first_and_the_caller_rates_the_call() {
    // 0 at 1.5 s; the agent answers and hangs up ~5 s later; 4 (the score) at 10 s, during
    // or after the survey question; the message prompt (5.3 s) is over by ~15.5 s, the
    // caller speaks from 16 to 18.3 s; # at 19 s ends the message.
    let call = surveyed_call(
        "sam",
        "+15551239031",
        &[(1500, '0'), (10_000, '4'), (19_000, '#')],
        &[(16_000, "en/goodbye.wav")],
    );
    let survey = &call.survey;
    assert_eq!(survey["score"], 4, "{survey:?}");
    let message = survey["recording"].as_str().expect("the caller's message");
    let wav = std::fs::metadata(message).expect("the message file exists");
    // At least a second of 8 kHz 16-bit audio after the 44-byte header.
    assert!(wav.len() > 16_000, "{message}: {} bytes", wav.len());
    assert_eq!(call.rec["recording_path"], message, "{:?}", call.rec);
    let kinds = call.events(&[
        "after_agent",
        "survey",
        "survey_invalid",
        "survey_no_message",
        "record_discarded",
    ]);
    assert_eq!(kinds, ["after_agent:", "survey:4", "survey:4"], "{kinds:?}");
}

/// Issue 19, a Mandarin caller: a +86 number without a ticket is Mandarin before the first
/// word (the prefix table), goes to an agent with 0, the agent hangs up first, and the
/// survey is asked in Mandarin: the caller presses 2, ends the message at once with `#` and
/// hears the thanks. The call's whole prompt trail is the Mandarin one, in order, and every
/// prompt was played from `audio/zh` (a prompt missing there would play in English and show
/// as `en/NAME` in the `prompt` event).
#[test]
fn agent_hangs_up_first_and_a_mandarin_caller_rates_the_call() {
    // 0 at 1.5 s (during the 4.5 s welcome); the agent answers and hangs up ~5 s later; 2 at
    // 10 s, during the 5.9 s survey question; # at 18 s, just after the 6.3 s message prompt.
    let call = surveyed_call(
        "mei",
        "+8613800138031",
        &[(1500, '0'), (10_000, '2'), (18_000, '#')],
        &[],
    );
    let survey = &call.survey;
    assert_eq!(survey["score"], 2, "{survey:?}");
    assert!(call.rec["ticket_id"].is_null(), "{:?}", call.rec);
    // The # right after the beep, nothing said: no message. The row has none, the file the
    // recording started is gone, and the call's record does not point at it.
    assert!(survey["recording"].is_null(), "{survey:?}");
    let started = call.events(&["recording"]);
    let [started] = started.as_slice() else {
        panic!("one recording started: {started:?}");
    };
    let file = started.trim_start_matches("recording:");
    assert!(file.ends_with("-survey_message.wav"), "{file}");
    assert!(
        std::fs::metadata(file).is_err(),
        "{file} should have been deleted"
    );
    assert_ne!(call.rec["recording_path"], file, "{:?}", call.rec);
    let trail = call.events(&[
        "language",
        "prompt",
        "menu",
        "enqueue",
        "agent_connect",
        "after_agent",
        "collect",
        "survey",
        "survey_no_message",
        "record_discarded",
        "record_end",
    ]);
    assert_eq!(
        trail,
        [
            "language:zh:prefix",
            // The 0 came during the welcome: type-ahead, the menu's prompt is not played.
            "prompt:welcome",
            "menu:main_menu=0",
            "enqueue:support",
            "agent_connect:mei",
            "after_agent:",
            "prompt:survey-ask",
            "collect:survey_score=2",
            "survey:2",
            "prompt:survey-message",
            "record_discarded:survey_message:no_speech voice_ms=0 words=0",
            "record_end:survey_message:terminator",
            "survey:2",
            "survey_no_message:no_speech",
            "prompt:survey-thanks",
        ],
        "{trail:#?}"
    );
}

/// The caller hangs up first: the agent's phone gets a BYE, queue_log says the caller ended
/// it, the agent is free again after wrap-up.
#[test]
fn caller_hangs_up_first_agent_gets_bye() {
    let server = Server::start(&[]);
    let port = setup_agent(&server, "bob");
    let phone = agent_phone(&server, "bob", port, 300, 60_000);
    // The caller's pcap ends after ~6 s and it hangs up at hold 6 s (no BYE from the server).
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
        &caller("+15551239002"),
    );
    call.wait().assert_ok(&server);
    phone.finish("agent phone");
    let rec = ended_call(&server, "+15551239002");
    assert_eq!(rec["agent"], "bob");
    assert_eq!(rec["hangup_cause"], "caller_hangup");
    let id = rec["id"].as_str().expect("id").to_string();
    let complete = server.wait_db(Duration::from_secs(5), "complete", |db| {
        db.rows(&format!(
            "SELECT * FROM queue_log WHERE call_id = '{id}' AND event = 'complete'"
        ))
        .pop()
    });
    assert_eq!(complete["reason"], "caller");
    wait_agent_state(&server, "bob", "available", Duration::from_secs(10));
}

/// The caller abandons while the agent's phone rings: the phone gets CANCEL (200 + 487),
/// queue_log has abandon with the wait and position, the agent is available at once.
#[test]
fn caller_abandons_while_agent_rings() {
    let server = Server::start(&[]);
    let port = setup_agent(&server, "carol");
    let phone = agent_phone(&server, "carol", port, 30_000, 1000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
        &caller("+15551239003"),
    );
    call.wait().assert_ok(&server);
    let agent_run = phone.finish("agent phone");
    assert!(
        agent_run.text.contains("CANCEL sip:"),
        "the agent's phone never saw a CANCEL\n{}",
        agent_run.text
    );
    let rec = ended_call(&server, "+15551239003");
    assert_eq!(rec["queue"], "support");
    assert!(rec["agent"].is_null(), "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    let abandon = server.wait_db(Duration::from_secs(5), "abandon", |db| {
        db.rows(&format!(
            "SELECT * FROM queue_log WHERE call_id = '{id}' AND event = 'abandon'"
        ))
        .pop()
    });
    assert_eq!(abandon["position"], 1);
    assert!(abandon["wait_ms"].as_i64().unwrap_or(0) > 0);
    let names: Vec<String> = queue_events(&server, &id)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["enter", "offer", "abandon"]);
    wait_agent_state(&server, "carol", "available", Duration::from_secs(3));
}

/// A copy of config/default.toml with queue `support` changed by `(key, value)` pairs and its
/// own spool folder; the returned dir must outlive the server.
fn config_with(changes: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    config_with_extra(changes, "")
}

/// As `config_with`, with `extra` TOML appended (e.g. a `[[trunk]]`).
fn config_with_extra(changes: &[(&str, &str)], extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = std::fs::read_to_string(repo_root().join("config/default.toml"))
        .expect("read default config");
    let spool = dir.path().join("spool");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if key == "spool_dir" {
            out.push_str(&format!("spool_dir = {:?}\n", spool.display().to_string()));
        } else if let Some((_, v)) = changes.iter().find(|(k, _)| *k == key) {
            out.push_str(&format!("{key} = {v}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (k, v) in changes {
        assert!(
            out.contains(&format!("{k} = {v}")),
            "config/default.toml has no '{k}' line to change"
        );
    }
    text = out + extra;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config");
    let p = path.display().to_string();
    (dir, p)
}

fn token(server: &Server) -> String {
    let log = server.log();
    log.lines()
        .find_map(|l| l.split("Authorization: Bearer ").nth(1))
        .map(|t| t.trim_end_matches(')').trim().to_string())
        .expect("API token in the server's banner")
}

pub(crate) fn queue_rows(server: &Server, call_id: &str) -> Vec<DbRow> {
    server.db().rows(&format!(
        "SELECT * FROM queue_log WHERE call_id = '{call_id}' ORDER BY at, rowid"
    ))
}

/// The queue_log rows as (queue, event, agent, reason), blanks for NULLs, in order.
pub(crate) fn queue_trail(rows: &[DbRow]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (f("queue"), f("event"), f("agent"), f("reason"))
        })
        .collect()
}

/// `switchboard agent add NAME` serving only `queue` (not `support`, unlike
/// `Server::add_agent`), so that only a transfer to NAME can bring a support caller to it.
pub(crate) fn add_agent_serving(server: &Server, name: &str, password: &str, queue: &str) {
    let db = format!("sqlite://{}", server.db_path.display());
    let (st, out, err) = run_binary(
        &[
            "agent",
            "add",
            name,
            "--password",
            password,
            "--queue",
            queue,
            "--database",
            &db,
        ],
        Duration::from_secs(20),
    );
    assert!(st.success(), "{out}{err}");
}

/// Ring timeout: the first agent never answers, is CANCELled after `ring_timeout_s`, paused
/// automatically (`max_misses = 1`), and the call goes to the next agent. Unpausing by API
/// makes the first agent available again.
#[test]
fn ring_timeout_moves_on_and_auto_pauses() {
    let (_cfg_dir, cfg) = config_with(&[("ring_timeout_s", "2"), ("max_misses", "1")]);
    let server = Server::start(&["--config", &cfg]);
    // dave registers first: longest idle, offered first.
    let dave_port = setup_agent(&server, "dave");
    std::thread::sleep(Duration::from_millis(200));
    let erin_port = setup_agent(&server, "erin");
    let dave = agent_phone(&server, "dave", dave_port, 60_000, 1000);
    let erin = agent_phone(&server, "erin", erin_port, 300, 3000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 10_000, 40_000),
        &caller("+15551239004"),
    );
    erin.finish("erin's phone");
    call.wait().assert_ok(&server);
    let dave_run = dave.finish("dave's phone");
    assert!(dave_run.text.contains("CANCEL sip:"), "{}", dave_run.text);

    let rec = ended_call(&server, "+15551239004");
    assert_eq!(rec["agent"], "erin");
    let id = rec["id"].as_str().expect("id").to_string();
    let rows = server.wait_db(Duration::from_secs(5), "complete", |_| {
        let r = queue_rows(&server, &id);
        r.iter().any(|x| x["event"] == "complete").then_some(r)
    });
    let seq: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap_or("").to_string(),
                r["agent"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = [
        ("enter", ""),
        ("offer", "dave"),
        ("ringnoanswer", "dave"),
        ("offer", "erin"),
        ("connect", "erin"),
        ("complete", "erin"),
    ];
    let got: Vec<(&str, &str)> = seq.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expect);
    assert_eq!(rows[2]["reason"], "no_answer");
    let pause = server
        .db()
        .row("SELECT * FROM queue_log WHERE agent = 'dave' AND event = 'pause'");
    assert_eq!(pause["reason"], "auto:no_answer");
    assert_eq!(agent_state(&server, "dave"), "paused");

    let tok = token(&server);
    let (code, body) = http(server.http_addr, "POST", "/api/agents/dave/unpause", None);
    assert_eq!(code, 401, "agent commands need the token: {body}");
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/dave/unpause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "available");
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/nobody/pause",
        Some(&tok),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("nobody"));
}

/// Ring-all: both phones ring; the first to answer gets the call, the other is CANCELled
/// (never two agents on one call), and both are free afterwards.
#[test]
fn ring_all_first_answer_wins_other_cancelled() {
    let (_cfg_dir, cfg) = config_with(&[("strategy", "\"ring-all\"")]);
    let server = Server::start(&["--config", &cfg]);
    let fast_port = setup_agent(&server, "fast");
    let slow_port = setup_agent(&server, "slow");
    let fast = agent_phone(&server, "fast", fast_port, 500, 2500);
    let slow = agent_phone(&server, "slow", slow_port, 4000, 1000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 8000, 40_000),
        &caller("+15551239005"),
    );
    fast.finish("fast phone");
    let slow_run = slow.finish("slow phone");
    assert!(slow_run.text.contains("CANCEL sip:"), "{}", slow_run.text);
    call.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239005");
    assert_eq!(rec["agent"], "fast");
    let id = rec["id"].as_str().expect("id").to_string();
    let rows = server.wait_db(Duration::from_secs(5), "complete", |_| {
        let r = queue_rows(&server, &id);
        r.iter().any(|x| x["event"] == "complete").then_some(r)
    });
    let connects: Vec<&DbRow> = rows.iter().filter(|r| r["event"] == "connect").collect();
    assert_eq!(connects.len(), 1, "{rows:?}");
    let offers = rows.iter().filter(|r| r["event"] == "offer").count();
    assert_eq!(offers, 2, "{rows:?}");
    wait_agent_state(&server, "slow", "available", Duration::from_secs(3));
    wait_agent_state(&server, "fast", "available", Duration::from_secs(10));
}

/// Wrap-up: with one agent and `wrapup_s = 4`, the second caller is offered only after the
/// agent's wrap-up following the first call.
#[test]
fn wrapup_is_respected_between_calls() {
    let (_cfg_dir, cfg) = config_with(&[("wrapup_s", "4")]);
    let server = Server::start(&["--config", &cfg]);
    let port = setup_agent(&server, "frank");
    let subs = [("RING_MS", "300"), ("HOLD_MS", "2000"), ("PLAY", "")];
    let phone = phone(&server, "uas_agent.xml", "frank", port, &subs, 2, 90_000);
    let c1 = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 6000, 40_000),
        &caller("+15551239006"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let c2 = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 14_000, 40_000),
        &caller("+15551239007"),
    );
    c1.wait().assert_ok(&server);
    c2.wait().assert_ok(&server);
    let run = phone.wait();
    assert_eq!(run.code, Some(0), "frank's phone failed\n{}", run.text);
    let r1 = ended_call(&server, "+15551239006");
    let r2 = ended_call(&server, "+15551239007");
    assert_eq!(r1["agent"], "frank");
    assert_eq!(r2["agent"], "frank");
    let id1 = r1["id"].as_str().expect("id");
    let id2 = r2["id"].as_str().expect("id");
    let ts = |sql: String| -> f64 {
        let row = server.db().row(&sql);
        let at = row["at"].as_str().expect("at").to_string();
        chrono_secs(&at)
    };
    let complete1 = ts(format!(
        "SELECT at FROM queue_log WHERE call_id = '{id1}' AND event = 'complete'"
    ));
    let offer2 = ts(format!(
        "SELECT at FROM queue_log WHERE call_id = '{id2}' AND event = 'offer'"
    ));
    let gap = offer2 - complete1;
    assert!(
        (3.9..6.0).contains(&gap),
        "second offer {gap:.3} s after the first call ended (wrap-up 4 s)"
    );
    let wait2 = r2["wait_ms"].as_i64().expect("wait_ms");
    assert!(wait2 > 4000, "second caller waited {wait2} ms");
}

/// Seconds of the day from `...THH:MM:SS.mmmZ` (both stamps are from one short test).
fn chrono_secs(ts: &str) -> f64 {
    let t = ts.split('T').nth(1).unwrap_or(ts).trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let m: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let s: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    h * 3600.0 + m * 60.0 + s
}

/// Callback instead of waiting: the only agent is paused, the caller is offered a callback
/// after 2 s, presses 1 and is hung up with its place kept. When the agent is unpaused the
/// ACD rings the agent FIRST; once the agent answered the customer is dialed through the
/// trunk and both are bridged.
#[test]
fn callback_keeps_place_rings_agent_first_then_customer() {
    let customer_port = free_port();
    let trunk = format!(
        "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{customer_port}\"\ninbound_cidrs = [\"127.0.0.1/32\"]\n"
    );
    let (_cfg_dir, cfg) = config_with_extra(&[("callback_after_s", "2")], &trunk);
    let server = Server::start(&["--config", &cfg]);
    let tok = token(&server);
    let port = setup_agent(&server, "gina");
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/gina/pause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"], "paused");

    // The customer's phone behind the trunk: answers the callback, waits for our BYE.
    let pcap_dir = server.dir.path().join("customer-audio");
    std::fs::create_dir_all(&pcap_dir).expect("dir");
    let play = play_silence(&pcap_dir);
    let subs = [
        ("RING_MS", "300"),
        ("HOLD_MS", "60000"),
        ("PLAY", play.as_str()),
    ];
    let customer = phone(
        &server,
        "uas_agent.xml",
        "customer",
        customer_port,
        &subs,
        1,
        100_000,
    );

    // Press 0 (queue), then 1 after the callback offer; the server confirms and hangs up.
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0'), (7000, '1')], 4000, 40_000),
        &caller("+15551239008"),
    );
    call.wait().assert_ok(&server);
    let original = ended_call(&server, "+15551239008");
    assert_eq!(original["hangup_cause"], "callback_requested");
    let orig_id = original["id"].as_str().expect("id").to_string();
    server.wait_db(Duration::from_secs(5), "callback outcome", |db| {
        db.rows(&format!(
            "SELECT choice FROM call_outcomes WHERE call_id = '{orig_id}' AND choice = 'callback'"
        ))
        .pop()
    });
    assert_eq!(agent_state(&server, "gina"), "paused");

    // Now gina's phone is ready and she is unpaused: the callback is placed.
    let phone = agent_phone(&server, "gina", port, 300, 3000);
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/gina/unpause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    phone.finish("gina's phone");
    let cust = customer.wait();
    assert_eq!(cust.code, Some(0), "customer phone failed\n{}", cust.text);
    assert!(
        cust.text.contains("INVITE sip:+15551239008@"),
        "{}",
        cust.text
    );

    let cb = server.wait_db(Duration::from_secs(15), "the callback record", |db| {
        db.rows(
            "SELECT * FROM call_records WHERE direction = 'outbound' AND caller = '+15551239008' AND ended_at IS NOT NULL",
        )
        .pop()
    });
    assert_eq!(cb["agent"], "gina");
    assert_eq!(cb["queue"], "support");
    assert_eq!(cb["disposition"], "answered");
    let cb_id = cb["id"].as_str().expect("id").to_string();
    // The agent was connected before the customer answered.
    let kinds: Vec<String> = server
        .db()
        .rows(&format!(
            "SELECT kind FROM call_events WHERE call_id = '{cb_id}' ORDER BY seq"
        ))
        .into_iter()
        .map(|r| r["kind"].as_str().unwrap_or("").to_string())
        .collect();
    let pos = |k: &str| kinds.iter().position(|x| x == k);
    assert!(
        pos("agent_connect").is_some() && pos("agent_connect") < pos("callback_answered"),
        "{kinds:?}"
    );
    let bridge = server.wait_db(Duration::from_secs(5), "bridge counters", |_| {
        event_detail(&server, &cb_id, "bridge_packets")
    });
    assert!(packets(&bridge, "caller_to_agent") >= 50, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 50, "{bridge}");

    // One place in line, from the first call to the end of the callback.
    let events: Vec<String> = queue_events(&server, &orig_id)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        events,
        ["enter", "callback", "offer", "connect", "complete"],
        "queue_log for the original call"
    );
    let (_, q) = http(
        server.http_addr,
        "GET",
        "/api/queues",
        Some(&server.api_token()),
    );
    let support = q
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "support"))
        .cloned()
        .expect("support");
    assert_eq!(support["stats"]["abandoned"], 0, "{support}");
    assert_eq!(support["stats"]["answered"], 1, "{support}");
}

/// A `<nop>` playing 20 s of RTP silence (root: SIPp's play_pcap_audio uses a raw socket).
fn play_silence(dir: &Path) -> String {
    assert!(
        support::is_root(),
        "play_pcap_audio needs root: run the SIP tests as root"
    );
    let pcap = dir.join("silence.pcap");
    let out = Command::new("python3")
        .arg(repo_root().join("sip-test/make_dtmf_pcap.py"))
        .args(["--lead-ms", "20000", "-o"])
        .arg(&pcap)
        .output()
        .expect("python3 make_dtmf_pcap.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "<nop><action><exec play_pcap_audio=\"{}\"/></action></nop>",
        pcap.display()
    )
}

/// Hold: the agent's phone puts the caller on hold (re-INVITE sendonly) for longer than the
/// media timeout, then resumes and talks on. The caller hears music meanwhile, nobody is
/// hung up for silence, and the bridge carries audio again after the hold.
#[test]
fn agent_hold_plays_music_and_resumes_the_bridge() {
    let (_cfg_dir, cfg) = config_with(&[("media_timeout_s", "2")]);
    let server = Server::start(&["--config", &cfg]);
    let port = setup_agent(&server, "hank");
    let subs = [("TALK_MS", "2000"), ("HOLD_MS", "4000")];
    let phone = phone(
        &server,
        "uas_agent_hold.xml",
        "hank",
        port,
        &subs,
        1,
        60_000,
    );
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 20_000, 40_000),
        &caller("+15551239009"),
    );
    let run = phone.wait();
    assert_eq!(run.code, Some(0), "hank's phone failed\n{}", run.text);
    call.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239009");
    assert_eq!(rec["agent"], "hank");
    assert_eq!(rec["hangup_cause"], "agent_hangup", "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(event_detail(&server, &id, "hold").as_deref(), Some("agent"));
    assert_eq!(
        event_detail(&server, &id, "unhold").as_deref(),
        Some("agent")
    );
    let bridge = server.wait_db(Duration::from_secs(5), "bridge counters", |_| {
        event_detail(&server, &id, "bridge_packets")
    });
    // ~2 s before and ~2 s after the hold, echoed back: both directions relayed.
    assert!(packets(&bridge, "caller_to_agent") >= 100, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 100, "{bridge}");
}

/// A waiting caller hears its position and estimated wait `announce_every_s` after the last
/// announcement ended (each takes ~5 s to say); hanging
/// up while waiting is an abandon with its position and wait.
#[test]
fn waiting_caller_hears_position_and_estimated_wait() {
    let (_cfg_dir, cfg) = config_with(&[("announce_every_s", "2")]);
    let server = Server::start(&["--config", &cfg]);
    let tok = token(&server);
    setup_agent(&server, "ivan");
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/ivan/pause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 16_000, 14_000),
        &caller("+15551239010"),
    );
    call.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239010");
    let id = rec["id"].as_str().expect("id").to_string();
    let announce = server.db().rows(&format!(
        "SELECT detail FROM call_events WHERE call_id = '{id}' AND kind = 'queue_announce'"
    ));
    assert!(announce.len() >= 2, "announcements: {announce:?}");
    // Alone in line, one agent logged in (paused agents do not count: 1 as a floor),
    // no completed call yet: 3 minutes per call ahead.
    assert_eq!(announce[0]["detail"], "position=1 ewt_s=180");
    let names: Vec<String> = queue_events(&server, &id)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(names, ["enter", "abandon"]);
}

/// The set-up of both blind-transfer tests: queue `billing` beside `support`; jack (support)
/// and kate (an agent who serves only `billing`, so only a transfer can reach her) are
/// registered; a caller from `number` presses 0, jack answers and after 2 s REFERs it to
/// `target` (a queue or an agent name) and must see the NOTIFY's sipfrag; kate answers
/// after `kate_ring_ms`. Returns the config folder (keep it), the server and the caller's
/// ended record.
fn refer_to_kate(
    target: &str,
    kate_ring_ms: u32,
    number: &str,
) -> (tempfile::TempDir, Server, DbRow) {
    let billing = "\n[[queue]]\nname = \"billing\"\nstrategy = \"longest-idle\"\nwrapup_s = 1\n";
    let (cfg_dir, cfg) = config_with_extra(&[], billing);
    let server = Server::start(&["--config", &cfg]);
    let jack_port = setup_agent(&server, "jack");
    add_agent_serving(&server, "kate", "s3cret-pw", "billing");
    let kate_port = free_port();
    register(&server, kate_port, "kate", "s3cret-pw");
    wait_agent_state(&server, "kate", "available", Duration::from_secs(5));

    let subs = [("TALK_MS", "2000"), ("TARGET", target)];
    let jack = phone(
        &server,
        "uas_agent_refer.xml",
        "jack",
        jack_port,
        &subs,
        1,
        60_000,
    );
    let kate = agent_phone(&server, "kate", kate_port, kate_ring_ms, 3000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 15_000, 40_000),
        &caller(number),
    );
    let jack_run = jack.wait();
    assert_eq!(
        jack_run.code,
        Some(0),
        "jack's phone failed\n{}",
        jack_run.text
    );
    assert!(
        jack_run.text.contains("message/sipfrag"),
        "{}",
        jack_run.text
    );
    kate.finish("kate's phone");
    call.wait().assert_ok(&server);

    let rec = ended_call(&server, number);
    (cfg_dir, server, rec)
}

/// Blind transfer: jack (queue support) REFERs the caller to queue `billing`; the server
/// accepts (202 + NOTIFY 200), ends jack's part (wrap-up), queues the caller again, and
/// kate (billing) takes it. queue_log shows both visits; the record names the last agent.
#[test]
fn agent_blind_transfers_to_another_queue() {
    let (_cfg_dir, server, rec) = refer_to_kate("billing", 300, "+15551239011");
    assert_eq!(rec["agent"], "kate");
    assert_eq!(rec["queue"], "billing");
    assert_eq!(rec["hangup_cause"], "agent_hangup");
    let id = rec["id"].as_str().expect("id").to_string();
    let rows = server.wait_db(Duration::from_secs(5), "second complete", |_| {
        let r = queue_rows(&server, &id);
        (r.iter().filter(|x| x["event"] == "complete").count() == 2).then_some(r)
    });
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["queue"].as_str().unwrap_or("").to_string(),
                r["event"].as_str().unwrap_or("").to_string(),
                r["agent"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expect = [
        ("support", "enter", ""),
        ("support", "offer", "jack"),
        ("support", "connect", "jack"),
        ("support", "complete", "jack"),
        ("billing", "enter", ""),
        ("billing", "offer", "kate"),
        ("billing", "connect", "kate"),
        ("billing", "complete", "kate"),
    ];
    let got_ref: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(got_ref, expect);
    assert_eq!(rows[3]["reason"], "transfer");
    assert_eq!(
        event_detail(&server, &id, "transfer").as_deref(),
        Some("support->billing")
    );
}

/// Blind transfer to a named agent: jack (queue support) REFERs the caller to
/// `sip:kate@…`, an agent who serves only `billing` (so only the transfer can reach her).
/// The server accepts (202 + NOTIFY 200), ends jack's part, rings kate alone, she answers
/// and audio flows both ways; the caller's one record names kate and queue support, and
/// `queue_log` shows the second visit of support reserved for kate.
#[test]
fn agent_blind_transfers_to_a_named_agent() {
    let (_cfg_dir, server, rec) = refer_to_kate("kate", 500, "+15551239016");
    assert_eq!(rec["agent"], "kate");
    assert_eq!(rec["queue"], "support");
    assert_eq!(rec["hangup_cause"], "agent_hangup");
    let id = rec["id"].as_str().expect("id").to_string();
    let records = server.db().rows(
        "SELECT id FROM call_records WHERE caller = '+15551239016' AND direction = 'inbound'",
    );
    assert_eq!(records.len(), 1, "one record for the transferred call");
    assert_eq!(
        event_detail(&server, &id, "transfer").as_deref(),
        Some("support->agent:kate")
    );
    // kate's bridge (the last one, which `bridge_packets` counts) carried audio both ways:
    // ~3 s at 50 packets/s.
    let bridge = server.wait_db(Duration::from_secs(5), "kate's bridge counters", |_| {
        event_detail(&server, &id, "bridge_packets")
    });
    assert!(packets(&bridge, "caller_to_agent") >= 75, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 75, "{bridge}");

    let rows = server.wait_db(Duration::from_secs(5), "second complete", |_| {
        let r = queue_rows(&server, &id);
        (r.iter().filter(|x| x["event"] == "complete").count() == 2).then_some(r)
    });
    let got = queue_trail(&rows);
    let got_ref: Vec<(&str, &str, &str, &str)> = got
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), c.as_str(), d.as_str()))
        .collect();
    assert_eq!(
        got_ref,
        [
            ("support", "enter", "", ""),
            ("support", "offer", "jack", ""),
            ("support", "connect", "jack", ""),
            ("support", "complete", "jack", "transfer"),
            ("support", "enter", "", "agent:kate"),
            ("support", "offer", "kate", ""),
            ("support", "connect", "kate", ""),
            ("support", "complete", "kate", "agent"),
        ]
    );
    // The live figures agree with the log: two visits, both answered and completed.
    let (code, q) = http(
        server.http_addr,
        "GET",
        "/api/queues",
        Some(&server.api_token()),
    );
    assert_eq!(code, 200);
    let support = q
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "support"))
        .cloned()
        .expect("queue support");
    assert_eq!(support["stats"]["entered"], 2, "{support}");
    assert_eq!(support["stats"]["answered"], 2, "{support}");
    assert_eq!(support["stats"]["completed"], 2, "{support}");
    assert_eq!(support["waiting"], 0, "{support}");
}

/// Feature codes from the agent's own phone: *3 pauses and unpauses, *2 logs out, *1 logs
/// in; each call is answered, confirms with a prompt and is hung up by the server. The same
/// code from an address the agent did not register from is refused ("not allowed").
#[test]
fn feature_codes_from_the_registered_phone() {
    let server = Server::start(&[]);
    let port = setup_agent(&server, "lena");
    let dial = |code: &str, from_port: u16| {
        let p = from_port.to_string();
        server
            .spawn_sipp(
                &Scenario::Call {
                    pcap_args: vec!["--lead-ms".into(), "4000".into()],
                    hold_ms: 10_000,
                },
                &["-set", "caller", "lena", "-p", &p, "-s", code],
            )
            .wait()
            .assert_ok(&server);
    };
    let result = |n: i64| -> String {
        server.wait_db(Duration::from_secs(5), "feature result", |db| {
            let rows = db.rows(
                "SELECT detail FROM call_events WHERE kind = 'feature_result' ORDER BY at, rowid",
            );
            (rows.len() as i64 >= n).then(|| {
                rows[n as usize - 1]["detail"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
        })
    };
    dial("*3", port);
    assert_eq!(result(1), "agent-paused");
    assert_eq!(agent_state(&server, "lena"), "paused");
    dial("*3", port);
    assert_eq!(result(2), "agent-unpaused");
    assert_eq!(agent_state(&server, "lena"), "available");
    dial("*2", free_port());
    assert_eq!(result(3), "agent-not-allowed");
    assert_eq!(agent_state(&server, "lena"), "available");
    dial("*2", port);
    assert_eq!(result(4), "agent-logged-out");
    assert_eq!(agent_state(&server, "lena"), "logged_out");
    dial("*1", port);
    assert_eq!(result(5), "agent-logged-in");
    assert_eq!(agent_state(&server, "lena"), "available");
    let pause = server
        .db()
        .row("SELECT * FROM queue_log WHERE agent = 'lena' AND event = 'pause'");
    assert_eq!(pause["reason"], "phone");
}

/// Screen pop: a subscriber to the agent's event stream (SSE, token required) receives the
/// offer with the caller's ticket and recent calls; after the call the agent posts a
/// disposition and a note onto the call.
#[test]
fn screen_pop_on_offer_and_disposition_after_the_call() {
    let server = Server::start(&[]);
    let tok = token(&server);
    let port = setup_agent(&server, "mona");
    let (code, _) = http(server.http_addr, "GET", "/api/agents/mona/events", None);
    assert_eq!(
        code, 401,
        "the event stream carries customer data: token required"
    );

    let addr = server.http_addr;
    let t = tok.clone();
    let reader = std::thread::spawn(move || -> Option<Value> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET /api/agents/mona/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            // Events are "event: NAME\ndata: JSON\n\n"; the body may be chunked, so look
            // for the data line after "event: offer".
            if let Some(at) = text.find("event: offer") {
                let rest = &text[at..];
                if let Some(d) = rest.find("data: ") {
                    let line = rest[d + 6..].lines().next().unwrap_or("");
                    if let Ok(v) = serde_json::from_str::<Value>(line) {
                        return Some(v);
                    }
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let phone = agent_phone(&server, "mona", port, 300, 1500);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 6000, 40_000),
        &caller("+15551230001"),
    );
    phone.finish("mona's phone");
    call.wait().assert_ok(&server);
    let offer = reader.join().expect("reader").expect("an offer event");
    assert_eq!(offer["agent"], "mona", "{offer}");
    assert_eq!(offer["caller"], "+15551230001", "{offer}");
    assert_eq!(offer["queue"], "support", "{offer}");
    let ticket = &offer["screen_pop"]["ticket"];
    assert_eq!(ticket["phone"], "+15551230001", "{offer}");
    assert!(
        ticket["order_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{offer}"
    );
    assert!(offer["screen_pop"]["recent_calls"].is_array(), "{offer}");

    let rec = ended_call(&server, "+15551230001");
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(offer["call_id"], id.as_str());
    let body =
        format!(r#"{{"call_id": "{id}", "disposition": "resolved", "note": "address fixed"}}"#);
    let (code, v) = http_body(
        server.http_addr,
        "POST",
        "/api/agents/mona/disposition",
        Some(&tok),
        &body,
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = http_body(
        server.http_addr,
        "POST",
        "/api/agents/somebody/disposition",
        Some(&tok),
        &body,
    );
    assert_eq!(code, 409, "another agent's call: {v}");
    let note = server.wait_db(Duration::from_secs(5), "the disposition", |_| {
        event_detail(&server, &id, "agent_disposition")
    });
    assert_eq!(note, "resolved: address fixed");
}

/// An agent's own choices survive a restart: a pause (with its reason) and a logout stay,
/// even though the phones' registrations are restored and would otherwise log them in.
#[test]
fn pause_and_logout_survive_a_restart() {
    let mut server = Server::start(&[]);
    let tok = token(&server);
    setup_agent(&server, "olga");
    setup_agent(&server, "pete");
    let body = r#"{"reason": "lunch"}"#;
    let (code, v) = http_body(
        server.http_addr,
        "POST",
        "/api/agents/olga/pause",
        Some(&tok),
        body,
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = http(
        server.http_addr,
        "POST",
        "/api/agents/pete/logout",
        Some(&tok),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "logged_out");
    // Let the writer store the change, then stop cleanly.
    server.wait_db(Duration::from_secs(5), "agent_state rows", |db| {
        (db.count("agent_state") == 2).then_some(())
    });
    server.sigterm();
    assert!(
        server.wait_exit(Duration::from_secs(15)).is_some(),
        "server did not stop"
    );

    let (mut child, addr) = server.restart_on_same_db();
    let tok = server.api_token();
    let states = wait_for(
        Duration::from_secs(20),
        "the restarted server's agents",
        || {
            let (code, v) =
                std::panic::catch_unwind(|| http(addr, "GET", "/api/agents", Some(&tok))).ok()?;
            (code == 200).then_some(v)
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    let find = |name: &str| {
        states
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let olga = find("olga");
    assert_eq!(olga["state"], "paused", "{states}");
    assert_eq!(olga["paused_reason"], "lunch", "{states}");
    assert_eq!(olga["reachable"], true, "registration restored: {states}");
    let pete = find("pete");
    assert_eq!(pete["state"], "logged_out", "{states}");
    assert_eq!(pete["reachable"], true, "registration restored: {states}");
}

/// Recording per queue: the bridged conversation is written as a stereo WAV (caller left,
/// agent right) named after the call, its path is on the call record, nothing dropped.
#[test]
fn queue_records_the_bridged_call_in_stereo() {
    let rec_dir = tempfile::tempdir().expect("dir");
    let dir_value = format!("{:?}", rec_dir.path().display().to_string());
    let (_cfg_dir, cfg) = config_with(&[("record", "true"), ("recordings_dir", &dir_value)]);
    let server = Server::start(&["--config", &cfg]);
    let port = setup_agent(&server, "nina");
    let phone = agent_phone(&server, "nina", port, 300, 3000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 10_000, 40_000),
        &caller("+15551239012"),
    );
    phone.finish("nina's phone");
    call.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239012");
    let id = rec["id"].as_str().expect("id").to_string();
    let path = rec_dir.path().join(format!("{id}.wav"));
    let stored = server.wait_db(Duration::from_secs(5), "recording_path", |db| {
        db.rows(&format!(
            "SELECT recording_path FROM call_records WHERE id = '{id}' AND recording_path IS NOT NULL"
        ))
        .pop()
    });
    assert_eq!(
        stored["recording_path"],
        path.display().to_string().as_str()
    );
    let stats = server.wait_db(Duration::from_secs(5), "recording stats", |_| {
        event_detail(&server, &id, "recording_stats")
    });
    assert!(stats.ends_with("frames_dropped=0"), "{stats}");
    let reader = wait_for(Duration::from_secs(5), "a finalized WAV", || {
        hound::WavReader::open(&path)
            .ok()
            .filter(|r| r.duration() > 0)
    });
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let secs = reader.duration() as f64 / 8000.0;
    assert!(
        (2.5..6.0).contains(&secs),
        "recorded {secs:.2} s of a ~3 s conversation"
    );
}

/// Caller priority: pressing 0 straight from the main menu, callers are identified by their
/// number before joining; a VIP (demo ticket +15551230002, segment vip, priority 10) who
/// joins after a standard caller is offered first.
#[test]
fn vip_caller_identified_by_number_goes_first() {
    let server = Server::start(&[]);
    let tok = token(&server);
    let port = setup_agent(&server, "omar");
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/omar/pause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    let standard = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 20_000, 30_000),
        &caller("+15551239013"),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let vip = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 20_000, 30_000),
        &caller("+15551230002"),
    );
    // Both wait (the only agent is paused); then the agent comes back.
    server.wait_db(Duration::from_secs(10), "both callers in line", |db| {
        (db.count("queue_log WHERE event = 'enter'") == 2).then_some(())
    });
    let phone = agent_phone(&server, "omar", port, 300, 1000);
    let (code, body) = http(
        server.http_addr,
        "POST",
        "/api/agents/omar/unpause",
        Some(&tok),
    );
    assert_eq!(code, 200, "{body}");
    phone.finish("omar's phone");
    vip.wait().assert_ok(&server);
    let vip_rec = ended_call(&server, "+15551230002");
    assert_eq!(vip_rec["agent"], "omar");
    assert!(
        vip_rec["ticket_id"].as_i64().is_some(),
        "identified: {vip_rec:?}"
    );
    let first = server
        .db()
        .row("SELECT call_id FROM queue_log WHERE event = 'offer' ORDER BY at, rowid LIMIT 1");
    assert_eq!(first["call_id"], vip_rec["id"], "the VIP is offered first");
    let entered = server
        .db()
        .rows("SELECT call_id, position FROM queue_log WHERE event = 'enter' ORDER BY at, rowid");
    assert_eq!(entered[1]["call_id"], vip_rec["id"]);
    assert_eq!(
        entered[1]["position"], 1,
        "the VIP enters ahead of the standard caller"
    );
    drop(standard);
}

/// `active_calls` from `/api/status` (read with the admin token).
fn active_calls(server: &Server, tok: &str) -> u64 {
    let (code, v) = http(server.http_addr, "GET", "/api/status", Some(tok));
    assert_eq!(code, 200, "GET /api/status: {v}");
    v["active_calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("active_calls in {v}"))
}

fn wait_no_active_calls(server: &Server, tok: &str, after: &str) {
    let mut last = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        last = active_calls(server, tok);
        if last == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "active_calls is {last}, not 0, 15 s after {after}\n{}",
        server.log()
    );
}

/// Every kind of call holds one call slot and gives it back once (issue 14 #1: an outbound
/// call gave its slot back twice, `active_calls` wrapped to 2^64-1 and every inbound INVITE
/// got 503). A campaign call answered by a customer who presses 1, then a caller who reaches
/// an agent (the agent leg is an outbound call too), then a plain hotline call that must be
/// answered: `active_calls` is back to 0 after each.
#[test]
fn call_slots_return_after_campaign_agent_leg_and_hotline_calls() {
    let farm_dir = tempfile::tempdir().expect("temp dir");
    let mut farm = campaign::Farm::start(farm_dir.path());
    let trunk = format!(
        "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{}\"\ninbound_cidrs = [\"127.0.0.1/32\"]\n",
        farm.port
    );
    let (_cfg_dir, cfg) = config_with_extra(&[], &trunk);
    let server = Server::start(&["--config", &cfg]);
    let tok = token(&server);
    assert_eq!(active_calls(&server, &tok), 0);

    // 1. A campaign call: the customer (the campaign tests' SIPp farm: a number ending in 1
    //    answers and presses 1) keeps waiting.
    server.db().exec(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
         VALUES ('SLOT-1', 'Slot Tester', '+15551239051', 'en', 'slot-test', 'UTC', 'delayed', 3, '2026-12-24')",
    );
    let spec = serde_json::json!({
        "name": "slots",
        "dialplan": "delay-notify",
        "trunk": "carrier",
        "caller_id": "+15550100",
        "tickets": {"status": "delayed", "segment": "slot-test"},
        "max_channels": 1,
        "max_cps": 1,
        "window": {"start": "00:00", "end": "23:59"}
    });
    let (code, created) = http_body(
        server.http_addr,
        "POST",
        "/api/campaigns",
        Some(&tok),
        &spec.to_string(),
    );
    assert_eq!(code, 201, "create campaign: {created}");
    let id = created["id"].as_i64().expect("campaign id");
    let (code, body) = http(
        server.http_addr,
        "POST",
        &format!("/api/campaigns/{id}/start"),
        Some(&tok),
    );
    assert_eq!(code, 200, "start campaign: {body}");
    let choice = server.wait_db(Duration::from_secs(45), "the customer's choice", |db| {
        db.rows(
            "SELECT choice FROM call_outcomes WHERE ticket_id = \
             (SELECT id FROM tickets WHERE order_id = 'SLOT-1')",
        )
        .pop()
    });
    assert_eq!(choice["choice"], "wait", "{choice:?}");
    wait_no_active_calls(&server, &tok, "the campaign call");
    let dials = farm.stop().calls().len();
    assert_eq!(dials, 1, "one dial reached the farm\n{}", farm.output());
    assert_eq!(farm.failed_calls(), Some(0), "{}", farm.output());

    // 2. A caller reaches an agent through the queue (caller leg + agent leg).
    let port = setup_agent(&server, "sam");
    let agent = agent_phone(&server, "sam", port, 300, 2000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 8_000, 30_000),
        &caller("+15551239051"),
    );
    agent.finish("agent phone");
    call.wait().assert_ok(&server);
    assert_eq!(ended_call(&server, "+15551239051")["agent"], "sam");
    wait_no_active_calls(&server, &tok, "the agent call");

    // 3. A plain hotline call is answered (not refused with 503) and gives its slot back.
    server
        .spawn_sipp(
            &Scenario::call_with_digits(&[], 2_000, 4_000),
            &caller("+15551239052"),
        )
        .wait()
        .assert_ok(&server);
    assert_eq!(
        ended_call(&server, "+15551239052")["disposition"],
        "answered"
    );
    wait_no_active_calls(&server, &tok, "the hotline call");
}

/// A stored timestamp (ISO-8601 UTC) as Unix milliseconds.
fn epoch_ms(ts: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("timestamp {ts}: {e}"))
        .timestamp_millis()
}

/// The wallboard in real Chromium: signed in with the read token, it shows a SIPp caller
/// waiting in `support` within 2 s of the caller entering the queue (`queue_log` enter), and
/// the service level and ASA appear once the agent answers. Screenshot: the test folder, or
/// `$SWITCHBOARD_SCREENSHOT_DIR/wallboard.png` (docs/screenshots/wallboard.png comes from here).
#[test]
fn wallboard_page_shows_waiting_caller_within_2s_and_sl_after_answer() {
    use std::io::BufRead;
    let server = Server::start(&["--api-read-token", "wallboard-read-token"]);
    let port = setup_agent(&server, "wendy");
    let modules = support::playwright_modules();
    let shot_dir = std::env::var("SWITCHBOARD_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| server.dir.path().to_path_buf());
    std::fs::create_dir_all(&shot_dir).expect("screenshot dir");
    let shot = shot_dir.join("wallboard.png");
    let node_log = server.dir.path().join("wallboard-node.log");
    let mut node = Command::new("node")
        .arg(repo_root().join("tests/support/wallboard.js"))
        .env("NODE_PATH", &modules)
        .env(
            "WALLBOARD_URL",
            format!("http://{}/wallboard", server.http_addr),
        )
        .env("WALLBOARD_TOKEN", "wallboard-read-token")
        .env("QUEUE", "support")
        .env("SCREENSHOT", &shot)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&node_log).expect("node log"))
        .spawn()
        .expect("node runs (Debian nodejs)");
    let mut lines = std::io::BufReader::new(node.stdout.take().expect("node stdout")).lines();
    let mut next = |word: &str| -> (i64, String) {
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            let mut parts = line.splitn(3, ' ');
            if parts.next() == Some(word) {
                let at = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                return (at, parts.next().unwrap_or("").to_string());
            }
        }
        panic!(
            "wallboard.js ended before {word}\n{}\n{}",
            support::read_lossy(&node_log),
            server.log()
        );
    };
    next("READY");

    // The agent rings 6 s before answering: the caller waits in line meanwhile.
    let phone = agent_phone(&server, "wendy", port, 6000, 3000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 14_000, 40_000),
        &caller("+15551239717"),
    );
    let (seen_ms, longest) = next("WAITING");
    let (_, sl) = next("SL");
    next("DONE");
    let status = node.wait().expect("node exit");
    assert!(status.success(), "{}", support::read_lossy(&node_log));
    phone.finish("agent phone");
    call.wait().assert_ok(&server);

    let rec = ended_call(&server, "+15551239717");
    assert_eq!(rec["agent"], "wendy", "{rec:?}");
    let id = rec["id"].as_str().expect("id");
    let enter = server.db().row(&format!(
        "SELECT at FROM queue_log WHERE call_id = '{id}' AND event = 'enter'"
    ));
    let enter_ms = epoch_ms(enter["at"].as_str().expect("enter at"));
    let lag = seen_ms - enter_ms;
    println!("wallboard showed the waiting caller {lag} ms after the queue entry");
    assert!(
        (0..=2000).contains(&lag),
        "the page showed the caller {lag} ms after it entered the queue (longest wait {longest})"
    );
    let sl: Value = serde_json::from_str(&sl).expect("SL detail is JSON");
    assert_eq!(sl["sl"], "100%", "answered within 30 s: {sl}");
    let asa = sl["asa"].as_str().unwrap_or("");
    assert!(asa.ends_with(" s") && asa != "0 s", "ASA shown: {sl}");
    assert!(shot.is_file(), "screenshot written");

    // The JSON snapshot agrees and the read token is enough; no token is refused.
    let (code, snap) = http(
        server.http_addr,
        "GET",
        "/api/wallboard",
        Some("wallboard-read-token"),
    );
    assert_eq!(code, 200, "{snap}");
    let q = snap["queues"]
        .as_array()
        .and_then(|a| a.iter().find(|q| q["name"] == "support"))
        .cloned()
        .expect("support in the snapshot");
    assert_eq!(q["today"]["answered"], 1, "{q}");
    assert_eq!(q["today"]["offered"], 1, "{q}");
    let (code, _) = http(server.http_addr, "GET", "/api/wallboard", None);
    assert_eq!(code, 401);
}

/// The wallboard driver (tests/support/wallboard.js) in its command mode: one page kept open
/// while the test drives it with a command per line; each answer is one `WORD ms detail` line.
struct WallboardPage {
    node: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    log: std::path::PathBuf,
}

impl WallboardPage {
    fn open(server: &Server, token: &str, queue: &str, shot: &Path) -> WallboardPage {
        use std::io::BufRead;
        let log = server.dir.path().join("wallboard-figures-node.log");
        let mut node = Command::new("node")
            .arg(repo_root().join("tests/support/wallboard.js"))
            .env("NODE_PATH", support::playwright_modules())
            .env(
                "WALLBOARD_URL",
                format!("http://{}/wallboard", server.http_addr),
            )
            .env("WALLBOARD_TOKEN", token)
            .env("QUEUE", queue)
            .env("MODE", "figures")
            .env("SCREENSHOT", shot)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("node log"))
            .spawn()
            .expect("node runs (Debian nodejs)");
        let stdin = node.stdin.take().expect("node stdin");
        let lines = std::io::BufReader::new(node.stdout.take().expect("node stdout")).lines();
        let mut page = WallboardPage {
            node,
            stdin,
            lines,
            log,
        };
        page.next("READY");
        page
    }

    /// The detail of the next `word` line.
    fn next(&mut self, word: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.unwrap_or_default();
            let mut parts = line.splitn(3, ' ');
            if parts.next() == Some(word) {
                return parts.nth(1).unwrap_or("").to_string();
            }
        }
        panic!(
            "wallboard.js ended before {word}\n{}",
            support::read_lossy(&self.log)
        );
    }

    /// Send `command`; the detail of the `word` line it answers with.
    fn ask(&mut self, command: &str, word: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to wallboard.js");
        self.stdin.flush().expect("flush");
        self.next(word)
    }

    fn figures(&mut self, command: &str) -> Value {
        let detail = self.ask(command, "FIGURES");
        serde_json::from_str(&detail).unwrap_or_else(|e| panic!("FIGURES {detail}: {e}"))
    }

    fn quit(mut self) {
        let _ = writeln!(self.stdin, "quit");
        drop(self.stdin);
        let st = support::wait_child(&mut self.node, Duration::from_secs(20));
        assert!(
            st.is_some_and(|s| s.success()),
            "wallboard.js: {st:?}\n{}",
            support::read_lossy(&self.log)
        );
    }
}

/// Issue 17's "the figures survive a restart", in real Chromium: a SIPp caller answered by an
/// agent in `support` and a short campaign against the SIPp customer farm (wait, refund,
/// busy, failed) leave today's figures; the wallboard shows them (queue calls, SL, ASA, AHT,
/// the agent's calls, the 15-minute interval chart for all queues and for `support`, the
/// campaign's outcome chart and counts), and after SIGTERM and a start on the same database
/// the same open page (reconnected) and the reloaded page show the same figures. Screenshot:
/// `$SWITCHBOARD_SCREENSHOT_DIR/wallboard-charts.png` (docs/screenshots), else the test folder.
#[test]
fn wallboard_figures_survive_a_restart() {
    use campaign::Behaviour;
    let farm_dir = tempfile::tempdir().expect("temp dir");
    let mut farm = campaign::Farm::start(farm_dir.path());
    let trunk = format!(
        "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{}\"\ninbound_cidrs = [\"127.0.0.1/32\"]\n",
        farm.port
    );
    let (_cfg_dir, cfg) = config_with_extra(&[], &trunk);
    let read_token = "wallboard-read-token";
    let mut server = Server::start(&["--config", &cfg, "--api-read-token", read_token]);
    let tok = token(&server);

    // 1. A short campaign: one customer waits, one takes the refund, one is busy, one number
    //    does not exist (404); no retries, so it completes in seconds.
    let plan = [
        Behaviour::Press1,
        Behaviour::Press2,
        Behaviour::Busy,
        Behaviour::NotFound,
    ];
    for t in campaign::tickets(61, &plan) {
        server.db().exec(&format!(
            "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
             VALUES ('{}', 'Board Tester', '{}', 'en', 'wb-restart', '{}', 'delayed', {}, '2026-12-24')",
            t.order_id, t.phone, t.timezone, t.delay_days
        ));
    }
    let mut spec = campaign::campaign_spec("wallboard-restart", 2, 2);
    spec["tickets"] = serde_json::json!({"status": "delayed", "segment": "wb-restart"});
    spec["retry"] = serde_json::json!({
        "busy": {"after_s": 1, "max_attempts": 1},
        "failed": {"after_s": 1, "max_attempts": 1},
        "no_answer": {"after_s": 1, "max_attempts": 1}
    });
    let (code, created) = http_body(
        server.http_addr,
        "POST",
        "/api/campaigns",
        Some(&tok),
        &spec.to_string(),
    );
    assert_eq!(code, 201, "create campaign: {created}");
    let id = created["id"].as_i64().expect("campaign id");
    let (code, body) = http(
        server.http_addr,
        "POST",
        &format!("/api/campaigns/{id}/start"),
        Some(&tok),
    );
    assert_eq!(code, 200, "start campaign: {body}");

    // 2. Meanwhile a caller reaches agent rita through the queue (she rings 1 s).
    let port = setup_agent(&server, "rita");
    let phone = agent_phone(&server, "rita", port, 1000, 3000);
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 8_000, 30_000),
        &caller("+15551239761"),
    );
    phone.finish("agent phone");
    call.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239761");
    assert_eq!(rec["agent"], "rita", "{rec:?}");
    let call_id = rec["id"].as_str().expect("call id").to_string();
    server.wait_db(
        Duration::from_secs(15),
        "the queue call's complete row",
        |db| {
            (db.count(&format!(
                "queue_log WHERE call_id = '{call_id}' AND event = 'complete'"
            )) == 1)
                .then_some(())
        },
    );
    wait_for(Duration::from_secs(90), "the campaign to complete", || {
        let (code, v) = http(
            server.http_addr,
            "GET",
            &format!("/api/campaigns/{id}"),
            Some(&tok),
        );
        (code == 200 && v["state"] == "completed").then_some(v)
    });
    wait_no_active_calls(&server, &tok, "the campaign and the queue call");
    farm.stop();

    // What the database says the campaign's outcomes are (the wallboard's keys).
    let mut outcomes = std::collections::BTreeMap::new();
    for r in server.db().rows(&format!(
        "SELECT COALESCE(outcome, last_disposition) AS o, COUNT(*) AS n FROM campaign_contacts \
         WHERE campaign_id = {id} AND state IN ('completed', 'failed', 'opted_out', 'dnc') GROUP BY o"
    )) {
        let o = r["o"].as_str().unwrap_or("failed").replace("opted_out", "opt_out");
        outcomes.insert(o, r["n"].as_i64().unwrap_or(0));
    }
    let expected: std::collections::BTreeMap<String, i64> =
        [("wait", 1), ("refund", 1), ("busy", 1), ("failed", 1)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(
        outcomes, expected,
        "the farm's customers did what the plan says"
    );

    // 3. The page's figures before the restart.
    let shot_dir = std::env::var("SWITCHBOARD_SCREENSHOT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| server.dir.path().to_path_buf());
    std::fs::create_dir_all(&shot_dir).expect("screenshot dir");
    let shot = shot_dir.join("wallboard-charts.png");
    let mut page = WallboardPage::open(&server, read_token, "support", &shot);
    let before = page.figures("figures");
    println!("wallboard figures before the restart: {before}");
    let q = &before["queue"];
    assert_eq!(q["calls"], "1", "{before}");
    assert_eq!(q["answered"], "1", "{before}");
    assert_eq!(q["sl"], "100%", "answered within 30 s: {before}");
    assert_eq!(q["abandon"], "0%", "{before}");
    let asa = q["asa"].as_str().unwrap_or("");
    assert!(asa.ends_with(" s") && asa != "0 s", "ASA: {before}");
    assert!(
        q["aht"].as_str().unwrap_or("").ends_with(" s"),
        "AHT: {before}"
    );
    assert_eq!(
        before["agents"]["rita"], "1",
        "rita's calls today: {before}"
    );
    // The interval chart: one interval with the one call, answered within the SL, the same
    // for `support` alone.
    let intervals = before["intervals"].as_object().expect("intervals");
    assert_eq!(intervals.len(), 1, "one interval with calls: {before}");
    let (label, iv) = intervals.iter().next().expect("an interval");
    assert!(
        label.len() == 5 && label.as_bytes()[2] == b':',
        "HH:MM label {label}"
    );
    assert_eq!(
        (&iv["offered"], &iv["answered"], &iv["abandoned"], &iv["sl"]),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(0),
            &Value::from("100")
        ),
        "{before}"
    );
    assert_eq!(before["intervals_queue"], before["intervals"], "{before}");
    // The campaign's outcome chart: a rect for every outcome, counts as in the database.
    let c = &before["campaigns"][id.to_string()];
    let chart = c["chart"]
        .as_object()
        .expect("the campaign's outcome chart");
    for k in [
        "wait",
        "refund",
        "agent",
        "callback",
        "no_answer",
        "busy",
        "machine",
        "opt_out",
        "failed",
        "sms_sent",
    ] {
        let want = outcomes.get(k).copied().unwrap_or(0);
        assert_eq!(
            chart.get(k),
            Some(&Value::from(want)),
            "chart {k}: {before}"
        );
        assert_eq!(
            c["table"][k],
            Value::from(want.to_string()),
            "table {k}: {before}"
        );
    }
    assert_eq!(c["progress"], "4 / 4 (100%)", "{before}");
    page.ask("shot", "SHOT");

    // 4. SIGTERM, start again on the same database (same ports): the open page reconnects
    //    and shows the same figures; a reload (the interval chart fetched anew from the
    //    restarted server) too.
    server.sigterm();
    assert!(
        server.wait_exit(Duration::from_secs(20)).is_some(),
        "server did not stop on SIGTERM\n{}",
        server.log()
    );
    server.restart();
    let reconnected = page.figures("reconnected");
    assert_eq!(
        reconnected, before,
        "the open page after the restart\nbefore: {before}\nafter:  {reconnected}"
    );
    let reloaded = page.figures("reload");
    assert_eq!(
        reloaded, before,
        "the reloaded page after the restart\nbefore: {before}\nafter:  {reloaded}"
    );
    page.quit();
    assert!(shot.is_file(), "screenshot written");
}
