//! A minimal HTTP/1.1 client for the operator commands (`switchboard campaign ...`): one
//! request per connection (`Connection: close`) over `tokio::net::TcpStream`, plain `http://`
//! only, responses framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//! connection.
//!
//! Parsing is sans-IO ([`ResponseParser`]): bytes are fed as they arrive and the parser says
//! when the response is complete, so a server that keeps the connection open after a framed
//! answer does not make us wait. Everything read from the network is bounded (head size,
//! body size, whole-request timeout) and nothing read from it is unwrapped.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest response body accepted.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why a request failed before an HTTP status was received.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("server URL '{url}': {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no complete answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error("the connection closed before the response was complete")]
    Truncated,
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// Where the server is: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none), put before every request path.
    pub prefix: String,
}

impl ServerUrl {
    pub fn parse(url: &str) -> Result<ServerUrl, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http:// (https is not supported)"))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        if authority.contains('@') {
            return Err(bad("must not contain user information"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in the host"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host contains whitespace"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path contains whitespace"));
        }
        Ok(ServerUrl {
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// `host:port` as used for connecting and in the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.prefix)
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Header names lower-cased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The request bytes: `path` is appended to the URL's prefix and must start with '/'.
pub fn build_request(
    url: &ServerUrl,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, HttpError> {
    let clean = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::BadRequest(
            "the method must be upper-case letters",
        ));
    }
    if !path.starts_with('/') || !clean(path) {
        return Err(HttpError::BadRequest(
            "the request path must start with '/' and contain no spaces",
        ));
    }
    if let Some(t) = token {
        if t.is_empty() || !clean(t) {
            return Err(HttpError::BadRequest(
                "the API token must be non-empty, without spaces or control characters",
            ));
        }
    }
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: switchboard-cli/{}\r\n\
         Accept: application/json\r\nConnection: close\r\n",
        url.prefix,
        url.authority(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Ok(bytes)
}

/// How the body of the response being parsed is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    /// 1xx, 204, 304 and answers to HEAD carry no body.
    Empty,
}

/// Incremental response parser: `feed` bytes as they arrive, `finish` at end of stream.
#[derive(Debug, Default)]
pub struct ResponseParser {
    buf: Vec<u8>,
    /// The request was HEAD: no body whatever the headers say.
    head_request: bool,
}

impl ResponseParser {
    pub fn new(head_request: bool) -> ResponseParser {
        ResponseParser {
            buf: Vec::new(),
            head_request,
        }
    }

    /// Add received bytes; `Ok(Some)` once the response is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Response>, HttpError> {
        self.buf.extend_from_slice(bytes);
        self.parse(false)
    }

    /// The peer closed the connection: the response, or why it is incomplete.
    pub fn finish(&mut self) -> Result<Response, HttpError> {
        self.parse(true)?.ok_or(HttpError::Truncated)
    }

    fn parse(&self, eof: bool) -> Result<Option<Response>, HttpError> {
        parse_response(&self.buf, self.head_request, eof)
    }
}

/// Parse one response from `buf`; interim answers (100 Continue, ...) before it are skipped.
fn parse_response(
    mut buf: &[u8],
    head_request: bool,
    eof: bool,
) -> Result<Option<Response>, HttpError> {
    loop {
        let Some(head_end) = find(buf, b"\r\n\r\n") else {
            if buf.len() > MAX_HEAD {
                return Err(HttpError::TooLarge(MAX_HEAD));
            }
            return Ok(None);
        };
        if head_end > MAX_HEAD {
            return Err(HttpError::TooLarge(MAX_HEAD));
        }
        let (status, reason, headers) = parse_head(&buf[..head_end])?;
        let rest = &buf[head_end + 4..];
        if (100..200).contains(&status) && status != 101 {
            buf = rest;
            continue;
        }
        let body = match framing(status, &headers, head_request)? {
            Framing::Empty => Some(Vec::new()),
            Framing::Length(n) => {
                if n > MAX_BODY {
                    return Err(HttpError::TooLarge(MAX_BODY));
                }
                rest.get(..n).map(<[u8]>::to_vec)
            }
            Framing::Chunked => dechunk(rest)?,
            Framing::UntilClose => {
                if rest.len() > MAX_BODY {
                    return Err(HttpError::TooLarge(MAX_BODY));
                }
                eof.then(|| rest.to_vec())
            }
        };
        return Ok(body.map(|body| Response {
            status,
            reason,
            headers,
            body,
        }));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

type Head = (u16, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::Malformed("the response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!(
            "not an HTTP/1.x status line: {:?}",
            truncate(status_line, 80)
        )));
    }
    let status = parts
        .next()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| {
            HttpError::Malformed(format!(
                "bad status code in {:?}",
                truncate(status_line, 80)
            ))
        })?;
    let reason = parts.next().unwrap_or_default().trim().to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            HttpError::Malformed(format!("bad header line {:?}", truncate(line, 80)))
        })?;
        if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            return Err(HttpError::Malformed(format!(
                "bad header name {:?}",
                truncate(name, 80)
            )));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((status, reason, headers))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn framing(
    status: u16,
    headers: &[(String, String)],
    head_request: bool,
) -> Result<Framing, HttpError> {
    if head_request || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let te: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if let Some(last) = te.last() {
        // RFC 9112 §6.3: chunked must be last; anything else is read until close.
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length: Option<usize> = None;
    for (_, v) in headers.iter().filter(|(n, _)| n == "content-length") {
        for item in v.split(',') {
            let n = item
                .trim()
                .parse::<usize>()
                .map_err(|_| HttpError::Malformed(format!("bad Content-Length {v:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed(
                    "conflicting Content-Length headers".into(),
                ));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Decode a chunked body: `Ok(None)` while incomplete (trailers are read and dropped).
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            if data.len() > 1024 {
                return Err(HttpError::Malformed("chunk size line too long".into()));
            }
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..eol])
            .map_err(|_| HttpError::Malformed("chunk size line is not UTF-8".into()))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 15 {
            return Err(HttpError::Malformed(format!(
                "bad chunk size {:?}",
                truncate(line, 40)
            )));
        }
        let size = usize::from_str_radix(size_text, 16).map_err(|_| {
            HttpError::Malformed(format!("bad chunk size {:?}", truncate(line, 40)))
        })?;
        data = &data[eol + 2..];
        if size == 0 {
            // Trailer section: header lines until an empty line.
            loop {
                let Some(eol) = find(data, b"\r\n") else {
                    return Ok(None);
                };
                if eol == 0 {
                    return Ok(Some(out));
                }
                data = &data[eol + 2..];
            }
        }
        if out.len().saturating_add(size) > MAX_BODY {
            return Err(HttpError::TooLarge(MAX_BODY));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed(
                "chunk data not followed by CRLF".into(),
            ));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One request per connection, with a time limit on the whole exchange.
#[derive(Debug, Clone)]
pub struct Client {
    pub url: ServerUrl,
    pub token: Option<String>,
    pub timeout: Duration,
}

impl Client {
    pub fn new(url: ServerUrl, token: Option<String>) -> Client {
        Client {
            url,
            token,
            timeout: Duration::from_secs(30),
        }
    }

    /// Send `method path` with an optional JSON body and read the whole answer. Any HTTP
    /// status is `Ok`; errors are about reaching the server or understanding its answer.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let bytes = build_request(&self.url, method, path, self.token.as_deref(), body)?;
        let addr = self.url.authority();
        let exchange = async {
            let mut stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
                .await
                .map_err(|source| HttpError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            let io = |source| HttpError::Io {
                addr: addr.clone(),
                source,
            };
            stream.write_all(&bytes).await.map_err(io)?;
            stream.flush().await.map_err(io)?;
            let mut parser = ResponseParser::new(method == "HEAD");
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match stream.read(&mut buf).await {
                    Ok(n) => n,
                    // Some servers reset instead of closing after a complete answer.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                    Err(e) => return Err(io(e)),
                };
                if n == 0 {
                    return parser.finish();
                }
                if let Some(resp) = parser.feed(&buf[..n])? {
                    return Ok(resp);
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                addr,
                timeout: self.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> ServerUrl {
        ServerUrl::parse(s).expect("valid URL")
    }

    fn parse_all(bytes: &[u8]) -> Result<Response, HttpError> {
        let mut p = ResponseParser::new(false);
        match p.feed(bytes)? {
            Some(r) => Ok(r),
            None => p.finish(),
        }
    }

    /// Feed one byte at a time: the result must not depend on how reads split the stream.
    fn parse_bytewise(bytes: &[u8]) -> Result<Response, HttpError> {
        let mut p = ResponseParser::new(false);
        for b in bytes {
            if let Some(r) = p.feed(std::slice::from_ref(b))? {
                return Ok(r);
            }
        }
        p.finish()
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("http://127.0.0.1:8080"),
            ServerUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                prefix: String::new()
            }
        );
        assert_eq!(url("http://example.net").port, 80);
        assert_eq!(url("http://example.net/").prefix, "");
        assert_eq!(url("http://example.net:81/sb/").prefix, "/sb");
        let v6 = url("http://[::1]:9000");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9000));
        assert_eq!(v6.authority(), "[::1]:9000");
        assert_eq!(v6.to_string(), "http://[::1]:9000");
        for bad in [
            "https://x",
            "127.0.0.1:8080",
            "http://",
            "http://:80",
            "http://x:0",
            "http://x:99999",
            "http://x:abc",
            "http://u:p@x",
            "http://x/?a=b",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn request_bytes() {
        let u = url("http://127.0.0.1:8080/pfx");
        let r =
            build_request(&u, "POST", "/api/campaigns", Some("tok"), Some(b"{}")).expect("request");
        let text = String::from_utf8(r).expect("utf8");
        assert!(text.starts_with("POST /pfx/api/campaigns HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer tok\r\n"));
        assert!(text.contains("\r\nContent-Type: application/json\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\nContent-Length: 2\r\n\r\n{}"));

        let r = build_request(&u, "GET", "/x", None, None).expect("request");
        let text = String::from_utf8(r).expect("utf8");
        assert!(!text.contains("Authorization"));
        assert!(!text.contains("Content-Type"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));

        // No header injection through the token or the path.
        assert!(build_request(&u, "GET", "/x", Some("a\r\nX-Evil: 1"), None).is_err());
        assert!(build_request(&u, "GET", "/x y", None, None).is_err());
        assert!(build_request(&u, "GET", "x", None, None).is_err());
        assert!(build_request(&u, "get", "/x", None, None).is_err());
    }

    #[test]
    fn content_length() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\ncontent-length: 15\r\n\r\n{\"error\":\"no\"}\n";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            let r = r.expect("parsed");
            assert_eq!(r.status, 400);
            assert_eq!(r.reason, "Bad Request");
            assert_eq!(r.header("Content-Type"), Some("application/json"));
            assert_eq!(r.body, b"{\"error\":\"no\"}\n");
            assert!(!r.is_success());
        }
        // Complete as soon as Content-Length bytes are there, without waiting for the close.
        let mut p = ResponseParser::new(false);
        let r = p
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .expect("parsed")
            .expect("complete");
        assert_eq!(r.body, b"ok");
        assert!(r.is_success());
    }

    #[test]
    fn chunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: t\r\n\r\n";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            assert_eq!(r.expect("parsed").body, b"hello, chunked!");
        }
        let empty = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(parse_all(empty).expect("parsed").body, b"");
        // Chunked wins over Content-Length.
        let both =
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(parse_all(both).expect("parsed").body, b"ok");
    }

    #[test]
    fn until_close_and_empty() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        let mut p = ResponseParser::new(false);
        assert!(p.feed(raw).expect("ok so far").is_none());
        assert_eq!(p.finish().expect("parsed").body, b"all of it");

        let r = parse_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").expect("204");
        assert!(r.body.is_empty());

        let mut head = ResponseParser::new(true);
        let r = head
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            .expect("parsed")
            .expect("complete");
        assert!(r.body.is_empty());
    }

    #[test]
    fn interim_responses_are_skipped() {
        let raw =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
        for r in [parse_all(raw), parse_bytewise(raw)] {
            let r = r.expect("parsed");
            assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        }
    }

    #[test]
    fn incomplete_and_malformed() {
        // Closed early: truncated, never a partial body.
        for raw in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Len",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ] {
            assert!(
                matches!(parse_all(raw), Err(HttpError::Truncated)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        for raw in [
            &b"SIP/2.0 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\xff: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse_all(raw), Err(HttpError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(raw),
                parse_all(raw)
            );
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse_all(huge.as_bytes()),
            Err(HttpError::TooLarge(_))
        ));
        let endless_head = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(
            parse_all(&endless_head),
            Err(HttpError::TooLarge(_))
        ));
        let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n";
        assert!(matches!(parse_all(huge_chunk), Err(HttpError::TooLarge(_))));
    }

    /// A one-shot loopback server that reads the request head and answers `answer`.
    async fn serve_once(answer: &'static [u8]) -> (ServerUrl, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&got, b"\r\n\r\n").is_none() {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.expect("write");
            // Keep the connection open a while: the client must not wait for the close.
            tokio::time::sleep(Duration::from_secs(5)).await;
            got
        });
        (url(&format!("http://127.0.0.1:{port}")), task)
    }

    #[tokio::test]
    async fn round_trip_over_loopback() {
        let (u, task) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .await;
        let client = Client::new(u, Some("secret".into()));
        let started = std::time::Instant::now();
        let r = client
            .request("GET", "/api/campaigns/1", None)
            .await
            .expect("response");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(started.elapsed() < Duration::from_secs(4));
        task.abort();
    }

    #[tokio::test]
    async fn timeout_and_refused() {
        let (u, task) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").await;
        let mut client = Client::new(u, None);
        client.timeout = Duration::from_millis(300);
        let e = client.request("GET", "/", None).await;
        assert!(matches!(e, Err(HttpError::Timeout { .. })), "{e:?}");
        task.abort();

        // A port nobody listens on (bound then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let client = Client::new(url(&format!("http://127.0.0.1:{port}")), None);
        let e = client.request("GET", "/", None).await;
        assert!(matches!(e, Err(HttpError::Connect { .. })), "{e:?}");
    }
}
