//! Registrar acceptance tests: digest REGISTER with SIPp (good and bad password), bindings
//! persisted and visible, failures counted into a ban, and a real softphone (baresip)
//! registering and calling the hotline.

use crate::support;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, repo_root, sipp, Server};

fn sipp_register(
    server: &Server,
    port: u16,
    user: &str,
    password: &str,
    expires: u32,
) -> (Option<i32>, String) {
    let dir = server
        .dir
        .path()
        .join(format!("reg-{port}-{expires}-{}", password.len()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Command::new(sipp())
        .args(["-sf"])
        .arg(repo_root().join("sip-test/uac_register.xml"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-s",
            user,
            "-au",
            user,
            "-ap",
            password,
        ])
        .args([
            "-set",
            "expires",
            &expires.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "10s",
            "-timeout_error",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join("err.log"))
        .arg(server.sip_addr.to_string())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(dir.join("err.log")).unwrap_or_default()
    );
    (out.status.code(), text)
}

/// REGISTER with the right password is accepted and the binding is stored; a wrong password
/// is refused; unregistering removes the binding.
#[test]
fn sipp_registers_with_digest_and_bad_password_is_refused() {
    let server = Server::start(&[]);
    server.add_agent("agent1", "secret1", &[]);
    let phone_port = free_port();
    let (code, text) = sipp_register(&server, phone_port, "agent1", "secret1", 3600);
    assert_eq!(
        code,
        Some(0),
        "good password must register\n{text}\n{}",
        server.log()
    );
    server.wait_db(Duration::from_secs(5), "a stored binding", |db| {
        (db.count("registrations WHERE aor = 'agent1'") == 1).then_some(())
    });
    let (code, text) = sipp_register(&server, free_port(), "agent1", "wrong", 3600);
    assert_ne!(code, Some(0), "wrong password must not register\n{text}");
    let (code, _) = sipp_register(&server, free_port(), "nobody", "secret1", 3600);
    assert_ne!(code, Some(0), "unknown user must not register");
    // Unregister the same contact (same phone port).
    let (code, text) = sipp_register(&server, phone_port, "agent1", "secret1", 0);
    assert_eq!(code, Some(0), "unregister\n{text}");
    server.wait_db(Duration::from_secs(5), "binding removed", |db| {
        (db.count("registrations WHERE aor = 'agent1'") == 0).then_some(())
    });
    // Credentials are stored as HA1 digests only, never the password.
    let row = server
        .db()
        .row("SELECT ha1_md5, ha1_sha256 FROM agents WHERE name = 'agent1'");
    let dump = format!("{row:?}");
    assert!(!dump.contains("secret1"), "{dump}");
}

fn register_raw(
    sock: &UdpSocket,
    server: &Server,
    user: &str,
    cseq: u32,
    auth: Option<&str>,
) -> String {
    let local = sock.local_addr().expect("addr");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "REGISTER sip:{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKt{cseq}x{user}\r\n\
         From: <sip:{user}@{srv}>;tag=t1\r\nTo: <sip:{user}@{srv}>\r\nCall-ID: reg-{user}-{local}\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\nExpires: 600\r\n{auth}Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n",
        srv = server.sip_addr
    );
    sock.send_to(msg.as_bytes(), server.sip_addr).expect("send");
    let mut buf = [0u8; 4096];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

/// Password guessing from one address ends in a temporary ban: the registrar stops
/// answering that source, while another source still registers.
#[test]
fn repeated_auth_failures_ban_the_source() {
    let server = Server::start(&[]);
    server.add_agent("agent2", "right", &[]);
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    attacker
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut forbidden = 0;
    let mut silent = 0;
    for i in 0..14u32 {
        let challenge = register_raw(&attacker, &server, "agent2", i * 2 + 1, None);
        if challenge.is_empty() {
            silent += 1;
            continue;
        }
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let www = challenge
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
            .expect("MD5 challenge")
            .trim_start_matches("WWW-Authenticate:")
            .trim()
            .to_string();
        let ch = switchboard::sip::auth::parse_challenge(&www).expect("challenge parses");
        let uri = format!("sip:{}", server.sip_addr);
        let creds = switchboard::sip::auth::answer_challenge(
            &ch, "REGISTER", &uri, "agent2", "guess", "c0ffee", 1,
        );
        let answer = register_raw(&attacker, &server, "agent2", i * 2 + 2, Some(&creds));
        if answer.starts_with("SIP/2.0 403") {
            forbidden += 1;
        } else if answer.is_empty() {
            silent += 1;
        }
    }
    assert!(
        forbidden >= 9 && silent >= 1,
        "expected 403s then silence, got {forbidden} forbidden, {silent} silent"
    );
    // A different source is unaffected.
    let good = UdpSocket::bind("127.0.0.2:0")
        .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
        .expect("bind");
    good.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let challenge = register_raw(&good, &server, "agent2", 1, None);
    assert!(
        challenge.starts_with("SIP/2.0 401"),
        "other sources still served: {challenge:?}"
    );
}

/// A real softphone: baresip calls the hotline, presses 2 (RFC 4733) and hangs up; the
/// call is recorded with the digit. (Registration is proven with SIPp above: Debian's
/// baresip 1.0.0 fails its own REGISTER with "Function not implemented" before sending
/// anything on this machine, with any registrar.)
#[test]
fn baresip_calls_the_hotline_and_sends_rfc4733() {
    let Ok(baresip) = which("baresip") else {
        panic!("baresip not found (Debian package baresip-core; scripts/test installs it)");
    };
    let server = Server::start(&[]);
    server.add_agent("agent3", "pw3", &[]);
    let dir = server.dir.path().join("baresip");
    std::fs::create_dir_all(&dir).expect("dir");
    let sip_port = free_port();
    let ctrl_port = free_port();
    let rtp_lo = support::rtp_range().0;
    let wav = repo_root().join("audio/en/main-menu.wav");
    let config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\ncall_local_timeout 60\n\
         audio_path /usr/share/baresip\naudio_source aufile,{}\naudio_player aubridge,nowhere\naudio_alert aubridge,nowhere\n\
         ausrc_format s16\nauplay_format s16\nauenc_format s16\naudec_format s16\nrtp_ports {}-{}\nrtcp_mux no\n\
         dns_server 127.0.0.1:53\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\n\
         module_tmp uuid.so\nmodule_tmp account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
        wav.display(),
        rtp_lo,
        rtp_lo + 40
    );
    std::fs::write(dir.join("config"), config).expect("config");
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:agent3@{};transport=udp>;auth_pass=pw3;regint=0;audio_codecs=PCMU\n",
            server.sip_addr
        ),
    )
    .expect("accounts");
    let mut child = Command::new(baresip)
        .args(["-f"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("out.log")).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start baresip");
    let result = std::panic::catch_unwind(|| {
        let mut ctl = Ctl::connect(ctrl_port);
        ctl.send("dial", &format!("sip:hotline@{}", server.sip_addr));
        ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(15));
        std::thread::sleep(Duration::from_millis(1500));
        ctl.send("sndcode", "2");
        std::thread::sleep(Duration::from_millis(2500));
        ctl.send("hangup", "");
        ctl.wait_event("CALL_CLOSED", Duration::from_secs(10));
        server.wait_db(Duration::from_secs(10), "the baresip call's record", |db| {
            let n = db.count(
                "call_records WHERE from_uri LIKE '%agent3%' AND disposition = 'answered' AND hangup_cause = 'caller_hangup'",
            );
            let digits = db.count("call_events WHERE kind = 'dtmf' AND detail = '2'");
            (n == 1 && digits == 1).then_some(())
        });
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        eprintln!(
            "baresip log:\n{}",
            std::fs::read_to_string(dir.join("out.log")).unwrap_or_default()
        );
        std::panic::resume_unwind(e);
    }
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

/// baresip's ctrl_tcp: JSON commands and events in netstrings.
struct Ctl {
    s: std::net::TcpStream,
    buf: Vec<u8>,
    n: u32,
}

impl Ctl {
    fn connect(port: u16) -> Ctl {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                return Ctl {
                    s,
                    buf: Vec::new(),
                    n: 0,
                };
            }
            assert!(
                Instant::now() < deadline,
                "baresip control port never opened"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&mut self, command: &str, params: &str) {
        use std::io::Write;
        self.n += 1;
        let msg =
            serde_json::json!({"command": command, "params": params, "token": self.n.to_string()})
                .to_string();
        let frame = format!("{}:{},", msg.len(), msg);
        self.s.write_all(frame.as_bytes()).expect("send to baresip");
    }

    fn wait_event(&mut self, kind: &str, timeout: Duration) {
        use std::io::Read;
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(colon) = self.buf.iter().position(|b| *b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() < colon + 1 + len + 1 {
                    break;
                }
                let msg = self.buf[colon + 1..colon + 1 + len].to_vec();
                self.buf.drain(..colon + 1 + len + 1);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&msg) {
                    if v.get("type").and_then(|t| t.as_str()) == Some(kind) {
                        return;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "baresip event {kind} not seen within {timeout:?}"
            );
            self.s.set_read_timeout(Some(left)).expect("timeout");
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("baresip closed its control connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }
}
