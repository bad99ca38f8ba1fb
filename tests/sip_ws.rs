//! SIP over WebSocket (RFC 7118) against the real server on its HTTP port: the upgrade
//! contract (subprotocol `sip`, paths `/` and `/ws`), digest REGISTER, OPTIONS, a malformed
//! message answered with 400 on a connection that stays up, a hotline call, and an agent
//! registered over WebSocket rung on that very connection (its Contact is `.invalid`).
//!
//! The clients are tokio-tungstenite speaking raw SIP, like JsSIP does (`Via: SIP/2.0/WS
//! xxx.invalid`), so nothing here can reach the client except over its WebSocket.

use crate::{sip_stream, support};

use std::net::IpAddr;
use std::time::Duration;

use crate::support::{unique, Server};
use sip_stream::{off_runtime, response_to, sdp, ws_connect, SipText, StreamClient};

const T: Duration = Duration::from_secs(5);

async fn connect(server: &Server) -> StreamClient {
    let (client, proto) = ws_connect(server.http_addr, "/ws", Some("sip"))
        .await
        .unwrap_or_else(|code| panic!("upgrade refused with {code}\n{}", server.log()));
    assert_eq!(proto.as_deref(), Some("sip"), "subprotocol echoed");
    client
}

/// Place a call to the hotline from `c`; returns the INVITE's Call-ID, the 200 and the
/// provisional codes seen, after sending the ACK.
async fn call_hotline(
    c: &mut StreamClient,
    caller: &str,
    rtp_port: u16,
) -> (String, SipText, Vec<u16>) {
    let call_id = unique("ws-call-");
    let uri = format!("sip:hotline@{}", c.server.ip());
    let contact = format!(
        "Contact: {}\r\nContent-Type: application/sdp\r\n",
        c.contact(caller)
    );
    let invite = c.request(
        "INVITE",
        &uri,
        &call_id,
        1,
        caller,
        &format!("<{uri}>"),
        &contact,
        &sdp(rtp_port),
    );
    c.send(&invite).await;
    let (provisional, ok) = c.final_response(Duration::from_secs(10)).await;
    let ok = ok.expect("a final answer to the INVITE");
    assert_eq!(ok.code(), Some(200), "{}", ok.0);
    // ACK for the 2xx: its own transaction, To with the tag, sent to the Contact (§13.2.2.4).
    let target = ok
        .header("Contact")
        .expect("Contact in the 200")
        .trim_matches(|ch| ch == '<' || ch == '>')
        .to_string();
    let from = invite
        .lines()
        .find(|l| l.starts_with("From:"))
        .expect("From")
        .to_string();
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/WS {};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         {from}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        c.host,
        unique("ack"),
        ok.header("To").expect("To")
    );
    c.send(&ack).await;
    (call_id, ok, provisional)
}

/// Upgrade contract, REGISTER 401 → 200 with the binding kept as a `ws:` flow, OPTIONS,
/// a malformed message, and a hotline call with all of its answers on the WebSocket.
#[tokio::test]
async fn websocket_register_options_malformed_and_hotline_call() {
    let server = Server::start(&[]);
    server.add_agent("wsalice", "ws-secret-1", &[]);

    // No `sip` subprotocol: not SIP over WebSocket (RFC 7118 §4.1).
    match ws_connect(server.http_addr, "/ws", None).await {
        Err(code) => assert_eq!(code, 400),
        Ok(_) => panic!("an upgrade without the sip subprotocol must be refused"),
    }
    // `/` works too (JsSIP uses whatever URL it is given).
    let (_root, proto) = ws_connect(server.http_addr, "/", Some("sip"))
        .await
        .expect("upgrade on /");
    assert_eq!(proto.as_deref(), Some("sip"));

    let mut c = connect(&server).await;
    let (challenge, ok) = c.register("wsalice", "ws-secret-1").await;
    assert_eq!(challenge.code(), Some(401), "{}", challenge.0);
    assert_eq!(ok.code(), Some(200), "{}\n{}", ok.0, server.log());
    assert!(
        ok.header("Contact").is_some_and(|v| v.contains(".invalid")),
        "200 lists the .invalid binding: {}",
        ok.0
    );
    assert!(
        ok.header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/WS ") && v.contains(&c.host)),
        "{}",
        ok.0
    );
    let source = off_runtime(|| {
        server.wait_db(T, "the ws binding", |db| {
            db.rows("SELECT source FROM registrations WHERE aor = 'wsalice'")
                .pop()
                .and_then(|r| r["source"].as_str().map(str::to_string))
        })
    });
    assert!(
        source.starts_with("ws:127.0.0.1:"),
        "binding source {source}"
    );

    // OPTIONS on the same socket.
    let opts = c.request(
        "OPTIONS",
        &format!("sip:{}", server.http_addr.ip()),
        &unique("opt-"),
        1,
        "wsalice",
        &format!("<sip:{}>", server.http_addr.ip()),
        "",
        "",
    );
    c.send(&opts).await;
    let (_, r) = c.final_response(T).await;
    assert_eq!(r.map(|r| r.code()), Some(Some(200)));

    // A body shorter than its Content-Length: 400 naming the request, connection stays up.
    let bad_id = unique("bad-");
    let bad = c
        .request(
            "OPTIONS",
            &format!("sip:{}", server.http_addr.ip()),
            &bad_id,
            1,
            "wsalice",
            "<sip:x@127.0.0.1>",
            "",
            "",
        )
        .replace("Content-Length: 0", "Content-Length: 40");
    c.send(&format!("{bad}only-ten-b")).await;
    let (_, r) = c.final_response(T).await;
    let r = r.expect("an answer to the malformed request");
    assert_eq!(r.code(), Some(400), "{}", r.0);
    assert_eq!(r.header("Call-ID"), Some(bad_id.as_str()));
    // Junk that is no request gets nothing, and does not close the connection either.
    c.send("hello, not SIP").await;
    c.send(&opts.replace("CSeq: 1", "CSeq: 2")).await;
    let (_, r) = c.final_response(T).await;
    assert_eq!(
        r.map(|r| r.code()),
        Some(Some(200)),
        "connection still serves after junk"
    );

    // A hotline call: 100/180/200 over the WebSocket, our Contact says transport=ws.
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let port = rtp.local_addr().expect("rtp addr").port();
    let (call_id, ok, provisional) = call_hotline(&mut c, "+15551237001", port).await;
    assert!(provisional.contains(&100), "100 Trying: {provisional:?}");
    assert!(provisional.contains(&180), "180 Ringing: {provisional:?}");
    assert!(
        ok.header("Contact")
            .is_some_and(|v| v.contains("transport=ws")),
        "{}",
        ok.0
    );
    assert!(ok.body().contains("m=audio"), "SDP answer: {}", ok.0);
    // RTP arrives where our SDP said (the media side is transport-independent).
    let mut buf = [0u8; 2048];
    rtp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (n, _) = rtp
        .recv_from(&mut buf)
        .expect("RTP from the hotline prompts");
    assert!(n >= 12, "an RTP packet");

    // Hang up: the BYE's 200 comes back on the socket.
    let to = ok.header("To").expect("To").to_string();
    let target = ok
        .header("Contact")
        .expect("Contact")
        .trim_matches(|ch| ch == '<' || ch == '>')
        .to_string();
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/WS {};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         From: <sip:+15551237001@{}>;tag=x\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        c.host,
        unique("bye"),
        c.server.ip()
    );
    // The From tag must be the INVITE's: take it from the 200.
    let from_tag = ok
        .header("From")
        .and_then(|f| f.split(";tag=").nth(1))
        .expect("From tag")
        .to_string();
    c.send(&bye.replace(";tag=x", &format!(";tag={from_tag}")))
        .await;
    let (_, r) = c.final_response(T).await;
    assert_eq!(r.map(|r| r.code()), Some(Some(200)), "BYE answered");
    let rec = off_runtime(|| {
        server.wait_db(T, "the ended call", |db| {
            db.rows(&format!(
            "SELECT * FROM call_records WHERE sip_call_id = '{call_id}' AND ended_at IS NOT NULL"
        ))
            .pop()
        })
    });
    assert_eq!(rec["disposition"], "answered", "{rec:?}");
}

/// An agent registered over WebSocket is rung on that WebSocket when a caller (here also
/// on WebSocket) asks for an agent: INVITE to the `.invalid` contact, 180/200 from the
/// agent, ACK back on the same connection, and the agent's BYE ends the caller's leg.
#[tokio::test]
async fn agent_registered_over_websocket_is_rung_on_its_connection() {
    let server = Server::start(&[]);
    server.add_agent("wsbob", "ws-secret-2", &[]);
    let mut agent = connect(&server).await;
    let (_, ok) = agent.register("wsbob", "ws-secret-2").await;
    assert_eq!(ok.code(), Some(200), "{}", ok.0);

    let mut caller = connect(&server).await;
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let port = rtp.local_addr().expect("rtp addr").port();
    let (call_id, ok, _) = call_hotline(&mut caller, "+15551237002", port).await;
    // Press 0 (agent) with SIP INFO, as JsSIP does.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let to = ok.header("To").expect("To").to_string();
    let from_tag = ok
        .header("From")
        .and_then(|f| f.split(";tag=").nth(1))
        .expect("From tag")
        .to_string();
    let target = ok
        .header("Contact")
        .expect("Contact")
        .trim_matches(|ch| ch == '<' || ch == '>')
        .to_string();
    let info = format!(
        "INFO {target} SIP/2.0\r\nVia: SIP/2.0/WS {};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         From: <sip:+15551237002@{}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
         CSeq: 2 INFO\r\nContent-Type: application/dtmf-relay\r\nContent-Length: 24\r\n\r\n\
         Signal=0\r\nDuration=160\r\n",
        caller.host,
        unique("info"),
        caller.server.ip()
    );
    caller.send(&info).await;
    let (_, r) = caller.final_response(T).await;
    assert_eq!(r.map(|r| r.code()), Some(Some(200)), "INFO answered");

    let invite = agent
        .request_of("INVITE", Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no INVITE on the agent's WebSocket\n{}", server.log()));
    assert!(
        invite.first_line().contains(&agent.host),
        "Request-URI is the registered .invalid contact: {}",
        invite.first_line()
    );
    assert!(
        invite
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/WS ")),
        "{}",
        invite.0
    );
    assert!(invite.body().contains("m=audio"), "{}", invite.0);
    let agent_rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("agent rtp");
    let agent_port = agent_rtp.local_addr().expect("addr").port();
    let tag = unique("at");
    let contact = format!("Contact: {}\r\n", agent.contact("wsbob"));
    agent
        .send(&response_to(&invite, 180, "Ringing", &tag, &contact, ""))
        .await;
    agent
        .send(&response_to(
            &invite,
            200,
            "OK",
            &tag,
            &format!("{contact}Content-Type: application/sdp\r\n"),
            &sdp(agent_port),
        ))
        .await;
    let ack = agent
        .request_of("ACK", T)
        .await
        .expect("ACK on the agent's WebSocket");
    assert_eq!(ack.header("Call-ID"), invite.header("Call-ID"));

    // The agent hangs up: in-dialog BYE from the agent, the caller is hung up in turn.
    let bye = format!(
        "BYE {} SIP/2.0\r\nVia: SIP/2.0/WS {};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
         From: {};tag={tag}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        invite
            .header("Contact")
            .expect("Contact")
            .trim_matches(|ch| ch == '<' || ch == '>'),
        agent.host,
        unique("abye"),
        invite.header("To").expect("To"),
        invite.header("From").expect("From"),
        invite.header("Call-ID").expect("Call-ID"),
    );
    agent.send(&bye).await;
    let (_, r) = agent.final_response(T).await;
    assert_eq!(r.map(|r| r.code()), Some(Some(200)), "agent's BYE answered");
    let caller_bye = caller
        .request_of("BYE", Duration::from_secs(10))
        .await
        .expect("the caller is hung up over its WebSocket");
    caller
        .send(&response_to(&caller_bye, 200, "OK", "", "", ""))
        .await;
    let rec = off_runtime(|| {
        server.wait_db(T, "the ended queue call", |db| {
            db.rows(&format!(
            "SELECT * FROM call_records WHERE sip_call_id = '{call_id}' AND ended_at IS NOT NULL"
        ))
            .pop()
        })
    });
    assert_eq!(rec["agent"], "wsbob", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "agent_hangup", "{rec:?}");
}

/// One HTTP/1.1 request with extra header lines; (status, head, body).
fn http_req(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, T).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

const JSON: &str = "Content-Type: application/json\r\n";

/// The `sb_agent=…` value of a response's Set-Cookie.
fn session_of(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.strip_prefix("sb_agent="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// The browser agent's API without a browser: wrong password 401 (and logged as a security
/// event), the cookie's flags, a forged or missing cookie 401 on `/api/agent/me`, a pause
/// reason outside the list 400, a second login taking the session over, logout ending it.
#[test]
fn agent_session_api_contract() {
    let server = Server::start(&[]);
    server.add_agent("webbob", "web-secret-2", &[]);
    let a = server.http_addr;
    let login = |pw: &str| {
        http_req(
            a,
            "POST",
            "/api/agent/login",
            JSON,
            &format!(r#"{{"name":"webbob","password":"{pw}"}}"#),
        )
    };
    let (code, _, body) = login("nope");
    assert_eq!(code, 401, "{body}");
    assert!(
        server.log().contains("web login failed"),
        "wrong password logged as a security event\n{}",
        server.log()
    );
    let (code, _, body) = http_req(
        a,
        "POST",
        "/api/agent/login",
        JSON,
        r#"{"name":"nobody","password":"x"}"#,
    );
    assert_eq!(
        code, 401,
        "unknown agent answers like a wrong password: {body}"
    );
    // A form post (not JSON) is refused before anything is checked.
    let (code, _, _) = http_req(
        a,
        "POST",
        "/api/agent/login",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        "name=webbob&password=web-secret-2",
    );
    assert_eq!(code, 415);

    let (code, head, body) = login("web-secret-2");
    assert_eq!(code, 200, "{body}\n{}", server.log());
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("Set-Cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie_line.contains(flag), "{cookie_line}");
    }
    assert!(!cookie_line.contains("Secure"), "plain HTTP: not Secure");
    let first = session_of(&head);
    assert_eq!(first.len(), 64, "256-bit id: {cookie_line}");

    let me = |cookie: &str| {
        http_req(
            a,
            "GET",
            "/api/agent/me",
            &format!("Cookie: sb_agent={cookie}\r\n"),
            "",
        )
    };
    let (code, _, body) = me(&first);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["name"], "webbob");
    assert_eq!(v["pause_reasons"][1], "lunch", "{v}");
    assert!(v["dispositions"].as_array().is_some_and(|d| !d.is_empty()));
    // Forged (right length, wrong value), empty, or no cookie at all: 401.
    assert_eq!(me(&"0".repeat(64)).0, 401);
    assert_eq!(me("").0, 401);
    assert_eq!(http_req(a, "GET", "/api/agent/me", "", "").0, 401);
    // The admin token is no session.
    let admin = format!("Authorization: Bearer {}\r\n", server.api_token());
    assert_eq!(http_req(a, "GET", "/api/agent/me", &admin, "").0, 401);

    let cookie = format!("Cookie: sb_agent={first}\r\n{JSON}");
    let (code, _, body) = http_req(
        a,
        "POST",
        "/api/agent/state",
        &cookie,
        r#"{"state":"paused","reason":"nap"}"#,
    );
    assert_eq!(code, 400, "reason outside [acd] pause_reasons: {body}");
    let (code, _, body) = http_req(
        a,
        "POST",
        "/api/agent/disposition",
        &cookie,
        r#"{"call_id":"no-such-call","outcome":"resolved","resolution":"refund"}"#,
    );
    assert_eq!(code, 404, "{body}");
    // Blind transfer: a queue (`target`) or an agent (`agent`), one of the two; unknown
    // targets 404; oneself 409 (all checked before the call is looked at).
    let transfer = |body: &str| http_req(a, "POST", "/api/agent/transfer", &cookie, body);
    for (body, want) in [
        (r#"{"call_id":"c","target":"support","agent":"x"}"#, 400),
        (r#"{"call_id":"c"}"#, 400),
        (r#"{"call_id":"c","agent":" "}"#, 400),
        (r#"{"call_id":"c","agent":"webbob"}"#, 409),
        (r#"{"call_id":"c","agent":"nobody"}"#, 404),
        (r#"{"call_id":"c","target":"no-such-queue"}"#, 404),
    ] {
        let (code, _, got) = transfer(body);
        assert_eq!(code, want, "{body} -> {got}");
        assert!(got.contains("\"error\""), "{got}");
    }
    let (_, _, body) = me(&first);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        v["transfer_targets"]["queues"]
            .as_array()
            .is_some_and(|q| q.iter().any(|x| x == "support")),
        "{v}"
    );
    assert!(
        v["transfer_targets"]["agents"]
            .as_array()
            .is_some_and(|q| q.iter().all(|x| x["name"] != "webbob")),
        "the agent itself is no transfer target: {v}"
    );

    // A second login takes over: the first session is revoked.
    let (code, head, body) = login("web-secret-2");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"took_over\":true"), "{body}");
    let second = session_of(&head);
    assert_eq!(me(&first).0, 401, "the older session is revoked");
    assert_eq!(me(&second).0, 200);
    let (code, head, _) = http_req(
        a,
        "POST",
        "/api/agent/logout",
        &format!("Cookie: sb_agent={second}\r\n"),
        "",
    );
    assert_eq!(code, 200);
    assert!(head.contains("Max-Age=0"), "cookie cleared: {head}");
    assert_eq!(me(&second).0, 401, "logged out");
}

/// Where playwright-core lives for the browser tests: installed once with npm into
/// `target/browser-deps` (pinned version), reused by later runs.
pub(crate) fn playwright_node_path() -> std::path::PathBuf {
    let dir = support::repo_root().join("target/browser-deps");
    let modules = dir.join("node_modules");
    if !modules.join("playwright-core/package.json").exists() {
        std::fs::create_dir_all(&dir).expect("target/browser-deps");
        let st = std::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                &dir.display().to_string(),
                "playwright-core@1.65.1",
            ])
            .status()
            .expect("npm (apt-get install npm) to install playwright-core");
        assert!(st.success(), "npm install playwright-core failed");
    }
    modules
}

/// Real headless Chromium on `GET /agent`, driven by the data-testid contract: a wrong
/// password is refused on the page, the right one shows the state, a pause with a reason
/// from the list shows on the page and through the admin API; the cookie is HttpOnly and
/// SameSite=Strict (the page's script cannot read it), and a forged one gets 401.
/// `SWITCHBOARD_SCREENSHOT=path.png` saves a screenshot of the page (docs/screenshots).
/// The agent's phone registers over `/ws` first, as the page's WebRTC phone will (until
/// then an agent without a registered phone shows as logged out to the ACD).
#[tokio::test]
async fn browser_agent_login_pause_and_cookie() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium} (apt-get install chromium, or set CHROMIUM)"
    );
    let node_path = playwright_node_path();
    let server = Server::start(&[]);
    server.add_agent("webalice", "web-secret-1", &[]);
    let mut phone = connect(&server).await;
    let (_, ok) = phone.register("webalice", "web-secret-1").await;
    assert_eq!(ok.code(), Some(200), "{}\n{}", ok.0, server.log());
    let script = support::repo_root().join("tests/browser/agent_login.js");
    let mut cmd = std::process::Command::new("node");
    cmd.arg(&script)
        .arg(format!("http://{}", server.http_addr))
        .arg("webalice")
        .arg("web-secret-1")
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium);
    if let Ok(shot) = std::env::var("SWITCHBOARD_SCREENSHOT") {
        cmd.arg(shot);
    }
    let out = off_runtime(move || cmd.output()).expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser driver failed: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let r: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("driver JSON"),
    )
    .expect("driver JSON");
    assert!(
        r["wrong_error"]
            .as_str()
            .is_some_and(|e| e.contains("wrong agent name or password")),
        "{r}"
    );
    assert_eq!(r["wrong_state_visible"], false, "{r}");
    assert_eq!(r["pause_reasons"][1], "lunch", "{r}");
    assert!(
        r["state_after_pause"]
            .as_str()
            .is_some_and(|s| s.contains("paused") && s.contains("lunch")),
        "{r}"
    );
    assert_eq!(r["cookie"]["httpOnly"], true, "{r}");
    assert_eq!(r["cookie"]["sameSite"], "Strict", "{r}");
    assert_eq!(r["js_sees_cookie"], false, "{r}");
    let ids: Vec<&str> = r["testids"]
        .as_array()
        .expect("testids")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for id in [
        "login-user",
        "agent-state",
        "incoming-call",
        "dtmf-pad",
        "screen-pop-history",
        "disposition-submit",
        "call-stats-rx-packets",
    ] {
        assert!(ids.contains(&id), "{id} missing from the page: {ids:?}");
    }

    // The pause as the admin API sees it.
    let (code, body) =
        off_runtime(|| server.api_get("/api/agents/webalice")).expect("admin API answers");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["state"], "paused", "{v}");
    assert_eq!(v["paused_reason"], "lunch", "{v}");

    // The browser's cookie works from here too; a forged one does not.
    let good = r["cookie"]["value"].as_str().expect("cookie value");
    let addr = server.http_addr;
    let me = move |c: String| {
        off_runtime(move || {
            http_req(
                addr,
                "GET",
                "/api/agent/me",
                &format!("Cookie: sb_agent={c}\r\n"),
                "",
            )
            .0
        })
    };
    assert_eq!(me(good.to_string()), 200);
    let mut forged = good.to_string();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(63.., last);
    assert_eq!(me(forged), 401, "a forged cookie is refused");
    drop(phone);
}

/// Real headless Chromium against the str0m leg (src/webrtc) over loopback UDP: the page's
/// offer (host candidate 127.0.0.1, no mDNS) is accepted by [`WebRtcLeg::accept_offer`], our
/// ICE-lite answer goes back, ICE and DTLS-SRTP connect, and PCMU flows both ways: the
/// browser's getStats counts packets from the leg, the leg hears the browser's microphone.
#[tokio::test]
async fn browser_webrtc_leg_connects_and_audio_flows_both_ways() {
    use std::io::{BufRead, Write};
    use switchboard::webrtc::{driver, Frame, LegCodec, LegNotice, WebRtcLeg};

    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium} (apt-get install chromium, or set CHROMIUM)"
    );
    let node_path = playwright_node_path();
    let script = support::repo_root().join("tests/browser/webrtc_leg.js");
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.blocking_send(l).is_err() {
                break;
            }
        }
    });
    let offer_line = tokio::time::timeout(Duration::from_secs(30), line_rx.recv())
        .await
        .expect("the page's offer in time")
        .expect("driver output");
    let offer: String = serde_json::from_str(
        offer_line
            .strip_prefix("OFFER ")
            .unwrap_or_else(|| panic!("expected OFFER, got {offer_line}")),
    )
    .expect("offer JSON");
    assert!(
        offer.contains(" 127.0.0.1 ") && !offer.contains(".local "),
        "a loopback host candidate, not an mDNS name: {offer}"
    );

    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("leg socket");
    let local = socket.local_addr().expect("leg address");
    let (leg, answer) =
        WebRtcLeg::accept_offer(std::time::Instant::now(), local, &offer).expect("offer accepted");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(
        leg.codec(),
        Some(LegCodec::Pcmu),
        "PCMU chosen from Chromium's offer"
    );
    writeln!(
        stdin,
        "ANSWER {}",
        serde_json::to_string(&answer).expect("json")
    )
    .expect("answer to the page");
    stdin.flush().expect("flush");

    let (frames_tx, frames_rx) = tokio::sync::mpsc::channel::<Frame>(16);
    let (notice_tx, mut notices) = tokio::sync::mpsc::channel::<LegNotice>(64);
    let task = tokio::spawn(driver::run(leg, socket, frames_rx, notice_tx));

    // Until the page reports: a 400 Hz tone in PCMU every 20 ms (RTP time from the sample
    // count), count what the browser sends us.
    let tone: Vec<u8> = (0..160)
        .map(|i| {
            let s = (f64::from(i) * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin() * 8000.0;
            switchboard::media::codec::Codec::Pcmu.encode_sample(s as i16)
        })
        .collect();
    let (mut connected, mut heard, mut heard_loud) = (false, 0usize, 0usize);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut k = 0u64;
    let report = loop {
        tokio::select! {
            _ = tick.tick() => {
                if connected {
                    let _ = frames_tx.try_send(Frame {
                        rtp_time: k * 160,
                        payload: tone.clone(),
                        arrived: std::time::Instant::now(),
                    });
                    k += 1;
                }
            }
            n = notices.recv() => match n {
                Some(LegNotice::Connected) => connected = true,
                Some(LegNotice::Audio { payload, .. }) => {
                    heard += 1;
                    if payload.iter().any(|&b| b != 0xff && b != 0x7f) {
                        heard_loud += 1;
                    }
                }
                Some(LegNotice::Closed { why }) => panic!("leg closed early: {why}"),
                None => panic!("leg task ended"),
            },
            l = line_rx.recv() => break l.expect("the page's report"),
        }
    };
    let out = off_runtime(move || child.wait_with_output()).expect("node exits");
    let r: serde_json::Value = serde_json::from_str(&report).expect("driver JSON");
    assert!(
        out.status.success(),
        "browser driver failed: {r}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("browser: {r}; leg heard {heard} packets ({heard_loud} not silence)");
    let s = &r["stats"];
    assert_eq!(s["conn"], "connected", "{r}");
    assert_eq!(s["dtls"], "connected", "{r}");
    assert!(connected, "the leg saw Connected: {r}");
    assert!(
        s["rx_bytes"].as_u64().unwrap_or(0) > 0 && s["rx_packets"].as_u64().unwrap_or(0) >= 50,
        "the browser received the leg's audio: {r}"
    );
    assert!(
        s["codecs"]
            .as_array()
            .is_some_and(|c| c.iter().any(|m| m == "audio/PCMU")),
        "PCMU negotiated: {r}"
    );
    assert!(
        heard >= 50,
        "the leg heard the browser: {heard} packets; {r}"
    );
    assert!(
        heard_loud > 0,
        "the fake microphone's beep is not silence: {heard} packets; {r}"
    );
    drop(frames_tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("leg task ends with the call")
        .expect("leg task");
}

/// Where the browser sits relative to the server in the browser-agent tests (issue 16: the
/// leg works "on loopback, on a LAN address, and behind NAT with a configured public
/// address"). LAN and NAT are Linux network namespaces joined by veth pairs, made with `ip`
/// and `nft` (root needed) and removed on drop, panics included (docs/deployment.md,
/// "Browser agents across networks", draws them):
///
/// - loopback: everything in the test's own namespace on 127.0.0.1;
/// - LAN: Chromium in namespace `sbN-PID-browser` at 10.77.N.2, the server on 10.77.N.1 (the
///   test's end of the veth pair) for SIP, HTTP and media;
/// - NAT: the server on 10.77.N.1 again; namespace `sbN-PID-nat` is a router with 10.77.N.254
///   inside and the "public" 10.78.N.1 outside, forwarding the HTTP port and `rtp_ports`
///   to the server (DNAT) and masquerading what it forwards; Chromium in `sbN-PID-browser` at
///   10.78.N.2 has no route to 10.77.N.0/24 at all, so only `[webrtc] public_address =
///   10.78.N.1` gets its media to the server.
///
/// N (1..=250) is claimed by creating the veth `sbNs` in the test's namespace: the kernel
/// refuses a second one with the same name, so parallel tests (and test binaries) never
/// share a subnet or a namespace name.
struct BrowserNet {
    /// N: the subnets 10.77.N.0/24 and 10.78.N.0/24, the names `sbN*` (0: loopback).
    n: u8,
    /// The namespace Chromium runs in (None: the test's own).
    browser_ns: Option<String>,
    /// The router namespace (NAT only): gets the forwarding rules once the ports are known.
    nat_ns: Option<String>,
    /// Every namespace made, removed on drop.
    namespaces: Vec<String>,
    /// The veth end in the test's namespace, removed on drop.
    link: Option<String>,
    /// The server's address on the test's network (its end of the veth pair).
    server_ip: IpAddr,
    /// What the server is told to listen on (SIP, HTTP and so media): `server_ip`, or the
    /// wildcard in [`BrowserNet::lan_wildcard`].
    listen_ip: IpAddr,
    /// The server as the browser reaches it: the page's host and the leg's ICE candidate.
    reach_ip: IpAddr,
    /// The browser's own address.
    browser_ip: IpAddr,
    /// Where the server sees the browser's packets come from (the NAT's inside address).
    seen_from: IpAddr,
    /// The page over HTTPS (`[http] tls_cert`, a certificate for `reach_ip`), as operators
    /// serve it: a secure origin by its scheme, no insecure-origin flag in Chromium.
    https: bool,
}

/// `ip ARGS`, its error text when it fails.
fn ip_cmd(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (apt-get install iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`ip_cmd`] for a set-up step: a failure is the test's failure, with the exact error
/// (a machine where namespaces cannot be made fails here rather than skipping).
fn ip_ok(args: &[&str]) {
    if let Err(e) = ip_cmd(args) {
        panic!("network set-up failed (root and iproute2 needed): {e}");
    }
}

impl BrowserNet {
    fn loopback() -> BrowserNet {
        let lo = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        BrowserNet {
            n: 0,
            browser_ns: None,
            nat_ns: None,
            namespaces: Vec::new(),
            link: None,
            server_ip: lo,
            listen_ip: lo,
            reach_ip: lo,
            browser_ip: lo,
            seen_from: lo,
            https: false,
        }
    }

    /// Claim a free N: create the veth pair `sbNs` / `sbNp` in the test's namespace.
    fn claim() -> (u8, BrowserNet) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = std::process::id()
            .wrapping_mul(7)
            .wrapping_add(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        for k in 0..250u32 {
            let n = u8::try_from(1 + start.wrapping_add(k) % 250).expect("1..=250");
            let (link, peer) = (format!("sb{n}s"), format!("sb{n}p"));
            match ip_cmd(&["link", "add", &link, "type", "veth", "peer", "name", &peer]) {
                Ok(()) => {
                    let mut net = BrowserNet::loopback();
                    net.n = n;
                    net.link = Some(link);
                    return (n, net);
                }
                Err(e) if e.contains("File exists") => continue,
                Err(e) => panic!("cannot create a veth pair (root and iproute2 needed): {e}"),
            }
        }
        panic!("no free sbN veth name in 1..=250");
    }

    /// A fresh namespace `sbN-PID-role` with loopback up. The PID keeps the name unique
    /// even where N is claimed in another network namespace (the names are host-wide).
    fn namespace(&mut self, role: &str) -> String {
        let name = format!("sb{}-{}-{role}", self.n, std::process::id());
        ip_ok(&["netns", "add", &name]);
        self.namespaces.push(name.clone());
        ip_ok(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// The server's end of the pair: 10.77.N.1/24 in the test's namespace.
    fn server_side(&self) {
        let (n, link) = (self.n, self.link.as_deref().expect("claimed"));
        ip_ok(&["addr", "add", &format!("10.77.{n}.1/24"), "dev", link]);
        ip_ok(&["link", "set", link, "up"]);
    }

    fn lan() -> BrowserNet {
        let (n, mut net) = BrowserNet::claim();
        let ns = net.namespace("browser");
        let peer = format!("sb{n}p");
        ip_ok(&["link", "set", &peer, "netns", &ns]);
        net.server_side();
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.77.{n}.2/24"),
            "dev",
            &peer,
        ]);
        ip_ok(&["-n", &ns, "link", "set", &peer, "up"]);
        net.browser_ns = Some(ns);
        net.server_ip = IpAddr::from([10, 77, n, 1]);
        net.listen_ip = net.server_ip;
        net.reach_ip = net.server_ip;
        net.browser_ip = IpAddr::from([10, 77, n, 2]);
        net.seen_from = net.browser_ip;
        net
    }

    /// [`BrowserNet::lan`] with the server on `0.0.0.0` (SIP, HTTP, media), as a
    /// `sip_listen = "0.0.0.0:5060"` install: the leg's candidate is the address the page
    /// was opened on.
    fn lan_wildcard() -> BrowserNet {
        let mut net = BrowserNet::lan();
        net.listen_ip = IpAddr::from([0, 0, 0, 0]);
        net
    }

    /// [`BrowserNet::lan`] with the page, its API and event stream over HTTPS.
    fn lan_https() -> BrowserNet {
        let mut net = BrowserNet::lan();
        net.https = true;
        net
    }

    fn nat() -> BrowserNet {
        let (n, mut net) = BrowserNet::claim();
        let nat = net.namespace("nat");
        let browser = net.namespace("browser");
        let (inside, outside, own) = (format!("sb{n}p"), format!("sb{n}o"), format!("sb{n}b"));
        ip_ok(&["link", "set", &inside, "netns", &nat]);
        #[rustfmt::skip]
        ip_ok(&["link", "add", &outside, "netns", &nat, "type", "veth", "peer", "name", &own,
            "netns", &browser]);
        net.server_side();
        for (ns, dev, addr) in [
            (&nat, &inside, format!("10.77.{n}.254/24")),
            (&nat, &outside, format!("10.78.{n}.1/24")),
            (&browser, &own, format!("10.78.{n}.2/24")),
        ] {
            ip_ok(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip_ok(&[
            "netns",
            "exec",
            &nat,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // The browser's side has no way to the server's private network: only the public
        // address (and what the router forwards from it) is reachable.
        let private = format!("10.77.{n}.1");
        assert!(
            ip_cmd(&["-n", &browser, "route", "get", &private]).is_err(),
            "the browser namespace must not route to {private}"
        );
        net.browser_ns = Some(browser);
        net.nat_ns = Some(nat);
        net.server_ip = IpAddr::from([10, 77, n, 1]);
        net.listen_ip = net.server_ip;
        net.reach_ip = IpAddr::from([10, 78, n, 1]);
        net.browser_ip = IpAddr::from([10, 78, n, 2]);
        net.seen_from = IpAddr::from([10, 77, n, 254]);
        net
    }

    /// NAT only: forward the server's HTTP port and RTP range from the public address to
    /// the server, masquerading (as a home or office router in front of a server would,
    /// with the agent behind a second NAT folded into the same box).
    fn forward(&self, server: &Server) {
        let Some(nat) = &self.nat_ns else { return };
        let public = self.reach_ip;
        let to = self.server_ip;
        let http = server.http_addr.port();
        let (lo, hi) = server.rtp_ports;
        let inside = format!("sb{}p", self.n);
        let rules = format!(
            "table ip switchboard_test {{\n\
             chain pre {{ type nat hook prerouting priority dstnat; policy accept;\n\
             ip daddr {public} tcp dport {http} dnat to {to}\n\
             ip daddr {public} udp dport {lo}-{hi} dnat to {to}\n}}\n\
             chain post {{ type nat hook postrouting priority srcnat; policy accept;\n\
             oifname \"{inside}\" masquerade\n}}\n}}\n"
        );
        use std::io::Write;
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", nat, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ip netns exec nft (apt-get install nftables)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules to nft");
        let out = child.wait_with_output().expect("nft exits");
        assert!(
            out.status.success(),
            "nft refused the forwarding rules: {}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `node` in the browser's namespace (or here, on loopback).
    fn node(&self) -> std::process::Command {
        match &self.browser_ns {
            Some(ns) => {
                let mut c = std::process::Command::new("ip");
                c.args(["netns", "exec", ns, "node"]);
                c
            }
            None => std::process::Command::new("node"),
        }
    }
}

impl Drop for BrowserNet {
    fn drop(&mut self) {
        // Namespaces first (their veth ends go with them), then our end: N is free again
        // only once nothing of it is left.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip_cmd(&["netns", "del", ns]) {
                eprintln!("clean-up: {e}");
            }
        }
        if let Some(link) = &self.link {
            // Usually gone with its peer's namespace already.
            let _ = ip_cmd(&["link", "del", link]);
        }
    }
}

/// A server whose hotline queues at once (so a customer's pcap can be a tone from the
/// start: a pressed 0 would have to come before any audio), agent `webcarol` logged in on
/// `/agent` in headless Chromium (tests/browser/agent_call.js in `mode`) with the browser
/// phone on and `available` with no SIP phone at all. Returns the temp dir, the server, the
/// driver and its stdout lines (after `READY`).
fn browser_agent_ready(
    mode: &str,
    extra_config: &str,
) -> (
    tempfile::TempDir,
    Server,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
) {
    browser_agent_ready_on(&BrowserNet::loopback(), mode, extra_config)
}

/// [`browser_agent_ready`] across `net`: the server listens on `net.server_ip`, the page is
/// opened on `net.reach_ip` by Chromium in the browser's namespace, and behind NAT the leg
/// advertises `[webrtc] public_address = net.reach_ip` (the router forwards to the server).
fn browser_agent_ready_on(
    net: &BrowserNet,
    mode: &str,
    extra_config: &str,
) -> (
    tempfile::TempDir,
    Server,
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium} (apt-get install chromium, or set CHROMIUM)"
    );
    let node_path = playwright_node_path();
    let dir = tempfile::tempdir().expect("temp dir");
    let plans = hotline_queues_at_once(dir.path());
    let default = std::fs::read_to_string(support::repo_root().join("config/default.toml"))
        .expect("default config");
    let text = default.replace(
        "dialplan_dir = \"dialplans\"",
        &format!("dialplan_dir = {:?}", plans.display().to_string()),
    );
    assert_ne!(text, default, "config/default.toml has a dialplan_dir line");
    // A spool of its own too (as support's isolated config): servers of parallel tests
    // sharing `data/` replay and rotate each other's journals (seen: "cannot start:
    // journal data/journal-….jsonl: No such file or directory").
    let spooled = text.replace(
        "spool_dir = \"data\"",
        &format!(
            "spool_dir = {:?}",
            dir.path().join("spool").display().to_string()
        ),
    );
    assert_ne!(
        spooled, text,
        "config/default.toml has a spool_dir = \"data\" line"
    );
    let text = spooled;
    let mut text = format!("{text}\n{extra_config}");
    if net.nat_ns.is_some() {
        text.push_str(&format!(
            "\n[webrtc]\npublic_address = \"{}\"\n",
            net.reach_ip
        ));
    }
    let cert = net.https.then(|| {
        // A self-signed certificate for the address the page is opened on.
        let ck = rcgen::generate_simple_self_signed(vec![net.reach_ip.to_string()])
            .expect("self-signed certificate");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).expect("write cert.pem");
        std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key.pem");
        text.push_str(&format!(
            "\n[http]\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
        ck.cert.der().clone()
    });
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, text).expect("write config");
    let args = ["--config", &cfg.display().to_string()];
    let server = match cert {
        Some(cert) => Server::start_https_at(None, net.listen_ip, &args, cert),
        None => Server::start_at(None, net.listen_ip, &args),
    };
    net.forward(&server);
    server.add_agent("webcarol", "web-secret-3", &[]);

    let script = support::repo_root().join("tests/browser/agent_call.js");
    let page = std::net::SocketAddr::new(net.reach_ip, server.http_addr.port());
    let mut cmd = net.node();
    cmd.arg(&script)
        .arg(format!(
            "{}://{page}",
            if net.https { "https" } else { "http" }
        ))
        .arg("webcarol")
        .arg("web-secret-3")
        .arg(mode)
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium);
    let (child, line_rx) = start_page_driver(cmd, &server);
    // The browser phone makes the agent reachable: available with no SIP phone at all.
    support::wait_for(
        Duration::from_secs(10),
        "webcarol available through the browser phone",
        || {
            let (code, body) = server.api_get("/api/agents/webcarol")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (code == 200 && v["state"] == "available").then_some(())
        },
    );
    (dir, server, child, line_rx)
}

/// A SIPp customer `number` calling the hotline (queue `support` at once) with `secs` of a
/// 400 Hz PCMU tone from the start (the browser driver waits for audio energy), on the line
/// `hold_ms` unless the server's BYE comes first.
pub(crate) fn tone_caller(
    server: &Server,
    dir: &tempfile::TempDir,
    number: &str,
    secs: u32,
    hold_ms: u32,
) -> support::SippProcess {
    let tone = dir.path().join(format!("tone-{number}.ulaw"));
    let samples: Vec<u8> = (0..8000 * secs)
        .map(|i| {
            let s = (f64::from(i) * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin() * 8000.0;
            switchboard::media::codec::Codec::Pcmu.encode_sample(s as i16)
        })
        .collect();
    std::fs::write(&tone, samples).expect("tone");
    server.spawn_sipp(
        &support::Scenario::Call {
            pcap_args: vec![
                "--lead-audio".into(),
                tone.display().to_string(),
                "--tail-ms".into(),
                "200".into(),
            ],
            hold_ms,
        },
        &["-set", "caller", number],
    )
}

/// The browser as an ACD agent leg, end to end: a SIPp customer (an RTP tone from a pcap)
/// calls into queue `support`; the agent, logged in on `GET /agent` in headless Chromium
/// with "take calls in this browser" on, is rung in the page (`incoming-call`), answers
/// there (the page's WebRTC offer to `POST /api/agent/answer`), and audio flows both ways
/// through the caller's relay (the browser's getStats: packets and audio energy from the
/// caller; the server's bridge counters: packets from the agent to the caller). The agent
/// hangs up in the page: the caller gets the BYE, the record names the agent.
#[test]
fn browser_agent_answers_a_queue_call_in_the_page() {
    let (dir, server, child, line_rx) = browser_agent_ready("answer", "");

    // 12 s of a 400 Hz tone from the customer, who stays on the line until the BYE.
    let caller = tone_caller(&server, &dir, "+15551239777", 12, 40_000);

    let r = page_report(child, &line_rx, &server, Duration::from_secs(90));
    eprintln!("browser agent: {r}");
    let s = &r["stats"];
    assert_eq!(s["conn"], "connected", "{r}");
    assert!(
        s["rx_packets"].as_u64().unwrap_or(0) >= 100 && s["rx_bytes"].as_u64().unwrap_or(0) > 0,
        "the browser received the caller's audio: {r}"
    );
    assert!(
        s["rx_energy"].as_f64().unwrap_or(0.0) > 0.0,
        "the caller's tone is not silence in the browser: {r}"
    );
    assert!(
        s["codecs"]
            .as_array()
            .is_some_and(|c| c.iter().any(|m| m == "audio/PCMU")),
        "PCMU (pass-through with the PCMU caller): {r}"
    );
    assert!(
        r["rx_packets_shown"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "the page's call-stats-rx-packets counter moved: {r}"
    );

    // The customer got the BYE from the agent's side.
    caller.wait().assert_ok(&server);
    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(
            "SELECT * FROM call_records WHERE caller = '+15551239777' AND direction = 'inbound' \
             AND ended_at IS NOT NULL",
        )
        .pop()
    });
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["agent"], "webcarol", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "agent_hangup", "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    let bridge = server.wait_db(Duration::from_secs(5), "bridge counters", |db| {
        db.rows(&format!(
            "SELECT detail FROM call_events WHERE call_id = '{id}' AND kind = 'bridge_packets'"
        ))
        .pop()
        .and_then(|r| r["detail"].as_str().map(str::to_string))
    });
    let count = |key: &str| -> u64 {
        bridge
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("caller_to_agent") >= 100, "{bridge}");
    assert!(
        count("agent_to_caller") >= 100,
        "the browser's audio reached the caller: {bridge}"
    );
    let events = server.db().rows(&format!(
        "SELECT kind, detail FROM call_events WHERE call_id = '{id}' AND kind LIKE 'agent_%'"
    ));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "agent_connect" && e["detail"] == "webcarol"),
        "{events:?}"
    );

    // The server's own relay delay (docs/operations.md "Metrics"): every browser packet
    // relayed to the caller counted, by the time the leg has ended (its counters are
    // flushed then), and the caller's packets relayed to the browser too.
    let relayed = |text: &str, direction: &str| -> f64 {
        let series =
            format!("switchboard_webrtc_relay_delay_seconds_count{{direction=\"{direction}\"}}");
        text.lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    };
    let text = support::wait_for(Duration::from_secs(10), "relay delays in /metrics", || {
        let (code, text) = server.api_get("/metrics")?;
        (code == 200 && relayed(&text, "browser_to_caller") >= 100.0).then_some(text)
    });
    assert!(
        relayed(&text, "caller_to_browser") >= 100.0,
        "the caller's audio relayed to the browser is counted too:\n{text}"
    );
    assert!(
        text.contains("_bucket{direction=\"browser_to_caller\",le=\"+Inf\"}"),
        "{text}"
    );
    let shown = |l: &&str| {
        l.starts_with("switchboard_webrtc_relay_delay_seconds_")
            && ["le=\"0.001\"", "le=\"0.005\"", "_count"]
                .iter()
                .any(|k| l.contains(k))
    };
    let lines: Vec<&str> = text.lines().filter(shown).collect();
    eprintln!("server relay delay: {}", lines.join("; "));
}

/// The browser agent on a LAN address (issue 16): Chromium in a network namespace of its
/// own at 10.77.N.2 opens `/agent` on the server's 10.77.N.1 (SIP, HTTP and media there, none
/// on loopback) and answers a queue call; the leg's candidate is that LAN address, the server
/// sees the browser's media come from the browser's address, and audio flows both ways.
#[test]
fn browser_agent_answers_on_a_lan_address() {
    answered_across(BrowserNet::lan(), "+15551239781");
}

/// The same with the page served over HTTPS on the LAN address (`[http] tls_cert`, a
/// self-signed certificate for it), as an operator installs it: Chromium gets no
/// insecure-origin flag, so the microphone, the event stream and the answer work because the
/// origin is secure; the session cookie is `Secure`.
#[test]
fn browser_agent_answers_on_a_lan_address_over_https() {
    answered_across(BrowserNet::lan_https(), "+15551239784");
}

/// The same with the server listening on `0.0.0.0` (SIP, HTTP and media on the wildcard,
/// no `public_address`): the leg's candidate is the LAN address the page was opened on (its
/// requests' `Host`), not loopback, which the browser could not reach.
#[test]
fn browser_agent_answers_on_a_lan_address_with_wildcard_media() {
    answered_across(BrowserNet::lan_wildcard(), "+15551239783");
}

/// The browser agent behind NAT (issue 16): the server on a private 10.77.N.1, a router
/// namespace forwarding its HTTP port and `rtp_ports` from the public 10.78.N.1 (DNAT, and
/// masquerading what it forwards), Chromium at 10.78.N.2 with no route to the private
/// network. With `[webrtc] public_address = 10.78.N.1` the leg's candidate is the public
/// address, the browser's media reaches the server through the router (from the router's
/// inside address, which the ICE-lite leg answers), and audio flows both ways.
#[test]
fn browser_agent_answers_behind_nat_with_a_public_address() {
    answered_across(BrowserNet::nat(), "+15551239782");
}

/// A raw caller (every RTP packet logged, so the agent's tone can be found in what it got)
/// into queue `support`, answered by the browser agent across `net`, who hangs up in the
/// page once audio flows both ways. Checks the ICE pair's addresses on both sides, the
/// audio in each direction, and the record.
fn answered_across(net: BrowserNet, number: &str) {
    let (_dir, server, child, line_rx) = browser_agent_ready_on(&net, "answer", "");
    let caller = raw_caller(&server, number, Duration::from_secs(60));
    let r = page_report(child, &line_rx, &server, Duration::from_secs(90));
    eprintln!("browser agent via {}: {r}", net.reach_ip);
    assert_eq!(
        r["secure_context"], true,
        "the page is a secure context: {r}"
    );
    if net.https {
        let session = r["cookies"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["httpOnly"] == true))
            .unwrap_or_else(|| panic!("the page's HttpOnly session cookie: {r}"));
        assert_eq!(session["secure"], true, "Secure under HTTPS: {r}");
        assert_eq!(session["sameSite"], "Strict", "{r}");
    }
    let s = &r["stats"];
    assert_eq!(s["conn"], "connected", "{r}");
    assert!(
        s["rx_packets"].as_u64().unwrap_or(0) >= 100
            && s["rx_energy"].as_f64().unwrap_or(0.0) > 0.0,
        "the browser received the caller's tone: {r}"
    );
    assert!(
        r["rx_packets_shown"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "the page's call-stats-rx-packets counter moved: {r}"
    );
    // The browser's side of the ICE pair: its address as the server sees it (on the LAN
    // its own host candidate; behind NAT the router's inside address, a peer-reflexive
    // candidate the browser learnt from the leg's STUN answers), to the address the leg
    // advertised (the LAN address, or the public one behind NAT) on a port of rtp_ports.
    let local = s["pair"]["local"].as_str().unwrap_or_default();
    assert!(
        local.starts_with(&format!("{}:", net.seen_from)),
        "the browser's media leaves as {} (the browser is {}): {r}",
        net.seen_from,
        net.browser_ip
    );
    let remote: std::net::SocketAddr = s["pair"]["remote"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the selected candidate pair in the page's stats: {r}"));
    assert_eq!(remote.ip(), net.reach_ip, "the leg's candidate: {r}");
    assert!(
        (server.rtp_ports.0..=server.rtp_ports.1).contains(&remote.port()),
        "the leg's port is one of rtp_ports {:?}: {r}",
        server.rtp_ports
    );
    // The server's side: the browser's packets came from its LAN address (behind NAT: from
    // the router's inside address), not from loopback.
    let log = server.log();
    let from = format!("{}:", net.seen_from);
    assert!(
        log.lines()
            .any(|l| l.contains("webrtc leg connected") && l.contains(&from)),
        "the leg connected to the browser at {from}..\n{log}"
    );

    // The caller: the agent's tone (the fake microphone's beep) on the bridge's stream,
    // which is the last one before the BYE (the queue's music before the answer is another).
    let (heard, bye) = caller.join().expect("caller thread");
    assert!(bye, "the caller got the BYE when the agent hung up");
    let answered_at = u128::from(r["answered_at"].as_u64().expect("answered_at"));
    let bridge = heard
        .iter()
        .rev()
        .find(|h| h.pt == 0)
        .map(|h| h.ssrc)
        .expect("the caller heard PCMU");
    let agent: Vec<&Heard> = heard
        .iter()
        .filter(|h| h.pt == 0 && h.ssrc == bridge && h.at_ms >= answered_at)
        .collect();
    let loud = agent.iter().filter(|h| h.peak >= 1000).count();
    let peak = agent.iter().map(|h| h.peak).max().unwrap_or(0);
    assert!(
        agent.len() >= 100 && loud > 0,
        "the caller heard the agent: {} packets, {loud} with a tone (peak {peak})",
        agent.len()
    );

    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE caller = '{number}' AND direction = 'inbound' \
             AND ended_at IS NOT NULL"
        ))
        .pop()
    });
    assert_eq!(rec["agent"], "webcarol", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "agent_hangup", "{rec:?}");
    drop(server);
    drop(net);
}

/// The caller hangs up while the page rings: the page is told (`call-ended`, `cancelled`)
/// and stops ringing, and the record says the caller left with no agent. Then the page
/// closes: its last event stream gone, the browser phone goes off and the agent is
/// unreachable (not stuck `offered`, and not rung in a page that is gone).
#[test]
fn browser_ring_ends_when_the_caller_hangs_up() {
    let (_dir, server, child, line_rx) = browser_agent_ready("ring-only", "");
    let caller = server.spawn_sipp(
        &support::Scenario::HangupEarly { hold_ms: 3000 },
        &["-set", "caller", "+15551239778"],
    );
    let r = page_report(child, &line_rx, &server, Duration::from_secs(60));
    assert!(
        r["note"].as_str().is_some_and(|n| n.contains("cancelled")),
        "the page saw the ring cancelled: {r}"
    );
    assert_eq!(r["ringing_after"], serde_json::Value::Null, "{r}");
    caller.wait().assert_ok(&server);
    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(
            "SELECT * FROM call_records WHERE caller = '+15551239778' AND direction = 'inbound' \
             AND ended_at IS NOT NULL",
        )
        .pop()
    });
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["agent"], serde_json::Value::Null, "{rec:?}");
    // The ring left the agent free (not stuck `offered`); the page has closed since (the
    // driver exited), and with its last event stream gone the browser phone is off: the
    // agent is no longer reachable, so a vanished page is not rung.
    support::wait_for(
        Duration::from_secs(10),
        "webcarol unreachable once the page is gone",
        || {
            let (code, body) = server.api_get("/api/agents/webcarol")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (code == 200 && v["state"] == "logged_out" && v["reachable"] == false).then_some(v)
        },
    );
}

/// One RTP packet the raw caller received: wall-clock ms, SSRC, payload type, payload head.
#[derive(Debug, Clone)]
pub(crate) struct Heard {
    at_ms: u128,
    ssrc: u32,
    pt: u8,
    /// RTP timestamp.
    ts: u32,
    head: [u8; 4],
    /// Loudest PCMU sample (0 for other payload types): the agent's tone, not silence.
    peak: i16,
}

fn wall_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A customer on a plain UDP socket (so the test sees every RTP packet it gets, which SIPp
/// cannot log): INVITE `hotline` offering PCMU + telephone-event 101, then a 400 Hz PCMU
/// tone every 20 ms, logging what arrives, until the server's BYE (answered 200) or
/// `limit`. Returns what it heard and whether a BYE came.
pub(crate) fn raw_caller(
    server: &Server,
    caller: &str,
    limit: Duration,
) -> std::thread::JoinHandle<(Vec<Heard>, bool)> {
    use switchboard::media::rtp::{write_header, RtpPacket};
    let client = server.sip_client();
    let caller = caller.to_string();
    std::thread::spawn(move || {
        let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
        let port = rtp.local_addr().expect("addr").port();
        let sdp = support::sdp_offer(port, "0 101", &["0 PCMU/8000", "101 telephone-event/8000"]);
        let req = support::SipRequest::new("INVITE", "hotline", &client)
            .header(
                "From",
                &format!("<sip:{caller}@{}>;tag={}", client.local, unique("t")),
            )
            .body("application/sdp", &sdp);
        let ok = client.request(&req.bytes());
        assert_eq!(ok.code, 200, "{}", ok.text);
        client.send(&req.ack_for(&ok).bytes());
        let server_rtp: std::net::SocketAddr = {
            let port: u16 = ok
                .text
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .expect("m=audio port in the 200");
            // The server's media address (`c=`), which is not loopback in the LAN tests.
            let ip: IpAddr = ok
                .text
                .lines()
                .find_map(|l| l.strip_prefix("c=IN IP4 "))
                .and_then(|a| a.trim().parse().ok())
                .expect("c= address in the 200");
            (ip, port).into()
        };
        rtp.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let mut heard = Vec::new();
        let mut buf = [0u8; 1500];
        let start = std::time::Instant::now();
        let mut bye = false;
        let mut k: u32 = 0;
        while start.elapsed() < limit && !bye {
            let due = start + Duration::from_millis(20 * u64::from(k));
            while std::time::Instant::now() < due {
                if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                    if let Ok(p) = RtpPacket::parse(&buf[..n]) {
                        let mut head = [0u8; 4];
                        let m = p.payload.len().min(4);
                        head[..m].copy_from_slice(&p.payload[..m]);
                        let peak = if p.payload_type == 0 {
                            let pcmu = switchboard::media::codec::Codec::Pcmu;
                            p.payload
                                .iter()
                                .map(|&b| pcmu.decode_sample(b).saturating_abs())
                                .max()
                                .unwrap_or(0)
                        } else {
                            0
                        };
                        heard.push(Heard {
                            at_ms: wall_ms(),
                            ssrc: p.ssrc,
                            pt: p.payload_type,
                            ts: p.timestamp,
                            head,
                            peak,
                        });
                    }
                }
            }
            let mut pkt = [0u8; 12 + 160];
            write_header(&mut pkt, k == 0, 0, k as u16, k * 160, 0x5eed_0001);
            for (i, b) in pkt[12..].iter_mut().enumerate() {
                let t = f64::from(k * 160 + i as u32) / 8000.0;
                let s = (t * 2.0 * std::f64::consts::PI * 400.0).sin() * 8000.0;
                *b = switchboard::media::codec::Codec::Pcmu.encode_sample(s as i16);
            }
            let _ = rtp.send_to(&pkt, server_rtp);
            k += 1;
            if k.is_multiple_of(5) {
                if let Some(d) = client.recv_datagram(Duration::from_millis(1)) {
                    let text = String::from_utf8_lossy(&d).into_owned();
                    if text.starts_with("BYE ") {
                        // 200 OK with the request's Via, From, To, Call-ID and CSeq.
                        let head = text.split("\r\n\r\n").next().unwrap_or("");
                        let mut resp = String::from("SIP/2.0 200 OK\r\n");
                        for l in head.lines().skip(1) {
                            let name = l
                                .split(':')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_ascii_lowercase();
                            if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                                .contains(&name.as_str())
                            {
                                resp.push_str(l);
                                resp.push_str("\r\n");
                            }
                        }
                        resp.push_str("Content-Length: 0\r\n\r\n");
                        client.send(resp.as_bytes());
                        bye = true;
                    }
                }
            }
        }
        (heard, bye)
    })
}

/// Hold, the DTMF pad and a blind transfer from the page, heard by the customer: a raw UDP
/// caller (every RTP packet it receives is logged) is answered by the browser agent, who
/// puts it on hold (the caller's packets then come from the music-on-hold source, not the
/// bridge, and the page receives nothing), resumes (the bridge's packets again), presses 5
/// on the pad (RFC 4733 event 5 with telephone-event type 101 at the caller) and transfers
/// the caller to queue `sales` (nobody there: the caller is released with `queue_no_agents`
/// and the record's trail has `transfer support->sales`). The page offers PCMU: the leg
/// passes the caller's G.711 through.
#[test]
fn browser_agent_holds_sends_dtmf_and_transfers_from_the_page() {
    holds_sends_dtmf_and_transfers(false, "+15551239779");
}

/// The same with a page that offers no G.711 (issue 16, "DTMF with Opus legs"): the leg
/// runs on Opus (48 kHz clock), the relay transcodes to the caller's PCMU, and the pad's
/// digit still reaches the caller as an RFC 4733 event on its 8 kHz clock — duration and
/// timestamp rescaled with the audio, not 6 times too long or off the audio's timeline.
#[test]
fn browser_agent_on_opus_holds_sends_dtmf_and_transfers_from_the_page() {
    holds_sends_dtmf_and_transfers(true, "+15551239780");
}

fn holds_sends_dtmf_and_transfers(opus: bool, number: &str) {
    let sales = "[[queue]]\nname = \"sales\"\nstrategy = \"longest-idle\"\nring_timeout_s = 15\n\
                 wrapup_s = 5\njoin_empty = false\nmusic_on_hold = \"moh\"\n";
    let mode = if opus {
        "opus+controls:sales"
    } else {
        "controls:sales"
    };
    let (_dir, server, child, line_rx) = browser_agent_ready(mode, sales);
    let caller = raw_caller(&server, number, Duration::from_secs(60));
    let r = page_report(child, &line_rx, &server, Duration::from_secs(90));
    eprintln!("browser agent: {r}");
    let (heard, bye) = caller.join().expect("caller thread");
    // The codec the page's leg runs on (its getStats `codec` entries).
    let codecs = r["stats"]["codecs"].to_string().to_lowercase();
    if opus {
        assert!(
            codecs.contains("audio/opus") && !codecs.contains("audio/pcmu"),
            "the page's leg is on Opus: {r}"
        );
    } else {
        assert!(
            codecs.contains("audio/pcmu"),
            "the page's leg is on PCMU: {r}"
        );
    }
    assert_hold_and_dtmf_heard(&r, &heard);
    // The transfer: the page's call ended, the caller went to `sales` (empty: released).
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.to_lowercase().contains("transferred")),
        "{r}"
    );
    assert!(
        bye,
        "the caller got a BYE after the transfer to an empty queue"
    );
    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE caller = '{number}' AND direction = 'inbound' \
             AND ended_at IS NOT NULL"
        ))
        .pop()
    });
    // schema.md: a transferred caller the new queue refused keeps no `queue`, its cause
    // names the refusal, and the trail names the transfer.
    assert_eq!(rec["hangup_cause"], "queue_no_agents", "{rec:?}");
    assert_eq!(rec["queue"], serde_json::Value::Null, "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    let trail = server.db().call_events(&id);
    for (kind, detail) in [
        ("hold", "agent"),
        ("unhold", "agent"),
        ("transfer", "support->sales"),
    ] {
        assert!(
            trail.iter().any(|(k, d)| k == kind && d == detail),
            "{kind} {detail} in {trail:?}"
        );
    }
}

/// A browser that vanishes mid-call (the tab is closed without hanging up: its event
/// stream and its media stop): the call is released at once as `agent_lost` (not after
/// ICE consent's 30 s), the caller gets the BYE, the agent goes to wrap-up, and once the
/// agent logs in again in a new page, available; nothing is left offered or on a call.
#[test]
fn browser_agent_vanishing_mid_call_is_released_as_agent_lost() {
    let (dir, server, mut child, line_rx) = browser_agent_ready("vanish", "");
    // 12 s of a 400 Hz tone from the customer (the page waits for audio before vanishing).
    let caller = tone_caller(&server, &dir, "+15551239780", 12, 40_000);
    let vanished = line_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the page did not answer\n{}", server.log()));
    assert_eq!(vanished, "VANISHED", "{vanished}\n{}", server.log());
    let gone_at = std::time::Instant::now();
    // Wrap-up is seen on the way (5 s in the default queue).
    support::wait_for(
        Duration::from_secs(10),
        "webcarol in wrap-up after the vanished call",
        || {
            let (code, body) = server.api_get("/api/agents/webcarol")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (code == 200 && v["state"] == "wrap_up").then_some(())
        },
    );
    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(
            "SELECT * FROM call_records WHERE caller = '+15551239780' AND direction = 'inbound' \
             AND ended_at IS NOT NULL",
        )
        .pop()
    });
    assert!(
        gone_at.elapsed() < Duration::from_secs(15),
        "released promptly, not at ICE consent expiry: {:?}",
        gone_at.elapsed()
    );
    assert_eq!(rec["agent"], "webcarol", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "agent_lost", "{rec:?}");
    caller.wait().assert_ok(&server);
    // The agent comes back in a new page.
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("driver stdin");
        stdin.write_all(b"RELOGIN\n").expect("tell the driver");
    }
    let r = page_report(child, &line_rx, &server, Duration::from_secs(60));
    eprintln!("browser agent: {r}");
    let states = r["states_after"].as_array().cloned().unwrap_or_default();
    assert_eq!(states.last(), Some(&serde_json::json!("available")), "{r}");
    assert!(
        !states.iter().any(|s| s == "on_call" || s == "offered"),
        "nothing stuck on the vanished call: {r}"
    );
}

/// What `controls:` mode of tests/browser/agent_call.js (report `r`) did, as the page and
/// the raw caller (`heard`) saw it: nothing from the caller on the page while held and its
/// audio again after resume; at the caller the bridge's audio before hold, music on hold
/// (another source) while held, the bridge again after resume, and the pad's 5 as one
/// RFC 4733 event on the caller's 8 kHz clock, on the audio's timeline.
pub(crate) fn assert_hold_and_dtmf_heard(r: &serde_json::Value, heard: &[Heard]) {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let t = |k: &str| u128::from(r[k].as_u64().unwrap_or(0));
    // The page: nothing from the caller while held, the caller's audio again after.
    assert!(
        n("held_rx1") - n("held_rx0") <= 5,
        "the page got the caller's audio while on hold: {r}"
    );
    assert!(
        n("resumed_rx1") - n("resumed_rx0") >= 50,
        "the caller's audio is back after resume: {r}"
    );
    assert_eq!(r["hold_label"], "Resume", "{r}");
    // The caller: the bridge's source before hold, another (music on hold) while held, the
    // bridge again after resume.
    let before: Vec<&Heard> = heard
        .iter()
        .filter(|h| h.pt == 0 && h.at_ms + 1000 < t("hold_at") && h.at_ms + 3000 > t("hold_at"))
        .collect();
    assert!(
        before.len() >= 40,
        "the agent's audio reached the caller before hold: {}",
        before.len()
    );
    let bridge = before[before.len() / 2].ssrc;
    let window = |from: u128, to: u128| {
        heard
            .iter()
            .filter(move |h| h.pt == 0 && h.at_ms >= from && h.at_ms < to)
    };
    let held_from = t("hold_at") + 700;
    let held_to = t("resume_at");
    let from_bridge = window(held_from, held_to)
        .filter(|h| h.ssrc == bridge)
        .count();
    let music = window(held_from, held_to)
        .filter(|h| h.ssrc != bridge)
        .count();
    assert!(
        from_bridge <= 3,
        "the agent's audio kept flowing while on hold: {from_bridge}"
    );
    assert!(
        music >= 50,
        "music on hold for the caller while held: {music} packets"
    );
    let resumed = window(t("resume_at") + 700, t("dtmf_at"))
        .filter(|h| h.ssrc == bridge)
        .count();
    assert!(
        resumed >= 50,
        "the agent's audio is back after resume: {resumed}"
    );
    // The pad's 5: RFC 4733 event 5, with an end packet.
    let events: Vec<&Heard> = heard.iter().filter(|h| h.pt == 101).collect();
    assert!(
        events.iter().filter(|h| h.head[0] == 5).count() >= 3
            && events
                .iter()
                .any(|h| h.head[0] == 5 && h.head[1] & 0x80 != 0),
        "DTMF 5 from the pad as RFC 4733 events at the caller: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|h| h.head[0] == 5 && h.at_ms >= t("dtmf_at")),
        "{events:?}"
    );
    // On the caller's 8 kHz clock (RFC 4733 §2.3.5), whatever the page's leg runs on: one
    // event (one timestamp), the pad's 100 ms tone as a final duration of 800 units (±1
    // packet), starting where the bridge's audio was (not on a 48 kHz timeline).
    let starts: std::collections::BTreeSet<u32> = events.iter().map(|h| h.ts).collect();
    assert_eq!(starts.len(), 1, "one event, one timestamp: {events:?}");
    let final_duration = events
        .iter()
        .filter(|h| h.head[1] & 0x80 != 0)
        .map(|h| u16::from_be_bytes([h.head[2], h.head[3]]))
        .max()
        .unwrap_or(0);
    assert!(
        (640..=960).contains(&final_duration),
        "the 100 ms digit lasts {final_duration} units of 8 kHz: {events:?}"
    );
    let first_event = events.first().expect("an event");
    let audio_before = heard
        .iter()
        .rev()
        .find(|h| h.pt == 0 && h.ssrc == first_event.ssrc && h.at_ms <= first_event.at_ms)
        .expect("the bridge's audio before the digit");
    let gap = first_event.ts.wrapping_sub(audio_before.ts) as i32;
    assert!(
        (-1600..=4000).contains(&gap),
        "the event starts {gap} units of 8 kHz after the audio before it (ts {} vs {})",
        first_event.ts,
        audio_before.ts
    );
}

/// A dialplan folder `DIR/plans` whose hotline puts the caller in queue `support` at once
/// (the shipped voicemail and delay-notify plans beside it): its path.
pub(crate) fn hotline_queues_at_once(dir: &std::path::Path) -> std::path::PathBuf {
    let plans = dir.join("plans");
    std::fs::create_dir(&plans).expect("plans dir");
    for p in ["voicemail.toml", "delay-notify.toml"] {
        std::fs::copy(
            support::repo_root().join("dialplans").join(p),
            plans.join(p),
        )
        .expect("copy dialplan");
    }
    std::fs::write(
        plans.join("hotline.toml"),
        "[dialplan]\nname = \"hotline\"\nstart = \"q\"\n\n[steps.q]\naction = \"enqueue\"\n\
         queue = \"support\"\non_unavailable = \"bye\"\n\n[steps.bye]\naction = \"hangup\"\n",
    )
    .expect("write plan");
    plans
}

/// Starts the browser driver `cmd` (`node tests/browser/agent_call.js …`) with its stdio
/// piped, forwards its stdout lines to the returned receiver, and waits for its `READY`
/// (logged in on the page, browser phone on); fails with `server`'s log otherwise.
pub(crate) fn start_page_driver(
    mut cmd: std::process::Command,
    server: &Server,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run node");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = line_rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("the page did not get ready\n{}", server.log()));
    assert_eq!(first, "READY", "{first}\n{}", server.log());
    (child, line_rx)
}

/// Waits for the browser driver's report line and its exit, and returns the report; fails
/// the test with the server's log when either does not come or the driver failed.
fn page_report(
    child: std::process::Child,
    line_rx: &std::sync::mpsc::Receiver<String>,
    server: &Server,
    timeout: Duration,
) -> serde_json::Value {
    let report = line_rx
        .recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no report from the page\n{}", server.log()));
    let out = child.wait_with_output().expect("node exits");
    let r: serde_json::Value = serde_json::from_str(&report).expect("driver JSON");
    assert!(
        out.status.success(),
        "browser driver failed: {r}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    r
}

/// Reads the browser driver's next JSON line (one per transferred call).
fn driver_line(line_rx: &std::sync::mpsc::Receiver<String>, server: &Server) -> serde_json::Value {
    let line = line_rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no report from the page\n{}", server.log()));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver JSON ({e}): {line}"))
}

/// Blind transfer to a named agent chosen in the page, twice, as acd_sipp's
/// `agent_blind_transfers_to_a_named_agent` does over REFER. Agent `kate` is a SIPp phone
/// serving only queue `billing` (so only the transfer can bring a `support` caller to her).
/// 1. A SIPp caller reaches the browser agent in `support`; the agent picks kind `agent`
///    and `kate` (listed in `transfer-agent` with her state) and transfers: the page's
///    call ends as `transferred`, kate is rung alone and answers, the caller's audio flows
///    both ways with kate (the last bridge's counters), one record (queue support, agent
///    kate), `transfer` `support->agent:kate` and the queue_log of a transfer to an agent.
/// 2. A second caller, transferred to kate who rings out (support's 15 s ring timeout):
///    the caller is an ordinary caller of `support` again (`ringnoanswer` and `fallback`
///    `no_answer` for kate), never offered to kate again.
#[test]
fn browser_agent_transfers_to_a_named_agent_from_the_page() {
    use crate::acd_sipp::{
        add_agent_serving, agent_phone, ended_call, event_detail, packets, queue_rows, queue_trail,
        register, wait_agent_state,
    };
    let billing = "[[queue]]\nname = \"billing\"\nstrategy = \"longest-idle\"\nwrapup_s = 1\n";
    let (dir, server, child, line_rx) = browser_agent_ready("transfer-agent:kate,kate", billing);
    add_agent_serving(&server, "kate", "s3cret-pw", "billing");
    let kate_port = support::free_port();
    register(&server, kate_port, "kate", "s3cret-pw");
    wait_agent_state(&server, "kate", "available", Duration::from_secs(5));
    let trail = |rows: &[support::DbRow]| -> Vec<String> {
        queue_trail(rows)
            .into_iter()
            .map(|(q, e, a, r)| format!("{q} {e} {a} {r}").trim_end().to_string())
            .collect()
    };

    // 1. kate answers after 0.5 s and hangs up after 3 s of talk.
    let kate = agent_phone(&server, "kate", kate_port, 500, 3000);
    let caller = tone_caller(&server, &dir, "+15551239781", 20, 40_000);
    let r = driver_line(&line_rx, &server);
    eprintln!("browser agent, call 1: {r}");
    assert!(
        r["error"].is_null(),
        "browser driver failed: {r}\n{}",
        server.log()
    );
    assert_eq!(r["stats"]["conn"], "connected", "{r}");
    assert_eq!(r["kind"], "agent", "{r}");
    assert_eq!(
        r["listed_state"], "available",
        "kate listed with her state: {r}"
    );
    let notes: Vec<&str> = r["notes"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    assert!(
        notes.contains(&"Transferred to agent kate.")
            && notes.contains(&"Call ended (transferred)."),
        "the page: the transfer accepted and the call ended as transferred: {r}"
    );
    kate.finish("kate's phone");
    caller.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239781");
    assert_eq!(rec["agent"], "kate", "{rec:?}");
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "agent_hangup", "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    let records = server.db().rows(
        "SELECT id FROM call_records WHERE caller = '+15551239781' AND direction = 'inbound'",
    );
    assert_eq!(records.len(), 1, "one record for the transferred call");
    assert_eq!(
        event_detail(&server, &id, "transfer").as_deref(),
        Some("support->agent:kate")
    );
    // kate's bridge (the last one, which `bridge_packets` counts): ~3 s at 50 packets/s.
    let bridge = server.wait_db(Duration::from_secs(5), "kate's bridge counters", |_| {
        event_detail(&server, &id, "bridge_packets")
    });
    assert!(packets(&bridge, "caller_to_agent") >= 75, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 75, "{bridge}");
    let rows = server.wait_db(Duration::from_secs(5), "second complete", |_| {
        let r = queue_rows(&server, &id);
        (r.iter().filter(|x| x["event"] == "complete").count() == 2).then_some(r)
    });
    assert_eq!(
        trail(&rows),
        [
            "support enter",
            "support offer webcarol",
            "support connect webcarol",
            "support complete webcarol transfer",
            "support enter  agent:kate",
            "support offer kate",
            "support connect kate",
            "support complete kate agent",
        ]
    );

    // 2. kate rings out (her phone takes the CANCEL); the caller falls back to `support`,
    // where nobody is left once the page has closed: it leaves (`leave_when_empty`) or, if
    // the browser agent is still logged in, waits until it hangs up after 35 s.
    let kate = agent_phone(&server, "kate", kate_port, 60_000, 1000);
    let caller = tone_caller(&server, &dir, "+15551239782", 20, 35_000);
    let r = driver_line(&line_rx, &server);
    eprintln!("browser agent, call 2: {r}");
    assert!(
        r["error"].is_null(),
        "browser driver failed: {r}\n{}",
        server.log()
    );
    let out = child.wait_with_output().expect("node exits");
    assert!(
        out.status.success(),
        "browser driver failed\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    kate.finish("kate's phone (rung out)");
    caller.wait().assert_ok(&server);
    let rec = ended_call(&server, "+15551239782");
    let id = rec["id"].as_str().expect("id").to_string();
    let rows = server.wait_db(Duration::from_secs(5), "the fallback", |_| {
        let r = queue_rows(&server, &id);
        r.iter().any(|x| x["event"] == "fallback").then_some(r)
    });
    let got = trail(&rows);
    assert_eq!(
        got[..7],
        [
            "support enter",
            "support offer webcarol",
            "support connect webcarol",
            "support complete webcarol transfer",
            "support enter  agent:kate",
            "support offer kate",
            "support ringnoanswer kate no_answer",
        ],
        "{got:?}"
    );
    assert_eq!(
        got.get(7).map(String::as_str),
        Some("support fallback kate no_answer"),
        "{got:?}"
    );
    assert!(
        !got[8..].iter().any(|r| r.contains("kate")),
        "kate is not offered the caller again: {got:?}"
    );
}
