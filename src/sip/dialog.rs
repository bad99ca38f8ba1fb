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
