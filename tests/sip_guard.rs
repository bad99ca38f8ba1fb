//! The router's per-source guard, black-box over raw UDP from several loopback addresses:
//! scanner user agents are never answered and get their source banned, a request flood
//! bans its source, and legitimate callers (the host itself, other sources) keep being
//! served throughout. Each refusal is logged as a security event.

use crate::support;

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::{config_with, sdp_offer, Scenario, Server, SipClient, SipRequest};

fn options(client: &SipClient, user_agent: Option<&str>) -> Vec<u8> {
    let mut req = SipRequest::new("OPTIONS", "hotline", client);
    if let Some(ua) = user_agent {
        req = req.header("User-Agent", ua);
    }
    req.bytes()
}

/// An answer within `wait`, or None.
fn answer(client: &SipClient, bytes: &[u8], wait: Duration) -> Option<u16> {
    client.send(bytes);
    client.final_response(wait).map(|r| r.code)
}

#[test]
fn scanner_user_agents_get_no_answer_and_their_source_is_banned() {
    let server = Server::start(&[]);
    let scanner = SipClient::from_ip(server.sip_addr, Ipv4Addr::new(127, 0, 0, 7));
    let quiet = Duration::from_millis(700);
    assert_eq!(
        answer(
            &scanner,
            &options(&scanner, Some("friendly-scanner")),
            quiet
        ),
        None,
        "a scanner is not answered"
    );
    // An INVITE that would otherwise get 404 tells the scanner nothing either.
    let invite = SipRequest::new("INVITE", "100", &scanner).header("User-Agent", "sipvicious");
    assert_eq!(answer(&scanner, &invite.bytes(), quiet), None);
    // The source stays banned without the tell-tale header.
    assert_eq!(answer(&scanner, &options(&scanner, None), quiet), None);
    // Everyone else is served, the host itself even when it sends a scanner's header
    // (dropped, never banned: trusted).
    let other = SipClient::from_ip(server.sip_addr, Ipv4Addr::new(127, 0, 0, 8));
    assert_eq!(
        answer(&other, &options(&other, Some("Linphone/5.2")), quiet * 4),
        Some(200)
    );
    let local = server.sip_client();
    assert_eq!(
        answer(&local, &options(&local, Some("VaxSIPUserAgent/3.1")), quiet),
        None
    );
    assert_eq!(answer(&local, &options(&local, None), quiet * 4), Some(200));
    let log = server.log();
    assert!(
        log.contains("scanner user agent") && log.contains("127.0.0.7"),
        "security event logged\n{log}"
    );
}

#[test]
fn a_request_flood_bans_its_source_while_calls_go_on() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config_with(
        dir.path(),
        "[security]\nrequest_limit = 20\nwindow_s = 10\nban_s = 60\n",
    );
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8 path")]);
    let flooder = SipClient::from_ip(server.sip_addr, Ipv4Addr::new(127, 0, 0, 9));
    for _ in 0..60 {
        flooder.send(&options(&flooder, None));
    }
    let answers = flooder.drain(Duration::from_secs(2));
    assert_eq!(
        answers.len(),
        20,
        "exactly request_limit answers before the ban: {:?}",
        answers.iter().map(|r| r.code).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|r| r.code == 200));
    assert_eq!(
        answer(
            &flooder,
            &options(&flooder, None),
            Duration::from_millis(700)
        ),
        None,
        "banned"
    );
    // The host is served during the ban: SIPp's OPTIONS, and a call gets answered.
    server
        .run_sipp(&Scenario::Options, &["-set", "caller", "+15551230004"])
        .assert_ok(&server);
    let local = server.sip_client();
    let sdp = sdp_offer(40_000, "0", &["0 PCMU/8000"]);
    let invite = SipRequest::new("INVITE", "hotline", &local).body("application/sdp", &sdp);
    local.send(&invite.bytes());
    let r = local
        .final_response(Duration::from_secs(5))
        .expect("the hotline answers during the ban");
    assert_eq!(r.code, 200, "{}", r.text);
    local.send(&invite.ack_for(&r).bytes());
    let (_, body) = server.api_get("/api/status").expect("status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
    assert!(
        status["security_drops"].as_u64().unwrap_or(0) >= 41,
        "drops counted in /api/status: {status}"
    );
    assert!(
        server.log().contains("request flood"),
        "security event logged\n{}",
        server.log()
    );
}

/// The read endpoints (issue: `/api/status`, `/api/agents`, `/api/queues` answered anyone):
/// 401 with a JSON reason without a token or with a wrong one; the read token
/// (`[api] read_token`) and the admin token read; the read token does not write or reach
/// the admin endpoints; `/healthz` stays anonymous. `[api] anonymous_read = true` opts back
/// into tokenless reads, and `--api-read-token` sets the read token too.
#[test]
fn read_endpoints_need_the_read_or_the_admin_token() {
    use support::http_get_with;
    const ADMIN: &str = "admin-token-3f9a";
    const READER: &str = "read-token-77c1";
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config_with(dir.path(), &format!("[api]\nread_token = \"{READER}\"\n"));
    let cfg = cfg.display().to_string();
    let server = Server::start(&["--config", &cfg, "--api-token", ADMIN]);
    let addr = server.http_addr;
    let reads = ["/api/status", "/api/agents", "/api/queues"];
    for path in reads {
        for token in [None, Some("wrong"), Some(&READER[1..])] {
            let (code, body) = http_get_with(addr, path, token).expect("answer");
            assert_eq!(code, 401, "{path} with {token:?}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
            assert!(v["error"].is_string(), "{path}: {body}");
        }
        for token in [READER, ADMIN] {
            let (code, body) = http_get_with(addr, path, Some(token)).expect("answer");
            assert_eq!(code, 200, "{path} with {token}: {body}");
        }
    }
    // An unknown agent: the token is checked first (no name probing without one).
    assert_eq!(
        http_get_with(addr, "/api/agents/nobody", None).map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_get_with(addr, "/api/agents/nobody", Some(READER)).map(|r| r.0),
        Some(404)
    );
    // The read token is not an admin token.
    assert_eq!(
        http_get_with(addr, "/api/campaigns", Some(READER)).map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_get_with(addr, "/api/trunks", Some(READER)).map(|r| r.0),
        Some(401)
    );
    assert_eq!(
        http_get_with(addr, "/healthz", None).map(|r| r.0),
        Some(200),
        "the health probe stays anonymous"
    );
    drop(server);

    // Explicit opt-in to anonymous reads; the flag's read token.
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config_with(dir.path(), "[api]\nanonymous_read = true\n");
    let cfg = cfg.display().to_string();
    let server = Server::start(&["--config", &cfg]);
    for path in reads {
        assert_eq!(
            http_get_with(server.http_addr, path, None).map(|r| r.0),
            Some(200),
            "{path} with anonymous_read"
        );
    }
    assert_eq!(
        http_get_with(server.http_addr, "/api/campaigns", None).map(|r| r.0),
        Some(401),
        "anonymous_read opens the reads only"
    );
    drop(server);
    let server = Server::start(&["--api-read-token", READER]);
    assert_eq!(
        http_get_with(server.http_addr, "/api/status", Some(READER)).map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        http_get_with(server.http_addr, "/api/status", None).map(|r| r.0),
        Some(401)
    );
}
