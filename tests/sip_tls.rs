//! SIP over TLS (RFC 3261 §26.3.1) against the real server: a self-signed certificate made
//! at test time, `[server] tls_listen`, digest REGISTER, OPTIONS and a hotline call over one
//! TLS connection; start refused with the file and the reason when the certificate or key
//! is unusable; and the client side used for `transport = "tls"` trunks, verified against
//! the trunk's `tls_ca` and reused across calls.
//!
//! The TLS client is tokio-rustls speaking raw SIP: Debian's SIPp 3.6.1 is built without
//! TLS (`-t l1` is not among its transports), see docs/clients.md.

use crate::sip_stream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, repo_root, run_binary, unique, Server};
use sip_stream::{off_runtime, sdp, self_signed, tls_connect, SipText};

const T: Duration = Duration::from_secs(5);

/// `config/default.toml` with its own spool folder, `server_lines` added to `[server]` and
/// `extra` appended.
fn config(dir: &Path, server_lines: &str, extra: &str) -> PathBuf {
    let default =
        std::fs::read_to_string(repo_root().join("config/default.toml")).expect("default config");
    let mut out = String::new();
    for line in default.lines() {
        if line.trim_start().starts_with("spool_dir") {
            out.push_str(&format!(
                "spool_dir = {:?}\n",
                dir.join("spool").display().to_string()
            ));
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[server]" {
            out.push_str(server_lines);
        }
    }
    out.push_str(extra);
    let path = dir.join("tls-config.toml");
    std::fs::write(&path, out).expect("write config");
    path
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[tokio::test]
async fn tls_register_options_and_hotline_call() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = self_signed(dir.path());
    let tls_port = free_port();
    let cfg = config(
        dir.path(),
        &format!(
            "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&cert.cert),
            toml_path(&cert.key)
        ),
        "",
    );
    let server = Server::start(&["--config", &cfg.display().to_string()]);
    assert!(
        server
            .log()
            .contains(&format!("tls     127.0.0.1:{tls_port}")),
        "banner names the TLS listener\n{}",
        server.log()
    );
    server.add_agent("tlsalice", "tls-secret-1", &[]);
    let addr: SocketAddr = ([127, 0, 0, 1], tls_port).into();

    // The certificate verifies for the name it was made for, not for another.
    assert!(
        tls_connect(addr, &cert.cert_der, "other.example")
            .await
            .is_err(),
        "a client verifying another name must fail the handshake"
    );
    let mut c = tls_connect(addr, &cert.cert_der, "localhost")
        .await
        .expect("TLS handshake");

    let (challenge, ok) = c.register("tlsalice", "tls-secret-1").await;
    assert_eq!(challenge.code(), Some(401), "{}", challenge.0);
    assert_eq!(ok.code(), Some(200), "{}\n{}", ok.0, server.log());
    let source = off_runtime(|| {
        server.wait_db(T, "the tls binding", |db| {
            db.rows("SELECT source FROM registrations WHERE aor = 'tlsalice'")
                .pop()
                .and_then(|r| r["source"].as_str().map(str::to_string))
        })
    });
    assert!(
        source.starts_with("tls:127.0.0.1:"),
        "binding source {source}"
    );

    let opts = c.request(
        "OPTIONS",
        &format!("sip:127.0.0.1:{tls_port}"),
        &unique("opt-"),
        1,
        "tlsalice",
        &format!("<sip:127.0.0.1:{tls_port}>"),
        "",
        "",
    );
    c.send(&opts).await;
    let (_, r) = c.final_response(T).await;
    let r = r.expect("OPTIONS answered over TLS");
    assert_eq!(r.code(), Some(200), "{}", r.0);
    assert!(
        r.header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TLS ")),
        "{}",
        r.0
    );

    // Stream framing: a bad Content-Length is answered (400), then the server closes,
    // since the stream cannot be resynchronised — checked on a second connection.
    let mut junk = tls_connect(addr, &cert.cert_der, "localhost")
        .await
        .expect("second TLS connection");
    let bad = junk
        .request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            "bad-cl",
            1,
            "x",
            "<sip:x@127.0.0.1>",
            "",
            "",
        )
        .replace("Content-Length: 0", "Content-Length: nope");
    junk.send(&bad).await;
    let (_, r) = junk.final_response(T).await;
    assert_eq!(r.map(|r| r.code()), Some(Some(400)));
    assert!(
        junk.recv(T).await.is_none(),
        "connection closed after lost framing"
    );

    // A hotline call over TLS: answers on the connection, Contact is sips:.
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").expect("rtp");
    let port = rtp.local_addr().expect("addr").port();
    let call_id = unique("tls-call-");
    let uri = format!("sip:hotline@127.0.0.1:{tls_port}");
    let invite = c.request(
        "INVITE",
        &uri,
        &call_id,
        1,
        "+15551238001",
        &format!("<{uri}>"),
        &format!(
            "Contact: {}\r\nContent-Type: application/sdp\r\n",
            c.contact("+15551238001")
        ),
        &sdp(port),
    );
    c.send(&invite).await;
    let (provisional, ok) = c.final_response(Duration::from_secs(10)).await;
    let ok: SipText = ok.expect("200 to the INVITE");
    assert_eq!(ok.code(), Some(200), "{}", ok.0);
    assert!(provisional.contains(&180), "{provisional:?}");
    let contact = ok.header("Contact").expect("Contact").to_string();
    assert!(
        contact.starts_with(&format!("<sips:switchboard@127.0.0.1:{tls_port}")),
        "Contact {contact}"
    );
    let from = invite
        .lines()
        .find(|l| l.starts_with("From:"))
        .expect("From")
        .to_string();
    let target = contact
        .trim_matches(|ch| ch == '<' || ch == '>')
        .to_string();
    let in_dialog = |method: &str, seq: u32| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/TLS {};branch=z9hG4bK{}\r\n\
             Max-Forwards: 70\r\n{from}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            c.host,
            unique("d"),
            ok.header("To").unwrap_or("")
        )
    };
    let ack = in_dialog("ACK", 1);
    let bye = in_dialog("BYE", 2);
    c.send(&ack).await;
    let mut buf = [0u8; 2048];
    rtp.set_read_timeout(Some(T)).expect("timeout");
    assert!(rtp.recv_from(&mut buf).is_ok(), "hotline prompts as RTP");
    c.send(&bye).await;
    let (_, r) = c.final_response(T).await;
    assert_eq!(
        r.map(|r| r.code()),
        Some(Some(200)),
        "BYE answered over TLS"
    );
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

/// Unusable TLS files stop the start with exit code 2, naming the key, the file and why.
#[test]
fn unusable_certificate_or_key_refuses_start() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = self_signed(dir.path());
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            format!(
                "tls_listen = \"127.0.0.1:{}\"\ntls_cert = {}\ntls_key = {}\n",
                free_port(),
                toml_path(&missing),
                toml_path(&cert.key)
            ),
            vec!["tls_cert", "missing.pem", "cannot read"],
        ),
        (
            format!(
                "tls_listen = \"127.0.0.1:{}\"\ntls_cert = {}\ntls_key = {}\n",
                free_port(),
                toml_path(&cert.cert),
                toml_path(&cert.cert)
            ),
            vec!["tls_key", "cert.pem", "no PRIVATE KEY"],
        ),
        (
            format!(
                "tls_listen = \"127.0.0.1:{}\"\ntls_cert = {}\ntls_key = {}\n",
                free_port(),
                toml_path(&cert.key),
                toml_path(&cert.key)
            ),
            vec!["tls_cert", "key.pem", "no CERTIFICATE"],
        ),
        (
            format!("tls_listen = \"127.0.0.1:{}\"\n", free_port()),
            vec![
                "tls-config.toml:5:",
                "tls_listen needs both tls_cert and tls_key",
            ],
        ),
    ];
    // `[http] tls_cert`/`tls_key` (HTTPS on the HTTP port): the same refusals, naming the
    // section's keys.
    let http_cases = [
        (
            format!(
                "\n[http]\ntls_cert = {}\ntls_key = {}\n",
                toml_path(&missing),
                toml_path(&cert.key)
            ),
            vec!["[http] tls_cert", "missing.pem", "cannot read"],
        ),
        (
            format!(
                "\n[http]\ntls_cert = {}\ntls_key = {}\n",
                toml_path(&cert.cert),
                toml_path(&cert.cert)
            ),
            vec!["[http] tls_key", "cert.pem", "no PRIVATE KEY"],
        ),
        (
            format!("\n[http]\ntls_cert = {}\n", toml_path(&cert.cert)),
            vec!["[http] needs both tls_cert and tls_key"],
        ),
    ];
    let cases = cases
        .into_iter()
        .map(|(l, e)| (l, String::new(), e))
        .chain(http_cases.into_iter().map(|(x, e)| (String::new(), x, e)));
    for (lines, extra, expect) in cases {
        let cfg = config(dir.path(), &lines, &extra);
        let (st, out, err) = run_binary(
            &[
                "--config",
                &cfg.display().to_string(),
                "--database",
                &format!("sqlite://{}", dir.path().join("t.db").display()),
                "--http-listen",
                &format!("127.0.0.1:{}", free_port()),
                "--sip-listen",
                &format!("127.0.0.1:{}", free_port()),
            ],
            Duration::from_secs(20),
        );
        assert_eq!(st.code(), Some(2), "{lines}{extra}\n{out}{err}");
        for e in expect {
            assert!(err.contains(e), "'{e}' missing for\n{lines}{extra}\n{err}");
        }
    }
}

/// The client side of `transport = "tls"` trunks: verified against `tls_ca`, one
/// connection reused by every call, answers on it delivered to the router as TLS inbound;
/// a trunk whose CA does not match cannot connect.
#[tokio::test]
async fn tls_trunk_connection_is_verified_and_reused() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = self_signed(dir.path());
    let other = tempfile::tempdir().expect("dir");
    let other_cert = self_signed(other.path());

    // The carrier: a TLS server with the test certificate that answers 200 to anything.
    let acceptor =
        switchboard::sip::tls::acceptor(&cert.cert, &cert.key).expect("carrier acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let carrier = listener.local_addr().expect("addr");
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let mut resp = String::from("SIP/2.0 200 OK\r\n");
                    for l in req.lines().skip(1) {
                        let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                        if ["via", "from", "to", "call-id", "cseq"].contains(&name.as_str()) {
                            resp.push_str(l);
                            resp.push_str("\r\n");
                        }
                    }
                    resp.push_str("Content-Length: 0\r\n\r\n");
                    if tls.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let trunks = |ca: &Path| {
        let text = format!(
            "[[trunk]]\nname = \"carrier\"\naddress = \"{carrier}\"\ntransport = \"tls\"\ntls_ca = {}\n",
            toml_path(ca)
        );
        switchboard::config::Config::parse("t.toml", &text)
            .expect("tls trunk config")
            .trunks
    };
    let good = trunks(&cert.cert);
    assert_eq!(good[0].transport.as_str(), "tls");
    assert_eq!(good[0].host, "127.0.0.1");
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let conns = switchboard::sip::tls::TrunkConnections::new(&good, tx.clone()).expect("client");
    let mut flows = Vec::new();
    for i in 0..2 {
        let flow = conns.flow(&good[0]).await.expect("connect to the carrier");
        assert_eq!(flow.kind(), switchboard::sip::transport::TransportKind::Tls);
        flow.send(
            format!(
                "OPTIONS sip:{carrier} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bKt{i}\r\n\
                 From: <sip:s@127.0.0.1>;tag=1\r\nTo: <sip:{carrier}>\r\nCall-ID: trunk-{i}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        );
        let inbound = tokio::time::timeout(T, rx.recv())
            .await
            .expect("the carrier's answer in time")
            .expect("router channel open");
        assert_eq!(inbound.msg.status(), Some(200));
        assert_eq!(inbound.msg.call_id(), Ok(format!("trunk-{i}").as_str()));
        assert_eq!(
            inbound.reply.kind(),
            switchboard::sip::transport::TransportKind::Tls
        );
        flows.push(flow);
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "both requests on one connection"
    );

    // Trusting another certificate: the handshake fails, nothing is connected.
    let bad = trunks(&other_cert.cert);
    let conns = switchboard::sip::tls::TrunkConnections::new(&bad, tx).expect("client");
    assert!(
        conns.flow(&bad[0]).await.is_err(),
        "unverified carrier refused"
    );
}

/// Blocking HTTP/1.1 request to the API; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, T).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    (code, buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

/// A campaign call through a `transport = "tls"` trunk: the INVITE goes out on a verified
/// TLS connection with `Via: SIP/2.0/TLS` and a `sips:` Contact, the carrier's 486 comes
/// back on it, the ACK too, and the call is recorded `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_call_goes_out_over_a_tls_trunk() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let cert = self_signed(dir.path());
    let acceptor =
        switchboard::sip::tls::acceptor(&cert.cert, &cert.key).expect("carrier acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let carrier = listener.local_addr().expect("addr");
    // The carrier answers every INVITE 100 then 486 and reports what it received.
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut tls) = acceptor.accept(tcp).await else {
            return;
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            while let Some(n) = sip_stream::frame(&buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                buf.drain(..n);
                let msg = SipText(m.clone());
                if msg.method() == Some("INVITE") {
                    for (code, reason) in [(100, "Trying"), (486, "Busy Here")] {
                        let r = sip_stream::response_to(&msg, code, reason, "carrier1", "", "");
                        if tls.write_all(r.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
                let _ = seen_tx.send(m).await;
            }
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });

    let token = "tls-trunk-test-token";
    let tls_port = free_port();
    let cfg = config(
        dir.path(),
        &format!(
            "api_token = \"{token}\"\ntls_listen = \"127.0.0.1:{tls_port}\"\n\
             tls_cert = {}\ntls_key = {}\n",
            toml_path(&cert.cert),
            toml_path(&cert.key)
        ),
        &format!(
            "\n[[trunk]]\nname = \"carrier\"\naddress = \"{carrier}\"\ntransport = \"tls\"\n\
             tls_ca = {}\n",
            toml_path(&cert.cert)
        ),
    );
    let server = Server::start(&["--config", &cfg.display().to_string()]);
    let http_addr = server.http_addr;
    let spec = r#"{"name": "tls-trunk", "dialplan": "delay-notify", "trunk": "carrier",
        "caller_id": "+15550100", "ticket_ids": [1], "max_channels": 1, "max_cps": 1,
        "window": {"start": "00:00", "end": "23:59"}}"#;
    let (code, body) = off_runtime(|| http(http_addr, "POST", "/api/campaigns", token, spec));
    assert_eq!(code, 201, "{body}");
    let id = body
        .split("\"id\":")
        .nth(1)
        .and_then(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
        })
        .expect("campaign id")
        .to_string();
    let (code, body) = off_runtime(|| {
        http(
            http_addr,
            "POST",
            &format!("/api/campaigns/{id}/start"),
            token,
            "",
        )
    });
    assert_eq!(code, 200, "{body}");

    let invite = tokio::time::timeout(Duration::from_secs(15), seen.recv())
        .await
        .unwrap_or_else(|_| panic!("no INVITE at the TLS carrier\n{}", server.log()))
        .expect("carrier running");
    let invite = SipText(invite);
    assert_eq!(invite.method(), Some("INVITE"), "{}", invite.0);
    assert!(
        invite
            .header("Via")
            .is_some_and(|v| v.starts_with("SIP/2.0/TLS ")),
        "{}",
        invite.0
    );
    assert!(
        invite
            .header("Contact")
            .is_some_and(|v| v.starts_with(&format!("<sips:switchboard@127.0.0.1:{tls_port}"))),
        "{}",
        invite.0
    );
    let ack = tokio::time::timeout(T, seen.recv())
        .await
        .expect("ACK for the 486 in time")
        .expect("carrier running");
    let ack = SipText(ack);
    assert_eq!(ack.method(), Some("ACK"), "{}", ack.0);
    assert_eq!(ack.header("Call-ID"), invite.header("Call-ID"));
    let call_id = invite.header("Call-ID").unwrap_or("").to_string();
    let rec = off_runtime(|| {
        server.wait_db(T, "the busy outbound call", |db| {
            db.rows(&format!(
                "SELECT * FROM call_records WHERE sip_call_id = '{call_id}' AND ended_at IS NOT NULL"
            ))
            .pop()
        })
    });
    assert_eq!(rec["disposition"], "busy", "{rec:?}");
    assert_eq!(rec["sip_status"], 486, "{rec:?}");
}

/// HTTPS on the HTTP port (`[http] tls_cert`, `tls_key`): the API answers over TLS (verified
/// against the self-signed certificate), a plain-HTTP request gets no HTTP answer, and SIP
/// over WebSocket on `/ws` is now WSS: an OPTIONS over it is answered.
#[tokio::test]
async fn https_serves_the_api_and_wss() {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let dir = tempfile::tempdir().expect("dir");
    let cert = self_signed(dir.path());
    let cfg = config(
        dir.path(),
        "",
        &format!(
            "\n[http]\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&cert.cert),
            toml_path(&cert.key)
        ),
    );
    let http_port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let log = dir.path().join("server.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "--config",
            &cfg.display().to_string(),
            "--database",
            &format!("sqlite://{}", dir.path().join("t.db").display()),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
            "--sip-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .current_dir(repo_root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn switchboard");
    let connector = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert_der.clone()).expect("trust the cert");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let tls = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await
    };
    // Wait for /healthz over HTTPS.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut s) = tls().await {
            let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            if s.write_all(req.as_bytes()).await.is_ok() {
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf).await;
                let text = String::from_utf8_lossy(&buf).to_string();
                if text.starts_with("HTTP/1.1 200") {
                    break text;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no HTTPS /healthz within 20 s\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    // Plain HTTP on the HTTPS port: no HTTP answer comes back.
    let plain = tokio::time::timeout(T, async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    })
    .await
    .unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&plain).starts_with("HTTP/1.1 200"),
        "plain HTTP must not be served on the HTTPS port"
    );

    // WSS: the upgrade with the `sip` subprotocol, then an OPTIONS answered on it.
    let mut req = format!("wss://localhost:{http_port}/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().expect("header"));
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls().await.expect("tls"))
        .await
        .expect("WSS upgrade");
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip")
    );
    let call_id = unique("wss-opt-");
    let options = format!(
        "OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/WSS abc.invalid;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@abc.invalid>;tag=1\r\nTo: <sip:localhost>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    ws.send(Message::text(options)).await.expect("send OPTIONS");
    let answer = tokio::time::timeout(T, async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                return t.to_string();
            }
        }
        String::new()
    })
    .await
    .expect("an answer to OPTIONS over WSS");
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(answer.contains(&call_id), "{answer}");
    let _ = child.kill();
    let _ = child.wait();
}
