//! SIP message model, parser and serializer (RFC 3261 §7, §20, §25).
//!
//! Owns the bytes → [`Message`] step and back. The parser is strict where RFC 3261 and the
//! RFC 4475 torture tests demand a `400 Bad Request`, liberal where they allow it, and never
//! panics: every failure is a [`ParseError`] whose text becomes the 400's reason phrase.
//!
//! Design notes (see docs/adr/0001-own-sip-core.md):
//! - Headers are kept in arrival order as `(name, value)` pairs with folded lines unfolded
//!   and compact names expanded, so a response can echo Via/From/To/Call-ID/CSeq verbatim.
//! - Structured views (Via, CSeq, name-addr) are parsed on demand by accessors, not eagerly:
//!   most messages only ever need four headers.
//! - Size limits are enforced before any allocation proportional to the input.

use bytes::Bytes;
use std::fmt::{self, Write as _};

use super::uri::{NameAddr, Uri};

/// Largest datagram or framed TCP message accepted (RFC 3261 §18.1.1 recommends MTU-sized
/// UDP; we accept up to what a UDP datagram can carry and cap TCP messages the same).
pub const MAX_MESSAGE_BYTES: usize = 65_507;
/// Largest header section; a 64 KiB header is an attack, not a phone.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in one message.
pub const MAX_HEADERS: usize = 128;

/// Why a message could not be accepted. `Display` is short and safe to put in a reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Empty message")]
    Empty,
    #[error("Message too large")]
    TooLarge,
    #[error("Header section too large")]
    HeadersTooLarge,
    #[error("Too many header fields")]
    TooManyHeaders,
    #[error("No end of header section")]
    Incomplete,
    #[error("Header section is not UTF-8")]
    NotUtf8,
    #[error("Malformed start line")]
    BadStartLine,
    #[error("Bad Request-URI")]
    BadRequestUri,
    #[error("Unsupported SIP version")]
    BadVersion,
    #[error("Bad status code")]
    BadStatusCode,
    #[error("Malformed header field")]
    BadHeader,
    #[error("Bad Content-Length")]
    BadContentLength,
    #[error("Body shorter than Content-Length")]
    BodyTruncated,
    #[error("Missing {0} header")]
    Missing(&'static str),
    #[error("Malformed {0} header")]
    Malformed(&'static str),
    #[error("CSeq method does not match request method")]
    CSeqMismatch,
}

impl ParseError {
    /// The status code a server answers for this error (RFC 3261 §8.2, RFC 4475 §3.1.2.16).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            ParseError::TooLarge | ParseError::HeadersTooLarge | ParseError::TooManyHeaders => 513,
            _ => 400,
        }
    }
}

/// A SIP method. Known methods are variants; anything else that is a valid token is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Refer,
    Notify,
    Subscribe,
    Update,
    Prack,
    Message,
    Publish,
    Other(Box<str>),
}

/// The method's name, e.g. for `metrics::Metrics::sip_request` (metrics does not know SIP).
impl AsRef<str> for Method {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return None;
        }
        // Methods are case-sensitive (RFC 3261 §7.1).
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.into()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: Uri },
    Response { code: u16, reason: String },
}

/// One header field, unfolded, name in canonical (long-form) spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// Header name: well-known ones by variant (compact forms expanded), others kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Supported,
    Allow,
    Expires,
    Authorization,
    WwwAuthenticate,
    UserAgent,
    Other(Box<str>),
}

impl HeaderName {
    pub fn parse(name: &str) -> HeaderName {
        // Compact forms from RFC 3261 §7.3.3 and the IANA registry.
        let known = [
            ("via", "v", HeaderName::Via),
            ("from", "f", HeaderName::From),
            ("to", "t", HeaderName::To),
            ("call-id", "i", HeaderName::CallId),
            ("cseq", "", HeaderName::CSeq),
            ("contact", "m", HeaderName::Contact),
            ("max-forwards", "", HeaderName::MaxForwards),
            ("content-length", "l", HeaderName::ContentLength),
            ("content-type", "c", HeaderName::ContentType),
            ("route", "", HeaderName::Route),
            ("record-route", "", HeaderName::RecordRoute),
            ("require", "", HeaderName::Require),
            ("proxy-require", "", HeaderName::ProxyRequire),
            ("supported", "k", HeaderName::Supported),
            ("allow", "", HeaderName::Allow),
            ("expires", "", HeaderName::Expires),
            ("authorization", "", HeaderName::Authorization),
            ("www-authenticate", "", HeaderName::WwwAuthenticate),
            ("user-agent", "", HeaderName::UserAgent),
        ];
        for (long, short, hn) in known {
            if name.eq_ignore_ascii_case(long)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
            {
                return hn;
            }
        }
        HeaderName::Other(name.into())
    }

    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Supported => "Supported",
            HeaderName::Allow => "Allow",
            HeaderName::Expires => "Expires",
            HeaderName::Authorization => "Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Other(s) => s,
        }
    }

    /// True when `other` names the same header (case-insensitive for unknown names).
    pub fn matches(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// Parsed CSeq header (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// Parsed Via header value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
}

/// Framing mode: over UDP the body runs to the end of the datagram when Content-Length is
/// absent (RFC 3261 §18.3); over a stream Content-Length is mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

/// Outcome of looking for one complete message at the head of a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// Need more bytes.
    Partial,
    /// Bytes of keep-alive CRLFs to discard (RFC 5626 §3.5.1 ping, answered with a pong by
    /// the transport).
    KeepAlive(usize),
    /// A complete message occupies the first `len` bytes.
    Message(usize),
}

/// Find the first complete message in a TCP/TLS/WS stream buffer (RFC 3261 §18.3).
pub fn frame_stream(buf: &[u8]) -> Result<StreamFrame, ParseError> {
    let leading = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if leading > 0 {
        return Ok(StreamFrame::KeepAlive(leading));
    }
    let Some(head_end) = find_subslice(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEADER_BYTES {
            return Err(ParseError::HeadersTooLarge);
        }
        return Ok(StreamFrame::Partial);
    };
    if head_end > MAX_HEADER_BYTES {
        return Err(ParseError::HeadersTooLarge);
    }
    let head = &buf[..head_end];
    let mut content_length: Option<usize> = None;
    for line in head.split(|b| *b == b'\n') {
        let line = trim_cr(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = trim_ascii(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = std::str::from_utf8(trim_ascii(&line[colon + 1..]))
                .map_err(|_| ParseError::BadContentLength)?;
            let n: usize = v.parse().map_err(|_| ParseError::BadContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(n);
        }
    }
    let Some(cl) = content_length else {
        return Err(ParseError::Missing("Content-Length"));
    };
    let total = head_end + 4 + cl;
    if total > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge);
    }
    if buf.len() < total {
        return Ok(StreamFrame::Partial);
    }
    Ok(StreamFrame::Message(total))
}

impl Message {
    /// Parse one message from `data`.
    pub fn parse(data: &[u8], framing: Framing) -> Result<Message, ParseError> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        // RFC 3261 §7.5: CRLFs before the start line are ignored.
        let start = data
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        let data = &data[start..];
        if data.is_empty() {
            return Err(ParseError::Empty);
        }
        let head_end = match find_subslice(data, b"\r\n\r\n") {
            Some(i) => i,
            None => {
                if data.len() > MAX_HEADER_BYTES {
                    return Err(ParseError::HeadersTooLarge);
                }
                return Err(ParseError::Incomplete);
            }
        };
        if head_end > MAX_HEADER_BYTES {
            return Err(ParseError::HeadersTooLarge);
        }
        let head = std::str::from_utf8(&data[..head_end]).map_err(|_| ParseError::NotUtf8)?;
        let rest = &data[head_end + 4..];

        let mut lines = LogicalLines::new(head);
        let first = lines.next().ok_or(ParseError::BadStartLine)?;
        let start_line = parse_start_line(&first)?;

        let mut headers: Vec<Header> = Vec::with_capacity(16);
        for line in lines {
            if headers.len() >= MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            let colon = line.find(':').ok_or(ParseError::BadHeader)?;
            let name = line[..colon].trim_end_matches([' ', '\t']);
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::BadHeader);
            }
            let value = line[colon + 1..].trim_matches([' ', '\t']).to_string();
            headers.push(Header {
                name: HeaderName::parse(name),
                value,
            });
        }

        let mut content_length: Option<usize> = None;
        for h in headers
            .iter()
            .filter(|h| h.name == HeaderName::ContentLength)
        {
            let n: usize = h
                .value
                .trim()
                .parse()
                .map_err(|_| ParseError::BadContentLength)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ParseError::BadContentLength);
            }
            content_length = Some(n);
        }
        let body = match (content_length, framing) {
            (Some(n), _) if n > rest.len() => return Err(ParseError::BodyTruncated),
            // Octets past Content-Length in a datagram are discarded (RFC 3261 §18.3).
            (Some(n), _) => Bytes::copy_from_slice(&rest[..n]),
            (None, Framing::Datagram) => Bytes::copy_from_slice(rest),
            (None, Framing::Stream) => return Err(ParseError::Missing("Content-Length")),
        };
        Ok(Message {
            start: start_line,
            headers,
            body,
        })
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&Uri> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// First value of a header (whole field value; comma lists not split).
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.matches(name))
            .map(|h| h.value.as_str())
    }

    pub fn header_named(&self, name: &str) -> Option<&str> {
        self.header(&HeaderName::parse(name))
    }

    /// All values of a header, comma-separated lists split (RFC 3261 §7.3.1), in order.
    pub fn header_values<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.matches(name))
            .flat_map(|h| split_comma_list(&h.value))
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self
            .header(&HeaderName::CallId)
            .ok_or(ParseError::Missing("Call-ID"))?;
        if v.is_empty() || v.contains([' ', '\t']) {
            return Err(ParseError::Malformed("Call-ID"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let mut count = 0;
        let mut found = None;
        for h in self.headers.iter().filter(|h| h.name == HeaderName::CSeq) {
            count += 1;
            found = Some(h.value.as_str());
        }
        if count > 1 {
            return Err(ParseError::Malformed("CSeq"));
        }
        let v = found.ok_or(ParseError::Missing("CSeq"))?;
        let mut parts = v.split([' ', '\t']).filter(|p| !p.is_empty());
        let seq = parts.next().ok_or(ParseError::Malformed("CSeq"))?;
        let method = parts.next().ok_or(ParseError::Malformed("CSeq"))?;
        if parts.next().is_some() || seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Malformed("CSeq"));
        }
        // RFC 3261 §8.1.1.5: the sequence number must be < 2**31.
        let seq: u32 = seq.parse().map_err(|_| ParseError::Malformed("CSeq"))?;
        if seq >= 1 << 31 {
            return Err(ParseError::Malformed("CSeq"));
        }
        let method = Method::parse(method).ok_or(ParseError::Malformed("CSeq"))?;
        Ok(CSeq { seq, method })
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let v = self
            .header_values(&HeaderName::Via)
            .next()
            .ok_or(ParseError::Missing("Via"))?;
        parse_via(v).ok_or(ParseError::Malformed("Via"))
    }

    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.header_values(&HeaderName::Via)
            .map(|v| parse_via(v).ok_or(ParseError::Malformed("Via")))
            .collect()
    }

    pub fn from_header(&self) -> Result<NameAddr, ParseError> {
        single_name_addr(self, &HeaderName::From, "From")
    }

    pub fn to_header(&self) -> Result<NameAddr, ParseError> {
        single_name_addr(self, &HeaderName::To, "To")
    }

    pub fn contact(&self) -> Option<NameAddr> {
        self.header_values(&HeaderName::Contact)
            .next()
            .and_then(|v| NameAddr::parse(v).ok())
    }

    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        match self.header(&HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => {
                // 1*DIGIT (leading zeros allowed, RFC 4475 wsinv has "0068"), value 0..=255.
                let v = v.trim();
                if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::Malformed("Max-Forwards"));
                }
                v.parse::<u32>()
                    .ok()
                    .and_then(|n| u8::try_from(n).ok())
                    .map(Some)
                    .ok_or(ParseError::Malformed("Max-Forwards"))
            }
        }
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header(&HeaderName::ContentType)
    }

    /// Check what every request must carry (RFC 3261 §8.1.1, §8.2) and that the pieces we rely
    /// on parse. Run before a request reaches any transaction.
    pub fn validate_request(&self) -> Result<(), ParseError> {
        let StartLine::Request { method, .. } = &self.start else {
            return Ok(());
        };
        self.top_via()?;
        self.vias()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if &cseq.method != method {
            return Err(ParseError::CSeqMismatch);
        }
        self.from_header()?;
        self.to_header()?;
        self.max_forwards()?;
        Ok(())
    }

    /// Check a response: a response that fails this is silently dropped (RFC 4475 §3.1.2.17).
    pub fn validate_response(&self) -> Result<(), ParseError> {
        self.top_via()?;
        self.call_id()?;
        self.cseq()?;
        self.from_header()?;
        self.to_header()?;
        Ok(())
    }

    /// Serialize. Content-Length is always (re)written from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for h in &self.headers {
            if h.name == HeaderName::ContentLength {
                continue;
            }
            out.push_str(h.name.as_str());
            out.push_str(": ");
            out.push_str(&h.value);
            out.push_str("\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    pub fn push_header(&mut self, name: HeaderName, value: impl Into<String>) {
        self.headers.push(Header {
            name,
            value: value.into(),
        });
    }

    pub fn set_header(&mut self, name: HeaderName, value: impl Into<String>) {
        self.headers.retain(|h| !h.name.matches(&name));
        self.headers.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Build a response to this request (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq
    /// copied; a To tag added when given and none is present.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut headers = Vec::with_capacity(10);
        for h in &self.headers {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    headers.push(h.clone())
                }
                HeaderName::To => {
                    let mut value = h.value.clone();
                    if let Some(tag) = to_tag {
                        let has_tag = NameAddr::parse(&h.value)
                            .map(|na| na.tag().is_some())
                            .unwrap_or(false);
                        if !has_tag {
                            value.push_str(";tag=");
                            value.push_str(tag);
                        }
                    }
                    headers.push(Header {
                        name: HeaderName::To,
                        value,
                    });
                }
                _ => {}
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Bytes::new(),
        }
    }
}

fn single_name_addr(
    msg: &Message,
    name: &HeaderName,
    label: &'static str,
) -> Result<NameAddr, ParseError> {
    let mut it = msg.headers.iter().filter(|h| h.name == *name);
    let h = it.next().ok_or(ParseError::Missing(label))?;
    if it.next().is_some() {
        return Err(ParseError::Malformed(label));
    }
    NameAddr::parse(&h.value).map_err(|_| ParseError::Malformed(label))
}

/// Iterator over logical header lines: a line starting with SP/HT continues the previous one
/// (RFC 3261 §7.3.1), replaced by a single space.
struct LogicalLines<'a> {
    raw: std::iter::Peekable<std::str::Split<'a, &'static str>>,
}

impl<'a> LogicalLines<'a> {
    fn new(head: &'a str) -> Self {
        LogicalLines {
            raw: head.split("\r\n").peekable(),
        }
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        let first = self.raw.next()?;
        let mut line = first.to_string();
        while let Some(next) = self.raw.peek() {
            if next.starts_with([' ', '\t']) {
                let cont = next.trim_start_matches([' ', '\t']);
                let trimmed = line.trim_end_matches([' ', '\t']).len();
                line.truncate(trimmed);
                line.push(' ');
                line.push_str(cont);
                self.raw.next();
            } else {
                break;
            }
        }
        Some(line)
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = rest.splitn(3, ' ');
        let version = parts.next().ok_or(ParseError::BadStartLine)?;
        if version != "2.0" {
            return Err(ParseError::BadVersion);
        }
        let code = parts.next().ok_or(ParseError::BadStartLine)?;
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadStatusCode);
        }
        let code: u16 = code.parse().map_err(|_| ParseError::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        let reason = parts.next().unwrap_or("").to_string();
        return Ok(StartLine::Response { code, reason });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces.
    let mut parts = line.split(' ');
    let method = parts.next().ok_or(ParseError::BadStartLine)?;
    let uri = parts.next().ok_or(ParseError::BadStartLine)?;
    let version = parts.next().ok_or(ParseError::BadStartLine)?;
    if parts.next().is_some() {
        // LWS inside the Request-URI or trailing whitespace (RFC 4475 lwsruri, trws).
        return Err(ParseError::BadRequestUri);
    }
    let method = Method::parse(method).ok_or(ParseError::BadStartLine)?;
    if !version.starts_with("SIP/") {
        return Err(ParseError::BadStartLine);
    }
    if version != "SIP/2.0" {
        return Err(ParseError::BadVersion);
    }
    if uri.starts_with('<') {
        return Err(ParseError::BadRequestUri);
    }
    let uri = Uri::parse(uri).map_err(|_| ParseError::BadRequestUri)?;
    Ok(StartLine::Request { method, uri })
}

/// Parse `SIP/2.0/UDP host:port;params` (whitespace allowed around '/', ':' and ';').
pub fn parse_via(value: &str) -> Option<Via> {
    let (proto, rest) = split_sent_protocol(value)?;
    let mut segs = split_unquoted(rest, ';');
    let sent_by: String = segs
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let (host, port) = split_host_port(&sent_by)?;
    let mut params = Vec::new();
    for seg in segs {
        let seg = seg.trim();
        if seg.is_empty() {
            return None;
        }
        match seg.split_once('=') {
            Some((n, v)) => {
                let n = n.trim();
                let v = v.trim();
                if n.is_empty() || !n.bytes().all(is_token_byte) || v.is_empty() {
                    return None;
                }
                params.push((n.to_string(), Some(v.to_string())));
            }
            None => {
                if !seg.bytes().all(is_token_byte) {
                    return None;
                }
                params.push((seg.to_string(), None));
            }
        }
    }
    Some(Via {
        transport: proto,
        host,
        port,
        params,
    })
}

fn split_sent_protocol(value: &str) -> Option<(String, &str)> {
    // sent-protocol = protocol-name SLASH protocol-version SLASH transport, then LWS sent-by.
    let mut pieces = Vec::with_capacity(3);
    let mut rest = value.trim_start();
    for i in 0..3 {
        let end = rest
            .find(|c: char| !(c.is_ascii() && is_token_byte(c as u8)))
            .unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        pieces.push(&rest[..end]);
        rest = rest[end..].trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/')?.trim_start();
        }
    }
    if !pieces[0].eq_ignore_ascii_case("SIP") || pieces[1] != "2.0" {
        return None;
    }
    Some((pieces[2].to_ascii_uppercase(), rest))
}

/// Split `host[:port]`, host may be an `[IPv6]` reference.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let host = &s[..close + 2];
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b))
    {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_string(), port))
}

/// Split a comma-separated header list, ignoring commas inside quotes and `<>`.
pub fn split_comma_list(value: &str) -> impl Iterator<Item = &str> {
    split_unquoted(value, ',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The one scanner behind every "outside quoted strings" decision (RFC 3261 §25.1: a
/// quoted-pair `\x` inside quotes escapes one character): yields each character's byte
/// index, the character, and whether it stands outside quotes (quote marks and escapes
/// themselves count as inside).
pub struct Unquoted<'a> {
    chars: std::str::CharIndices<'a>,
    in_quote: bool,
    escaped: bool,
}

pub fn unquoted(value: &str) -> Unquoted<'_> {
    Unquoted {
        chars: value.char_indices(),
        in_quote: false,
        escaped: false,
    }
}

impl Unquoted<'_> {
    /// Consume the rest; true when a quoted string was left open.
    pub fn ends_in_quote(mut self) -> bool {
        for _ in self.by_ref() {}
        self.in_quote
    }
}

impl Iterator for Unquoted<'_> {
    type Item = (usize, char, bool);
    fn next(&mut self) -> Option<(usize, char, bool)> {
        let (i, c) = self.chars.next()?;
        if self.escaped {
            self.escaped = false;
            return Some((i, c, false));
        }
        match c {
            '\\' if self.in_quote => self.escaped = true,
            '"' => self.in_quote = !self.in_quote,
            _ => return Some((i, c, !self.in_quote)),
        }
        Some((i, c, false))
    }
}

/// Split on `sep` outside double quotes and angle brackets.
pub fn split_unquoted(value: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_angle = false;
    for (i, c, outside) in unquoted(value) {
        match c {
            '<' if outside => in_angle = true,
            '>' if outside => in_angle = false,
            c if c == sep && outside && !in_angle => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:hotline@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
From: \"Alice\" <sip:+15551230001@127.0.0.1:5070>;tag=abc\r\n\
To: <sip:hotline@127.0.0.1:5060>\r\n\
Call-ID: 1-test@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5070>\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_a_plain_invite() {
        let m = Message::parse(INVITE.as_bytes(), Framing::Datagram).expect("parse");
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(
            m.request_uri().map(|u| u.user.as_deref()),
            Some(Some("hotline"))
        );
        assert_eq!(m.call_id(), Ok("1-test@127.0.0.1"));
        assert_eq!(
            m.cseq(),
            Ok(CSeq {
                seq: 1,
                method: Method::Invite
            })
        );
        let via = m.top_via().expect("via");
        assert_eq!(via.branch(), Some("z9hG4bK-1"));
        assert_eq!(via.param("rport"), Some(None));
        assert_eq!(via.port, Some(5070));
        assert_eq!(m.from_header().expect("from").tag(), Some("abc"));
        assert_eq!(&m.body[..], b"v=0\n");
        m.validate_request().expect("valid");
    }

    #[test]
    fn round_trips_through_bytes() {
        let m = Message::parse(INVITE.as_bytes(), Framing::Datagram).expect("parse");
        let again = Message::parse(&m.to_bytes(), Framing::Stream).expect("reparse");
        assert_eq!(m, again);
    }

    #[test]
    fn unfolds_continuation_lines_and_compact_names() {
        let raw = "OPTIONS sip:x@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@h>\r\n ;tag=1\r\nt: sip:x@h\r\ni: c1\r\nCSeq: 2\r\n\tOPTIONS\r\nl: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes(), Framing::Datagram).expect("parse");
        assert_eq!(m.cseq().expect("cseq").seq, 2);
        assert_eq!(m.from_header().expect("from").tag(), Some("1"));
        m.validate_request().expect("valid");
    }

    #[test]
    fn content_length_rules() {
        let base = "OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        let longer = format!("{base}Content-Length: 10\r\n\r\nabc");
        assert_eq!(
            Message::parse(longer.as_bytes(), Framing::Datagram),
            Err(ParseError::BodyTruncated)
        );
        let shorter = format!("{base}Content-Length: 1\r\n\r\nabc");
        assert_eq!(
            &Message::parse(shorter.as_bytes(), Framing::Datagram)
                .expect("ok")
                .body[..],
            b"a"
        );
        let absent = format!("{base}\r\nabc");
        assert_eq!(
            &Message::parse(absent.as_bytes(), Framing::Datagram)
                .expect("ok")
                .body[..],
            b"abc"
        );
        assert_eq!(
            Message::parse(absent.as_bytes(), Framing::Stream),
            Err(ParseError::Missing("Content-Length"))
        );
        let negative = format!("{base}Content-Length: -999\r\n\r\n");
        assert_eq!(
            Message::parse(negative.as_bytes(), Framing::Datagram),
            Err(ParseError::BadContentLength)
        );
    }

    #[test]
    fn rejects_bad_requests_with_reasons() {
        let bad_version = "INVITE sip:x@h SIP/7.0\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(
            Message::parse(bad_version.as_bytes(), Framing::Datagram).map_err(|e| e.status()),
            Err(505)
        );
        let lws_uri = "INVITE sip:x@h;a=b c SIP/2.0\r\n\r\n";
        assert_eq!(
            Message::parse(lws_uri.as_bytes(), Framing::Datagram),
            Err(ParseError::BadRequestUri)
        );
        let mismatch = "OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let m = Message::parse(mismatch.as_bytes(), Framing::Datagram).expect("parses");
        assert_eq!(m.validate_request(), Err(ParseError::CSeqMismatch));
    }

    #[test]
    fn stream_framing() {
        let m = Message::parse(INVITE.as_bytes(), Framing::Datagram).expect("parse");
        let bytes = m.to_bytes();
        assert_eq!(frame_stream(&bytes[..10]), Ok(StreamFrame::Partial));
        assert_eq!(
            frame_stream(&bytes[..bytes.len() - 1]),
            Ok(StreamFrame::Partial)
        );
        assert_eq!(frame_stream(&bytes), Ok(StreamFrame::Message(bytes.len())));
        assert_eq!(frame_stream(b"\r\n\r\nINV"), Ok(StreamFrame::KeepAlive(4)));
    }

    #[test]
    fn builds_responses_with_to_tag() {
        let m = Message::parse(INVITE.as_bytes(), Framing::Datagram).expect("parse");
        let r = m.response(200, "OK", Some("srv1"));
        let again = Message::parse(&r.to_bytes(), Framing::Datagram).expect("reparse");
        assert_eq!(again.status(), Some(200));
        assert_eq!(again.to_header().expect("to").tag(), Some("srv1"));
        assert_eq!(again.call_id(), Ok("1-test@127.0.0.1"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            if let Ok(m) = Message::parse(&data, Framing::Datagram) {
                let _ = m.validate_request();
                let _ = m.to_bytes();
            }
            let _ = frame_stream(&data);
        }

        #[test]
        fn never_panics_on_mutated_invite(pos in 0usize..400, byte in proptest::prelude::any::<u8>()) {
            let mut data = INVITE.as_bytes().to_vec();
            let p = pos % data.len();
            data[p] = byte;
            if let Ok(m) = Message::parse(&data, Framing::Datagram) {
                let _ = m.validate_request();
                let _ = m.top_via();
                let _ = m.from_header();
            }
        }
    }
}

/// Build an error response for bytes that did not parse as a request, from whatever Via,
/// From, To, Call-ID and CSeq lines can be found (RFC 3261 §8.2: answer 400 when possible).
/// Returns None when the bytes are a response or carry no Via (nowhere to answer).
pub fn error_response_for_unparsed(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let start = data
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let data = &data[start..];
    if data.starts_with(b"SIP/") || data.is_empty() {
        return None;
    }
    let head_end = find_subslice(data, b"\r\n\r\n").unwrap_or(data.len().min(MAX_HEADER_BYTES));
    let head = String::from_utf8_lossy(&data[..head_end.min(MAX_HEADER_BYTES)]);
    let mut lines: Vec<String> = Vec::new();
    for raw in head.split("\r\n").skip(1) {
        if raw.starts_with([' ', '\t']) {
            if let Some(last) = lines.last_mut() {
                last.push(' ');
                last.push_str(raw.trim());
            }
        } else {
            lines.push(raw.to_string());
        }
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let mut has_via = false;
    for line in &lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let hn = HeaderName::parse(name.trim());
        if matches!(
            hn,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        ) {
            has_via |= hn == HeaderName::Via;
            let _ = write!(out, "{}: {}\r\n", hn.as_str(), value.trim());
        }
    }
    if !has_via {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod unparsed_tests {
    use super::*;

    #[test]
    fn answers_unparseable_requests_with_their_headers() {
        let raw = b"INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK9\r\nCall-ID: q\r\nContent-Length: -5\r\n\r\n";
        assert!(Message::parse(raw, Framing::Datagram).is_err());
        let resp = error_response_for_unparsed(raw, 400, "Bad Content-Length").expect("answer");
        let m = Message::parse(&resp, Framing::Datagram).expect("valid response");
        assert_eq!(m.status(), Some(400));
        assert_eq!(m.top_via().expect("via").branch(), Some("z9hG4bK9"));
        assert!(
            error_response_for_unparsed(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 400, "x").is_none()
        );
        assert!(error_response_for_unparsed(b"garbage", 400, "x").is_none());
    }
}
