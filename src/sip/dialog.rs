//! The dialog core (RFC 3261 §12, §14; RFC 3311 §5.2), sans-IO: what one SIP dialog
//! remembers and the rules every request inside it goes through. The call actor is its
//! shell: it sends what this core builds, answers with the status it names, and feeds it
//! the clock; everything here is unit-tested in virtual time.
//!
//! - Created as UAS from the INVITE and the tag of our answer ([`Dialog::uas`]: route set
//!   = Record-Route in order, remote target = the INVITE's Contact) or as UAC from our
//!   INVITE and the 2xx ([`Dialog::uac`]: route set = the 2xx's Record-Route reversed,
//!   §12.1.2).
//! - Requests received ([`Dialog::handle_request`]): a To tag not ours is 481; a CSeq lower
//!   than the last is 500 (§12.2.2); a re-INVITE or UPDATE that overlaps an offer/answer in
//!   progress ("glare") is 491 when our own is outstanding, 500 + Retry-After when the 2xx
//!   to the peer's INVITE is not yet ACKed (§14.2, RFC 3311 §5.2); an accepted one
//!   refreshes the remote target from its Contact (§12.2.2).
//! - Requests sent ([`Dialog::request`]): CSeq + 1, the remote target as Request-URI, the
//!   route set as Route. Our re-INVITE or UPDATE is tracked until its final answer
//!   ([`Dialog::handle_response`]); a 491 to it sets a back-off deadline (§14.1: 2.1–4 s
//!   when we own the Call-ID, 0–2 s otherwise) reported by [`Dialog::poll_timeout`] and
//!   fired by [`Dialog::handle_timeout`]. The random source is injectable
//!   ([`Dialog::with_jitter`]) so tests pin it.
//!
//! Retransmissions are not the dialog's: the shell (or the transaction layer) absorbs them
//! before a request reaches [`Dialog::handle_request`].

use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

use rand::Rng;

use super::build::{new_branch, LocalIdentity};
use super::message::{HeaderName, Message, Method, StartLine};
use super::uri::Uri;

/// Which side created the dialog (it decides who owns the Call-ID, §14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We answered it.
    Uas,
}

/// Why a dialog could not be created from the messages given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("{0} is missing or malformed")]
    Header(&'static str),
    #[error("a dialog is created by an INVITE, not {0}")]
    NotInvite(String),
    #[error("a UAC dialog is created by a 2xx, not a {0}")]
    Not2xx(u16),
}

/// Why a request in the dialog is refused; the shell answers with [`Rejection::status`],
/// [`Rejection::reason`] and [`Rejection::headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 481: the To tag is not ours (§12.2.2).
    NoDialog,
    /// 500: CSeq lower than the last one received (§12.2.2).
    OutOfOrder,
    /// 491: our own offer is outstanding (§14.2).
    RequestPending,
    /// 500 with Retry-After: the previous offer/answer is not finished (§14.2).
    RetryLater { retry_after: u32 },
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::NoDialog => 481,
            Rejection::OutOfOrder | Rejection::RetryLater { .. } => 500,
            Rejection::RequestPending => 491,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Rejection::NoDialog => "Call/Transaction Does Not Exist",
            Rejection::OutOfOrder => "Out Of Order",
            Rejection::RequestPending => "Request Pending",
            Rejection::RetryLater { .. } => "Server Internal Error",
        }
    }

    /// Header fields the answer carries besides the standard ones.
    pub fn headers(self) -> Vec<(HeaderName, String)> {
        match self {
            Rejection::RetryLater { retry_after } => vec![(
                HeaderName::Other("Retry-After".into()),
                retry_after.to_string(),
            )],
            _ => Vec::new(),
        }
    }
}

/// What to do with a request received in the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it: its CSeq is recorded and, for a re-INVITE or UPDATE, the remote target
    /// refreshed from its Contact.
    Accept,
    /// Answer with this final status and do nothing else.
    Reject(Rejection),
    /// The ACK of the 2xx we are waiting on ([`Dialog::sent_2xx`]): that exchange is done.
    Ack,
    /// An ACK (or a response) that matches nothing of this dialog: absorb it.
    Stray,
}

/// What a response to one of our in-dialog requests means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseVerdict {
    /// Not an answer to our outstanding re-INVITE/UPDATE.
    NotOurs,
    /// A 2xx to our re-INVITE that was already answered and ACKed: its ACK was lost, send
    /// it again (§13.2.2.4).
    Repeated2xx { cseq: u32 },
    /// 1xx: the peer has it.
    Provisional,
    /// The final answer; the request is no longer outstanding.
    Final {
        method: Method,
        cseq: u32,
        code: u16,
        outcome: Outcome,
    },
}

/// The meaning of a final answer to our re-INVITE/UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Accepted,
    /// 491: it met the peer's; [`Dialog::handle_timeout`] says when to send it again.
    Glare { retry_at: Instant },
    /// 408 or 481: the dialog is gone at the far end (§12.2.1.2).
    Gone,
    /// Any other failure: the session stays as it was.
    Refused,
}

/// What a deadline of the dialog asks the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The 491 back-off is over: send the request (`method`) again.
    Retry { method: Method },
}

/// A random duration in the range (the 491 back-off, the Retry-After we put on a 500).
pub type Jitter = Box<dyn FnMut(Range<Duration>) -> Duration + Send>;

/// Our re-INVITE or UPDATE waiting for its final answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outstanding {
    method: Method,
    cseq: u32,
}

/// The 2xx we sent to the peer's INVITE, waiting for its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unacked {
    cseq: u32,
    /// That 2xx carried our offer (late offer): the answer comes in the ACK.
    offer_in_2xx: bool,
}

/// One dialog (§12): identity, targets, route set, CSeqs and the offer/answer in progress.
pub struct Dialog {
    role: Role,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From value when we send requests (tag included).
    local_party: String,
    /// Their To value when we send requests (tag included when they gave one).
    remote_party: String,
    remote_target: Uri,
    /// Route header values, in the order our requests carry them.
    route_set: Vec<String>,
    local_cseq: u32,
    /// None until the peer's first request (a UAC dialog starts without one, §12.1.2).
    remote_cseq: Option<u32>,
    out: Option<Outstanding>,
    unacked: Option<Unacked>,
    /// CSeq of our last re-INVITE answered 2xx (and ACKed by the shell).
    acked_2xx: Option<u32>,
    retry: Option<(Instant, Method)>,
    jitter: Option<Jitter>,
}

impl fmt::Debug for Dialog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialog")
            .field("role", &self.role)
            .field("call_id", &self.call_id)
            .field("local_tag", &self.local_tag)
            .field("remote_tag", &self.remote_tag)
            .field("remote_target", &self.remote_target.as_str())
            .field("route_set", &self.route_set)
            .field("local_cseq", &self.local_cseq)
            .field("remote_cseq", &self.remote_cseq)
            .field("out", &self.out)
            .field("unacked", &self.unacked)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The value of a header that must be there.
fn required<'a>(
    msg: &'a Message,
    name: &HeaderName,
    label: &'static str,
) -> Result<&'a str, DialogError> {
    msg.header(name).ok_or(DialogError::Header(label))
}

fn record_route(msg: &Message) -> impl DoubleEndedIterator<Item = String> + '_ {
    msg.header_values(&HeaderName::RecordRoute)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
}

impl Dialog {
    /// The dialog of an INVITE we answer (§12.1.1), `local_tag` being the To tag of our
    /// answers. Its remote CSeq is the INVITE's.
    pub fn uas(invite: &Message, local_tag: &str) -> Result<Dialog, DialogError> {
        match invite.method() {
            Some(Method::Invite) => {}
            Some(m) => return Err(DialogError::NotInvite(m.to_string())),
            None => return Err(DialogError::NotInvite("a response".into())),
        }
        let call_id = invite
            .call_id()
            .map_err(|_| DialogError::Header("Call-ID"))?
            .to_string();
        let from = invite
            .from_header()
            .map_err(|_| DialogError::Header("From"))?;
        let to_value = required(invite, &HeaderName::To, "To")?;
        let from_value = required(invite, &HeaderName::From, "From")?;
        let cseq = invite.cseq().map_err(|_| DialogError::Header("CSeq"))?.seq;
        let remote_target = invite.contact().map_or(from.uri.clone(), |c| c.uri);
        Ok(Dialog {
            role: Role::Uas,
            call_id,
            local_tag: local_tag.to_string(),
            remote_tag: from.tag().map(str::to_string),
            local_party: format!("{to_value};tag={local_tag}"),
            remote_party: from_value.to_string(),
            remote_target,
            route_set: record_route(invite).collect(),
            local_cseq: 0,
            remote_cseq: Some(cseq),
            out: None,
            unacked: None,
            acked_2xx: None,
            retry: None,
            jitter: None,
        })
    }

    /// The dialog our INVITE formed with this 2xx (§12.1.2). Our CSeq goes on from the
    /// INVITE's; the remote target is the 2xx's Contact (else the INVITE's Request-URI).
    pub fn uac(invite: &Message, response: &Message) -> Result<Dialog, DialogError> {
        let uri = match &invite.start {
            StartLine::Request {
                method: Method::Invite,
                uri,
            } => uri.clone(),
            StartLine::Request { method, .. } => {
                return Err(DialogError::NotInvite(method.to_string()))
            }
            StartLine::Response { .. } => return Err(DialogError::NotInvite("a response".into())),
        };
        match response.status() {
            Some(200..=299) => {}
            other => return Err(DialogError::Not2xx(other.unwrap_or(0))),
        }
        let call_id = invite
            .call_id()
            .map_err(|_| DialogError::Header("Call-ID"))?
            .to_string();
        let from = invite
            .from_header()
            .map_err(|_| DialogError::Header("From"))?;
        let local_tag = from
            .tag()
            .ok_or(DialogError::Header("From tag"))?
            .to_string();
        let from_value = required(invite, &HeaderName::From, "From")?;
        let cseq = invite.cseq().map_err(|_| DialogError::Header("CSeq"))?.seq;
        // The To of the 2xx carries the remote tag; a 2xx without one (RFC 2543) keeps ours.
        let to_value = response
            .header(&HeaderName::To)
            .or(invite.header(&HeaderName::To))
            .ok_or(DialogError::Header("To"))?;
        let remote_tag = response
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        Ok(Dialog {
            role: Role::Uac,
            call_id,
            local_tag,
            remote_tag,
            local_party: from_value.to_string(),
            remote_party: to_value.to_string(),
            remote_target: response.contact().map_or(uri, |c| c.uri),
            route_set: record_route(response).rev().collect(),
            local_cseq: cseq,
            remote_cseq: None,
            out: None,
            unacked: None,
            acked_2xx: None,
            retry: None,
            jitter: None,
        })
    }

    /// The dialog-to-be of an INVITE we are sending: our identity and the Request-URI,
    /// no remote tag yet. The 2xx replaces it with [`Dialog::uac`].
    pub fn uac_pending(
        call_id: &str,
        local_party: &str,
        local_tag: &str,
        remote_target: Uri,
    ) -> Dialog {
        Dialog {
            role: Role::Uac,
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag: None,
            local_party: local_party.to_string(),
            remote_party: format!("<{remote_target}>"),
            remote_target,
            route_set: Vec::new(),
            local_cseq: 1,
            remote_cseq: None,
            out: None,
            unacked: None,
            acked_2xx: None,
            retry: None,
            jitter: None,
        }
    }

    /// Use `jitter` for the random delays (tests pin it; the default is `thread_rng`).
    pub fn with_jitter(mut self, jitter: Jitter) -> Dialog {
        self.jitter = Some(jitter);
        self
    }

    fn pick(&mut self, range: Range<Duration>) -> Duration {
        if range.is_empty() {
            return range.start;
        }
        match self.jitter.as_mut() {
            Some(j) => j(range),
            None => rand::thread_rng().gen_range(range),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The side that sent the initial INVITE owns the Call-ID (§14.1).
    pub fn owns_call_id(&self) -> bool {
        self.role == Role::Uac
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    pub fn remote_tag(&self) -> Option<&str> {
        self.remote_tag.as_deref()
    }

    pub fn local_party(&self) -> &str {
        &self.local_party
    }

    pub fn remote_party(&self) -> &str {
        &self.remote_party
    }

    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    pub fn remote_cseq(&self) -> Option<u32> {
        self.remote_cseq
    }

    /// Our re-INVITE or UPDATE waiting for its final answer: its method and CSeq.
    pub fn outstanding(&self) -> Option<(&Method, u32)> {
        self.out.as_ref().map(|o| (&o.method, o.cseq))
    }

    /// Where offer/answer stands, for the overlap rules ([`on_reinvite`], [`on_update`]).
    pub fn offer_answer_state(&self) -> OfferAnswerState {
        let pending = |m: Method| self.out.as_ref().is_some_and(|o| o.method == m);
        OfferAnswerState {
            our_invite_pending: pending(Method::Invite),
            our_update_pending: pending(Method::Update),
            unacked_2xx: self.unacked.is_some(),
            offer_in_our_2xx: self.unacked.is_some_and(|u| u.offer_in_2xx),
        }
    }

    // ---- requests we send ---------------------------------------------------------------

    /// A new request in the dialog (§12.2.1.1): CSeq + 1, Request-URI the remote target,
    /// Route the route set. A re-INVITE or UPDATE is outstanding from here until
    /// [`Dialog::handle_response`] sees its final answer.
    pub fn request(&mut self, method: Method, local: &LocalIdentity) -> Message {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let seq = self.local_cseq;
        if matches!(method, Method::Invite | Method::Update) {
            self.out = Some(Outstanding {
                method: method.clone(),
                cseq: seq,
            });
            self.retry = None;
        }
        self.build(method, seq, local)
    }

    /// The ACK of a 2xx to our INVITE number `cseq` (§13.2.2.4): a request of its own (new
    /// branch) carrying the INVITE's CSeq number.
    pub fn ack(&self, cseq: u32, local: &LocalIdentity) -> Message {
        self.build(Method::Ack, cseq, local)
    }

    fn build(&self, method: Method, seq: u32, local: &LocalIdentity) -> Message {
        let mut m = Message {
            start: StartLine::Request {
                method: method.clone(),
                uri: self.remote_target.clone(),
            },
            headers: Vec::with_capacity(10),
            body: bytes::Bytes::new(),
        };
        m.push_header(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={};rport",
                local.transport.via_name(),
                local.via_host,
                new_branch()
            ),
        );
        m.push_header(HeaderName::MaxForwards, "70");
        m.push_header(HeaderName::From, self.local_party.clone());
        m.push_header(HeaderName::To, self.remote_party.clone());
        m.push_header(HeaderName::CallId, self.call_id.clone());
        m.push_header(HeaderName::CSeq, format!("{seq} {method}"));
        for r in &self.route_set {
            m.push_header(HeaderName::Route, r.clone());
        }
        m.push_header(HeaderName::UserAgent, local.user_agent.clone());
        m
    }

    /// A response in the dialog: is it the answer to our outstanding re-INVITE/UPDATE?
    pub fn handle_response(&mut self, msg: &Message, now: Instant) -> ResponseVerdict {
        let (Some(code), Ok(cseq)) = (msg.status(), msg.cseq()) else {
            return ResponseVerdict::NotOurs;
        };
        let ok = (200..300).contains(&code);
        if cseq.method == Method::Invite
            && ok
            && self.out.is_none()
            && self.acked_2xx == Some(cseq.seq)
        {
            return ResponseVerdict::Repeated2xx { cseq: cseq.seq };
        }
        let ours = self
            .out
            .as_ref()
            .is_some_and(|o| o.cseq == cseq.seq && o.method == cseq.method);
        if !ours {
            return ResponseVerdict::NotOurs;
        }
        if code < 200 {
            return ResponseVerdict::Provisional;
        }
        self.out = None;
        if cseq.method == Method::Invite && ok {
            self.acked_2xx = Some(cseq.seq);
        }
        let outcome = match code {
            200..=299 => Outcome::Accepted,
            491 => {
                let window = glare_retry_window(self.owns_call_id());
                let retry_at = now + self.pick(window);
                self.retry = Some((retry_at, cseq.method.clone()));
                Outcome::Glare { retry_at }
            }
            408 | 481 => Outcome::Gone,
            _ => Outcome::Refused,
        };
        ResponseVerdict::Final {
            method: cseq.method,
            cseq: cseq.seq,
            code,
            outcome,
        }
    }

    /// Our outstanding request got no final answer in time (transaction timeout).
    pub fn request_timed_out(&mut self) {
        self.out = None;
    }

    /// The dialog is ending: nothing of ours is outstanding or to be retried any more.
    pub fn abandon(&mut self) {
        self.out = None;
        self.retry = None;
    }

    /// No retry after the 491 after all (the peer's own refresh did the job).
    pub fn cancel_retry(&mut self) {
        self.retry = None;
    }

    // ---- requests we receive ------------------------------------------------------------

    /// We sent a 2xx to the peer's INVITE number `cseq`; `offer_in_2xx`: it carried our
    /// offer (the answer comes in the ACK). Until the ACK, an overlapping offer waits.
    pub fn sent_2xx(&mut self, cseq: u32, offer_in_2xx: bool) {
        self.unacked = Some(Unacked { cseq, offer_in_2xx });
    }

    /// The 2xx will never be ACKed (given up, or the dialog is ending).
    pub fn ack_wait_over(&mut self) {
        self.unacked = None;
    }

    /// The rules for a request received in the dialog (retransmissions already absorbed).
    /// BYE is honoured whatever its CSeq (a caller who left is not kept on a reordering);
    /// requests without dialog state (OPTIONS, CANCEL, unknown methods) are the shell's.
    pub fn handle_request(&mut self, msg: &Message) -> Verdict {
        let Some(method) = msg.method() else {
            return Verdict::Stray;
        };
        if *method == Method::Ack {
            let seq = msg.cseq().map(|c| c.seq).ok();
            return match self.unacked {
                Some(u) if Some(u.cseq) == seq => {
                    self.unacked = None;
                    Verdict::Ack
                }
                _ => Verdict::Stray,
            };
        }
        let checks_cseq = match method {
            Method::Invite | Method::Update | Method::Info | Method::Refer => true,
            Method::Bye => false,
            _ => return Verdict::Accept,
        };
        let to_tag = msg
            .to_header()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if to_tag.as_deref() != Some(self.local_tag.as_str()) {
            return Verdict::Reject(Rejection::NoDialog);
        }
        if checks_cseq {
            let Ok(cseq) = msg.cseq() else {
                return Verdict::Reject(Rejection::OutOfOrder);
            };
            if self.remote_cseq.is_some_and(|r| cseq.seq < r) {
                return Verdict::Reject(Rejection::OutOfOrder);
            }
            self.remote_cseq = Some(cseq.seq);
        }
        let overlap = match method {
            Method::Invite => on_reinvite(self.offer_answer_state()),
            Method::Update => on_update(self.offer_answer_state(), !msg.body.is_empty()),
            _ => Overlap::Proceed,
        };
        match overlap {
            Overlap::Proceed => {}
            Overlap::RequestPending => return Verdict::Reject(Rejection::RequestPending),
            Overlap::RetryLater => {
                let max = Duration::from_secs(u64::from(RETRY_AFTER_MAX_SECS) + 1);
                let secs = self.pick(Duration::ZERO..max).as_secs() as u32;
                return Verdict::Reject(Rejection::RetryLater {
                    retry_after: secs.min(RETRY_AFTER_MAX_SECS),
                });
            }
        }
        if matches!(method, Method::Invite | Method::Update) {
            // Target refresh (§12.2.2): the Contact of a re-INVITE or UPDATE replaces the
            // remote target.
            if let Some(c) = msg.contact() {
                self.remote_target = c.uri;
            }
        }
        Verdict::Accept
    }

    // ---- time ---------------------------------------------------------------------------

    /// When [`Dialog::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retry.as_ref().map(|(at, _)| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<Event> {
        match &self.retry {
            Some((at, _)) if now >= *at => {
                self.retry.take().map(|(_, method)| Event::Retry { method })
            }
            _ => None,
        }
    }
}

// ---- the overlap rules as pure functions ------------------------------------------------

/// Where the dialog's offer/answer stands when a re-INVITE or UPDATE arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferAnswerState {
    /// Our re-INVITE is sent and has no final response yet.
    pub our_invite_pending: bool,
    /// Our UPDATE is sent and has no final response yet.
    pub our_update_pending: bool,
    /// We sent a 2xx to an INVITE and its ACK has not arrived.
    pub unacked_2xx: bool,
    /// That 2xx carried our offer (late offer): the answer comes in the ACK.
    pub offer_in_our_2xx: bool,
}

/// What to do with the incoming request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// No overlap: handle it.
    Proceed,
    /// 491 Request Pending (RFC 3261 §14.2).
    RequestPending,
    /// 500 with Retry-After 0..=[`RETRY_AFTER_MAX_SECS`] (RFC 3261 §14.2).
    RetryLater,
}

impl Overlap {
    /// The status code to answer with, `None` for [`Overlap::Proceed`].
    pub fn status(self) -> Option<u16> {
        match self {
            Overlap::Proceed => None,
            Overlap::RequestPending => Some(491),
            Overlap::RetryLater => Some(500),
        }
    }
}

/// Upper bound of the Retry-After we put on a 500 for an overlapping request.
pub const RETRY_AFTER_MAX_SECS: u32 = 10;

/// A re-INVITE arrived (its CSeq already checked).
pub fn on_reinvite(s: OfferAnswerState) -> Overlap {
    if s.our_invite_pending {
        Overlap::RequestPending
    } else if s.unacked_2xx {
        Overlap::RetryLater
    } else {
        Overlap::Proceed
    }
}

/// An UPDATE arrived (its CSeq already checked). Without an offer it only refreshes the
/// session timer, which overlaps nothing but our own UPDATE.
pub fn on_update(s: OfferAnswerState, has_offer: bool) -> Overlap {
    if s.our_update_pending || (has_offer && s.our_invite_pending) {
        Overlap::RequestPending
    } else if has_offer && s.unacked_2xx && s.offer_in_our_2xx {
        Overlap::RetryLater
    } else {
        Overlap::Proceed
    }
}

/// How long to wait before retrying our request after a 491 (RFC 3261 §14.1): 2.1–4 s for
/// the owner of the Call-ID (the side that sent the initial INVITE), 0–2 s for the other.
pub fn glare_retry_window(owns_call_id: bool) -> Range<Duration> {
    if owns_call_id {
        Duration::from_millis(2100)..Duration::from_millis(4000)
    } else {
        Duration::ZERO..Duration::from_millis(2000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Framing;
    use crate::sip::transport::TransportKind;

    fn state(invite: bool, update: bool, unacked: bool, offer_in_2xx: bool) -> OfferAnswerState {
        OfferAnswerState {
            our_invite_pending: invite,
            our_update_pending: update,
            unacked_2xx: unacked,
            offer_in_our_2xx: offer_in_2xx,
        }
    }

    #[test]
    fn reinvite_gets_491_while_ours_is_pending_and_500_before_the_ack() {
        assert_eq!(on_reinvite(OfferAnswerState::default()), Overlap::Proceed);
        assert_eq!(
            on_reinvite(state(true, false, false, false)),
            Overlap::RequestPending
        );
        // Ours pending wins over the un-ACKed 2xx (the order the actor has always used).
        assert_eq!(
            on_reinvite(state(true, false, true, false)),
            Overlap::RequestPending
        );
        assert_eq!(
            on_reinvite(state(false, false, true, false)),
            Overlap::RetryLater
        );
        // Our UPDATE does not block a re-INVITE.
        assert_eq!(
            on_reinvite(state(false, true, false, false)),
            Overlap::Proceed
        );
    }

    #[test]
    fn update_rules_depend_on_whether_it_carries_an_offer() {
        // Our UPDATE outstanding: 491 with or without an offer.
        for offer in [false, true] {
            assert_eq!(
                on_update(state(false, true, false, false), offer),
                Overlap::RequestPending
            );
        }
        // Our re-INVITE outstanding: only an offer collides.
        assert_eq!(
            on_update(state(true, false, false, false), true),
            Overlap::RequestPending
        );
        assert_eq!(
            on_update(state(true, false, false, false), false),
            Overlap::Proceed
        );
        // Late offer in our 2xx, not yet answered in the ACK: an offer must wait.
        assert_eq!(
            on_update(state(false, false, true, true), true),
            Overlap::RetryLater
        );
        assert_eq!(
            on_update(state(false, false, true, true), false),
            Overlap::Proceed
        );
        // 2xx un-ACKed but the offer was theirs (answer already given): proceed.
        assert_eq!(
            on_update(state(false, false, true, false), true),
            Overlap::Proceed
        );
    }

    #[test]
    fn statuses_and_retry_windows() {
        assert_eq!(Overlap::Proceed.status(), None);
        assert_eq!(Overlap::RequestPending.status(), Some(491));
        assert_eq!(Overlap::RetryLater.status(), Some(500));
        let owner = glare_retry_window(true);
        let other = glare_retry_window(false);
        assert!(
            owner.start > other.end,
            "the two sides never retry at the same time"
        );
        assert_eq!(other.start, Duration::ZERO);
        assert_eq!(owner.end, Duration::from_secs(4));
    }

    fn local(host: &str) -> LocalIdentity {
        LocalIdentity {
            contact: format!("<sip:sb@{host}>"),
            via_host: host.to_string(),
            transport: TransportKind::Udp,
            user_agent: "test".into(),
        }
    }

    fn parse(text: &str) -> Message {
        Message::parse(text.as_bytes(), Framing::Datagram).expect("test message")
    }

    /// Through the wire and back, as the peer would see it.
    fn wire(m: &Message) -> Message {
        Message::parse(&m.to_bytes(), Framing::Datagram).expect("our own message parses")
    }

    /// The initial INVITE from alice (10.0.0.1) through two proxies p1 (nearest alice), p2.
    fn invite() -> Message {
        parse(
            "INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
             Via: SIP/2.0/UDP p2;branch=z9hG4bKp2\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
             Record-Route: <sip:p2;lr>\r\nRecord-Route: <sip:p1;lr>\r\n\
             From: <sip:alice@10.0.0.1>;tag=atag\r\nTo: <sip:bob@10.0.0.2>\r\n\
             Call-ID: c1@10.0.0.1\r\nCSeq: 5 INVITE\r\nContact: <sip:alice@10.0.0.1:5062>\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
    }

    /// The 2xx our INVITE got back (Record-Route as the proxies put it in the INVITE).
    fn ok_2xx(invite: &Message) -> Message {
        let mut r = invite.response(200, "OK", Some("btag"));
        for h in invite
            .headers
            .iter()
            .filter(|h| h.name == HeaderName::RecordRoute)
        {
            r.headers.push(h.clone());
        }
        r.push_header(HeaderName::Contact, "<sip:bob@10.0.0.2:5070>");
        wire(&r)
    }

    /// An in-dialog request of the peer (to our tag), CSeq `seq`.
    fn from_peer(method: &str, seq: u32, extra: &str, body: &str) -> Message {
        parse(&format!(
            "{method} sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{seq}{method}\r\n\
             From: <sip:alice@10.0.0.1>;tag=atag\r\nTo: <sip:bob@10.0.0.2>;tag=btag\r\n\
             Call-ID: c1@10.0.0.1\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\n{extra}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    }

    fn answer(req: &Message, code: u16) -> Message {
        wire(&req.response(code, "X", Some("atag")))
    }

    fn uas() -> Dialog {
        Dialog::uas(&invite(), "btag").expect("UAS dialog")
    }

    fn pinned(d: Dialog, pick: fn(Range<Duration>) -> Duration) -> Dialog {
        d.with_jitter(Box::new(pick))
    }

    #[test]
    fn uas_and_uac_route_sets_and_targets() {
        let d = uas();
        assert_eq!(d.role(), Role::Uas);
        assert!(!d.owns_call_id());
        // UAS: Record-Route in order (§12.1.1); target the INVITE's Contact.
        assert_eq!(d.route_set(), ["<sip:p2;lr>", "<sip:p1;lr>"]);
        assert_eq!(d.remote_target().as_str(), "sip:alice@10.0.0.1:5062");
        assert_eq!(d.remote_cseq(), Some(5));
        assert_eq!(d.remote_tag(), Some("atag"));
        assert_eq!(d.local_party(), "<sip:bob@10.0.0.2>;tag=btag");
        // UAC (alice's side): the 2xx's Record-Route reversed (§12.1.2), its Contact.
        let c = Dialog::uac(&invite(), &ok_2xx(&invite())).expect("UAC dialog");
        assert_eq!(c.role(), Role::Uac);
        assert!(c.owns_call_id());
        assert_eq!(c.route_set(), ["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(c.remote_target().as_str(), "sip:bob@10.0.0.2:5070");
        assert_eq!(c.local_cseq(), 5);
        assert_eq!(c.remote_cseq(), None);
        assert_eq!(c.remote_tag(), Some("btag"));
        assert_eq!(c.local_tag(), "atag");
        // Not dialogs.
        assert_eq!(
            Dialog::uac(&invite(), &wire(&invite().response(486, "Busy", Some("b")))).err(),
            Some(DialogError::Not2xx(486))
        );
        let bye = from_peer("BYE", 6, "", "");
        assert!(matches!(
            Dialog::uas(&bye, "t"),
            Err(DialogError::NotInvite(_))
        ));
        let mut broken = invite();
        broken.headers.retain(|h| h.name != HeaderName::CallId);
        assert_eq!(
            Dialog::uas(&broken, "t").err(),
            Some(DialogError::Header("Call-ID"))
        );
    }

    #[test]
    fn bye_is_built_from_the_dialog() {
        let mut d = uas();
        let l = local("10.0.0.2");
        let bye = wire(&d.request(Method::Bye, &l));
        bye.validate_request().expect("valid BYE");
        assert_eq!(bye.method(), Some(&Method::Bye));
        match &bye.start {
            StartLine::Request { uri, .. } => assert_eq!(uri.as_str(), "sip:alice@10.0.0.1:5062"),
            StartLine::Response { .. } => panic!("a request"),
        }
        assert_eq!(bye.cseq().expect("cseq").seq, 1);
        assert_eq!(bye.from_header().expect("from").tag(), Some("btag"));
        assert_eq!(bye.to_header().expect("to").tag(), Some("atag"));
        assert_eq!(bye.call_id().expect("call-id"), "c1@10.0.0.1");
        let routes: Vec<&str> = bye.header_values(&HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:p2;lr>", "<sip:p1;lr>"]);
        assert!(bye
            .top_via()
            .expect("via")
            .branch()
            .is_some_and(|b| b.starts_with("z9hG4bK")));
        // A BYE is not an offer: nothing outstanding. The next request counts on.
        assert_eq!(d.outstanding(), None);
        assert_eq!(
            wire(&d.request(Method::Info, &l)).cseq().expect("cseq").seq,
            2
        );
        // The ACK of a 2xx keeps the INVITE's number and does not count.
        let ack = wire(&d.ack(7, &l));
        assert_eq!(
            ack.cseq().expect("cseq"),
            crate::sip::message::CSeq {
                seq: 7,
                method: Method::Ack
            }
        );
        assert_eq!(d.local_cseq(), 2);
    }

    #[test]
    fn out_of_order_cseq_gets_500_and_bye_is_honoured() {
        let mut d = uas();
        assert_eq!(
            d.handle_request(&from_peer("INFO", 6, "", "")),
            Verdict::Accept
        );
        assert_eq!(d.remote_cseq(), Some(6));
        // Equal is fine (a retransmission the shell did not absorb), lower is not.
        assert_eq!(
            d.handle_request(&from_peer("INFO", 6, "", "")),
            Verdict::Accept
        );
        let v = d.handle_request(&from_peer("INFO", 4, "", ""));
        assert_eq!(v, Verdict::Reject(Rejection::OutOfOrder));
        assert_eq!(
            (
                Rejection::OutOfOrder.status(),
                Rejection::OutOfOrder.reason()
            ),
            (500, "Out Of Order")
        );
        assert_eq!(d.remote_cseq(), Some(6));
        assert_eq!(
            d.handle_request(&from_peer("INVITE", 3, "", "")),
            Verdict::Reject(Rejection::OutOfOrder)
        );
        // A BYE ends the call whatever its number.
        assert_eq!(
            d.handle_request(&from_peer("BYE", 2, "", "")),
            Verdict::Accept
        );
        // Not our tag: 481.
        let mut stranger = from_peer("INFO", 9, "", "");
        stranger.set_header(HeaderName::To, "<sip:bob@10.0.0.2>;tag=other");
        assert_eq!(
            d.handle_request(&stranger),
            Verdict::Reject(Rejection::NoDialog)
        );
        assert_eq!(Rejection::NoDialog.status(), 481);
        // OPTIONS has no dialog rules; a UAC dialog takes any first number from the peer.
        assert_eq!(
            d.handle_request(&from_peer("OPTIONS", 1, "", "")),
            Verdict::Accept
        );
        let mut c = Dialog::uac(&invite(), &ok_2xx(&invite())).expect("UAC dialog");
        let mut first = from_peer("INFO", 1, "", "");
        first.set_header(HeaderName::To, "<sip:alice@10.0.0.1>;tag=atag");
        assert_eq!(c.handle_request(&first), Verdict::Accept);
        assert_eq!(c.remote_cseq(), Some(1));
    }

    #[test]
    fn target_refresh_on_reinvite_and_update() {
        let mut d = uas();
        let moved = from_peer("INVITE", 6, "Contact: <sip:alice@10.9.9.9:6000>\r\n", "");
        assert_eq!(d.handle_request(&moved), Verdict::Accept);
        assert_eq!(d.remote_target().as_str(), "sip:alice@10.9.9.9:6000");
        let l = local("10.0.0.2");
        match &wire(&d.request(Method::Bye, &l)).start {
            StartLine::Request { uri, .. } => assert_eq!(uri.as_str(), "sip:alice@10.9.9.9:6000"),
            StartLine::Response { .. } => panic!("a request"),
        }
        let upd = from_peer("UPDATE", 7, "Contact: <sip:alice@10.8.8.8>\r\n", "");
        assert_eq!(d.handle_request(&upd), Verdict::Accept);
        assert_eq!(d.remote_target().as_str(), "sip:alice@10.8.8.8");
        // INFO is no target refresh; a refused re-INVITE refreshes nothing either.
        let info = from_peer("INFO", 8, "Contact: <sip:alice@10.7.7.7>\r\n", "");
        assert_eq!(d.handle_request(&info), Verdict::Accept);
        d.request(Method::Invite, &l);
        let glare = from_peer("INVITE", 9, "Contact: <sip:alice@10.6.6.6>\r\n", "");
        assert_eq!(
            d.handle_request(&glare),
            Verdict::Reject(Rejection::RequestPending)
        );
        assert_eq!(d.remote_target().as_str(), "sip:alice@10.8.8.8");
    }

    #[test]
    fn glare_both_ways() {
        let l = local("10.0.0.2");
        // Our re-INVITE outstanding: theirs gets 491, and so does their UPDATE with an offer
        // (one without an offer is only a refresh).
        let mut d = uas();
        let ours = wire(&d.request(Method::Invite, &l));
        assert_eq!(d.outstanding(), Some((&Method::Invite, 1)));
        assert_eq!(
            d.handle_request(&from_peer("INVITE", 6, "", "")),
            Verdict::Reject(Rejection::RequestPending)
        );
        assert_eq!(
            d.handle_request(&from_peer("UPDATE", 7, "", "v=0\r\n")),
            Verdict::Reject(Rejection::RequestPending)
        );
        assert_eq!(
            d.handle_request(&from_peer("UPDATE", 8, "", "")),
            Verdict::Accept
        );
        // Provisional, then the final answer: no longer outstanding.
        let t0 = Instant::now();
        assert_eq!(
            d.handle_response(&answer(&ours, 100), t0),
            ResponseVerdict::Provisional
        );
        assert!(matches!(
            d.handle_response(&answer(&ours, 200), t0),
            ResponseVerdict::Final {
                code: 200,
                cseq: 1,
                outcome: Outcome::Accepted,
                ..
            }
        ));
        assert_eq!(d.outstanding(), None);
        // The same 2xx again: its ACK was lost.
        assert_eq!(
            d.handle_response(&answer(&ours, 200), t0),
            ResponseVerdict::Repeated2xx { cseq: 1 }
        );
        assert_eq!(
            d.handle_request(&from_peer("INVITE", 9, "", "")),
            Verdict::Accept
        );

        // The other way: the peer's re-INVITE answered 2xx and not yet ACKed. Their next
        // re-INVITE waits (500 + Retry-After 0..=10); so does an UPDATE offer when our 2xx
        // carried the offer (late offer), not when it carried the answer.
        let mut d = pinned(uas(), |r| r.end - Duration::from_millis(1));
        d.handle_request(&from_peer("INVITE", 6, "", ""));
        d.sent_2xx(6, false);
        let v = d.handle_request(&from_peer("INVITE", 7, "", ""));
        assert_eq!(
            v,
            Verdict::Reject(Rejection::RetryLater { retry_after: 10 })
        );
        if let Verdict::Reject(r) = v {
            assert_eq!(r.status(), 500);
            assert_eq!(
                r.headers(),
                [(HeaderName::Other("Retry-After".into()), "10".to_string())]
            );
        }
        assert_eq!(
            d.handle_request(&from_peer("UPDATE", 8, "", "v=0\r\n")),
            Verdict::Accept
        );
        // A stray ACK changes nothing; the right one ends the wait.
        assert_eq!(
            d.handle_request(&from_peer("ACK", 5, "", "")),
            Verdict::Stray
        );
        assert_eq!(d.handle_request(&from_peer("ACK", 6, "", "")), Verdict::Ack);
        assert_eq!(
            d.handle_request(&from_peer("INVITE", 9, "", "")),
            Verdict::Accept
        );
        d.sent_2xx(9, true);
        assert!(matches!(
            d.handle_request(&from_peer("UPDATE", 10, "", "v=0\r\n")),
            Verdict::Reject(Rejection::RetryLater { .. })
        ));
        d.ack_wait_over();
        assert_eq!(
            d.handle_request(&from_peer("UPDATE", 11, "", "v=0\r\n")),
            Verdict::Accept
        );
        // Ours pending wins over the un-ACKed 2xx.
        d.sent_2xx(11, false);
        d.request(Method::Invite, &l);
        assert_eq!(
            d.handle_request(&from_peer("INVITE", 12, "", "")),
            Verdict::Reject(Rejection::RequestPending)
        );
    }

    #[test]
    fn retry_after_491_is_a_deadline_within_the_rfc_window() {
        let l = local("10.0.0.2");
        let t0 = Instant::now();
        for owner in [false, true] {
            let window = glare_retry_window(owner);
            for pick in [
                (|r: Range<Duration>| r.start) as fn(Range<Duration>) -> Duration,
                |r: Range<Duration>| r.end - Duration::from_nanos(1),
            ] {
                let base = if owner {
                    Dialog::uac(&invite(), &ok_2xx(&invite())).expect("UAC dialog")
                } else {
                    uas()
                };
                let mut d = pinned(base, pick);
                let req = wire(&d.request(Method::Invite, &l));
                assert_eq!(d.poll_timeout(), None);
                let v = d.handle_response(&answer(&req, 491), t0);
                let ResponseVerdict::Final {
                    outcome: Outcome::Glare { retry_at },
                    ..
                } = v
                else {
                    panic!("491 is glare: {v:?}");
                };
                assert!(
                    window.contains(&(retry_at - t0)),
                    "{owner} {:?}",
                    retry_at - t0
                );
                assert_eq!(d.poll_timeout(), Some(retry_at));
                assert_eq!(d.outstanding(), None);
                assert_eq!(d.handle_timeout(retry_at - Duration::from_nanos(1)), None);
                assert_eq!(
                    d.handle_timeout(retry_at),
                    Some(Event::Retry {
                        method: Method::Invite
                    })
                );
                assert_eq!(d.poll_timeout(), None);
                assert_eq!(d.handle_timeout(retry_at + Duration::from_secs(9)), None);
            }
        }
        // The real random source stays in the window too.
        for _ in 0..200 {
            let mut d = uas();
            let req = wire(&d.request(Method::Update, &l));
            d.handle_response(&answer(&req, 491), t0);
            let at = d.poll_timeout().expect("a retry");
            assert!(at - t0 < Duration::from_secs(2));
        }
        // A new request of ours, abandon and cancel_retry all drop the pending retry.
        let mut d = uas();
        let req = wire(&d.request(Method::Invite, &l));
        d.handle_response(&answer(&req, 491), t0);
        d.cancel_retry();
        assert_eq!(d.poll_timeout(), None);
        // 408/481: the dialog is gone; others refused.
        let req = wire(&d.request(Method::Update, &l));
        assert!(matches!(
            d.handle_response(&answer(&req, 481), t0),
            ResponseVerdict::Final {
                outcome: Outcome::Gone,
                ..
            }
        ));
        let req = wire(&d.request(Method::Update, &l));
        assert!(matches!(
            d.handle_response(&answer(&req, 488), t0),
            ResponseVerdict::Final {
                outcome: Outcome::Refused,
                ..
            }
        ));
        // A response to something else is not ours.
        let bye = wire(&d.request(Method::Bye, &l));
        assert_eq!(
            d.handle_response(&answer(&bye, 200), t0),
            ResponseVerdict::NotOurs
        );
    }

    /// Two cores, alice (UAC) and bob (UAS), both refreshing by re-INVITE at the same
    /// moments, over a network that drops, delays and reorders. The transaction layer is
    /// modelled as "resend until delivered" (a dropped message is sent again after T1);
    /// time steps to the next deadline. Every glare resolves: both sides' re-INVITEs
    /// succeed, alice (owner of the Call-ID) backing off longer than bob.
    #[test]
    fn uac_and_uas_reinvite_through_a_lossy_reordering_network() {
        #[derive(Debug)]
        struct Packet {
            at: Instant,
            to_alice: bool,
            msg: Message,
        }
        struct Net {
            queue: Vec<Packet>,
            seed: u64,
        }
        impl Net {
            fn rand(&mut self) -> u64 {
                self.seed ^= self.seed << 13;
                self.seed ^= self.seed >> 7;
                self.seed ^= self.seed << 17;
                self.seed
            }
            /// Loss 30 % (resent after T1 until through), delay 10..200 ms (reorders).
            fn send(&mut self, now: Instant, to_alice: bool, msg: &Message) {
                let mut at = now;
                while self.rand() % 10 < 3 {
                    at += Duration::from_millis(500);
                }
                at += Duration::from_millis(10 + self.rand() % 190);
                self.queue.push(Packet {
                    at,
                    to_alice,
                    msg: wire(msg),
                });
            }
        }
        let seeded = |seed: u64| -> Jitter {
            let mut x = seed;
            Box::new(move |r: Range<Duration>| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let span = (r.end - r.start).as_micros() as u64;
                r.start + Duration::from_micros(x % span.max(1))
            })
        };
        for seed in 1..=20u64 {
            let la = local("10.0.0.1");
            let lb = local("10.0.0.2");
            let inv = invite();
            let mut bob = Dialog::uas(&inv, "btag")
                .expect("UAS")
                .with_jitter(seeded(seed * 7));
            let mut alice = Dialog::uac(&inv, &ok_2xx(&inv))
                .expect("UAC")
                .with_jitter(seeded(seed * 13));
            let mut net = Net {
                queue: Vec::new(),
                seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            };
            let t0 = Instant::now();
            let mut now = t0;
            // Each side wants one re-INVITE through; both start at once (glare).
            let mut done = [false, false]; // alice, bob
            let mut glares = 0;
            // A 500 + Retry-After: the test's own "try again later" (not the dialog's job).
            let mut later: Vec<(Instant, usize)> = Vec::new();
            let r = alice.request(Method::Invite, &la);
            net.send(now, false, &r);
            let r = bob.request(Method::Invite, &lb);
            net.send(now, true, &r);
            let mut steps = 0;
            while !(done[0] && done[1]) {
                steps += 1;
                assert!(steps < 500, "seed {seed}: no progress");
                // The next thing to happen: a delivery or a dialog deadline.
                let next_packet = net.queue.iter().map(|p| p.at).min();
                let next_later = later.iter().map(|(at, _)| *at).min();
                let next = [
                    next_packet,
                    next_later,
                    alice.poll_timeout(),
                    bob.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("something is pending");
                now = next;
                for (i, d) in [&mut alice, &mut bob].into_iter().enumerate() {
                    let again = later.iter().any(|(at, who)| *who == i && *at <= now);
                    if again {
                        later.retain(|(_, who)| *who != i);
                    }
                    let retry = matches!(d.handle_timeout(now), Some(Event::Retry { .. }));
                    if retry || again {
                        let l = if i == 0 { &la } else { &lb };
                        let r = d.request(Method::Invite, l);
                        net.send(now, i == 1, &r);
                    }
                }
                let due: Vec<Packet> = {
                    let (due, rest) = std::mem::take(&mut net.queue)
                        .into_iter()
                        .partition(|p| p.at <= now);
                    net.queue = rest;
                    due
                };
                for p in due {
                    let (me, l, idx) = if p.to_alice {
                        (&mut alice, &la, 0)
                    } else {
                        (&mut bob, &lb, 1)
                    };
                    match p.msg.status() {
                        None => {
                            let method = p.msg.method().cloned();
                            let v = me.handle_request(&p.msg);
                            let reply = match v {
                                Verdict::Accept if method == Some(Method::Invite) => {
                                    let seq = p.msg.cseq().expect("cseq").seq;
                                    me.sent_2xx(seq, false);
                                    Some(p.msg.response(200, "OK", Some(me.local_tag())))
                                }
                                Verdict::Reject(r) => {
                                    let mut resp = p.msg.response(
                                        r.status(),
                                        r.reason(),
                                        Some(me.local_tag()),
                                    );
                                    for (n, v) in r.headers() {
                                        resp.push_header(n, v);
                                    }
                                    Some(resp)
                                }
                                Verdict::Accept | Verdict::Ack | Verdict::Stray => None,
                            };
                            if let Some(reply) = reply {
                                net.send(now, !p.to_alice, &reply);
                            }
                        }
                        Some(code) => {
                            let v = me.handle_response(&p.msg, now);
                            let ResponseVerdict::Final {
                                method: Method::Invite,
                                cseq,
                                outcome,
                                ..
                            } = v
                            else {
                                continue;
                            };
                            // Every final answer to an INVITE is ACKed.
                            let ack = me.ack(cseq, l);
                            net.send(now, !p.to_alice, &ack);
                            match outcome {
                                Outcome::Accepted => done[idx] = true,
                                Outcome::Glare { retry_at } => {
                                    glares += 1;
                                    let w = glare_retry_window(idx == 0);
                                    assert!(w.contains(&(retry_at - now)), "seed {seed}");
                                }
                                Outcome::Refused => {
                                    assert_eq!(code, 500, "seed {seed}");
                                    let secs = p
                                        .msg
                                        .header_named("Retry-After")
                                        .and_then(|v| v.parse::<u64>().ok())
                                        .expect("Retry-After");
                                    later.push((now + Duration::from_secs(secs), idx));
                                }
                                Outcome::Gone => panic!("seed {seed}: dialog gone"),
                            }
                        }
                    }
                }
            }
            // Both started at once: the first round collides at least on one side (with
            // loss, the other side's 491 may arrive before the late re-INVITE does).
            assert!(glares >= 1, "seed {seed}: {glares} glares");
            assert!(
                now - t0 < Duration::from_secs(60),
                "seed {seed}: {:?}",
                now - t0
            );
            // Nothing left outstanding, CSeqs in step with what each side saw.
            assert_eq!(alice.outstanding(), None);
            assert_eq!(bob.outstanding(), None);
            assert_eq!(bob.remote_cseq(), Some(alice.local_cseq()));
            assert_eq!(alice.remote_cseq(), Some(bob.local_cseq()));
        }
    }
}
