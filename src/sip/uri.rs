//! SIP URIs (RFC 3261 §19.1) and name-addr header values (From, To, Contact; §20.10, §25.1).
//!
//! A [`Uri`] keeps the exact text it was parsed from (so it can be echoed byte-for-byte in
//! Request-URIs, Route sets and Contacts) next to the parsed parts that routing needs.
//! Unknown schemes parse (so the server can answer 416 rather than 400, RFC 4475 §3.3.14).

use std::fmt;

use super::message::{is_token_byte, split_host_port, split_unquoted, unquoted};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed URI")]
pub struct UriError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    raw: String,
    pub scheme: Scheme,
    /// User part with %-escapes decoded (RFC 3261 §19.1.4 compares unescaped).
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        if s.is_empty()
            || s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(UriError);
        }
        let (scheme_str, rest) = s.split_once(':').ok_or(UriError)?;
        if scheme_str.is_empty()
            || !scheme_str.as_bytes()[0].is_ascii_alphabetic()
            || !scheme_str
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(UriError);
        }
        let scheme = if scheme_str.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_str.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_str.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        match scheme {
            Scheme::Other => Ok(Uri {
                raw: s.to_string(),
                scheme,
                user: None,
                host: String::new(),
                port: None,
                params: vec![],
            }),
            Scheme::Tel => {
                let mut parts = rest.split(';');
                let number = parts.next().unwrap_or("");
                if number.is_empty() {
                    return Err(UriError);
                }
                let params = parse_params(parts)?;
                Ok(Uri {
                    raw: s.to_string(),
                    scheme,
                    user: Some(unescape(number)),
                    host: String::new(),
                    port: None,
                    params,
                })
            }
            Scheme::Sip | Scheme::Sips => {
                // userinfo may itself contain '?' (RFC 3261 user-unreserved, RFC 4475
                // intmeth), so split at '@' first and only then cut ?headers off the host part.
                let (userinfo, hostpart) = match rest.split_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, rest),
                };
                let hostpart = hostpart.split_once('?').map_or(hostpart, |(a, _)| a);
                let user = match userinfo {
                    Some(u) => {
                        let user = u.split_once(':').map_or(u, |(user, _password)| user);
                        if user.is_empty() {
                            return Err(UriError);
                        }
                        Some(unescape(user))
                    }
                    None => None,
                };
                let mut segs = hostpart.split(';');
                let hostport = segs.next().unwrap_or("");
                let (host, port) = split_host_port(hostport).ok_or(UriError)?;
                let params = parse_params(segs)?;
                Ok(Uri {
                    raw: s.to_string(),
                    scheme,
                    user,
                    host,
                    port,
                    params,
                })
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Build a `sip:` URI from parts.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        let mut raw = String::from("sip:");
        if let Some(u) = user {
            raw.push_str(u);
            raw.push('@');
        }
        raw.push_str(host);
        if let Some(p) = port {
            raw.push(':');
            raw.push_str(&p.to_string());
        }
        Uri {
            raw,
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            params: vec![],
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn parse_params<'a>(
    segs: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, Option<String>)>, UriError> {
    let mut params = Vec::new();
    for seg in segs {
        if seg.is_empty() {
            continue;
        }
        match seg.split_once('=') {
            Some((n, v)) => params.push((n.to_string(), Some(v.to_string()))),
            None => params.push((seg.to_string(), None)),
        }
    }
    Ok(params)
}

/// Decode %HH escapes; invalid escapes are kept literally (RFC 4475 esc02 is liberal).
pub fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `[display-name] <URI> *(;param)` or `addr-spec *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    pub uri: Uri,
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    pub fn parse(value: &str) -> Result<NameAddr, UriError> {
        let value = value.trim();
        if unbalanced_quotes(value) {
            return Err(UriError);
        }
        let lt = unquoted(value)
            .find(|&(_, c, outside)| outside && c == '<')
            .map(|(i, _, _)| i);
        let (display, uri_str, params_str) = match lt {
            Some(lt) => {
                let gt = value[lt..].find('>').ok_or(UriError)? + lt;
                let disp = value[..lt].trim();
                let display = if disp.is_empty() {
                    None
                } else if let Some(q) = disp.strip_prefix('"') {
                    let inner = q.strip_suffix('"').ok_or(UriError)?;
                    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
                } else {
                    // Unquoted display names are tokens separated by LWS (RFC 3261 §25.1).
                    if !disp
                        .split_whitespace()
                        .all(|t| t.bytes().all(is_token_byte))
                    {
                        return Err(UriError);
                    }
                    Some(disp.to_string())
                };
                (display, &value[lt + 1..gt], &value[gt + 1..])
            }
            None => {
                // addr-spec form: URI params are impossible, everything after ';' is header params.
                if value.contains(['"', '>']) {
                    return Err(UriError);
                }
                match value.find(';') {
                    Some(i) => (None, &value[..i], &value[i..]),
                    None => (None, value, ""),
                }
            }
        };
        let uri = Uri::parse(uri_str.trim()).map_err(|_| UriError)?;
        let mut params = Vec::new();
        let params_str = params_str.trim();
        if !params_str.is_empty() {
            let stripped = params_str.strip_prefix(';').ok_or(UriError)?;
            for seg in split_unquoted(stripped, ';') {
                let seg = seg.trim();
                if seg.is_empty() {
                    return Err(UriError);
                }
                match seg.split_once('=') {
                    Some((n, v)) => {
                        let n = n.trim();
                        if !n.bytes().all(is_token_byte) {
                            return Err(UriError);
                        }
                        params.push((n.to_string(), Some(v.trim().to_string())))
                    }
                    None => {
                        if !seg.bytes().all(is_token_byte) {
                            return Err(UriError);
                        }
                        params.push((seg.to_string(), None))
                    }
                }
            }
        }
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("tag"))
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

fn unbalanced_quotes(s: &str) -> bool {
    unquoted(s).ends_in_quote()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sip_uris() {
        let u = Uri::parse("sip:+1555%31@example.com:5070;transport=tcp;lr").expect("uri");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("+15551"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(
            u.to_string(),
            "sip:+1555%31@example.com:5070;transport=tcp;lr"
        );
        let v6 = Uri::parse("sip:[::1]:5060").expect("v6");
        assert_eq!(v6.host, "[::1]");
        assert_eq!(Uri::parse("kmh:x").expect("other").scheme, Scheme::Other);
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:a b@h").is_err());
    }

    #[test]
    fn parses_name_addrs() {
        let na = NameAddr::parse("\"Bob \\\"B\\\"\" <sip:bob@h;x=1>;tag=99").expect("na");
        assert_eq!(na.display.as_deref(), Some("Bob \"B\""));
        assert_eq!(na.uri.param("x"), Some(Some("1")));
        assert_eq!(na.tag(), Some("99"));
        let bare = NameAddr::parse("sip:bob@h;tag=7").expect("bare");
        assert_eq!(bare.tag(), Some("7"));
        assert!(bare.uri.params.is_empty());
        let tokens = NameAddr::parse("Bob Smith<sip:bob@h>").expect("no lws");
        assert_eq!(tokens.display.as_deref(), Some("Bob Smith"));
        assert!(NameAddr::parse("\"unbalanced <sip:x@h>").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = Uri::parse(&s);
            let _ = NameAddr::parse(&s);
            let _ = unescape(&s);
        }
    }
}
