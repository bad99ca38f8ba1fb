//! SIP digest authentication, sans-IO (RFC 3261 §22 and the `challenge`/`credentials`
//! grammar of §25.1, RFC 2617 §3, RFC 7616 §3, RFC 8760 SHA-256 digest for SIP).
//!
//! Owns the values of the `WWW-Authenticate`, `Proxy-Authenticate`, `Authorization` and
//! `Proxy-Authorization` headers: parsing and building them, computing and checking digest
//! responses, issuing and checking stateless nonces, and a bounded replay guard. Nothing here
//! reads the clock, the network or the account store: the time is an argument and stored
//! HA1 values come from a closure.
//!
//! Choices (security-relevant ones first):
//! - Accounts keep only HA1 = H(username:realm:password) for each algorithm ([`ha1`]); the
//!   server never needs the password.
//! - Nonces are stateless: `hex(timestamp ‖ salt ‖ HMAC-SHA256(secret, label ‖ timestamp ‖
//!   salt)[..16])`, 64 hex digits ([`NonceKey`]). A forged or mangled nonce is
//!   [`NonceStatus::Invalid`]; an authentic one older than the lifetime (or from the future,
//!   i.e. the clock stepped back) is [`NonceStatus::Stale`].
//! - [`verify`] reports [`AuthError::Stale`] only when the digest itself was right, so the
//!   `stale=true` re-challenge (RFC 7616 §3.3) never tells a password guesser anything.
//!   An unknown user costs the same hash work as a known one.
//! - qop: the server offers only `qop="auth"`. A response without qop (the RFC 2069 form) is
//!   accepted for MD5 only, for old phones; SHA-256 requires qop (RFC 8760 makes qop
//!   mandatory and RFC 7616 drops the RFC 2069 form). `auth-int` is refused on both sides.
//! - Algorithms: `MD5` and `SHA-256` only; `-sess` variants and anything else are
//!   [`AuthError::UnsupportedAlgorithm`]. A missing `algorithm` means MD5 (RFC 3261 §22.4).
//! - Parsing is liberal about layout (any order, case-insensitive names, LWS and folded lines,
//!   empty list elements, quoted or unquoted values) but strict about ambiguity: a repeated
//!   parameter is [`AuthError::DuplicateParam`], an unterminated quote or a control character
//!   is [`AuthError::Malformed`]. A scheme other than Digest is [`AuthError::NotDigest`]:
//!   the server treats those credentials as absent and challenges (RFC 4475 regaut01).
//! - Responses are compared in constant time; [`ReplayGuard`] refuses an exact replay of
//!   an authenticated request within a bounded window.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::message::{is_token_byte, HeaderName, Message};

type HmacSha256 = Hmac<Sha256>;

/// Default nonce lifetime: long enough for a human-paced INVITE retry, short enough that a
/// captured nonce soon goes stale.
pub const DEFAULT_NONCE_LIFETIME_SECS: u64 = 300;
/// Length of the random server secret behind [`NonceKey`].
pub const NONCE_SECRET_LEN: usize = 32;
/// How far in the future an authentic nonce timestamp may be before it counts as stale.
const NONCE_CLOCK_SKEW_SECS: u64 = 5;
const NONCE_TS_LEN: usize = 8;
const NONCE_SALT_LEN: usize = 8;
const NONCE_TAG_LEN: usize = 16;
const NONCE_RAW_LEN: usize = NONCE_TS_LEN + NONCE_SALT_LEN + NONCE_TAG_LEN;
/// Domain separation for the nonce MAC, so the secret is never usable for anything else.
const NONCE_MAC_LABEL: &[u8] = b"switchboard sip digest nonce v1\0";
/// Most parameters accepted in one challenge or credentials value.
const MAX_PARAMS: usize = 32;
/// Attacker-supplied text quoted in an error is cut to this many characters.
const MAX_ERROR_ECHO: usize = 32;
/// Stand-in HA1 hashed when the user is unknown, so that case takes the same time.
const DUMMY_HA1: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Why a challenge or credentials value was refused. `Display` is short and never echoes
/// more than a few characters of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The scheme is not Digest (e.g. RFC 4475 regaut01): treat the header as absent.
    #[error("unsupported authentication scheme {0}")]
    NotDigest(String),
    #[error("malformed digest value: {0}")]
    Malformed(&'static str),
    #[error("duplicate digest parameter {0}")]
    DuplicateParam(String),
    #[error("missing digest parameter {0}")]
    MissingParam(&'static str),
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    /// No qop with an algorithm that requires it (SHA-256).
    #[error("qop required")]
    QopRequired,
    #[error("realm mismatch")]
    RealmMismatch,
    /// The nonce is not one of ours (forged, mangled, or from another server secret).
    #[error("invalid nonce")]
    InvalidNonce,
    /// The digest was right but the nonce expired: re-challenge with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// No stored HA1 for this user and algorithm. Answer exactly as for [`AuthError::BadResponse`].
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong digest response")]
    BadResponse,
    /// The same authenticated request was already seen ([`ReplayGuard`]).
    #[error("replayed credentials")]
    Replay,
    /// None of the offered challenges could be parsed or answered.
    #[error("no usable digest challenge")]
    NoChallenge,
}

impl AuthError {
    /// True when the right answer is a fresh challenge with `stale=true`.
    pub fn is_stale(&self) -> bool {
        matches!(self, AuthError::Stale)
    }
}

/// Digest algorithm (RFC 7616 §3.2, RFC 8760 §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Name as written in the `algorithm` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm` value, case-insensitively. `-sess` variants are unsupported.
    pub fn parse(s: &str) -> Result<Algorithm, AuthError> {
        if s.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(AuthError::UnsupportedAlgorithm(clip(s)))
        }
    }

    /// Length of a digest in lowercase hex (32 for MD5, 64 for SHA-256).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }

    /// H(concatenation of `parts`).
    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Algorithm, AuthError> {
        Algorithm::parse(s)
    }
}

/// Quality of protection (RFC 7616 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qop {
    Auth,
    AuthInt,
}

impl Qop {
    pub fn as_str(self) -> &'static str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
        }
    }

    /// Parse one qop token, case-insensitively; unknown tokens are `None`.
    pub fn parse(s: &str) -> Option<Qop> {
        if s.eq_ignore_ascii_case("auth") {
            Some(Qop::Auth)
        } else if s.eq_ignore_ascii_case("auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// MD5 when the challenge names none.
    pub algorithm: Algorithm,
    /// `None`: no qop offered (RFC 2069 server). `Some`: the known qop values offered, in
    /// order, without duplicates (may be empty if only unknown ones were offered).
    pub qop: Option<Vec<Qop>>,
    pub opaque: Option<String>,
    pub stale: bool,
    pub domain: Option<String>,
}

/// Parsed `Authorization` / `Proxy-Authorization` Digest credentials. Values are unquoted
/// and unescaped, exactly as they enter the digest computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `uri` parameter (digest-uri), which should equal the Request-URI.
    pub uri: String,
    /// Request digest in hex as sent (case preserved; compared case-insensitively).
    pub response: String,
    /// MD5 when the credentials name none.
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    /// Nonce count as sent (1 to 8 hex digits; RFC 3261 asks for exactly 8).
    pub nc: Option<String>,
    pub qop: Option<Qop>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// The nonce count as a number, when present.
    pub fn nc_value(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
    }
}

/// HA1 = H(username ":" realm ":" password) in lowercase hex: what an account stores,
/// once per algorithm (RFC 7616 §3.4.2).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    hex::encode(alg.hash(&[
        username.as_bytes(),
        b":",
        realm.as_bytes(),
        b":",
        password.as_bytes(),
    ]))
}

/// The request digest (`response` parameter) in lowercase hex, for qop=auth
/// (`qop = Some((qop, nc, cnonce))`, KD(HA1, nonce:nc:cnonce:qop:HA2)) or the RFC 2069 form
/// (`None`, KD(HA1, nonce:HA2)), with HA2 = H(method:uri). `ha1_hex` must be lowercase hex.
pub fn compute_response(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(Qop, &str, &str)>,
) -> String {
    hex::encode(response_digest(alg, ha1_hex, nonce, method, uri, qop))
}

fn response_digest(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    qop: Option<(Qop, &str, &str)>,
) -> Vec<u8> {
    let ha2 = hex::encode(alg.hash(&[method.as_bytes(), b":", uri.as_bytes()]));
    match qop {
        Some((qop, nc, cnonce)) => alg.hash(&[
            ha1_hex.as_bytes(),
            b":",
            nonce.as_bytes(),
            b":",
            nc.as_bytes(),
            b":",
            cnonce.as_bytes(),
            b":",
            qop.as_str().as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
        None => alg.hash(&[
            ha1_hex.as_bytes(),
            b":",
            nonce.as_bytes(),
            b":",
            ha2.as_bytes(),
        ]),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Parse a `WWW-Authenticate` / `Proxy-Authenticate` value. `realm` and `nonce` are required;
/// unknown parameters are ignored (RFC 7616 §3.3).
pub fn parse_challenge(value: &str) -> Result<Challenge, AuthError> {
    let mut realm = None;
    let mut nonce = None;
    let mut algorithm = Algorithm::Md5;
    let mut qop = None;
    let mut opaque = None;
    let mut stale = false;
    let mut domain = None;
    for (name, v) in parse_digest_params(value)? {
        match name.as_str() {
            "realm" => realm = Some(v),
            "nonce" => nonce = Some(v),
            "algorithm" => algorithm = Algorithm::parse(&v)?,
            "qop" => {
                let mut list = Vec::new();
                for q in v
                    .split(',')
                    .filter_map(|t| Qop::parse(t.trim_matches(is_lws_char)))
                {
                    if !list.contains(&q) {
                        list.push(q);
                    }
                }
                qop = Some(list);
            }
            "opaque" => opaque = Some(v),
            "stale" => stale = v.eq_ignore_ascii_case("true"),
            "domain" => domain = Some(v),
            _ => {}
        }
    }
    Ok(Challenge {
        realm: realm.ok_or(AuthError::MissingParam("realm"))?,
        nonce: nonce.ok_or(AuthError::MissingParam("nonce"))?,
        algorithm,
        qop,
        opaque,
        stale,
        domain,
    })
}

/// Parse an `Authorization` / `Proxy-Authorization` value. `username`, `realm`, `nonce`,
/// `uri` and `response` are required; with a qop, `cnonce` and `nc` are too.
pub fn parse_credentials(value: &str) -> Result<Credentials, AuthError> {
    let mut username = None;
    let mut realm = None;
    let mut nonce = None;
    let mut uri = None;
    let mut response = None;
    let mut algorithm = Algorithm::Md5;
    let mut cnonce = None;
    let mut nc = None;
    let mut qop = None;
    let mut opaque = None;
    for (name, v) in parse_digest_params(value)? {
        match name.as_str() {
            "username" => username = Some(v),
            "realm" => realm = Some(v),
            "nonce" => nonce = Some(v),
            "uri" => uri = Some(v),
            "response" => response = Some(v),
            "algorithm" => algorithm = Algorithm::parse(&v)?,
            "cnonce" => cnonce = Some(v),
            "nc" => {
                if v.is_empty() || v.len() > 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(AuthError::Malformed("nc is not 8 hex digits"));
                }
                nc = Some(v);
            }
            "qop" => qop = Some(Qop::parse(&v).ok_or_else(|| AuthError::UnsupportedQop(clip(&v)))?),
            "opaque" => opaque = Some(v),
            _ => {}
        }
    }
    if qop.is_some() {
        if cnonce.is_none() {
            return Err(AuthError::MissingParam("cnonce"));
        }
        if nc.is_none() {
            return Err(AuthError::MissingParam("nc"));
        }
    }
    Ok(Credentials {
        username: username.ok_or(AuthError::MissingParam("username"))?,
        realm: realm.ok_or(AuthError::MissingParam("realm"))?,
        nonce: nonce.ok_or(AuthError::MissingParam("nonce"))?,
        uri: uri.ok_or(AuthError::MissingParam("uri"))?,
        response: response.ok_or(AuthError::MissingParam("response"))?,
        algorithm,
        cnonce,
        nc,
        qop,
        opaque,
    })
}

/// Among the challenges of one 401/407 (one value per header, in message order), pick the
/// one to answer: the topmost that [`answer_challenge`] can answer properly (RFC 8760: the
/// server lists them most preferred first and the client uses the topmost it supports).
/// Unparseable, non-Digest, unsupported-algorithm and auth-int-only challenges are skipped.
pub fn select_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Challenge, AuthError> {
    values
        .into_iter()
        .filter_map(|v| parse_challenge(v).ok())
        .find(|ch| choose_qop(ch).is_ok())
        .ok_or(AuthError::NoChallenge)
}

/// The first Digest credentials for `realm` among a request's `Authorization` (or
/// `Proxy-Authorization`) values. Others' realms, other schemes and malformed values are
/// skipped: the caller challenges when this is `None`.
pub fn credentials_for_realm<'a>(
    values: impl IntoIterator<Item = &'a str>,
    realm: &str,
) -> Option<Credentials> {
    values
        .into_iter()
        .filter_map(|v| parse_credentials(v).ok())
        .find(|c| c.realm == realm)
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_lws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Control characters that may not appear in a header value (HTAB is allowed).
fn is_forbidden_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_lws(c)) {
        i += 1;
    }
    i
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_ERROR_ECHO).collect()
}

/// Split `Digest name=value, name="value", ...` into lowercased names and unquoted values.
fn parse_digest_params(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let b = value.as_bytes();
    let mut i = skip_lws(b, 0);
    let scheme_start = i;
    while b.get(i).is_some_and(|&c| is_token_byte(c)) {
        i += 1;
    }
    let scheme = value
        .get(scheme_start..i)
        .ok_or(AuthError::Malformed("auth scheme"))?;
    if scheme.is_empty() {
        return Err(AuthError::Malformed("missing auth scheme"));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest(clip(scheme)));
    }
    if b.get(i).is_some_and(|&c| !is_lws(c)) {
        return Err(AuthError::Malformed("auth scheme"));
    }

    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        // LWS and empty list elements (RFC 7230 §7 #rule) between parameters.
        while b.get(i).is_some_and(|&c| is_lws(c) || c == b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let name_start = i;
        while b.get(i).is_some_and(|&c| is_token_byte(c)) {
            i += 1;
        }
        let name = value
            .get(name_start..i)
            .filter(|n| !n.is_empty())
            .ok_or(AuthError::Malformed("parameter name"))?
            .to_ascii_lowercase();
        i = skip_lws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(AuthError::Malformed("expected '=' after parameter name"));
        }
        i = skip_lws(b, i + 1);
        let val = if b.get(i) == Some(&b'"') {
            let (v, next) = parse_quoted(b, i + 1)?;
            i = next;
            v
        } else {
            let start = i;
            while b
                .get(i)
                .is_some_and(|&c| !is_lws(c) && c != b',' && c != b'"' && !is_forbidden_ctl(c))
            {
                i += 1;
            }
            value
                .get(start..i)
                .filter(|v| !v.is_empty())
                .ok_or(AuthError::Malformed("empty parameter value"))?
                .to_string()
        };
        i = skip_lws(b, i);
        if b.get(i).is_some_and(|&c| c != b',') {
            return Err(AuthError::Malformed("expected ',' between parameters"));
        }
        if params.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::DuplicateParam(clip(&name)));
        }
        if params.len() >= MAX_PARAMS {
            return Err(AuthError::Malformed("too many parameters"));
        }
        params.push((name, val));
    }
    Ok(params)
}

/// Read a quoted-string body starting just after the opening quote; returns the unescaped
/// text and the index just past the closing quote. A folded line inside counts as one SP.
fn parse_quoted(b: &[u8], mut i: usize) -> Result<(String, usize), AuthError> {
    let mut out = Vec::new();
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                let s = String::from_utf8(out)
                    .map_err(|_| AuthError::Malformed("quoted string is not UTF-8"))?;
                return Ok((s, i + 1));
            }
            b'\\' => {
                let &e = b
                    .get(i + 1)
                    .ok_or(AuthError::Malformed("unterminated quoted string"))?;
                if is_forbidden_ctl(e) {
                    return Err(AuthError::Malformed("control character in quoted string"));
                }
                out.push(e);
                i += 2;
            }
            b'\r' | b'\n' => {
                // Folding: [CR] LF followed by at least one SP/HT.
                let mut j = i;
                if b.get(j) == Some(&b'\r') {
                    j += 1;
                }
                if b.get(j) != Some(&b'\n')
                    || !b.get(j + 1).is_some_and(|&w| w == b' ' || w == b'\t')
                {
                    return Err(AuthError::Malformed("line break in quoted string"));
                }
                j += 1;
                while b.get(j).is_some_and(|&w| w == b' ' || w == b'\t') {
                    j += 1;
                }
                out.push(b' ');
                i = j;
            }
            c if is_forbidden_ctl(c) => {
                return Err(AuthError::Malformed("control character in quoted string"));
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(AuthError::Malformed("unterminated quoted string"))
}

/// Append `s` as a quoted-string, escaping `"` and `\`. Control characters cannot appear
/// in a header value and are dropped (inputs that matter are validated before this).
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii() && is_forbidden_ctl(c as u8) => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------

/// What [`NonceKey::check_nonce`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceStatus {
    Valid,
    /// Ours, but past its lifetime (or timestamped in the future beyond the clock skew).
    Stale,
    /// Not ours: forged, truncated or mangled.
    Invalid,
}

/// The server secret behind stateless nonces. One per process (or shared by a cluster via
/// [`NonceKey::from_secret`]); restarting with a new secret turns outstanding nonces
/// [`NonceStatus::Invalid`], which costs clients one extra challenge.
#[derive(Clone)]
pub struct NonceKey {
    mac: HmacSha256,
    lifetime_secs: u64,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey")
            .field("secret", &"<redacted>")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish()
    }
}

impl NonceKey {
    /// A fresh random secret (from the thread-local CSPRNG) and the given nonce lifetime.
    pub fn new(lifetime_secs: u64) -> NonceKey {
        let mut secret = [0u8; NONCE_SECRET_LEN];
        rand::thread_rng().fill_bytes(&mut secret);
        NonceKey::from_secret(secret, lifetime_secs)
    }

    /// A key from a known secret (tests, or several servers sharing nonces).
    pub fn from_secret(secret: [u8; NONCE_SECRET_LEN], lifetime_secs: u64) -> NonceKey {
        // HMAC zero-pads keys shorter than the hash block (RFC 2104 §2); doing it here
        // gives the same MAC as `new_from_slice(&secret)` through the infallible `new`.
        let mut key = Key::<HmacSha256>::default();
        key[..NONCE_SECRET_LEN].copy_from_slice(&secret);
        NonceKey {
            mac: <HmacSha256 as KeyInit>::new(&key),
            lifetime_secs,
        }
    }

    pub fn lifetime_secs(&self) -> u64 {
        self.lifetime_secs
    }

    fn keyed(&self, ts: &[u8], salt: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(NONCE_MAC_LABEL);
        mac.update(ts);
        mac.update(salt);
        mac
    }

    /// A new nonce stamped `now_unix_secs`: 64 lowercase hex digits (timestamp, random salt,
    /// truncated HMAC), safe both quoted and as a token.
    pub fn issue_nonce(&self, now_unix_secs: u64) -> String {
        let ts = now_unix_secs.to_be_bytes();
        let mut salt = [0u8; NONCE_SALT_LEN];
        rand::thread_rng().fill_bytes(&mut salt);
        let tag = self.keyed(&ts, &salt).finalize().into_bytes();
        let mut raw = [0u8; NONCE_RAW_LEN];
        raw[..NONCE_TS_LEN].copy_from_slice(&ts);
        raw[NONCE_TS_LEN..NONCE_TS_LEN + NONCE_SALT_LEN].copy_from_slice(&salt);
        raw[NONCE_TS_LEN + NONCE_SALT_LEN..].copy_from_slice(&tag[..NONCE_TAG_LEN]);
        hex::encode(raw)
    }

    /// Check a nonce we may have issued, at time `now_unix_secs`. The MAC is compared in
    /// constant time before the timestamp is trusted.
    pub fn check_nonce(&self, nonce: &str, now_unix_secs: u64) -> NonceStatus {
        let mut raw = [0u8; NONCE_RAW_LEN];
        if hex::decode_to_slice(nonce, &mut raw).is_err() {
            return NonceStatus::Invalid;
        }
        let (ts, rest) = raw.split_at(NONCE_TS_LEN);
        let (salt, tag) = rest.split_at(NONCE_SALT_LEN);
        if self.keyed(ts, salt).verify_truncated_left(tag).is_err() {
            return NonceStatus::Invalid;
        }
        let mut ts_bytes = [0u8; NONCE_TS_LEN];
        ts_bytes.copy_from_slice(ts);
        let issued = u64::from_be_bytes(ts_bytes);
        if issued > now_unix_secs.saturating_add(NONCE_CLOCK_SKEW_SECS)
            || now_unix_secs.saturating_sub(issued) > self.lifetime_secs
        {
            NonceStatus::Stale
        } else {
            NonceStatus::Valid
        }
    }
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` value offering `qop="auth"`:
/// `Digest realm="...", nonce="...", [opaque="...", ]algorithm=MD5, qop="auth"[, stale=true]`.
pub fn challenge_header(
    realm: &str,
    nonce: &str,
    alg: Algorithm,
    stale: bool,
    opaque: Option<&str>,
) -> String {
    let mut s = String::with_capacity(realm.len() + nonce.len() + 80);
    s.push_str("Digest realm=");
    push_quoted(&mut s, realm);
    s.push_str(", nonce=");
    push_quoted(&mut s, nonce);
    if let Some(o) = opaque {
        s.push_str(", opaque=");
        push_quoted(&mut s, o);
    }
    s.push_str(", algorithm=");
    s.push_str(alg.as_str());
    s.push_str(", qop=\"auth\"");
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// Both challenges for one 401/407, in header order: SHA-256 first, then MD5 for older
/// clients (RFC 8760: most preferred first; a client answers the topmost it supports).
/// Same nonce in both; send each as its own header field.
pub fn challenge_headers(
    realm: &str,
    nonce: &str,
    stale: bool,
    opaque: Option<&str>,
) -> [String; 2] {
    [
        challenge_header(realm, nonce, Algorithm::Sha256, stale, opaque),
        challenge_header(realm, nonce, Algorithm::Md5, stale, opaque),
    ]
}

/// Check `creds` for a request with `method`, against our `realm` and nonce key at
/// `now_unix_secs`. `ha1_for` returns the stored HA1 (hex) of the user named in
/// `creds.username` for the given algorithm, or `None` if there is none.
///
/// Errors, in the order they are decided: [`AuthError::RealmMismatch`];
/// [`AuthError::UnsupportedQop`] / [`AuthError::QopRequired`] / [`AuthError::MissingParam`];
/// [`AuthError::InvalidNonce`]; [`AuthError::UnknownUser`]; [`AuthError::BadResponse`];
/// [`AuthError::Stale`] (right digest, expired nonce). Answer `Stale` with a `stale=true`
/// challenge and everything else with a plain fresh challenge (or 403).
///
/// Not checked here: that `creds.uri` matches the Request-URI, `opaque` (we issue none),
/// and replays (see [`ReplayGuard`]). Do not authenticate ACK or CANCEL (RFC 3261 §22.1).
pub fn verify(
    creds: &Credentials,
    method: &str,
    ha1_for: impl Fn(Algorithm) -> Option<String>,
    realm: &str,
    nonces: &NonceKey,
    now_unix_secs: u64,
) -> Result<(), AuthError> {
    if creds.realm != realm {
        return Err(AuthError::RealmMismatch);
    }
    let qop = match creds.qop {
        Some(Qop::Auth) => {
            let nc = creds.nc.as_deref().ok_or(AuthError::MissingParam("nc"))?;
            let cnonce = creds
                .cnonce
                .as_deref()
                .ok_or(AuthError::MissingParam("cnonce"))?;
            Some((Qop::Auth, nc, cnonce))
        }
        Some(Qop::AuthInt) => return Err(AuthError::UnsupportedQop(Qop::AuthInt.as_str().into())),
        // RFC 2069 compatibility, MD5 only.
        None if creds.algorithm == Algorithm::Md5 => None,
        None => return Err(AuthError::QopRequired),
    };
    let status = nonces.check_nonce(&creds.nonce, now_unix_secs);
    if status == NonceStatus::Invalid {
        return Err(AuthError::InvalidNonce);
    }
    let stored = ha1_for(creds.algorithm);
    let ha1 = stored.as_deref().unwrap_or(DUMMY_HA1).to_ascii_lowercase();
    let expected = response_digest(creds.algorithm, &ha1, &creds.nonce, method, &creds.uri, qop);
    let matches = hex::decode(&creds.response).is_ok_and(|given| ct_eq(&given, &expected));
    if stored.is_none() {
        return Err(AuthError::UnknownUser);
    }
    if !matches {
        return Err(AuthError::BadResponse);
    }
    if status == NonceStatus::Stale {
        return Err(AuthError::Stale);
    }
    Ok(())
}

/// Constant-time equality for equal-length inputs (lengths are public).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Refuses an exact replay of authenticated credentials: remembers a hash of
/// (nonce, cnonce, nc, response) for the last `capacity` successes, oldest evicted first.
///
/// Exact-match rather than "nc must grow": UDP reorders, and some phones restart nc with a
/// fresh cnonce. Including the response lets an RFC 2069 (no-qop) client reuse a nonce for
/// a different request while an identical replay is still refused. Only expired nonces can
/// safely fall out, so size it for at least (authentications per second × nonce lifetime).
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl ReplayGuard {
    /// A guard remembering up to `capacity` (at least 1) authentications; 32 bytes each plus
    /// set overhead.
    pub fn new(capacity: usize) -> ReplayGuard {
        let capacity = capacity.max(1);
        ReplayGuard {
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    /// Call after [`verify`] succeeded: records `creds`, or [`AuthError::Replay`] if
    /// they were already recorded. (Recording only verified credentials keeps an attacker
    /// from filling the window.)
    pub fn check_and_record(&mut self, creds: &Credentials) -> Result<(), AuthError> {
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [
                creds.nonce.as_str(),
                creds.cnonce.as_deref().unwrap_or(""),
                creds.nc.as_deref().unwrap_or(""),
                &creds.response.to_ascii_lowercase(),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
            h.finalize().into()
        };
        if !self.seen.insert(key) {
            return Err(AuthError::Replay);
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------

fn choose_qop(ch: &Challenge) -> Result<Option<Qop>, AuthError> {
    match &ch.qop {
        None => Ok(None),
        Some(list) if list.contains(&Qop::Auth) => Ok(Some(Qop::Auth)),
        Some(list) => Err(AuthError::UnsupportedQop(
            list.first().map_or("none", |q| q.as_str()).to_string(),
        )),
    }
}

/// A fresh client nonce: 16 random bytes in hex.
pub fn generate_cnonce() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Build the `Authorization` (401) or `Proxy-Authorization` (407) value answering `ch` for
/// a request `method uri`: qop=auth when offered, the challenge's algorithm, `opaque`
/// echoed. `nc` is the count of requests made with this nonce, starting at 1.
///
/// Never fails, and never produces an unsafe header: control characters are dropped from
/// quoted values, and a challenge offering only qops we cannot do (auth-int) is answered in
/// the RFC 2069 form. In those cases the digest will not verify and the peer challenges
/// again, which the caller treats as a failure. [`try_answer_challenge`] reports them
/// instead; [`select_challenge`] avoids unanswerable challenges up front.
pub fn answer_challenge(
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let qop = choose_qop(ch).unwrap_or(None);
    build_answer(ch, qop, method, uri, username, password, cnonce, nc)
}

/// [`answer_challenge`], but refusing what it would silently degrade: a challenge offering
/// only auth-int ([`AuthError::UnsupportedQop`]), a method that is not a token, and control
/// characters in `uri`, `username` or `cnonce` ([`AuthError::Malformed`]).
pub fn try_answer_challenge(
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(AuthError::Malformed("method is not a token"));
    }
    if [uri, username, cnonce]
        .iter()
        .any(|v| v.bytes().any(is_forbidden_ctl))
    {
        return Err(AuthError::Malformed("control character in credentials"));
    }
    let qop = choose_qop(ch)?;
    Ok(build_answer(
        ch, qop, method, uri, username, password, cnonce, nc,
    ))
}

/// Who challenged (RFC 3261 §22.2, §22.3): the far end with a 401 in `WWW-Authenticate`,
/// answered in `Authorization`, or a proxy with a 407 in `Proxy-Authenticate`, answered in
/// `Proxy-Authorization`. The one place a client (the trunk's INVITE, the REGISTER of
/// `trunk_reg`) decides which headers a challenge uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Www,
    Proxy,
}

impl ChallengeKind {
    /// The kind a final status asks for: 401 or 407, else none.
    pub fn for_status(code: u16) -> Option<ChallengeKind> {
        match code {
            401 => Some(ChallengeKind::Www),
            407 => Some(ChallengeKind::Proxy),
            _ => None,
        }
    }

    /// The header the challenge comes in.
    pub fn challenge_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => HeaderName::Other("Proxy-Authenticate".into()),
        }
    }

    /// The header that answers it on the next request.
    pub fn answer_header(self) -> HeaderName {
        match self {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::Other("Proxy-Authorization".into()),
        }
    }
}

/// The challenge a response asks a client to answer: `None` unless it is a 401 or a 407;
/// else its kind and the topmost challenge this module can answer ([`select_challenge`]
/// over the whole header values, never comma-split), or [`AuthError::NoChallenge`].
pub fn response_challenge(msg: &Message) -> Option<Result<(ChallengeKind, Challenge), AuthError>> {
    let kind = ChallengeKind::for_status(msg.status()?)?;
    let header = kind.challenge_header();
    let values = msg
        .headers
        .iter()
        .filter(|h| h.name.matches(&header))
        .map(|h| h.value.as_str());
    Some(select_challenge(values).map(|ch| (kind, ch)))
}

/// The header (name and value) answering `ch` on a new request `method uri`, with a fresh
/// client nonce: [`try_answer_challenge`] under the name `kind` calls for. `nc` counts the
/// requests made with this challenge's nonce, from 1.
pub fn answer_header(
    kind: ChallengeKind,
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    nc: u32,
) -> Result<(HeaderName, String), AuthError> {
    let cnonce = format!("{:016x}", rand::random::<u64>());
    let value = try_answer_challenge(ch, method, uri, username, password, &cnonce, nc)?;
    Ok((kind.answer_header(), value))
}

/// Why a client gives up on a challenge instead of answering it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefused {
    /// The challenge cannot be answered (none parses, only auth-int, an unknown algorithm).
    #[error("{0}")]
    Unusable(#[from] AuthError),
    /// Challenged again right after an answer that was not called stale: the credentials
    /// are wrong (or the server keeps calling our nonces stale).
    #[error("credentials refused")]
    Refused,
}

/// The client side of digest authentication for one series of requests to one server
/// (RFC 3261 §22.2, §22.3): the REGISTER binding of `sip::registration` and the INVITE of
/// an outbound call through a trunk. One place decides whether a 401/407 is answered and
/// builds the answer.
///
/// A challenge is kept and reused with nc + 1 on later requests (no extra round trip on a
/// refresh). A challenge to a request that carried an answer means the credentials were
/// refused — unless it says `stale=true` (RFC 7616 §3.3), which is answered again once in
/// a row.
#[derive(Debug, Clone, Default)]
pub struct DigestClient {
    /// The challenge being answered, its kind, and how many requests used its nonce.
    challenge: Option<(Challenge, ChallengeKind, u32)>,
    /// The last request built carried an answer.
    answered: bool,
    /// Stale challenges answered since the last accepted request.
    stale_answered: u8,
}

impl DigestClient {
    /// A final response to the last request. `None`: not a 401/407 (the request got past
    /// authentication: stale counting starts over). `Some(Ok)`: answer it — the next
    /// request gets [`authorize`](Self::authorize)'s header. `Some(Err)`: give up.
    pub fn on_response(&mut self, msg: &Message) -> Option<Result<(), ChallengeRefused>> {
        let Some(found) = response_challenge(msg) else {
            if msg.status().is_some_and(|c| c >= 200) {
                self.stale_answered = 0;
            }
            return None;
        };
        let (kind, ch) = match found {
            Ok(c) => c,
            Err(e) => return Some(Err(ChallengeRefused::Unusable(e))),
        };
        if self.answered {
            if !ch.stale || self.stale_answered >= 1 {
                return Some(Err(ChallengeRefused::Refused));
            }
            self.stale_answered += 1;
        }
        self.challenge = Some((ch, kind, 0));
        Some(Ok(()))
    }

    /// The header answering the kept challenge on the next request `method uri` (nc + 1),
    /// or `None` when there is no challenge yet (or it cannot be answered safely).
    pub fn authorize(
        &mut self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
    ) -> Option<(HeaderName, String)> {
        let answer = self.challenge.as_mut().and_then(|(ch, kind, nc)| {
            *nc += 1;
            answer_header(*kind, ch, method, uri, username, password, *nc).ok()
        });
        self.answered = answer.is_some();
        answer
    }

    /// Whether the last request built carried an answer.
    pub fn answered(&self) -> bool {
        self.answered
    }
}

#[allow(clippy::too_many_arguments)]
fn build_answer(
    ch: &Challenge,
    qop: Option<Qop>,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let nc_hex = format!("{nc:08x}");
    let ha1 = ha1(ch.algorithm, username, &ch.realm, password);
    let response = compute_response(
        ch.algorithm,
        &ha1,
        &ch.nonce,
        method,
        uri,
        qop.map(|q| (q, nc_hex.as_str(), cnonce)),
    );

    let mut s = String::with_capacity(256);
    s.push_str("Digest username=");
    push_quoted(&mut s, username);
    s.push_str(", realm=");
    push_quoted(&mut s, &ch.realm);
    s.push_str(", nonce=");
    push_quoted(&mut s, &ch.nonce);
    s.push_str(", uri=");
    push_quoted(&mut s, uri);
    s.push_str(", response=\"");
    s.push_str(&response);
    s.push_str("\", algorithm=");
    s.push_str(ch.algorithm.as_str());
    if let Some(q) = qop {
        s.push_str(", cnonce=");
        push_quoted(&mut s, cnonce);
        s.push_str(", qop=");
        s.push_str(q.as_str());
        s.push_str(", nc=");
        s.push_str(&nc_hex);
    }
    if let Some(o) = &ch.opaque {
        s.push_str(", opaque=");
        push_quoted(&mut s, o);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; NONCE_SECRET_LEN] = [7u8; NONCE_SECRET_LEN];
    const NOW: u64 = 1_700_000_000;
    const REALM: &str = "switchboard.test";

    fn key() -> NonceKey {
        NonceKey::from_secret(SECRET, DEFAULT_NONCE_LIFETIME_SECS)
    }

    fn account(password: &'static str) -> impl Fn(Algorithm) -> Option<String> {
        move |alg| Some(ha1(alg, "alice", REALM, password))
    }

    /// A response with `code` and the given headers, parsed from the wire.
    fn response(code: u16, headers: &[(&str, String)]) -> Message {
        let mut raw = format!(
            "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:a@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        );
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        raw.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(raw.as_bytes(), crate::sip::message::Framing::Datagram).expect("response")
    }

    #[test]
    fn challenge_kind_by_status_and_headers() {
        assert_eq!(ChallengeKind::for_status(401), Some(ChallengeKind::Www));
        assert_eq!(ChallengeKind::for_status(407), Some(ChallengeKind::Proxy));
        for code in [200, 403, 408, 486] {
            assert_eq!(ChallengeKind::for_status(code), None);
        }
        assert!(ChallengeKind::Www
            .challenge_header()
            .matches(&HeaderName::parse("www-authenticate")));
        assert!(ChallengeKind::Www
            .answer_header()
            .matches(&HeaderName::parse("Authorization")));
        assert!(ChallengeKind::Proxy
            .challenge_header()
            .matches(&HeaderName::parse("proxy-authenticate")));
        assert!(ChallengeKind::Proxy
            .answer_header()
            .matches(&HeaderName::parse("Proxy-Authorization")));
    }

    #[test]
    fn response_challenge_reads_the_header_of_its_status() {
        let nonce = key().issue_nonce(NOW);
        let md5 = challenge_header(REALM, &nonce, Algorithm::Md5, false, None);
        // Not a challenge at all.
        assert_eq!(response_challenge(&response(200, &[])), None);
        assert_eq!(
            response_challenge(&response(486, &[("WWW-Authenticate", md5.clone())])),
            None
        );
        // 401 in WWW-Authenticate, 407 in Proxy-Authenticate.
        let (kind, ch) = response_challenge(&response(401, &[("WWW-Authenticate", md5.clone())]))
            .expect("401")
            .expect("challenge");
        assert_eq!(
            (kind, ch.nonce.as_str()),
            (ChallengeKind::Www, nonce.as_str())
        );
        let (kind, _) = response_challenge(&response(407, &[("Proxy-Authenticate", md5.clone())]))
            .expect("407")
            .expect("challenge");
        assert_eq!(kind, ChallengeKind::Proxy);
        // The other kind's header does not count; nothing answerable is an error.
        assert_eq!(
            response_challenge(&response(407, &[("WWW-Authenticate", md5.clone())])),
            Some(Err(AuthError::NoChallenge))
        );
        assert_eq!(
            response_challenge(&response(
                401,
                &[("WWW-Authenticate", "Basic realm=\"x\"".into())]
            )),
            Some(Err(AuthError::NoChallenge))
        );
        // Several values: the topmost answerable one wins (RFC 8760), whole values.
        let sha = challenge_header(REALM, &nonce, Algorithm::Sha256, false, None);
        let (_, ch) = response_challenge(&response(
            401,
            &[
                ("WWW-Authenticate", "Basic realm=\"x\"".into()),
                ("WWW-Authenticate", sha),
                ("WWW-Authenticate", md5),
            ],
        ))
        .expect("401")
        .expect("challenge");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn answer_header_verifies_under_the_kind_s_name() {
        let k = key();
        for (kind, name) in [
            (ChallengeKind::Www, "Authorization"),
            (ChallengeKind::Proxy, "Proxy-Authorization"),
        ] {
            for alg in [Algorithm::Md5, Algorithm::Sha256] {
                let ch = parse_challenge(&challenge_header(
                    REALM,
                    &k.issue_nonce(NOW),
                    alg,
                    false,
                    Some("op"),
                ))
                .expect("challenge");
                let (h, v) = answer_header(kind, &ch, "INVITE", "sip:bob@x", "alice", "pw", 1)
                    .expect("answer");
                assert!(h.matches(&HeaderName::parse(name)), "{kind:?}: {h:?}");
                let creds = parse_credentials(&v).expect("credentials");
                assert_eq!(creds.nc_value(), Some(1));
                assert_eq!(creds.opaque.as_deref(), Some("op"));
                assert_eq!(
                    verify(&creds, "INVITE", account("pw"), REALM, &k, NOW),
                    Ok(())
                );
                assert_eq!(
                    verify(&creds, "INVITE", account("other"), REALM, &k, NOW),
                    Err(AuthError::BadResponse)
                );
            }
        }
        // What would not verify is refused, not sent.
        let ch = parse_challenge(&challenge_header(
            REALM,
            &k.issue_nonce(NOW),
            Algorithm::Md5,
            false,
            None,
        ))
        .expect("challenge");
        assert!(answer_header(
            ChallengeKind::Www,
            &ch,
            "INVITE",
            "sip:x",
            "a\u{1}b",
            "pw",
            1
        )
        .is_err());
    }

    #[test]
    fn rfc2617_md5_example() {
        let h1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(h1, "939e7578ed9e3c518a452acee763bce9");
        let r = compute_response(
            Algorithm::Md5,
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "GET",
            "/dir/index.html",
            Some((Qop::Auth, "00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");

        // The same through the client builder and the parser.
        let ch = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("challenge");
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert_eq!(ch.qop, Some(vec![Qop::Auth, Qop::AuthInt]));
        let v = try_answer_challenge(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle Of Life",
            "0a4f113b",
            1,
        )
        .expect("answer");
        let c = parse_credentials(&v).expect("creds");
        assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.nc_value(), Some(1));
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let ch = parse_challenge(
            "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    \
             algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    \
             opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .expect("challenge");
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let v = try_answer_challenge(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            "Circle of Life",
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        )
        .expect("answer");
        let c = parse_credentials(&v).expect("creds");
        assert_eq!(
            c.response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    #[test]
    fn round_trip_both_algorithms() {
        let k = key();
        let nonce = k.issue_nonce(NOW);
        let [sha, md5] = challenge_headers(REALM, &nonce, false, None);
        assert!(sha.contains("algorithm=SHA-256"));
        assert!(md5.contains("algorithm=MD5"));
        assert!(!sha.contains("stale"));
        for value in [&sha, &md5] {
            let ch = parse_challenge(value).expect("challenge");
            assert_eq!(ch.nonce, nonce);
            assert_eq!(ch.qop, Some(vec![Qop::Auth]));
            let auth = try_answer_challenge(
                &ch,
                "REGISTER",
                "sip:switchboard.test",
                "alice",
                "s3cret",
                &generate_cnonce(),
                1,
            )
            .expect("answer");
            let creds = parse_credentials(&auth).expect("creds");
            assert_eq!(creds.algorithm, ch.algorithm);
            assert_eq!(
                verify(&creds, "REGISTER", account("s3cret"), REALM, &k, NOW + 10),
                Ok(())
            );
            // HA2 covers the method.
            assert_eq!(
                verify(&creds, "INVITE", account("s3cret"), REALM, &k, NOW + 10),
                Err(AuthError::BadResponse)
            );
        }
        // The client answers the topmost challenge it can: ours lists SHA-256 first.
        let picked =
            select_challenge(["Basic realm=\"x\"", sha.as_str(), md5.as_str()]).expect("select");
        assert_eq!(picked.algorithm, Algorithm::Sha256);
        let int_only = "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\", algorithm=SHA-256";
        let sess = "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess";
        let picked =
            select_challenge([int_only, sess, md5.as_str(), sha.as_str()]).expect("select");
        assert_eq!(picked.algorithm, Algorithm::Md5);
        assert_eq!(
            select_challenge(["Basic realm=\"x\""]),
            Err(AuthError::NoChallenge)
        );
    }

    #[test]
    fn wrong_password_unknown_user_and_realm() {
        let k = key();
        let ch = parse_challenge(&challenge_header(
            REALM,
            &k.issue_nonce(NOW),
            Algorithm::Sha256,
            false,
            None,
        ))
        .expect("challenge");
        let auth = try_answer_challenge(&ch, "INVITE", "sip:1@h", "alice", "guess", "cn", 1)
            .expect("answer");
        let creds = parse_credentials(&auth).expect("creds");
        assert_eq!(
            verify(&creds, "INVITE", account("s3cret"), REALM, &k, NOW),
            Err(AuthError::BadResponse)
        );
        assert_eq!(
            verify(&creds, "INVITE", |_| None, REALM, &k, NOW),
            Err(AuthError::UnknownUser)
        );
        assert_eq!(
            verify(&creds, "INVITE", account("guess"), "other.realm", &k, NOW),
            Err(AuthError::RealmMismatch)
        );
        // A stored HA1 in uppercase hex still verifies.
        assert_eq!(
            verify(
                &creds,
                "INVITE",
                |alg| Some(ha1(alg, "alice", REALM, "guess").to_ascii_uppercase()),
                REALM,
                &k,
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn stale_and_forged_nonces() {
        let k = key();
        let nonce = k.issue_nonce(NOW);
        assert_eq!(nonce.len(), 64);
        assert_ne!(nonce, k.issue_nonce(NOW), "salted: unique per challenge");
        assert_eq!(k.check_nonce(&nonce, NOW), NonceStatus::Valid);
        assert_eq!(k.check_nonce(&nonce, NOW + 300), NonceStatus::Valid);
        assert_eq!(k.check_nonce(&nonce, NOW + 301), NonceStatus::Stale);
        assert_eq!(k.check_nonce(&nonce, NOW - 5), NonceStatus::Valid);
        assert_eq!(k.check_nonce(&nonce, NOW - 6), NonceStatus::Stale);

        // Forgeries: another secret, a moved timestamp, a flipped MAC bit, junk.
        let other = NonceKey::from_secret([8u8; NONCE_SECRET_LEN], 300);
        assert_eq!(other.check_nonce(&nonce, NOW), NonceStatus::Invalid);
        let mut moved = format!("{:016x}", NOW + 100);
        moved.push_str(&nonce[16..]);
        assert_eq!(k.check_nonce(&moved, NOW + 100), NonceStatus::Invalid);
        let mut flipped = nonce.clone().into_bytes();
        flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        assert_eq!(k.check_nonce(&flipped, NOW), NonceStatus::Invalid);
        assert_eq!(k.check_nonce(&nonce[..62], NOW), NonceStatus::Invalid);
        assert_eq!(k.check_nonce("", NOW), NonceStatus::Invalid);
        assert_eq!(
            k.check_nonce("dcd98b7102dd2f0e8b11d0f600bfb0c093", NOW),
            NonceStatus::Invalid
        );
        // Upper-case hex of a real nonce is the same bytes: still ours.
        assert_eq!(
            k.check_nonce(&nonce.to_ascii_uppercase(), NOW),
            NonceStatus::Valid
        );

        // Through verify: right digest on an expired nonce is Stale, wrong digest is not.
        let ch = parse_challenge(&challenge_header(
            REALM,
            &nonce,
            Algorithm::Md5,
            false,
            None,
        ))
        .expect("challenge");
        let good = parse_credentials(
            &try_answer_challenge(&ch, "INVITE", "sip:1@h", "alice", "s3cret", "c", 1)
                .expect("answer"),
        )
        .expect("creds");
        let bad = parse_credentials(
            &try_answer_challenge(&ch, "INVITE", "sip:1@h", "alice", "nope", "c", 1)
                .expect("answer"),
        )
        .expect("creds");
        let later = NOW + 1000;
        let stale = verify(&good, "INVITE", account("s3cret"), REALM, &k, later);
        assert_eq!(stale, Err(AuthError::Stale));
        assert!(stale.err().is_some_and(|e| e.is_stale()));
        assert_eq!(
            verify(&bad, "INVITE", account("s3cret"), REALM, &k, later),
            Err(AuthError::BadResponse)
        );
        let mut forged = good.clone();
        forged.nonce = moved;
        assert_eq!(
            verify(&forged, "INVITE", account("s3cret"), REALM, &k, NOW),
            Err(AuthError::InvalidNonce)
        );

        let again = challenge_header(REALM, &k.issue_nonce(later), Algorithm::Md5, true, None);
        assert!(again.ends_with(", stale=true"));
        assert!(parse_challenge(&again).expect("stale challenge").stale);
    }

    #[test]
    fn nonce_key_matches_plain_hmac() {
        let mut a = key().mac;
        let mut b = <HmacSha256 as Mac>::new_from_slice(&SECRET).expect("any key length");
        a.update(b"x");
        b.update(b"x");
        assert_eq!(a.finalize().into_bytes(), b.finalize().into_bytes());
        assert!(!format!("{:?}", key()).contains("7, 7"));
    }

    #[test]
    fn qop_policy() {
        let k = key();
        let nonce = k.issue_nonce(NOW);
        // RFC 2069 challenge (no qop): the client answers without qop/cnonce/nc.
        let old = parse_challenge(&format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\""))
            .expect("challenge");
        assert_eq!(old.qop, None);
        let v =
            try_answer_challenge(&old, "REGISTER", "sip:h", "alice", "pw", "c", 1).expect("answer");
        assert!(!v.contains("qop") && !v.contains("cnonce") && !v.contains("nc="));
        let creds = parse_credentials(&v).expect("creds");
        assert_eq!(
            verify(&creds, "REGISTER", account("pw"), REALM, &k, NOW),
            Ok(())
        );
        // ...but not for SHA-256.
        let mut sha = old.clone();
        sha.algorithm = Algorithm::Sha256;
        let v =
            try_answer_challenge(&sha, "REGISTER", "sip:h", "alice", "pw", "c", 1).expect("answer");
        let creds = parse_credentials(&v).expect("creds");
        assert_eq!(
            verify(&creds, "REGISTER", account("pw"), REALM, &k, NOW),
            Err(AuthError::QopRequired)
        );
        // auth-int only: the client cannot answer; the server refuses it.
        let int = parse_challenge(&format!(
            "Digest realm=\"r\", nonce=\"{nonce}\", qop=\"auth-int\""
        ))
        .expect("challenge");
        assert_eq!(
            try_answer_challenge(&int, "INVITE", "sip:h", "a", "p", "c", 1),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        let c = parse_credentials(&format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:h\", \
             response=\"00\", qop=auth-int, nc=00000001, cnonce=\"x\""
        ))
        .expect("creds");
        assert_eq!(
            verify(&c, "INVITE", account("pw"), REALM, &k, NOW),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            parse_credentials(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\", qop=auth, nc=00000001"
            ),
            Err(AuthError::MissingParam("cnonce"))
        );
    }

    #[test]
    fn unknown_scheme_and_algorithms() {
        // RFC 4475 regaut01.
        assert_eq!(
            parse_credentials("NoOneKnowsThisScheme opaque-data=here"),
            Err(AuthError::NotDigest("NoOneKnowsThisScheme".into()))
        );
        assert_eq!(
            parse_challenge("Basic realm=\"x\""),
            Err(AuthError::NotDigest("Basic".into()))
        );
        assert_eq!(
            parse_challenge(""),
            Err(AuthError::Malformed("missing auth scheme"))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess"),
            Err(AuthError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256"),
            Err(AuthError::UnsupportedAlgorithm("SHA-512-256".into()))
        );
        assert_eq!("sha-256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!(Algorithm::Md5.to_string(), "MD5");
        assert_eq!(
            parse_challenge("Digest nonce=\"n\""),
            Err(AuthError::MissingParam("realm"))
        );
        assert_eq!(
            parse_credentials("DIGEST realm=\"r\""),
            Err(AuthError::MissingParam("username"))
        );
        let values = [
            "NoOneKnowsThisScheme opaque-data=here",
            "Digest username=\"a\", realm=\"other\", nonce=\"n\", uri=\"u\", response=\"0\"",
            "Digest username=\"b\", realm=\"mine\", nonce=\"n\", uri=\"u\", response=\"0\"",
        ];
        assert_eq!(
            credentials_for_realm(values, "mine").map(|c| c.username),
            Some("b".to_string())
        );
        assert!(credentials_for_realm(values, "nobody").is_none());
    }

    #[test]
    fn parsing_edge_cases() {
        // Escaped quotes and backslashes, commas inside quotes, any order, odd case, LWS.
        let c = parse_credentials(
            "  dIgEsT   RESPONSE = \"abc\" ,URI=\"sip:a,b@h\",\r\n\t username=\"Bob \\\"B\\\" \\\\ Smith\",,\
             realm=\"r, with comma\" , Nonce=n0nce , algorithm=\"sha-256\", qop=\"auth\", nc=0000000A, cnonce=\"c\",",
        )
        .expect("creds");
        assert_eq!(c.username, "Bob \"B\" \\ Smith");
        assert_eq!(c.uri, "sip:a,b@h");
        assert_eq!(c.realm, "r, with comma");
        assert_eq!(c.nonce, "n0nce");
        assert_eq!(c.response, "abc");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nc_value(), Some(10));

        // A folded line inside a quoted string is one SP.
        let ch = parse_challenge("Digest realm=\"a\r\n  b\", nonce=\"n\", stale=TRUE, foo=bar")
            .expect("folded");
        assert_eq!(ch.realm, "a b");
        assert!(ch.stale);
        // Empty quoted values are values; empty tokens are not.
        assert_eq!(
            parse_challenge("Digest realm=\"\", nonce=\"n\"")
                .expect("empty realm")
                .realm,
            ""
        );
        for (input, err) in [
            (
                "Digest realm=\"a\", realm=\"b\", nonce=\"n\"",
                AuthError::DuplicateParam("realm".into()),
            ),
            (
                "Digest REALM=\"a\", nonce=\"n\", Realm=\"a\"",
                AuthError::DuplicateParam("realm".into()),
            ),
            (
                "Digest realm=\"unterminated, nonce=\"n",
                AuthError::Malformed("expected ',' between parameters"),
            ),
            (
                "Digest realm=\"open",
                AuthError::Malformed("unterminated quoted string"),
            ),
            (
                "Digest realm=\"esc\\",
                AuthError::Malformed("unterminated quoted string"),
            ),
            (
                "Digest realm=, nonce=\"n\"",
                AuthError::Malformed("empty parameter value"),
            ),
            (
                "Digest realm \"r\"",
                AuthError::Malformed("expected '=' after parameter name"),
            ),
            (
                "Digest realm=\"r\" nonce=\"n\"",
                AuthError::Malformed("expected ',' between parameters"),
            ),
            (
                "Digest realm=\"a\r\nb\", nonce=\"n\"",
                AuthError::Malformed("line break in quoted string"),
            ),
            (
                "Digest realm=\"a\u{0}b\", nonce=\"n\"",
                AuthError::Malformed("control character in quoted string"),
            ),
            ("Digest,realm=\"r\"", AuthError::Malformed("auth scheme")),
            ("Digest =x", AuthError::Malformed("parameter name")),
        ] {
            assert_eq!(parse_challenge(input), Err(err), "{input:?}");
        }
        assert_eq!(
            parse_credentials(
                "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\", nc=xyz"
            ),
            Err(AuthError::Malformed("nc is not 8 hex digits"))
        );
        let many: String = (0..40).map(|i| format!(", p{i}=v")).collect();
        assert_eq!(
            parse_challenge(&format!("Digest realm=\"r\"{many}")),
            Err(AuthError::Malformed("too many parameters"))
        );
        // Unknown scheme text in errors is clipped.
        let long = "X".repeat(500);
        assert!(matches!(parse_challenge(&long), Err(AuthError::NotDigest(s)) if s.len() == 32));
    }

    #[test]
    fn builders_escape_and_refuse_injection() {
        let h = challenge_header(
            "we \"quote\" \\",
            "n",
            Algorithm::Md5,
            false,
            Some("o\r\nX: y"),
        );
        assert!(!h.contains('\r') && !h.contains('\n'));
        let ch = parse_challenge(&h).expect("own header parses");
        assert_eq!(ch.realm, "we \"quote\" \\");
        assert_eq!(ch.opaque.as_deref(), Some("oX: y"));
        assert_eq!(
            try_answer_challenge(&ch, "INVITE", "sip:a@h\r\nEvil: 1", "u", "p", "c", 1),
            Err(AuthError::Malformed("control character in credentials"))
        );
        assert_eq!(
            try_answer_challenge(&ch, "IN VITE", "sip:a@h", "u", "p", "c", 1),
            Err(AuthError::Malformed("method is not a token"))
        );
        // The infallible builder degrades instead: nothing injectable comes out.
        let v = answer_challenge(&ch, "INVITE", "sip:a@h\r\nEvil: 1", "u\n", "p", "c", 1);
        assert!(!v.contains('\r') && !v.contains('\n'));
        let c = parse_credentials(&v).expect("still parses");
        assert_eq!(c.uri, "sip:a@hEvil: 1");
    }

    #[test]
    fn infallible_answer_matches_checked_one() {
        let ch =
            parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int,auth\", opaque=\"o\"")
                .expect("challenge");
        assert_eq!(
            Ok(answer_challenge(&ch, "BYE", "sip:a@h", "u", "p", "c", 2)),
            try_answer_challenge(&ch, "BYE", "sip:a@h", "u", "p", "c", 2)
        );
        // auth-int only: RFC 2069 form, which the server will refuse.
        let int = parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"")
            .expect("challenge");
        let v = answer_challenge(&int, "BYE", "sip:a@h", "u", "p", "c", 1);
        assert_eq!(parse_credentials(&v).expect("creds").qop, None);
    }

    fn challenged(code: u16, header: &str, stale: bool) -> Message {
        let req = Message::parse(
            b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
              From: <sip:a@h>;tag=1\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
              Content-Length: 0\r\n\r\n",
            crate::sip::message::Framing::Datagram,
        )
        .expect("request");
        let mut r = req.response(code, "X", Some("t"));
        let ch = challenge_header(REALM, &key().issue_nonce(NOW), Algorithm::Md5, stale, None);
        r.push_header(HeaderName::parse(header), ch);
        r
    }

    #[test]
    fn digest_client_answers_once_then_refuses_unless_stale() {
        let mut c = DigestClient::default();
        assert_eq!(
            c.authorize("INVITE", "sip:1@h", "u", "p"),
            None,
            "no challenge yet"
        );
        assert!(!c.answered());
        // Not a challenge: nothing to do.
        assert_eq!(
            c.on_response(&challenged(486, "WWW-Authenticate", false)),
            None
        );
        // 407: answered in Proxy-Authorization, nc counting up on reuse.
        assert_eq!(
            c.on_response(&challenged(407, "Proxy-Authenticate", false)),
            Some(Ok(()))
        );
        let (name, v) = c.authorize("INVITE", "sip:1@h", "u", "p").expect("answer");
        assert!(name.matches(&HeaderName::Other("Proxy-Authorization".into())));
        let creds = parse_credentials(&v).expect("creds");
        assert_eq!(creds.nc_value(), Some(1));
        assert_eq!(
            verify(
                &creds,
                "INVITE",
                |a| Some(ha1(a, "u", REALM, "p")),
                REALM,
                &key(),
                NOW
            ),
            Ok(())
        );
        // Challenged again, not stale: the credentials are wrong.
        let mut refused = c.clone();
        assert_eq!(
            refused.on_response(&challenged(401, "WWW-Authenticate", false)),
            Some(Err(ChallengeRefused::Refused))
        );
        // Stale: answered again once, then refused.
        assert_eq!(
            c.on_response(&challenged(401, "WWW-Authenticate", true)),
            Some(Ok(()))
        );
        let (name, _) = c.authorize("INVITE", "sip:1@h", "u", "p").expect("answer");
        assert_eq!(name, HeaderName::Authorization);
        assert_eq!(
            c.on_response(&challenged(401, "WWW-Authenticate", true)),
            Some(Err(ChallengeRefused::Refused))
        );
        // A challenge that cannot be answered.
        let mut r = challenged(401, "X-Nothing", false);
        r.push_header(HeaderName::WwwAuthenticate, "Basic realm=\"r\"".to_string());
        assert!(matches!(
            DigestClient::default().on_response(&r),
            Some(Err(ChallengeRefused::Unusable(_)))
        ));
    }

    #[test]
    fn replay_guard_refuses_repeats_and_stays_bounded() {
        let k = key();
        let ch = parse_challenge(&challenge_header(
            REALM,
            &k.issue_nonce(NOW),
            Algorithm::Sha256,
            false,
            None,
        ))
        .expect("challenge");
        let creds_n = |nc: u32| {
            parse_credentials(
                &try_answer_challenge(&ch, "INVITE", "sip:1@h", "alice", "pw", "cn", nc)
                    .expect("answer"),
            )
            .expect("creds")
        };
        let mut g = ReplayGuard::new(3);
        assert!(g.is_empty());
        let first = creds_n(1);
        assert_eq!(
            verify(&first, "INVITE", account("pw"), REALM, &k, NOW),
            Ok(())
        );
        assert_eq!(g.check_and_record(&first), Ok(()));
        assert_eq!(g.check_and_record(&first), Err(AuthError::Replay));
        let mut upper = first.clone();
        upper.response = upper.response.to_ascii_uppercase();
        assert_eq!(g.check_and_record(&upper), Err(AuthError::Replay));
        for nc in 2..=4 {
            assert_eq!(g.check_and_record(&creds_n(nc)), Ok(()));
        }
        assert_eq!(g.len(), 3);
        // nc=1 fell out of the window.
        assert_eq!(g.check_and_record(&first), Ok(()));
        assert_eq!(g.check_and_record(&creds_n(4)), Err(AuthError::Replay));
        assert_eq!(ReplayGuard::new(0).capacity, 1);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = parse_challenge(&s);
            let _ = parse_credentials(&s);
            let _ = select_challenge([s.as_str()]);
            let _ = key().check_nonce(&s, NOW);
        }

        #[test]
        fn parsers_never_panic_on_bytes(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let s = String::from_utf8_lossy(&data);
            let _ = parse_challenge(&s);
            let _ = parse_credentials(&s);
        }

        #[test]
        fn digest_like_soup_never_panics(body in "[a-zA-Z0-9\" =,\\\\\r\n\t\u{e9}-]{0,160}") {
            let s = format!("Digest {body}");
            let _ = parse_challenge(&s);
            if let Ok(c) = parse_credentials(&s) {
                let _ = verify(&c, "INVITE", |a| Some(ha1(a, "u", "r", "p")), &c.realm.clone(), &key(), NOW);
                let _ = ReplayGuard::new(2).check_and_record(&c);
            }
        }

        #[test]
        fn round_trip_any_text(
            user in "\\PC{0,24}",
            realm in "\\PC{0,24}",
            password in "\\PC{0,24}",
            uri in "\\PC{0,40}",
            cnonce in "\\PC{1,24}",
            nc in 1u32..,
            sha in proptest::prelude::any::<bool>(),
        ) {
            let k = key();
            let alg = if sha { Algorithm::Sha256 } else { Algorithm::Md5 };
            let ch = parse_challenge(&challenge_header(&realm, &k.issue_nonce(NOW), alg, false, Some("op")))
                .expect("own challenge parses");
            proptest::prop_assert_eq!(&ch.realm, &realm);
            let v = try_answer_challenge(&ch, "MESSAGE", &uri, &user, &password, &cnonce, nc).expect("answer");
            let c = parse_credentials(&v).expect("own credentials parse");
            proptest::prop_assert_eq!(&c.username, &user);
            proptest::prop_assert_eq!(&c.uri, &uri);
            let stored = |a: Algorithm| Some(ha1(a, &user, &realm, &password));
            proptest::prop_assert_eq!(verify(&c, "MESSAGE", stored, &realm, &k, NOW), Ok(()));
        }
    }
}
