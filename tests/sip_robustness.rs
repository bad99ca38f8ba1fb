//! SIP protocol robustness, black-box: raw UDP requests to the real `switchboard` binary
//! (RFC 3261 error answers, malformed input) plus SIPp's OPTIONS and the RFC 4475 torture
//! messages from `../shared/conformance/rfc4475`.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{http_get_status, sdp_offer, Scenario, Server, SipRequest};

/// The server still works: a fresh OPTIONS gets 200 and /healthz is 200.
fn assert_alive(server: &Server) {
    let client = server.sip_client();
    let r = client.request(&SipRequest::new("OPTIONS", "hotline", &client).bytes());
    assert_eq!(r.code, 200, "OPTIONS after the abuse:\n{}", r.text);
    assert_eq!(
        http_get_status(server.http_addr, "/healthz"),
        Some(200),
        "healthz after the abuse"
    );
}

/// OPTIONS outside a dialog is answered 200 (RFC 3261 §11), over raw UDP.
#[test]
fn options_gets_200() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let req = SipRequest::new("OPTIONS", "hotline", &client);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 200, "{}", r.text);
    assert_eq!(r.header("Call-ID"), Some(req.call_id()), "{}", r.text);
    assert!(
        r.header("To").is_some_and(|t| t.contains("tag=")),
        "a To tag on the final answer:\n{}",
        r.text
    );
}

/// OPTIONS from a real client: SIPp's `uac_options.xml` passes (exit 0).
#[test]
fn options_via_sipp_passes() {
    let server = Server::start(&[]);
    server
        .run_sipp(&Scenario::Options, &["-set", "caller", "+15551230004"])
        .assert_ok(&server);
}

/// An INVITE for a user no route serves gets 404.
#[test]
fn invite_to_unknown_user_gets_404() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let sdp = sdp_offer(
        40_000,
        "0 101",
        &["0 PCMU/8000", "101 telephone-event/8000"],
    );
    let req = SipRequest::new("INVITE", "nobody-here", &client).body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 404, "{}", r.text);
}

/// An INVITE offering only G.729 (PT 18) gets 488, and the attempt is recorded as a failed
/// call with SIP status 488.
#[test]
fn invite_with_only_g729_gets_488_and_failed_record() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let sdp = sdp_offer(40_000, "18", &["18 G729/8000"]);
    let req = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 488, "{}", r.text);

    client.send(&req.ack_for(&r).bytes()); // ends the INVITE server transaction

    let call_id = req.call_id().to_string();
    let rec = server.wait_db(Duration::from_secs(5), "the 488 call record", |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE sip_call_id = '{call_id}' AND ended_at IS NOT NULL"
        ))
        .pop()
    });
    assert_eq!(rec["disposition"], "failed", "{rec:#?}");
    assert_eq!(rec["sip_status"], 488, "{rec:#?}");
    assert!(rec["answered_at"].is_null(), "{rec:#?}");
}

/// A Content-Length that is negative or larger than the body is a framing error: 400.
#[test]
fn bad_content_length_gets_400() {
    let server = Server::start(&[]);
    let sdp = sdp_offer(40_000, "0", &["0 PCMU/8000"]);
    for (method, cl) in [
        ("OPTIONS", "-5"),
        ("OPTIONS", "9999"),
        ("INVITE", "-1"),
        ("INVITE", "100000"),
    ] {
        let client = server.sip_client();
        let mut req = SipRequest::new(method, "hotline", &client).body("application/sdp", &sdp);
        req.content_length = Some(cl.into());
        let r = client.request(&req.bytes());
        assert_eq!(
            r.code, 400,
            "{method} with Content-Length {cl}:\n{}",
            r.text
        );
    }
    assert_eq!(
        server.db().count("call_records"),
        0,
        "no call may start from a mis-framed INVITE"
    );
}

/// Garbage datagrams (empty, random bytes, truncated or oversized messages, NULs, invalid
/// UTF-8) do not crash or wedge the server: it still answers OPTIONS and /healthz.
#[test]
fn garbage_does_not_crash_the_server() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let mut junk: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"INVITE".to_vec(),
        b"INVITE sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"SIP/2.0 99999999999 Huge\r\nCSeq: 1 BYE\r\n\r\n".to_vec(),
        b"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP \0\0\0\r\nCall-ID: \xff\xfe\xfd\r\n\r\n".to_vec(),
        b"BYE sip:x SIP/2.0\r\nCSeq: 99999999999999999999 BYE\r\nContent-Length: 18446744073709551616\r\n\r\n".to_vec(),
        [b"OPTIONS sip:hotline@127.0.0.1 SIP/2.0\r\nVia: ".as_slice(), &[b','; 8000], b"\r\n\r\n"].concat(),
        vec![b'A'; 60_000],
        vec![0u8; 1500],
    ];
    // Deterministic pseudo-random datagrams (xorshift), some starting like a request.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..200 {
        let mut d = if i % 2 == 0 {
            b"INVITE sip:hotline@127.0.0.1 SIP/2.0\r\n".to_vec()
        } else {
            Vec::new()
        };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for _ in 0..(x % 1400) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.push(x as u8);
        }
        junk.push(d);
    }
    for d in &junk {
        client.send(d);
    }
    let answers = client.drain(Duration::from_millis(500));
    assert!(
        answers.iter().all(|r| r.code >= 400),
        "garbage must never get a success: {answers:#?}"
    );
    assert_alive(&server);
}

/// A request with an unknown SIP version gets 505 Version Not Supported (RFC 3261 §21.5.7).
#[test]
fn unknown_sip_version_gets_505() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let mut req = SipRequest::new("OPTIONS", "hotline", &client);
    req.version = "SIP/7.0".into();
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 505, "{}", r.text);
}

/// An unknown method gets 501 Not Implemented with an Allow header (RFC 3261 §8.2.1).
#[test]
fn unknown_method_gets_501() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let r = client.request(&SipRequest::new("FOO", "hotline", &client).bytes());
    assert_eq!(r.code, 501, "{}", r.text);
    assert!(
        r.header("Allow").is_some_and(|a| a.contains("INVITE")),
        "Allow lists INVITE:\n{}",
        r.text
    );
}

/// `Require: foo` on an INVITE gets 420 Bad Extension listing foo in Unsupported
/// (RFC 3261 §8.2.2.3), and no call starts.
#[test]
fn unsupported_require_gets_420() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let sdp = sdp_offer(40_000, "0", &["0 PCMU/8000"]);
    let req = SipRequest::new("INVITE", "hotline", &client)
        .header("Require", "foo")
        .body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 420, "{}", r.text);
    assert_eq!(r.header("Unsupported"), Some("foo"), "{}", r.text);
    assert_eq!(server.db().count("call_records"), 0);
}

/// A BYE for a Call-ID the server does not know gets 481 (RFC 3261 §15.1.2).
#[test]
fn bye_for_unknown_call_gets_481() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let req = SipRequest::new("BYE", "hotline", &client);
    let to = format!("{};tag=nosuchdialog", req.get("To"));
    let r = client.request(&req.header("To", &to).bytes());
    assert_eq!(r.code, 481, "{}", r.text);
}

/// The caller's BYE ends the call at once: a retransmission of that BYE (as if our 200 was
/// lost) is still answered 200 with the same tag for Timer J, now by the router from the
/// answer the call left behind (RFC 3261 §17.2.2), while a BYE of a new transaction gets
/// 481 and the call holds no slot.
#[test]
fn bye_retransmission_after_the_call_ended_gets_the_same_200() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let sdp = sdp_offer(40_000, "0", &["0 PCMU/8000"]);
    let invite = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    let ok = client.request(&invite.bytes());
    assert_eq!(ok.code, 200, "{}", ok.text);
    client.send(&invite.ack_for(&ok).bytes());
    let to = ok.header("To").unwrap_or("").to_string();
    let bye = SipRequest::new("BYE", "hotline", &client)
        .header("Call-ID", invite.call_id())
        .header("From", invite.get("From"))
        .header("To", &to)
        .header("CSeq", "2 BYE");
    let first = client.request(&bye.bytes());
    assert_eq!(first.code, 200, "{}", first.text);
    support::wait_for(Duration::from_secs(5), "no active call", || {
        let (_, status) = server.api_get("/api/status")?;
        status.contains("\"active_calls\":0").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let again = client.request(&bye.bytes());
    assert_eq!(again.code, 200, "retransmitted BYE: {}", again.text);
    assert_eq!(again.header("To"), first.header("To"), "same answer");
    let other = SipRequest::new("BYE", "hotline", &client)
        .header("Call-ID", invite.call_id())
        .header("From", invite.get("From"))
        .header("To", &to)
        .header("CSeq", "3 BYE");
    let r = client.request(&other.bytes());
    assert_eq!(r.code, 481, "a new BYE transaction: {}", r.text);
}

/// RFC 4475 torture messages: every row of the shared runner passes (valid messages
/// accepted, invalid ones refused with the right class, the server alive after each).
///
/// wsinv (`Max-Forwards: 0068`) and intmeth (a `?` in the Request-URI's user part) once
/// failed here; both are fixed in the parser and covered by tests/rfc4475_parse.rs too.
#[test]
fn rfc4475_torture_tests_pass() {
    let runner = support::repo_root().join("../shared/conformance/rfc4475/run.py");
    if !runner.exists() {
        eprintln!(
            "NOTE: {} not found; RFC 4475 test skipped (CI always has ../shared)",
            runner.display()
        );
        return;
    }
    let server = Server::start(&[]);
    let out = server.dir.path().join("rfc4475.out");
    let mut child = Command::new("python3")
        .arg(&runner)
        .arg("127.0.0.1")
        .arg(server.sip_addr.port().to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("output file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 run.py");
    let status = support::wait_child(&mut child, Duration::from_secs(50));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let table = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "RFC 4475 runner exit {status:?} (None = killed after 50 s); its table:\n{table}"
    );
}
