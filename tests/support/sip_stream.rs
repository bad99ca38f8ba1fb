//! Raw SIP over the connection-oriented transports the tests drive by hand: a TLS client
//! (tokio-rustls, Content-Length framing) and a SIP-over-WebSocket client (tokio-tungstenite,
//! one SIP message per WebSocket message, subprotocol `sip`), with a self-signed
//! certificate made at test time (rcgen) and a digest REGISTER helper built on the
//! server's own `sip::auth` (the same code a phone's answer is checked with, fed by the
//! challenge the server sent).
//!
//! Included by the tests that need it (`#[path = "support/sip_stream.rs"] mod sip_stream;`
//! next to `mod support;`), so the other test binaries do not compile TLS and WebSocket.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::unique;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
}

pub fn self_signed(dir: &Path) -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("generate a self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert.pem");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key.pem");
    TestCert {
        cert,
        key,
        cert_der: ck.cert.der().clone(),
    }
}

/// One SIP message as text, request or response.
#[derive(Debug, Clone)]
pub struct SipText(pub String);

impl SipText {
    pub fn first_line(&self) -> &str {
        self.0.lines().next().unwrap_or("")
    }

    /// The status code of a response, None for a request.
    pub fn code(&self) -> Option<u16> {
        let mut w = self.first_line().split_whitespace();
        (w.next()? == "SIP/2.0").then_some(())?;
        w.next()?.parse().ok()
    }

    /// The method of a request, None for a response.
    pub fn method(&self) -> Option<&str> {
        let m = self.first_line().split_whitespace().next()?;
        (m != "SIP/2.0").then_some(m)
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.0.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn body(&self) -> &str {
        self.0.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

enum Conn {
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
    Tls {
        stream: Box<tokio_rustls::client::TlsStream<TcpStream>>,
        buf: Vec<u8>,
    },
}

/// A SIP client on one connection. `transport` is what goes into Via ("WS" or "TLS") and
/// `host` its sent-by (`xxx.invalid` for WebSocket, as browsers do).
pub struct StreamClient {
    conn: Conn,
    pub transport: &'static str,
    pub host: String,
    pub server: SocketAddr,
}

/// Connect to `ws://server/path` asking for the `sip` subprotocol. Err carries the HTTP
/// status when the server refused the upgrade.
pub async fn ws_connect(
    server: SocketAddr,
    path: &str,
    subprotocol: Option<&str>,
) -> Result<(StreamClient, Option<String>), u16> {
    let mut req = format!("ws://{server}{path}")
        .into_client_request()
        .expect("ws request");
    if let Some(p) = subprotocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            p.parse().expect("protocol header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let proto = resp
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok((
                StreamClient {
                    conn: Conn::Ws(Box::new(ws)),
                    transport: "WS",
                    host: format!("{}.invalid", unique("ws")),
                    server,
                },
                proto,
            ))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("WebSocket connect to {server}{path}: {e}"),
    }
}

/// Connect with TLS to `server`, trusting only `ca`, verifying the name `name`.
pub async fn tls_connect(
    server: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    name: &str,
) -> std::io::Result<StreamClient> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server).await?;
    let local = tcp.local_addr()?;
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("server name");
    let stream = connector.connect(name, tcp).await?;
    Ok(StreamClient {
        conn: Conn::Tls {
            stream: Box::new(stream),
            buf: Vec::new(),
        },
        transport: "TLS",
        host: local.to_string(),
        server,
    })
}

/// Length of the first complete message in `buf` (Content-Length framing), if any.
pub fn frame(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let len = head
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case("content-length") || n == "l").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    (buf.len() >= end + len).then_some(end + len)
}

impl StreamClient {
    /// Send raw bytes as one SIP message (one WebSocket text message; bytes on TLS).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.conn {
            Conn::Ws(ws) => {
                let text = String::from_utf8(bytes.to_vec()).expect("utf-8 SIP");
                ws.send(WsMessage::text(text)).await.expect("ws send");
            }
            Conn::Tls { stream, .. } => {
                stream.write_all(bytes).await.expect("tls write");
                stream.flush().await.expect("tls flush");
            }
        }
    }

    pub async fn send(&mut self, msg: &str) {
        self.send_raw(msg.as_bytes()).await
    }

    /// The next SIP message within `timeout` (WebSocket pings and CRLF pongs skipped).
    pub async fn recv(&mut self, timeout: Duration) -> Option<SipText> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match &mut self.conn {
                Conn::Ws(ws) => {
                    let next = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
                    match next.ok()? {
                        WsMessage::Text(t) => {
                            let s = t.as_str().to_string();
                            if !s.trim().is_empty() {
                                return Some(SipText(s));
                            }
                        }
                        WsMessage::Binary(b) => {
                            return Some(SipText(String::from_utf8_lossy(&b).into_owned()))
                        }
                        WsMessage::Close(_) => return None,
                        _ => {}
                    }
                }
                Conn::Tls { stream, buf } => {
                    while buf.starts_with(b"\r\n") {
                        buf.drain(..2);
                    }
                    if let Some(n) = frame(buf) {
                        let m: Vec<u8> = buf.drain(..n).collect();
                        return Some(SipText(String::from_utf8_lossy(&m).into_owned()));
                    }
                    let mut chunk = [0u8; 8192];
                    let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                        .await
                        .ok()?
                        .ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// The next response (requests received meanwhile are returned in the Err side).
    pub async fn response(&mut self, timeout: Duration) -> Option<SipText> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if m.code().is_some() {
                return Some(m);
            }
        }
    }

    /// The next request of `method` within `timeout`, skipping anything else.
    pub async fn request_of(&mut self, method: &str, timeout: Duration) -> Option<SipText> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv(left).await?;
            if m.method() == Some(method) {
                return Some(m);
            }
        }
    }

    /// The first final response (>= 200), provisional codes collected on the way.
    pub async fn final_response(&mut self, timeout: Duration) -> (Vec<u16>, Option<SipText>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut provisional = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(m) = self.response(left).await else {
                return (provisional, None);
            };
            match m.code() {
                Some(c) if c >= 200 => return (provisional, Some(m)),
                Some(c) => provisional.push(c),
                None => {}
            }
        }
    }

    /// A request from this client. `extra` header lines end in CRLF; Content-Length is added.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        method: &str,
        uri: &str,
        call_id: &str,
        cseq: u32,
        from_user: &str,
        to: &str,
        extra: &str,
        body: &str,
    ) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch=z9hG4bK{}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{from_user}@{}>;tag={}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             {extra}Content-Length: {}\r\n\r\n{body}",
            self.transport,
            self.host,
            unique("b"),
            self.server.ip(),
            unique("t"),
            body.len()
        )
    }

    /// Our Contact: `.invalid` with `transport=ws` over WebSocket (RFC 7118 §5.2), the
    /// connection's address with `transport=tls` over TLS.
    pub fn contact(&self, user: &str) -> String {
        format!(
            "<sip:{user}@{};transport={}>",
            self.host,
            self.transport.to_ascii_lowercase()
        )
    }

    /// REGISTER `user`: expects 401 with a digest challenge, answers it with `password`, and
    /// returns the challenge response and the final answer to the authenticated REGISTER.
    pub async fn register(&mut self, user: &str, password: &str) -> (SipText, SipText) {
        let call_id = unique("reg-");
        let uri = format!("sip:{}", self.server.ip());
        let to = format!("<sip:{user}@{}>", self.server.ip());
        let contact = format!("Contact: {}\r\nExpires: 600\r\n", self.contact(user));
        let first = self.request("REGISTER", &uri, &call_id, 1, user, &to, &contact, "");
        self.send(&first).await;
        let (_, challenge) = self.final_response(Duration::from_secs(5)).await;
        let challenge = challenge.expect("an answer to the first REGISTER");
        let www = challenge
            .header("WWW-Authenticate")
            .unwrap_or_else(|| panic!("401 without WWW-Authenticate:\n{}", challenge.0))
            .to_string();
        let ch = switchboard::sip::auth::parse_challenge(&www).expect("parse the challenge");
        let auth = switchboard::sip::auth::answer_challenge(
            &ch,
            "REGISTER",
            &uri,
            user,
            password,
            &switchboard::sip::auth::generate_cnonce(),
            1,
        );
        let extra = format!("{contact}Authorization: {auth}\r\n");
        let second = self.request("REGISTER", &uri, &call_id, 2, user, &to, &extra, "");
        self.send(&second).await;
        let (_, ok) = self.final_response(Duration::from_secs(5)).await;
        (
            challenge,
            ok.expect("an answer to the authenticated REGISTER"),
        )
    }
}

/// The response to `req` (a request received by a test client acting as a UAS): status
/// line, its Via/From/Call-ID/CSeq, To with `to_tag` added, then `extra` and `body`.
pub fn response_to(
    req: &SipText,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let head = req.0.split("\r\n\r\n").next().unwrap_or("");
    for line in head.lines().skip(1) {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        let n = name.trim().to_ascii_lowercase();
        if [
            "via",
            "v",
            "from",
            "f",
            "call-id",
            "i",
            "cseq",
            "record-route",
        ]
        .contains(&n.as_str())
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if n == "to" || n == "t" {
            out.push_str(line);
            if !line.contains(";tag=") {
                out.push_str(&format!(";tag={to_tag}"));
            }
            out.push_str("\r\n");
        }
    }
    out.push_str(extra);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

/// A minimal PCMU offer/answer on `port`.
pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// Run `f` on a plain thread: the support database helpers start their own runtime, which
/// tokio refuses inside a test's async runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("helper thread panicked"))
}
