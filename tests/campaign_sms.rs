//! The SMS fallback end to end: the real binary dials the SIPp customer farm; customers who
//! end `failed` (busy, unknown number) get one text through a tiny HTTP SMS gateway run by
//! this test on loopback, which refuses the first try (503) so the back-off retry is seen,
//! refuses one customer for good (400), and is unreachable-in-effect (always 503) for
//! another. Also the webhook (`fallback = "both"`), what operators see in the contact
//! listing and in the progress, the API's refusals of bad `fallback` fields, and that a
//! restart sends nothing again.
//!
//! A second test runs the gateway and the webhook receiver over HTTPS with a certificate from
//! a CA made at test time, trusted through `[sms] ca_file` and `[webhooks] ca_file`.
//!
//! Needs SIPp, python3 and root like `campaign_sipp.rs`.
//! Run: `cargo test --test suite -- campaign_sms:: --test-threads=1`.

use crate::campaign;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use campaign::*;
use serde_json::{json, Value};

const SMS_TOKEN: &str = "sms-gateway-secret-42";

/// One request the gateway received.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// The HTTP SMS gateway (and webhook receiver): answers by the text's recipient.
struct Gateway {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Gateway {
    /// `answer(to, tries so far for `to`)` gives the status for an SMS request.
    fn start(answer: impl Fn(&str, usize) -> u16 + Send + 'static) -> Gateway {
        Gateway::start_with(None, answer)
    }

    /// The same over TLS with `tls`'s certificate when given.
    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        answer: impl Fn(&str, usize) -> u16 + Send + 'static,
    ) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind gateway");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut tries: HashMap<String, usize> = HashMap::new();
            while !st.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if conn.set_nonblocking(false).is_err()
                    || conn.set_read_timeout(Some(Duration::from_secs(5))).is_err()
                {
                    continue;
                }
                let mut conn: Box<dyn ReadWrite> = match &tls {
                    Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                        Ok(c) => Box::new(rustls::StreamOwned::new(c, conn)),
                        Err(_) => continue,
                    },
                    None => Box::new(conn),
                };
                // A refused TLS handshake ends here: nothing is read.
                let Some(req) = read_request(&mut *conn, Instant::now()) else {
                    continue;
                };
                let code = if req.path.starts_with("/sms") {
                    let to = req.body["to"].as_str().unwrap_or("").to_string();
                    let n = tries.entry(to.clone()).or_default();
                    let code = answer(&to, *n);
                    *n += 1;
                    code
                } else {
                    200
                };
                g.lock().unwrap_or_else(|p| p.into_inner()).push(req);
                // One write: a reader that takes the first segment sees the whole status line.
                let answer =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = conn.write_all(answer.as_bytes());
                let _ = conn.flush();
            }
        });
        Gateway {
            addr,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A connection the gateway reads a request from and answers on: TCP or TLS over it.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn read_request(conn: &mut dyn ReadWrite, at: Instant) -> Option<Got> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length")?.parse().ok()?;
    while buf.len() < head_end + 4 + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end + 4..head_end + 4 + len]).ok()?;
    Some(Got {
        at,
        path,
        headers,
        body,
    })
}

#[test]
fn failed_contacts_get_one_text_with_retries_and_a_restart_sends_nothing_again() {
    let t0 = Instant::now();
    use Behaviour::*;
    let plan = [Busy, NotFound, Busy, Busy, Press1, NotFound];
    let tickets_plan = tickets(5, &plan);
    let refused = tickets_plan[2].phone.clone(); // the gateway says 400 for this one
    let always_503 = tickets_plan[3].phone.clone(); // never taken: gives up after 3 tries
    let (r2, a2) = (refused.clone(), always_503.clone());
    let gateway = Gateway::start(move |to, n| {
        if to == r2 {
            400
        } else if to == a2 || n == 0 {
            503
        } else {
            202
        }
    });

    let dir = test_dir("switchboard-campaign-sms-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let opts = ServerOptions {
        extra: format!(
            "[sms]\nurl = \"http://{}/sms/send\"\nfrom = \"+15550100\"\ntoken = \"{SMS_TOKEN}\"\n\
             retry_s = 1\nmax_tries = 3\ntimeout_s = 5\n\
             text = \"Hello ${{name}}, order ${{order_id}} is late; new date ${{new_date}}.\"\n",
            gateway.addr
        ),
        ..ServerOptions::default()
    };
    let setup = ServerSetup::with(dir.path(), farm.port, &opts);
    let mut server = setup.start(1);
    let db = Db::open(&setup.db_path);
    let tickets: Vec<(i64, Ticket)> = tickets_plan
        .iter()
        .map(|t| (db.insert_ticket(t), t.clone()))
        .collect();

    // Bad fallback fields are refused, naming the field.
    let mut spec = campaign_spec("sms-6", 4, 2);
    for (field, value, want) in [
        ("fallback", json!("pigeon"), "fallback: must be"),
        ("fallback", json!("webhook"), "needs webhook_url"),
        ("sms_text", json!("  "), "sms_text"),
    ] {
        let mut bad = spec.clone();
        bad[field] = value;
        let (code, body) = server.api("POST", "/api/campaigns", Some(&bad));
        assert_eq!(code, 400, "{field}: {body}");
        assert!(text(&body["error"]).contains(want), "{field}: {body}");
    }

    spec["retry"]["busy"] = json!({"after_s": 2, "max_attempts": 1});
    spec["retry"]["failed"] = json!({"after_s": 2, "max_attempts": 1});
    spec["fallback"] = json!("both");
    spec["webhook_url"] = json!(format!("http://{}/hook", gateway.addr));
    let id = server.create_campaign(&spec);
    assert_eq!(server.start_campaign(id), "running");
    server.wait_state(id, "completed", Duration::from_secs(60), &db);

    // Every text ends sent or failed; that is what operators see in the listing.
    let failed: Vec<&(i64, Ticket)> = tickets
        .iter()
        .filter(|(_, t)| t.behaviour != Press1)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        let (code, rows) = server.api("GET", &format!("/api/campaigns/{id}/contacts"), None);
        assert_eq!(code, 200, "{rows}");
        let done = rows.as_array().map_or(0, |r| {
            r.iter()
                .filter(|c| c["sms"] == "sent" || c["sms"] == "failed")
                .count()
        });
        if done == failed.len() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "texts not finished after 30 s: {rows}\n{:?}\n{}",
            gateway.requests(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_phone: HashMap<String, Value> = listing
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (text(&c["phone"]).to_string(), c.clone()))
        .collect();
    let got = gateway.requests();
    let sms: Vec<&Got> = got.iter().filter(|g| g.path == "/sms/send").collect();
    let hooks: Vec<&Got> = got.iter().filter(|g| g.path == "/hook").collect();
    let mut errors = Vec::new();
    for (tid, t) in &tickets {
        let c = &by_phone[&t.phone];
        let mine: Vec<&&Got> = sms
            .iter()
            .filter(|g| g.body["to"] == t.phone.as_str())
            .collect();
        let hook_n = hooks
            .iter()
            .filter(|g| g.body["ticket_id"].as_i64() == Some(*tid))
            .count();
        if t.behaviour == Press1 {
            if !mine.is_empty() || !c["sms"].is_null() || hook_n != 0 {
                errors.push(format!("{}: answered, yet texted {c}", t.phone));
            }
            continue;
        }
        if c["state"] != "failed" || hook_n != 1 {
            errors.push(format!("{}: contact {c}, {hook_n} webhook calls", t.phone));
        }
        let (want_state, want_tries, want_error) = if t.phone == refused {
            ("failed", 1, "refused the text: 400")
        } else if t.phone == always_503 {
            ("failed", 3, "gave up after 3 tries")
        } else {
            ("sent", 2, "gateway answered 503")
        };
        if c["sms"] != want_state
            || mine.len() != want_tries
            || !text(&c["sms_error"]).contains(want_error)
        {
            errors.push(format!(
                "{}: sms {} ({}) after {} requests, expected {want_state} after {want_tries} ({want_error})",
                t.phone,
                c["sms"],
                c["sms_error"],
                mine.len()
            ));
        }
        // Every try of one text: same key, token, sender, rendered text.
        let want_text = format!(
            "Hello Customer {}, order {} is late; new date 2026-12-24.",
            t.order_id, t.order_id
        );
        let key = format!("switchboard-sms-{}", c["id"]);
        for g in &mine {
            if g.headers.get("authorization").map(String::as_str)
                != Some(&format!("Bearer {SMS_TOKEN}"))
                || g.headers.get("idempotency-key") != Some(&key)
                || g.body["id"] != key.as_str()
                || g.body["from"] != "+15550100"
                || g.body["text"] != want_text.as_str()
            {
                errors.push(format!(
                    "{}: request {g:?}, expected key {key}, text {want_text:?}",
                    t.phone
                ));
            }
        }
        // Back-off: 1 s, then 2 s.
        for w in mine.windows(2) {
            let gap = w[1].at.duration_since(w[0].at);
            if gap < Duration::from_millis(900) {
                errors.push(format!("{}: retried after only {gap:?}", t.phone));
            }
        }
    }
    let (_, progress) = server.api("GET", &format!("/api/campaigns/{id}"), None);
    if progress["progress"]["sms"] != json!({"sent": 3, "failed": 2}) {
        errors.push(format!("progress.sms: {}", progress["progress"]));
    }
    assert!(
        errors.is_empty(),
        "{} problem(s):\n  {}\n{listing:#}\n{}",
        errors.len(),
        errors.join("\n  "),
        server.log()
    );

    // A restart sends nothing again: every text is recorded as done.
    let before = gateway.requests().len();
    let status = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    drop(server);
    let server = setup.start(2);
    std::thread::sleep(Duration::from_secs(3));
    let (_, after) = server.api("GET", &format!("/api/campaigns/{id}/contacts"), None);
    assert_eq!(
        gateway.requests().len(),
        before,
        "requests after the restart: {:?}",
        &gateway.requests()[before..]
    );
    assert_eq!(after, listing, "the listing changed across the restart");
    let calls = farm.stop().calls();
    assert_eq!(
        calls.len(),
        tickets.len(),
        "one dial per contact: {calls:#?}"
    );
    eprintln!(
        "campaign_sms: {} SMS requests, {} webhook calls; test {:.1} s",
        sms.len(),
        hooks.len(),
        t0.elapsed().as_secs_f64()
    );
}

/// A CA made now, and the TLS server config of a `localhost` / `127.0.0.1` certificate it
/// signed; the CA certificate is written to `dir/ca.pem`.
fn test_ca(dir: &std::path::Path) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).expect("write ca.pem");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("server cert");
    (ca_file, Arc::new(cfg))
}

#[test]
fn texts_and_webhooks_go_over_https_to_a_gateway_signed_by_the_configured_ca() {
    use Behaviour::*;
    let plan = [Busy, NotFound];
    let tickets_plan = tickets(6, &plan);
    let dir = test_dir("switchboard-campaign-sms-tls-");
    let (ca_file, tls) = test_ca(dir.path());
    let gateway = Gateway::start_with(Some(tls), |_, _| 202);

    let mut farm = Farm::start(&dir.path().join("farm"));
    let opts = ServerOptions {
        extra: format!(
            "[sms]\nurl = \"https://localhost:{}/sms/send\"\nfrom = \"+15550100\"\n\
             token = \"{SMS_TOKEN}\"\nca_file = \"{}\"\nretry_s = 1\nmax_tries = 2\ntimeout_s = 5\n\
             [webhooks]\nca_file = \"{}\"\ntimeout_s = 5\n",
            gateway.addr.port(),
            ca_file.display(),
            ca_file.display()
        ),
        ..ServerOptions::default()
    };
    let setup = ServerSetup::with(dir.path(), farm.port, &opts);
    let server = setup.start(1);
    let db = Db::open(&setup.db_path);
    for t in &tickets_plan {
        db.insert_ticket(t);
    }
    let mut spec = campaign_spec("sms-tls", 4, 2);
    spec["retry"]["busy"] = json!({"after_s": 2, "max_attempts": 1});
    spec["retry"]["failed"] = json!({"after_s": 2, "max_attempts": 1});
    spec["fallback"] = json!("both");
    spec["webhook_url"] = json!(format!("https://127.0.0.1:{}/hook", gateway.addr.port()));
    let id = server.create_campaign(&spec);
    assert_eq!(server.start_campaign(id), "running");
    server.wait_state(id, "completed", Duration::from_secs(60), &db);

    let deadline = Instant::now() + Duration::from_secs(30);
    let listing = loop {
        let (code, rows) = server.api("GET", &format!("/api/campaigns/{id}/contacts"), None);
        assert_eq!(code, 200, "{rows}");
        let sent = rows
            .as_array()
            .map_or(0, |r| r.iter().filter(|c| c["sms"] == "sent").count());
        let hooks = gateway
            .requests()
            .iter()
            .filter(|g| g.path == "/hook")
            .count();
        if sent == plan.len() && hooks == plan.len() {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "texts or webhooks not delivered over TLS after 30 s: {rows}\n{:?}\n{}",
            gateway.requests(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let got = gateway.requests();
    let sms: Vec<&Got> = got.iter().filter(|g| g.path == "/sms/send").collect();
    assert_eq!(
        sms.len(),
        plan.len(),
        "one request per text: {got:?}\n{listing:#}"
    );
    for t in &tickets_plan {
        let mine: Vec<&&Got> = sms
            .iter()
            .filter(|g| g.body["to"] == t.phone.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}: {sms:?}", t.phone);
        assert_eq!(
            mine[0].headers.get("authorization").map(String::as_str),
            Some(&*format!("Bearer {SMS_TOKEN}")),
            "{:?}",
            mine[0]
        );
    }
    assert!(
        got.iter()
            .filter(|g| g.path == "/hook")
            .all(|g| g.body["event"] == "campaign_contact_failed"),
        "{got:?}"
    );
    assert!(
        !server.log().contains("plain http://"),
        "no clear-text warning for an https gateway"
    );
    drop(server);
    farm.stop();
}

const INBOUND_SECRET: &str = "inbound-hmac-secret-0123";

/// POST a body to `/api/sms/inbound` signed as the gateway does (computed here with the
/// HMAC crates, not the server's code): `sig` overrides the signature, `ts` the timestamp.
fn post_inbound(addr: SocketAddr, body: &str, ts: Option<i64>, sig: Option<&str>) -> (u16, Value) {
    use hmac::{Hmac, Mac};
    let ts = ts
        .unwrap_or_else(|| chrono::Utc::now().timestamp())
        .to_string();
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(INBOUND_SECRET.as_bytes()).expect("hmac key");
    mac.update(format!("{ts}.{body}").as_bytes());
    let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let sig = sig.unwrap_or(&good);
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "POST /api/sms/inbound HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !sig.is_empty() {
        req.push_str(&format!(
            "X-Switchboard-Timestamp: {ts}\r\nX-Switchboard-Signature: {sig}\r\n"
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read answer");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let rest = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, serde_json::from_str(&rest).unwrap_or(Value::Null))
}

fn inbound_body(id: &str, from: &str, text: &str) -> String {
    json!({"id": id, "from": from, "to": "+15550100", "text": text}).to_string()
}

/// Customers who got the delay notice by SMS answer it by SMS: each reply is recorded exactly
/// as the keypad choice would be (call_outcomes with channel `sms`, the ticket's resolution,
/// a refund request, the contact's outcome; opt-out goes on the do-not-call list), a reply
/// not understood gets the help text once (through the gateway), re-deliveries are recorded
/// once, and forged, stale, malformed or unknown-number requests are refused with a reason.
#[test]
fn sms_replies_record_the_choice_like_a_keypad() {
    use Behaviour::*;
    let plan = [Busy, NotFound, Busy, Busy, NotFound];
    let tickets_plan = tickets(8, &plan);
    let gateway = Gateway::start(|_, _| 202);
    let dir = test_dir("switchboard-sms-replies-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let opts = ServerOptions {
        extra: format!(
            "[sms]\nurl = \"http://{}/sms/send\"\nfrom = \"+15550100\"\ntoken = \"{SMS_TOKEN}\"\n\
             retry_s = 1\nmax_tries = 2\ntimeout_s = 5\ninbound_secret = \"{INBOUND_SECRET}\"\n\
             replay_window_s = 120\nhelp_text = \"Reply 1 or 2. 回复 1 或 2。\"\n",
            gateway.addr
        ),
        ..ServerOptions::default()
    };
    let setup = ServerSetup::with(dir.path(), farm.port, &opts);
    let server = setup.start(1);
    let db = Db::open(&setup.db_path);
    let ids: Vec<i64> = tickets_plan.iter().map(|t| db.insert_ticket(t)).collect();
    let mut spec = campaign_spec("sms-replies", 4, 2);
    spec["retry"]["busy"] = json!({"after_s": 2, "max_attempts": 1});
    spec["retry"]["failed"] = json!({"after_s": 2, "max_attempts": 1});
    spec["fallback"] = json!("sms");
    let id = server.create_campaign(&spec);
    assert_eq!(server.start_campaign(id), "running");
    server.wait_state(id, "completed", Duration::from_secs(60), &db);
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count(&format!(
        "SELECT COUNT(*) FROM campaign_sms WHERE campaign_id = {id} AND state = 'sent'"
    )) < plan.len() as i64
    {
        assert!(
            Instant::now() < deadline,
            "notices not sent: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let phone = |i: usize| tickets_plan[i].phone.as_str();
    let addr = server.http;

    // Refusals first: nothing of these is recorded.
    let good = inbound_body("m-0", phone(0), "2");
    for (what, ts, sig, want_code, want) in [
        (
            "forged",
            None,
            Some("sha256=".to_string() + &"0".repeat(64)),
            401,
            "does not match",
        ),
        ("unsigned", None, Some(String::new()), 401, "missing"),
        (
            "stale",
            Some(chrono::Utc::now().timestamp() - 600),
            None,
            401,
            "replay window",
        ),
    ] {
        let (code, body) = post_inbound(addr, &good, ts, sig.as_deref());
        assert_eq!(code, want_code, "{what}: {body}");
        assert!(text(&body["error"]).contains(want), "{what}: {body}");
    }
    let (code, body) = post_inbound(addr, "{\"id\": \"m-x\"}", None, None);
    assert_eq!(code, 400, "{body}");
    assert!(text(&body["error"]).contains("inbound JSON"), "{body}");
    let (code, body) = post_inbound(
        addr,
        &inbound_body("m-u", "+8613800009999", "1"),
        None,
        None,
    );
    assert_eq!(code, 404, "{body}");
    assert!(text(&body["error"]).contains("no open notice"), "{body}");
    assert_eq!(db.count("SELECT COUNT(*) FROM sms_replies"), 0);

    // The choices, in both languages.
    let mut answers = Vec::new();
    for (msg, i, reply, want) in [
        ("m-0", 0, "2", "refund"),
        ("m-1", 1, "等", "wait"),
        ("m-2", 2, "退订", "opt_out"),
    ] {
        let (code, body) = post_inbound(addr, &inbound_body(msg, phone(i), reply), None, None);
        assert_eq!(code, 200, "{reply}: {body}");
        assert_eq!(body["choice"], want, "{reply}: {body}");
        assert_eq!(body["ticket_id"].as_i64(), Some(ids[i]), "{body}");
        answers.push((i, want));
    }
    // Not understood: the help text once, then nothing; then a choice.
    let (code, body) = post_inbound(addr, &inbound_body("m-3a", phone(3), "when?"), None, None);
    assert_eq!(
        (code, &body["choice"], &body["help_sent"]),
        (200, &Value::Null, &json!(true)),
        "{body}"
    );
    let (code, body) = post_inbound(addr, &inbound_body("m-3b", phone(3), "???"), None, None);
    assert_eq!((code, &body["help_sent"]), (200, &json!(false)), "{body}");
    let (code, body) = post_inbound(addr, &inbound_body("m-3c", phone(3), " 0 "), None, None);
    assert_eq!((code, &body["choice"]), (200, &json!("callback")), "{body}");
    answers.push((3, "callback"));
    // A re-delivery is recorded once; an answered notice is closed.
    let (code, body) = post_inbound(addr, &inbound_body("m-0", phone(0), "2"), None, None);
    assert_eq!((code, &body["duplicate"]), (200, &json!(true)), "{body}");
    let (code, body) = post_inbound(addr, &inbound_body("m-0b", phone(0), "1"), None, None);
    assert_eq!(code, 404, "answered notices are closed: {body}");

    // Recorded as the keypad would have.
    let mut errors = Vec::new();
    for (i, want) in &answers {
        let tid = ids[*i];
        let o = db.rows(&format!(
            "SELECT choice, channel, call_id FROM call_outcomes WHERE ticket_id = {tid}"
        ));
        if o.len() != 1
            || o[0]["choice"] != *want
            || o[0]["channel"] != "sms"
            || !text(&o[0]["call_id"]).starts_with("sms:m-")
        {
            errors.push(format!(
                "ticket {tid}: call_outcomes {o:?}, expected one {want} by sms"
            ));
        }
        let t = db.rows(&format!("SELECT resolution FROM tickets WHERE id = {tid}"));
        let want_res = match *want {
            "callback" => Value::Null,
            w => json!(w),
        };
        if t[0]["resolution"] != want_res {
            errors.push(format!(
                "ticket {tid}: resolution {:?}, expected {want_res}",
                t[0]
            ));
        }
        let c = db.rows(&format!(
            "SELECT state, outcome FROM campaign_contacts WHERE ticket_id = {tid} AND campaign_id = {id}"
        ));
        let want_state = if *want == "opt_out" {
            "opted_out"
        } else {
            "completed"
        };
        if c[0]["state"] != want_state || c[0]["outcome"] != *want {
            errors.push(format!(
                "ticket {tid}: contact {:?}, expected {want_state}/{want}",
                c[0]
            ));
        }
    }
    if db.count(&format!(
        "SELECT COUNT(*) FROM refund_requests WHERE ticket_id = {}",
        ids[0]
    )) != 1
    {
        errors.push("no refund request for the SMS refund".into());
    }
    if db.count(&format!(
        "SELECT COUNT(*) FROM do_not_call WHERE phone = '{}'",
        phone(2)
    )) != 1
    {
        errors.push("the SMS opt-out is not on the do-not-call list".into());
    }
    if db.count("SELECT COUNT(*) FROM call_outcomes") != answers.len() as i64 {
        errors.push("a re-delivery or a help reply wrote an outcome".into());
    }
    let c4 = db.rows(&format!(
        "SELECT state, outcome FROM campaign_contacts WHERE ticket_id = {}",
        ids[4]
    ));
    if c4[0]["state"] != "failed" || !c4[0]["outcome"].is_null() {
        errors.push(format!("the silent customer's contact moved: {:?}", c4[0]));
    }
    // The help text went once, through the gateway, to the customer who needed it.
    std::thread::sleep(Duration::from_millis(500));
    let helps: Vec<Got> = gateway
        .requests()
        .into_iter()
        .filter(|g| {
            g.body["id"]
                .as_str()
                .is_some_and(|k| k.starts_with("switchboard-sms-help-"))
        })
        .collect();
    if helps.len() != 1
        || helps[0].body["to"] != phone(3)
        || helps[0].body["text"] != "Reply 1 or 2. 回复 1 或 2。"
        || helps[0].headers.get("authorization").map(String::as_str)
            != Some(&*format!("Bearer {SMS_TOKEN}"))
    {
        errors.push(format!("help texts: {helps:?}"));
    }
    assert!(
        errors.is_empty(),
        "{} problem(s):\n  {}\n{}\n{}",
        errors.len(),
        errors.join("\n  "),
        db.dump(id),
        server.log()
    );
    drop(server);
    let calls = farm.stop().calls();
    assert_eq!(calls.len(), plan.len(), "one dial per contact: {calls:#?}");
}
