//! ACD acceptance tests with real clients: SIPp agents that REGISTER with digest auth and
//! answer (echoing RTP back), SIPp callers that press 0 in the hotline and land in queue
//! `support`. Checked: the bridge carries audio both ways (packets counted per direction),
//! `call_records.queue/agent/wait_ms`, the exact `queue_log` sequence, the live API views,
//! and that no agent is left stuck whoever hangs up first, and when the caller abandons.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{
    free_port, repo_root, run_binary, sipp, sipp_media_port, wait_for, DbRow, Scenario, Server,
    SippProcess,
};

fn add_agent(server: &Server, name: &str, password: &str, extra: &[&str]) {
    let db = format!("sqlite://{}", server.db_path.display());
    let mut args = vec![
        "agent",
        "add",
        name,
        "--password",
        password,
        "--queue",
        "support",
        "--skill",
        "lang:en=5",
        "--database",
        &db,
    ];
    args.extend_from_slice(extra);
    let (st, out, err) = run_binary(&args, Duration::from_secs(20));
    assert!(st.success(), "agent add failed: {out}{err}");
}

/// REGISTER `name` from 127.0.0.1:`port` (the port the agent's UAS then listens on).
fn register(server: &Server, port: u16, name: &str, password: &str) {
    let dir = server.dir.path().join(format!("reg-{name}-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(sipp())
        .arg("-sf")
        .arg(repo_root().join("sip-test/uac_register.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-s", name])
        .args(["-au", name, "-ap", password, "-set", "expires", "300"])
        .args(["-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error"])
        .arg(server.sip_addr.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp register");
    assert!(
        out.status.success(),
        "REGISTER {name} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An agent phone answering one call after `ring_ms`, hanging up itself after `hold_ms`
/// (unless the server's BYE comes first), echoing RTP.
struct AgentPhone {
    sipp: SippProcess,
}

fn agent_phone(server: &Server, name: &str, port: u16, ring_ms: u32, hold_ms: u32) -> AgentPhone {
    let dir = server.dir.path().join(format!("agent-{name}-{port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let text = std::fs::read_to_string(repo_root().join("sip-test/uas_agent.xml"))
        .expect("read uas_agent.xml")
        .replace("@RING_MS@", &ring_ms.to_string())
        .replace("@HOLD_MS@", &hold_ms.to_string());
    let file = dir.join("uas_agent.xml");
    std::fs::write(&file, text).expect("write scenario");
    let sipp = spawn_uas(
        &file,
        &dir,
        port,
        ring_ms + hold_ms + 40_000,
        server.sip_addr,
    );
    AgentPhone { sipp }
}

fn spawn_uas(
    file: &Path,
    dir: &Path,
    port: u16,
    budget_ms: u32,
    target: SocketAddr,
) -> SippProcess {
    let media = sipp_media_port().to_string();
    let port = port.to_string();
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
        "1",
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
        file,
        target,
        dir,
        &args,
        Duration::from_millis(budget_ms as u64),
    )
}

fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
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

fn agent_state(server: &Server, name: &str) -> String {
    let (code, v) = http(server.http_addr, "GET", "/api/agents", None);
    assert_eq!(code, 200, "GET /api/agents: {v}");
    v.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .and_then(|x| x["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

fn wait_agent_state(server: &Server, name: &str, state: &str, timeout: Duration) {
    wait_for(timeout, &format!("agent {name} to be {state}"), || {
        (agent_state(server, name) == state).then_some(())
    });
}

fn caller(number: &str) -> [&str; 3] {
    ["-set", "caller", number]
}

/// The ended inbound call of `number`.
fn ended_call(server: &Server, number: &str) -> DbRow {
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

fn event_detail(server: &Server, call_id: &str, kind: &str) -> Option<String> {
    server
        .db()
        .rows(&format!(
            "SELECT detail FROM call_events WHERE call_id = '{call_id}' AND kind = '{kind}'"
        ))
        .pop()
        .and_then(|r| r["detail"].as_str().map(str::to_string))
}

fn packets(detail: &str, key: &str) -> u64 {
    detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn setup_agent(server: &Server, name: &str) -> u16 {
    add_agent(server, name, "s3cret-pw", &[]);
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
    let agent_run = phone.sipp.wait();
    assert_eq!(
        agent_run.code,
        Some(0),
        "agent phone failed\n{}",
        agent_run.text
    );
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
    let (code, q) = http(server.http_addr, "GET", "/api/queues", None);
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
    let agent_run = phone.sipp.wait();
    assert_eq!(
        agent_run.code,
        Some(0),
        "agent phone failed\n{}",
        agent_run.text
    );
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
    let agent_run = phone.sipp.wait();
    assert_eq!(
        agent_run.code,
        Some(0),
        "agent phone failed\n{}",
        agent_run.text
    );
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
