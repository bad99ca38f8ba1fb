//! The one outbound HTTP client: the SMS gateway (`dialer/sms.rs`), the campaigns' fallback
//! webhook (`dialer/service.rs`) and the operator CLI (`cli/campaign.rs`) all send their
//! requests through [`HttpClient`].
//!
//! HTTP/1.1 is hyper's (`hyper::client::conn::http1`): framing, chunked bodies, interim 1xx
//! answers and the status line are parsed by a maintained crate, not by hand. The connection
//! is ours: a TCP stream, wrapped for `https://` in tokio-rustls with the `ring` provider and
//! the Mozilla roots (`webpki-roots`) plus an optional extra CA bundle, so certificates are
//! always verified and no second crypto provider or OpenSSL enters the tree
//! (docs/adr/0005-http-client.md). One connection per request: the volume is a text or a
//! webhook now and then, or one CLI command.
//!
//! Owning the connection lets the error say *how far* a request got, which the SMS sender's
//! at-most-once rule needs: [`HttpError::not_sent`] is true only when the request certainly
//! never left (bad URL, connect or TLS handshake failed, connect timed out). Everything read
//! from the network is bounded: the connect and the exchange each by the client's timeout,
//! the body by its `max_body`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;

pub use http::Method;

/// Body bound for the gateway's and the webhooks' answers: only the status matters there.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

const AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// Why a request did not produce a complete response.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("URL '{url}': {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The extra CA bundle could not be used (read once, when the client is made).
    #[error(transparent)]
    Trust(#[from] crate::sip::tls::TlsError),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: an untrusted or mismatched certificate, or no TLS at all.
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {addr} within {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    /// The request was (perhaps partly) sent; no complete answer came in time.
    #[error("no complete answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The request was (perhaps partly) sent; the answer was broken or cut off.
    #[error("talking to {addr}: {source}")]
    Protocol {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The answer's head arrived (`status`), its body is over the client's bound.
    #[error("answer {status} from {addr}: body larger than {limit} bytes")]
    TooLarge {
        addr: String,
        status: u16,
        limit: usize,
    },
}

impl HttpError {
    /// True when the request surely never reached the server (nothing was written to it),
    /// so sending it again cannot duplicate it.
    pub fn not_sent(&self) -> bool {
        matches!(
            self,
            HttpError::BadUrl { .. }
                | HttpError::BadRequest(_)
                | HttpError::Trust(_)
                | HttpError::Connect { .. }
                | HttpError::Tls { .. }
                | HttpError::ConnectTimeout { .. }
        )
    }
}

/// `http://` or `https://`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// An absolute `http(s)://HOST[:PORT][/PATH][?QUERY]` URL, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path (starting with `/`) and query.
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_string(),
            reason,
        };
        if url.contains('#') {
            return Err(bad("must not have a fragment"));
        }
        let uri: http::Uri = url
            .parse()
            .map_err(|_| bad("not a valid http:// or https:// URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not contain user information"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        // `Authority::port()` says None for a port that does not parse: look ourselves.
        let auth = authority.as_str();
        let after_host = auth.rfind(']').map_or(auth, |i| &auth[i + 1..]);
        let port = match after_host.rsplit_once(':') {
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            Some((_, p)) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// `host:port` as connected to and sent in `Host`.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL's path (without a trailing `/`) followed by `path` (which starts with `/`):
    /// the server's API under a prefix.
    pub fn join(&self, path: &str) -> Url {
        let base = self.path.trim_end_matches('/');
        Url {
            path: format!("{base}{path}"),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    headers: Vec<(HeaderName, String)>,
    body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, url: Url) -> Request {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Add a header; its value is checked when sent (no CR/LF smuggling).
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// `Authorization: Bearer TOKEN` when a token is given.
    pub fn bearer(self, token: Option<&str>) -> Request {
        match token {
            Some(t) => self.header(AUTHORIZATION, format!("Bearer {t}")),
            None => self,
        }
    }

    /// A JSON body (already serialised).
    pub fn json_bytes(mut self, body: Vec<u8>) -> Request {
        self.body = Some(body);
        self.header(CONTENT_TYPE, "application/json")
    }

    pub fn json(self, body: &serde_json::Value) -> Request {
        self.json_bytes(body.to_string().into_bytes())
    }
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status's canonical reason phrase ("" when unknown).
    pub fn reason(&self) -> &'static str {
        http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    }
}

/// Sends requests; cheap to clone (the TLS setup is shared).
#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client trusting the Mozilla roots plus every certificate in `ca_file` (PEM; `key`
    /// names the setting in errors, e.g. `[sms] ca_file`). The connect and the exchange are
    /// each bounded by `timeout`; answers' bodies by `max_body` bytes.
    pub fn new(
        timeout: Duration,
        max_body: usize,
        ca_file: Option<(&str, &Path)>,
    ) -> Result<HttpClient, HttpError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some((key, path)) = ca_file {
            for c in crate::sip::tls::certificates(key, path)? {
                roots.add(c).map_err(|e| {
                    HttpError::Trust(crate::sip::tls::TlsError::Invalid {
                        key: key.to_string(),
                        path: path.to_path_buf(),
                        reason: format!("unusable certificate: {e}"),
                    })
                })?;
            }
        }
        let config = ClientConfig::builder_with_provider(crate::sip::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::BadRequest(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpClient {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
            max_body,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `req` and read the whole answer. Any HTTP status is `Ok`.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        let addr = req.url.authority();
        let request = build(&req, &addr)?;
        let stream = match tokio::time::timeout(self.timeout, self.connect(&req.url, &addr)).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(HttpError::ConnectTimeout {
                    addr,
                    timeout: self.timeout,
                })
            }
        };
        match tokio::time::timeout(self.timeout, self.exchange(stream, request, &addr)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                addr,
                timeout: self.timeout,
            }),
        }
    }

    /// TCP, then TLS for `https://` (the certificate checked against the URL's host).
    async fn connect(
        &self,
        url: &Url,
        addr: &str,
    ) -> Result<Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>, HttpError> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        // Requests are small and answered at once: do not hold them back (Nagle).
        let _ = tcp.set_nodelay(true);
        match url.scheme {
            Scheme::Http => Ok(Either::Left(tcp)),
            Scheme::Https => {
                let name =
                    ServerName::try_from(url.host.clone()).map_err(|_| HttpError::BadUrl {
                        url: url.to_string(),
                        reason: "the host is not a valid TLS server name",
                    })?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| HttpError::Tls {
                        addr: addr.to_string(),
                        source,
                    })?;
                Ok(Either::Right(tls))
            }
        }
    }

    /// Send the request on the connection and read the answer, driving the connection in
    /// the same future so nothing outlives the call.
    async fn exchange<S>(
        &self,
        stream: S,
        request: http::Request<Full<Bytes>>,
        addr: &str,
    ) -> Result<Response, HttpError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let protocol = |source| HttpError::Protocol {
            addr: addr.to_string(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(protocol)?;
        let limit = self.max_body;
        let talk = async {
            let resp = sender.send_request(request).await.map_err(protocol)?;
            let status = resp.status().as_u16();
            let (parts, mut body) = resp.into_parts();
            let too_large = || HttpError::TooLarge {
                addr: addr.to_string(),
                status,
                limit,
            };
            let announced = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                if let Ok(chunk) = frame.map_err(protocol)?.into_data() {
                    if data.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    data.extend_from_slice(&chunk);
                }
            }
            Ok(Response {
                status,
                headers: parts.headers,
                body: Bytes::from(data),
            })
        };
        tokio::pin!(talk);
        tokio::pin!(conn);
        tokio::select! {
            r = &mut talk => r,
            // The connection ended (the server closed it): what was read is still delivered
            // to `talk`, which finishes or reports the cut.
            _ = &mut conn => talk.await,
        }
    }
}

/// The hyper request: headers checked, `Host`, `User-Agent` and `Connection: close` added.
fn build(req: &Request, host: &str) -> Result<http::Request<Full<Bytes>>, HttpError> {
    let mut b = http::Request::builder()
        .method(req.method.clone())
        .uri(req.url.path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, AGENT)
        .header(http::header::CONNECTION, "close");
    for (name, value) in &req.headers {
        let v = HeaderValue::from_str(value)
            .map_err(|_| HttpError::BadRequest(format!("header {name}: invalid value")))?;
        b = b.header(name, v);
    }
    let body = req.body.clone().map(Bytes::from).unwrap_or_default();
    b.body(Full::new(body))
        .map_err(|e| HttpError::BadRequest(e.to_string()))
}

/// A loopback HTTPS (or HTTP) server with a CA made at test time, for this module's tests
/// and the SMS / webhook tests beside their code.
#[cfg(test)]
pub(crate) mod test_server {
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// A CA and a `localhost` / `127.0.0.1` certificate it signed.
    pub struct TestCa {
        pub ca_pem: String,
        pub leaf: Vec<CertificateDer<'static>>,
        pub key: PrivatePkcs8KeyDer<'static>,
    }

    impl TestCa {
        pub fn new() -> TestCa {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
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
            TestCa {
                ca_pem: ca_cert.pem(),
                leaf: vec![leaf.der().clone()],
                key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            }
        }

        /// Write the CA certificate as PEM into `dir`.
        pub fn write_ca(&self, dir: &Path) -> PathBuf {
            let p = dir.join("ca.pem");
            std::fs::write(&p, &self.ca_pem).expect("write ca.pem");
            p
        }
    }

    /// One request as received.
    #[derive(Debug, Clone)]
    pub struct Got {
        pub head: String,
        pub body: Vec<u8>,
    }

    impl Got {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
        }
    }

    pub struct Server {
        pub port: u16,
        pub got: Arc<Mutex<Vec<Got>>>,
        /// TLS handshakes that failed (the client refused us).
        pub refused: Arc<Mutex<usize>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        pub fn requests(&self) -> Vec<Got> {
            self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }

        /// Failed TLS handshakes, waiting up to 5 s for `want` (the server side may record
        /// its failure after the client has already given up).
        pub async fn refused_eventually(&self, want: usize) -> usize {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let n = *self.refused.lock().unwrap_or_else(|p| p.into_inner());
                if n >= want || tokio::time::Instant::now() > deadline {
                    return n;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    /// Serve `answer` (raw bytes) to every request; TLS with `ca`'s leaf when given.
    pub async fn start(ca: Option<&TestCa>, answer: Vec<u8>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = ca.map(|ca| {
            let cfg = rustls::ServerConfig::builder_with_provider(crate::sip::tls::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(ca.leaf.clone(), PrivateKeyDer::Pkcs8(ca.key.clone_key()))
                .expect("server cert");
            tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        });
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let refused: Arc<Mutex<usize>> = Arc::default();
        let (g, r) = (got.clone(), refused.clone());
        let answer = Arc::new(answer);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (g, r, answer, acceptor) =
                    (g.clone(), r.clone(), answer.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        Some(a) => match a.accept(tcp).await {
                            Ok(s) => serve(s, &g, &answer).await,
                            Err(_) => *r.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                        },
                        None => serve(tcp, &g, &answer).await,
                    }
                });
            }
        });
        Server {
            port,
            got,
            refused,
            task,
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        got: &Mutex<Vec<Got>>,
        answer: &[u8],
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut req = Got {
            head,
            body: Vec::new(),
        };
        let len: usize = req
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + len {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        req.body = buf[head_end + 4..head_end + 4 + len].to_vec();
        got.lock().unwrap_or_else(|p| p.into_inner()).push(req);
        let _ = s.write_all(answer).await;
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{start, TestCa};
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid URL")
    }

    #[test]
    fn urls() {
        let u = url("http://127.0.0.1:8080");
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "127.0.0.1", 8080, "/")
        );
        assert_eq!(url("http://example.net").port, 80);
        assert_eq!(url("https://example.net").port, 443);
        assert_eq!(url("HTTPS://example.net/a?b=c").path, "/a?b=c");
        assert_eq!(url("https://example.net:8443/sms/send").port, 8443);
        let v6 = url("https://[::1]:9000/x");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        assert_eq!(v6.authority(), "[::1]:9000");
        assert_eq!(v6.to_string(), "https://[::1]:9000/x");
        let base = url("http://example.net:81/sb/");
        assert_eq!(base.join("/api/campaigns").path, "/sb/api/campaigns");
        assert_eq!(url("http://x").join("/api").path, "/api");
        for bad in [
            "ftp://x",
            "127.0.0.1:8080",
            "/just/a/path",
            "http://",
            "http://:80",
            "http://x:0",
            "http://x:99999",
            "http://x:abc",
            "http://u:p@x",
            "http://x/#frag",
            "http://[::1",
            "http://x/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn no_header_injection() {
        let r = Request::new(Method::GET, url("http://x/")).bearer(Some("a\r\nX-Evil: 1"));
        assert!(matches!(build(&r, "x:80"), Err(HttpError::BadRequest(_))));
    }

    fn client(timeout_ms: u64, max_body: usize, ca: Option<&Path>) -> HttpClient {
        HttpClient::new(
            Duration::from_millis(timeout_ms),
            max_body,
            ca.map(|p| ("ca_file", p)),
        )
        .expect("client")
    }

    #[tokio::test]
    async fn https_with_the_extra_ca_carries_the_request() {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = ca.write_ca(dir.path());
        let srv = start(
            Some(&ca),
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
        )
        .await;
        for host in ["127.0.0.1", "localhost"] {
            let u = url(&format!("https://{host}:{}/sms/send?x=1", srv.port));
            let r = client(5000, DEFAULT_MAX_BODY, Some(&ca_file))
                .send(
                    Request::new(Method::POST, u)
                        .bearer(Some("tok-1"))
                        .header(HeaderName::from_static("idempotency-key"), "k-1")
                        .json(&serde_json::json!({"to": "+1555"})),
                )
                .await
                .expect("answer");
            assert_eq!((r.status, &r.body[..]), (201, &b"{}"[..]));
            assert_eq!(r.reason(), "Created");
        }
        let got = srv.requests();
        assert_eq!(got.len(), 2);
        assert!(got[0].head.starts_with("POST /sms/send?x=1 HTTP/1.1"));
        assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
        assert_eq!(got[0].header("idempotency-key"), Some("k-1"));
        assert_eq!(got[0].header("content-type"), Some("application/json"));
        assert_eq!(
            got[0].header("host"),
            Some(&*format!("127.0.0.1:{}", srv.port))
        );
        assert_eq!(got[0].body, br#"{"to":"+1555"}"#);
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_refused_before_anything_is_sent() {
        let ca = TestCa::new();
        let srv = start(Some(&ca), b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).await;
        // Only the Mozilla roots; then a bundle with another CA.
        let other = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let other_file = other.write_ca(dir.path());
        for c in [
            client(5000, DEFAULT_MAX_BODY, None),
            client(5000, DEFAULT_MAX_BODY, Some(&other_file)),
        ] {
            let e = c
                .send(
                    Request::new(
                        Method::POST,
                        url(&format!("https://127.0.0.1:{}/", srv.port)),
                    )
                    .bearer(Some("secret")),
                )
                .await
                .expect_err("refused");
            assert!(matches!(e, HttpError::Tls { .. }), "{e:?}");
            assert!(e.not_sent());
            assert!(e.to_string().contains("certificate"), "{e}");
        }
        assert!(srv.requests().is_empty());
        assert_eq!(srv.refused_eventually(2).await, 2);
        // A plain-HTTP server behind an https:// URL: refused too, nothing sent in clear.
        let plain = start(None, b"HTTP/1.1 200 OK\r\n\r\n".to_vec()).await;
        let e = client(2000, DEFAULT_MAX_BODY, None)
            .send(Request::new(
                Method::GET,
                url(&format!("https://127.0.0.1:{}/", plain.port)),
            ))
            .await
            .expect_err("not TLS");
        assert!(e.not_sent(), "{e:?}");
        assert!(plain.requests().is_empty());
    }

    #[tokio::test]
    async fn status_body_bounds_and_failures() {
        // 500 with a body: a status, not an error.
        let srv = start(
            None,
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops".to_vec(),
        )
        .await;
        let u = url(&format!("http://127.0.0.1:{}/", srv.port));
        let r = client(5000, DEFAULT_MAX_BODY, None)
            .send(Request::new(Method::GET, u.clone()))
            .await
            .expect("answer");
        assert_eq!((r.status, &r.body[..]), (500, &b"oops"[..]));
        assert!(!r.is_success());

        // A body over the bound, announced or not: refused, with the status kept.
        let mut huge = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        huge.resize(huge.len() + 100_000, b'x');
        let mut unannounced = b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n".to_vec();
        unannounced.resize(unannounced.len() + 100_000, b'y');
        for (answer, want) in [(huge, 200), (unannounced, 202)] {
            let srv = start(None, answer).await;
            let e = client(5000, DEFAULT_MAX_BODY, None)
                .send(Request::new(
                    Method::GET,
                    url(&format!("http://127.0.0.1:{}/", srv.port)),
                ))
                .await
                .expect_err("too large");
            assert!(
                matches!(e, HttpError::TooLarge { status, limit, .. } if status == want && limit == DEFAULT_MAX_BODY),
                "{e:?}"
            );
            assert!(!e.not_sent());
        }

        // Not HTTP at all: a protocol error after sending.
        let srv = start(None, b"SIP/2.0 200 OK\r\n\r\n".to_vec()).await;
        let e = client(5000, DEFAULT_MAX_BODY, None)
            .send(Request::new(
                Method::GET,
                url(&format!("http://127.0.0.1:{}/", srv.port)),
            ))
            .await
            .expect_err("not HTTP");
        assert!(matches!(e, HttpError::Protocol { .. }), "{e:?}");
        assert!(!e.not_sent());

        // Silence after the request: a timeout that may have delivered it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hold = tokio::spawn(async move {
            let conn = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(conn);
        });
        let e = client(300, DEFAULT_MAX_BODY, None)
            .send(Request::new(
                Method::GET,
                url(&format!("http://127.0.0.1:{port}/")),
            ))
            .await
            .expect_err("silent");
        assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
        assert!(!e.not_sent());
        hold.abort();

        // Nobody listening: not sent.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let e = client(2000, DEFAULT_MAX_BODY, None)
            .send(Request::new(
                Method::GET,
                url(&format!("http://127.0.0.1:{port}/")),
            ))
            .await
            .expect_err("refused");
        assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
        assert!(e.not_sent());
    }

    #[test]
    fn a_bad_ca_file_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nope.pem");
        let e = HttpClient::new(Duration::from_secs(1), 1, Some(("[sms] ca_file", &p)))
            .expect_err("missing");
        assert!(e.to_string().contains("[sms] ca_file"), "{e}");
        std::fs::write(&p, "not pem").expect("write");
        let e = HttpClient::new(Duration::from_secs(1), 1, Some(("[sms] ca_file", &p)))
            .expect_err("empty");
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }
}
