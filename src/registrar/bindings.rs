//! Registrar bindings (RFC 3261 §10.3): the pure table of address-of-record → contacts.
//!
//! Input: a REGISTER that has already been authenticated, its flow and the current time.
//! Output: the answer to send (200 with the current bindings, 423, 400, 500) and what to
//! persist. Expiry is an input (`expire(now)`), so tests drive it in virtual time.
//!
//! A binding keeps the REGISTER's `Path` (RFC 3327: the edge proxy's URI, added on its way
//! in), so requests to the contact go back through that proxy; a refresh replaces it with
//! the refreshing REGISTER's (none when it came without one).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sip::message::{split_comma_list, HeaderName, Message};
use crate::sip::path;
use crate::sip::transport::ReplyPath;
use crate::sip::uri::NameAddr;

pub const DEFAULT_EXPIRES: u64 = 3600;
pub const MIN_EXPIRES: u64 = 60;
pub const MAX_EXPIRES: u64 = 7200;
/// A phone that registers hundreds of contacts is broken or hostile.
pub const MAX_CONTACTS_PER_AOR: usize = 10;

#[derive(Debug, Clone)]
pub struct Binding {
    /// Contact URI exactly as registered (used as Request-URI when calling the agent).
    pub contact: String,
    pub expires: Instant,
    /// The flow the REGISTER came on: calls to the agent go back through it (NAT, TCP, WS).
    pub flow: Option<ReplyPath>,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
    /// The REGISTER's Path values in order (RFC 3327): the pre-loaded route set of every
    /// request to `contact`. Empty: the phone registered directly.
    pub path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// 200 OK: the bindings now in force, with their remaining seconds.
    Ok {
        contacts: Vec<(String, u64)>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    IntervalTooBrief,
    BadRequest(&'static str),
    OutOfOrder,
}

#[derive(Debug, Default)]
pub struct Bindings {
    map: HashMap<String, Vec<Binding>>,
}

impl Bindings {
    pub fn insert_restored(&mut self, aor: &str, b: Binding) {
        self.map.entry(aor.to_string()).or_default().push(b);
    }

    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
        self.map
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires > now).collect())
            .unwrap_or_default()
    }

    pub fn aors(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// Drop expired bindings; returns (aor, contact) pairs removed.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut removed = Vec::new();
        for (aor, list) in self.map.iter_mut() {
            list.retain(|b| {
                let keep = b.expires > now;
                if !keep {
                    removed.push((aor.clone(), b.contact.clone()));
                }
                keep
            });
        }
        self.map.retain(|_, v| !v.is_empty());
        removed
    }

    /// Apply an authenticated REGISTER for `aor` (RFC 3261 §10.3 steps 6–8).
    pub fn apply(
        &mut self,
        now: Instant,
        aor: &str,
        req: &Message,
        flow: Option<ReplyPath>,
    ) -> RegisterOutcome {
        let header_expires = match req.header(&HeaderName::Expires).map(str::trim) {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => return RegisterOutcome::BadRequest("bad Expires"),
            },
        };
        let call_id = req.call_id().unwrap_or("").to_string();
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        let user_agent = req.header(&HeaderName::UserAgent).unwrap_or("").to_string();
        let path = path::path_of(req);
        let contacts: Vec<&str> = req
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::Contact)
            .flat_map(|h| split_comma_list(&h.value))
            .collect();
        let mut added = Vec::new();
        let mut removed = Vec::new();
        if contacts.iter().any(|c| c.trim() == "*") {
            // Remove all: only as the sole Contact with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return RegisterOutcome::BadRequest(
                    "Contact * needs Expires: 0 and no other contact",
                );
            }
            if let Some(list) = self.map.get(aor) {
                if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                    return RegisterOutcome::OutOfOrder;
                }
            }
            if let Some(list) = self.map.remove(aor) {
                removed.extend(list.into_iter().map(|b| b.contact));
            }
            return RegisterOutcome::Ok {
                contacts: vec![],
                added,
                removed,
            };
        }
        let mut parsed = Vec::with_capacity(contacts.len());
        for c in &contacts {
            let Ok(na) = NameAddr::parse(c) else {
                return RegisterOutcome::BadRequest("bad Contact");
            };
            let expires = match na.param("expires") {
                Some(Some(v)) => match v.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => return RegisterOutcome::BadRequest("bad expires parameter"),
                },
                _ => header_expires.unwrap_or(DEFAULT_EXPIRES),
            };
            if expires != 0 && expires < MIN_EXPIRES {
                return RegisterOutcome::IntervalTooBrief;
            }
            parsed.push((na.uri.to_string(), expires.min(MAX_EXPIRES)));
        }
        let list = self.map.entry(aor.to_string()).or_default();
        for (contact, expires) in parsed {
            let existing = list.iter().position(|b| b.contact == contact);
            if let Some(i) = existing {
                let b = &list[i];
                if b.call_id == call_id && b.cseq >= cseq {
                    return RegisterOutcome::OutOfOrder;
                }
            }
            if expires == 0 {
                if let Some(i) = existing {
                    removed.push(list.remove(i).contact);
                }
                continue;
            }
            let binding = Binding {
                contact: contact.clone(),
                expires: now + Duration::from_secs(expires),
                flow: flow.clone(),
                call_id: call_id.clone(),
                cseq,
                user_agent: user_agent.clone(),
                path: path.clone(),
            };
            match existing {
                Some(i) => list[i] = binding,
                None => {
                    if list.len() >= MAX_CONTACTS_PER_AOR {
                        // Replace the binding closest to expiry rather than grow without bound.
                        if let Some((oldest, _)) =
                            list.iter().enumerate().min_by_key(|(_, b)| b.expires)
                        {
                            removed.push(list.remove(oldest).contact);
                        }
                    }
                    list.push(binding);
                }
            }
            added.push(contact);
        }
        let contacts = list
            .iter()
            .filter(|b| b.expires > now)
            .map(|b| {
                (
                    b.contact.clone(),
                    b.expires.saturating_duration_since(now).as_secs(),
                )
            })
            .collect();
        if list.is_empty() {
            self.map.remove(aor);
        }
        RegisterOutcome::Ok {
            contacts,
            added,
            removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;

    fn register(contact: &str, expires: Option<u32>, cseq: u32) -> Message {
        let exp = expires
            .map(|e| format!("Expires: {e}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK{cseq}\r\n\
             From: <sip:agent1@127.0.0.1>;tag=a\r\nTo: <sip:agent1@127.0.0.1>\r\nCall-ID: reg-1\r\n\
             CSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{exp}Content-Length: 0\r\n\r\n"
        );
        Message::parse(raw.as_bytes(), Framing::Datagram).expect("register parses")
    }

    #[test]
    fn add_refresh_expire_and_remove() {
        let t0 = Instant::now();
        let mut b = Bindings::default();
        let out = b.apply(
            t0,
            "agent1",
            &register("<sip:agent1@127.0.0.1:5090>", Some(120), 1),
            None,
        );
        assert_eq!(
            out,
            RegisterOutcome::Ok {
                contacts: vec![("sip:agent1@127.0.0.1:5090".into(), 120)],
                added: vec!["sip:agent1@127.0.0.1:5090".into()],
                removed: vec![]
            }
        );
        // A second phone for the same agent.
        b.apply(
            t0,
            "agent1",
            &register("<sip:agent1@127.0.0.1:5092>;expires=600", None, 2),
            None,
        );
        assert_eq!(b.lookup("agent1", t0).len(), 2);
        // Replayed (same Call-ID, old CSeq) is refused.
        assert_eq!(
            b.apply(
                t0,
                "agent1",
                &register("<sip:agent1@127.0.0.1:5090>", Some(120), 1),
                None
            ),
            RegisterOutcome::OutOfOrder
        );
        let later = t0 + Duration::from_secs(121);
        assert_eq!(b.lookup("agent1", later).len(), 1);
        assert_eq!(
            b.expire(later),
            vec![(
                "agent1".to_string(),
                "sip:agent1@127.0.0.1:5090".to_string()
            )]
        );
        let out = b.apply(later, "agent1", &register("*", Some(0), 3), None);
        assert!(matches!(out, RegisterOutcome::Ok { ref contacts, .. } if contacts.is_empty()));
        assert!(b.lookup("agent1", later).is_empty());
    }

    #[test]
    fn refuses_bad_intervals_and_stars() {
        let t0 = Instant::now();
        let mut b = Bindings::default();
        assert_eq!(
            b.apply(t0, "a", &register("<sip:a@h>", Some(10), 1), None),
            RegisterOutcome::IntervalTooBrief
        );
        assert!(matches!(
            b.apply(t0, "a", &register("*", Some(60), 2), None),
            RegisterOutcome::BadRequest(_)
        ));
        let capped = b.apply(t0, "a", &register("<sip:a@h>", Some(99999), 3), None);
        assert!(
            matches!(capped, RegisterOutcome::Ok { ref contacts, .. } if contacts[0].1 == MAX_EXPIRES)
        );
        let unreg = b.apply(t0, "a", &register("<sip:a@h>", Some(0), 4), None);
        assert!(matches!(unreg, RegisterOutcome::Ok { ref removed, .. } if removed.len() == 1));
    }

    /// The Path of a REGISTER (several headers, comma lists) is kept with every contact it
    /// registers, in order; a refresh without one leaves the binding without a path.
    #[test]
    fn keeps_the_path_in_order_and_a_refresh_replaces_it() {
        let t0 = Instant::now();
        let mut b = Bindings::default();
        let mut m = register(
            "<sip:agent1@192.168.1.5:5090>, <sip:agent1@192.168.1.5:5092>",
            Some(300),
            1,
        );
        m.push_header(
            HeaderName::Other("Path".into()),
            "<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>, <sip:10.0.0.9;lr>",
        );
        m.push_header(HeaderName::Other("Path".into()), "<sip:10.0.0.8;lr>");
        assert!(matches!(
            b.apply(t0, "agent1", &m, None),
            RegisterOutcome::Ok { .. }
        ));
        let want = [
            "<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>",
            "<sip:10.0.0.9;lr>",
            "<sip:10.0.0.8;lr>",
        ];
        let list = b.lookup("agent1", t0);
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|x| x.path == want), "{list:?}");
        // Refreshed directly (no Path): that contact's path is gone, the other keeps its own.
        b.apply(
            t0,
            "agent1",
            &register("<sip:agent1@192.168.1.5:5090>", Some(300), 2),
            None,
        );
        let list = b.lookup("agent1", t0);
        let path_of = |c: &str| {
            list.iter()
                .find(|x| x.contact == c)
                .map(|x| x.path.clone())
                .expect("bound")
        };
        assert!(path_of("sip:agent1@192.168.1.5:5090").is_empty());
        assert_eq!(path_of("sip:agent1@192.168.1.5:5092"), want);
    }

    #[test]
    fn bounded_contacts_per_aor() {
        let t0 = Instant::now();
        let mut b = Bindings::default();
        for i in 0..(MAX_CONTACTS_PER_AOR as u32 + 5) {
            let mut m = register(&format!("<sip:a@10.0.0.{i}>"), Some(3600), i + 1);
            m.set_header(HeaderName::CallId, format!("c{i}"));
            b.apply(t0, "a", &m, None);
        }
        assert_eq!(b.lookup("a", t0).len(), MAX_CONTACTS_PER_AOR);
    }
}
