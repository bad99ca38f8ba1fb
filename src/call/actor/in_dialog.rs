//! In-dialog requests of calls we answer beyond BYE and INFO, the shell side: re-INVITE and
//! UPDATE (RFC 3311) offer/answer applied to the media, RFC 4028 session timers driven from
//! `crate::sip::session_timer`, our own refreshes (UPDATE, or re-INVITE when the peer does
//! not allow UPDATE) and our own hold of the peer (a re-INVITE offering `sendonly`, and
//! `sendrecv` again to resume: RFC 3264 §8.4; asked by a browser agent's page on another
//! node's call, `actor/peer_leg.rs`) sent in client transactions (`sip::transaction`, held
//! by the call: their retransmissions, timeouts and the ACK of a non-2xx final are the
//! cores'). Each re-INVITE and UPDATE received is answered once: their retransmissions (and
//! the ACK of a non-2xx answer to a re-INVITE) are absorbed by the router's server
//! transactions and never come here (`call::router`, `sip::transaction::InviteServers`); the
//! 2xx to a re-INVITE is retransmitted by the call until its ACK (`pending_2xx`). The
//! dialog rules — CSeq order, the RFC 3261 §14 glare answers (491, 500 + Retry-After), the
//! target refresh and the back-off after a 491 to ours — are the core's (`crate::sip::dialog`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};

use super::Call;
use super::Phase;
use crate::call::dialog::{response, TIMEOUT_64T1};
use crate::call::disposition::{Disposition, HangupCause};
use crate::sip::dialog::{self, Outcome, Rejection, ResponseVerdict, Verdict};
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::sdp::{self, Direction, Negotiated, SessionDescription};
use crate::sip::session_timer::{self, Answer, Event, Limits, SessionTimer};
use crate::sip::transaction::TransactionKey;

/// The in-dialog state of a call (kept in one field so the call constructors stay short).
#[derive(Debug, Default)]
pub(super) struct InDialog {
    /// The running session timer (None: the peer asked for none, or turned it off).
    timer: Option<SessionTimer>,
    /// What we answered to the INVITE's Session-Expires; the timer starts with the 200.
    invite_answer: Option<Answer>,
    /// The INVITE's Allow listed UPDATE: our refreshes use it (no SDP), else re-INVITE.
    peer_allows_update: bool,
    /// Our own in-dialog request (a refresh) waiting for its final answer.
    out: Option<OutRequest>,
    /// The ACK to our last re-INVITE's 2xx, resent when the peer retransmits that 2xx.
    last_ack: Option<(u32, Vec<u8>)>,
    /// Our side's hold of the peer.
    hold: Hold,
}

/// Our side's hold of the peer: what we want, and what the peer last accepted (a 2xx to a
/// re-INVITE of ours offering it). They differ → a re-INVITE is due ([`Hold::due`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Hold {
    wanted: bool,
    agreed: bool,
}

impl Hold {
    fn due(self) -> bool {
        self.wanted != self.agreed
    }

    /// The final answer to a re-INVITE of ours that offered `offered` (None: no offer, an
    /// UPDATE). Accepted: the peer agrees. Refused or timed out: we stop asking (no endless
    /// re-offers), so what is wanted falls back to what was agreed — unless the wish changed
    /// meanwhile (the page resumed while its hold was refused): that is offered next. The
    /// side that asked (the page) keeps its own state, see `peer_leg.rs`. A 491 is neither:
    /// the dialog's back-off sends it again.
    fn answered(&mut self, offered: Option<bool>, accepted: bool) {
        let Some(offered) = offered else { return };
        if accepted {
            self.agreed = offered;
        } else if offered == self.wanted {
            self.wanted = self.agreed;
        }
    }
}

/// Our direction in an offer of ours: `current` is what we last answered to the peer's
/// offer; our hold (RFC 3264 §8.4) makes it `sendonly`, or `inactive` when the peer holds us
/// too (we would neither send nor receive).
fn offer_direction(current: Direction, hold: bool) -> Direction {
    match (hold, current) {
        (false, d) => d,
        (true, Direction::SendRecv | Direction::SendOnly) => Direction::SendOnly,
        (true, Direction::RecvOnly | Direction::Inactive) => Direction::Inactive,
    }
}

/// The method of our next request in the dialog: a change of our hold needs an offer,
/// which only a re-INVITE carries here; a plain refresh is an UPDATE without a body when the
/// peer allows it (RFC 4028 §7.4), else a re-INVITE.
fn own_request_method(hold_due: bool, peer_allows_update: bool) -> Method {
    if peer_allows_update && !hold_due {
        Method::Update
    } else {
        Method::Invite
    }
}

/// Header fields to add to a response.
type Extra = Vec<(HeaderName, String)>;

/// Our outstanding refresh (its method and CSeq are the dialog's).
#[derive(Debug)]
struct OutRequest {
    method: Method,
    /// Its client transaction in the call's table.
    key: TransactionKey,
    /// The TU's bound on the wait for a final answer: 64·T1 from sending, like Timer F —
    /// an INVITE transaction past a provisional has no timer of its own (RFC 3261 §17.1.1).
    give_up: Instant,
    /// The hold state a re-INVITE offered (None for an UPDATE).
    hold: Option<bool>,
}

impl Call {
    fn timer_limits(&self) -> Limits {
        Limits {
            session_expires: self.ctx.config.session_expires_s,
            min_se: self.ctx.config.session_min_se_s,
        }
    }

    /// At the INVITE: what to answer to its Session-Expires. False: refused with 422.
    pub(super) fn session_timer_at_invite(&mut self) -> bool {
        self.in_dialog.peer_allows_update = session_timer::allows(&self.invite, "UPDATE");
        let a = session_timer::answer(self.timer_limits(), &self.invite);
        if let Answer::TooSmall { min_se } = a {
            info!(min_se, "session interval too small");
            self.in_dialog.invite_answer = Some(a);
            self.refuse(
                422,
                "Session Interval Too Small",
                HangupCause::SessionIntervalTooSmall,
                Disposition::Failed,
            );
            return false;
        }
        self.in_dialog.invite_answer = Some(a);
        true
    }

    /// Extra headers of our final answer to the INVITE (Session-Expires, or Min-SE in 422).
    pub(super) fn invite_final_headers(&self, code: u16) -> Vec<(HeaderName, String)> {
        match self.in_dialog.invite_answer {
            Some(a @ Answer::Timer { .. }) if (200..300).contains(&code) => {
                let mut h = a.headers();
                h.push((HeaderName::Supported, "timer".into()));
                h
            }
            Some(a @ Answer::TooSmall { .. }) if code == 422 => a.headers(),
            _ => Vec::new(),
        }
    }

    /// The 200 to the INVITE went out: the session timer runs from now.
    pub(super) fn session_timer_answered(&mut self, now: Instant) {
        if let Some(Answer::Timer {
            interval,
            refresher,
            ..
        }) = self.in_dialog.invite_answer
        {
            self.in_dialog.timer = Some(SessionTimer::start(now, interval, refresher));
            self.record_event(
                "session_timer",
                format!("{interval};refresher={}", refresher.as_str()),
            );
        }
    }

    pub(super) fn session_deadline(&self) -> Option<Instant> {
        let t = self
            .in_dialog
            .timer
            .as_ref()
            .filter(|_| self.phase == Phase::Answered)
            .map(SessionTimer::deadline);
        let r = self.in_dialog.out.as_ref().map(|o| o.give_up);
        // The back-off after a 491 to our refresh (cleared by `drive_in_dialog` once the
        // call is no longer answered).
        let g = self.dialog.poll_timeout();
        [t, r, g].into_iter().flatten().min()
    }

    /// Called from `drive`: give up on our refresh, fire refresh-due and expiry.
    pub(super) fn drive_in_dialog(&mut self, now: Instant) {
        if self.phase != Phase::Answered {
            self.in_dialog.timer = None;
            if let Some(o) = self.in_dialog.out.take() {
                // The call is ending: its refresh need not be retransmitted any more.
                if let Some(t) = self.client_txns.as_mut() {
                    t.forget(&o.key);
                }
            }
            self.dialog.abandon();
            return;
        }
        if let Some(key) = self
            .in_dialog
            .out
            .as_ref()
            .filter(|o| now >= o.give_up)
            .map(|o| o.key.clone())
        {
            if let Some(t) = self.client_txns.as_mut() {
                t.forget(&key);
            }
            self.on_refresh_timeout(&key);
        }
        let event = self.in_dialog.timer.as_mut().and_then(|t| t.poll(now));
        match event {
            Some(Event::Expired) => {
                info!("session timer expired without a refresh; hanging up");
                self.in_dialog.timer = None;
                self.hangup(now, HangupCause::SessionExpired);
            }
            Some(Event::RefreshDue) => self.send_refresh(now),
            None => {}
        }
        // After the timer: an expiry due at the same instant wins over the retry.
        if self.phase == Phase::Answered {
            if let Some(dialog::Event::Retry { method }) = self.dialog.handle_timeout(now) {
                info!(%method, "retrying our request after the 491 back-off");
                self.send_refresh(now);
            }
        }
        // Our hold changed: offer it once nothing else is in progress (our request, the
        // peer's offer/answer awaiting its ACK, the back-off after a 491).
        if self.phase == Phase::Answered
            && self.in_dialog.hold.due()
            && self.in_dialog.out.is_none()
            && self.pending_2xx.is_none()
            && self.dialog.poll_timeout().is_none()
        {
            self.send_refresh(now);
        }
    }

    /// Hold the peer (`on`: our offers say `sendonly`) or resume (`sendrecv`): a re-INVITE
    /// goes out from `drive_in_dialog`, now or once the request in progress is answered.
    pub(super) fn hold_peer(&mut self, on: bool) {
        self.in_dialog.hold.wanted = on;
    }

    /// Our own request in the dialog: a re-INVITE offering our hold (or its end) when that
    /// changed; else the session refresh (we are the refresher), an UPDATE without a body
    /// when the peer allows it, else a re-INVITE offering our current SDP (unchanged
    /// version, RFC 3264 §8). A 491's retry comes here too: it sends what is due then.
    fn send_refresh(&mut self, now: Instant) {
        if self.pending_2xx.is_some() || self.in_dialog.out.is_some() {
            // An offer/answer of the peer is not finished: refreshing now would overlap.
            if let Some(t) = self.in_dialog.timer.as_mut() {
                t.postpone(now + Duration::from_secs(1));
            }
            return;
        }
        let hold_due = self.in_dialog.hold.due();
        if !hold_due && self.in_dialog.timer.is_none() {
            return;
        }
        let headers = self
            .in_dialog
            .timer
            .as_ref()
            .map(SessionTimer::refresh_headers)
            .unwrap_or_default();
        let method = own_request_method(hold_due, self.in_dialog.peer_allows_update);
        let mut req = self.dialog.request(method.clone(), &self.local);
        req.push_header(HeaderName::Contact, self.local.contact.clone());
        for (n, v) in headers {
            req.push_header(n, v);
        }
        let mut hold = None;
        if method == Method::Invite {
            let wanted = self.in_dialog.hold.wanted;
            let mut offer = self.offer;
            if let Some(n) = offer.as_mut() {
                n.direction = offer_direction(n.direction, wanted);
            }
            if hold_due {
                // A changed session: a new version (RFC 3264 §8).
                self.sdp_version += 1;
            }
            let body = self.local_sdp(offer.as_ref());
            req.push_header(HeaderName::ContentType, "application/sdp");
            req.body = Bytes::from(body);
            hold = Some(wanted);
        }
        let Some(key) = self.start_client(now, req) else {
            return;
        };
        if hold_due {
            info!(%method, hold = self.in_dialog.hold.wanted, "our hold of the peer offered");
        } else {
            info!(%method, "session refresh sent");
        }
        self.in_dialog.out = Some(OutRequest {
            method,
            key,
            give_up: now + TIMEOUT_64T1,
            hold,
        });
    }

    /// Our refresh got no final answer (its transaction's Timer B/F, or our bound on an
    /// INVITE past its provisional). Any other transaction's timeout (a NOTIFY's, a
    /// CANCEL's) changes nothing.
    pub(super) fn on_refresh_timeout(&mut self, key: &TransactionKey) {
        let Some(o) = self.in_dialog.out.take_if(|o| o.key == *key) else {
            return;
        };
        warn!(method = %o.method, "no answer to our refresh");
        self.dialog.request_timed_out();
        self.in_dialog.hold.answered(o.hold, false);
        if let Some(t) = self.in_dialog.timer.as_mut() {
            t.on_refresh_timeout();
        }
    }

    /// A response to a request of ours in this dialog other than BYE. True when it was one.
    pub(super) fn on_in_dialog_response(&mut self, now: Instant, msg: &Message) -> bool {
        let (method, cseq, code, outcome) = match self.dialog.handle_response(msg, now) {
            ResponseVerdict::NotOurs => return false,
            ResponseVerdict::Repeated2xx { cseq } => {
                // A retransmitted 2xx to our re-INVITE: its ACK got lost.
                if let Some((seq, ack)) = &self.in_dialog.last_ack {
                    if *seq == cseq {
                        self.flow.send(ack.clone());
                    }
                }
                return true;
            }
            // (The transaction stopped resending; our deadline stays.)
            ResponseVerdict::Provisional => return true,
            ResponseVerdict::Final {
                method,
                cseq,
                code,
                outcome,
            } => (method, cseq, code, outcome),
        };
        let Some(out) = self.in_dialog.out.take() else {
            return true;
        };
        if method == Method::Invite && (200..300).contains(&code) {
            // RFC 3261 §13.2.2.4: every 2xx gets an ACK of its own (new branch), from the
            // TU; a non-2xx was ACKed inside the INVITE transaction (§17.1.1.3).
            let bytes = self.dialog.ack(cseq, &self.local).to_bytes();
            self.flow.send(bytes.clone());
            self.in_dialog.last_ack = Some((cseq, bytes));
        }
        match outcome {
            Outcome::Gone => {
                // RFC 3261 §12.2.1.2: the dialog is gone at the far end.
                info!(code, "refresh refused: the dialog is gone");
                self.hangup(now, HangupCause::RefreshFailed);
                return true;
            }
            Outcome::Glare { retry_at } => info!(
                retry_in_ms = retry_at.saturating_duration_since(now).as_millis() as u64,
                "our refresh met the peer's: retrying after a random delay"
            ),
            Outcome::Accepted => self.in_dialog.hold.answered(out.hold, true),
            Outcome::Refused => {
                if out.hold.is_some_and(|h| h != self.in_dialog.hold.agreed) {
                    warn!(code, hold = ?out.hold, "the peer refused our hold offer");
                }
                self.in_dialog.hold.answered(out.hold, false);
            }
        }
        if let Some(t) = self.in_dialog.timer.as_mut() {
            t.on_refresh_response(now, msg);
        }
        true
    }

    /// Timer answer to a refresh request; `Err` carries the 422's headers.
    fn refresh_answer(&mut self, now: Instant, msg: &Message) -> Result<Extra, Extra> {
        let a = session_timer::answer(self.timer_limits(), msg);
        match a {
            Answer::TooSmall { .. } => Err(a.headers()),
            Answer::NoTimer => {
                // RFC 4028 §7.4: a refresh without Session-Expires turns the timer off.
                self.in_dialog.timer = None;
                self.dialog.cancel_retry();
                Ok(Vec::new())
            }
            Answer::Timer {
                interval,
                refresher,
                ..
            } => {
                let restarted = self
                    .in_dialog
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.on_peer_refresh(now, &a));
                if !restarted {
                    self.in_dialog.timer = Some(SessionTimer::start(now, interval, refresher));
                }
                // The peer's refresh did the job of ours waiting out a 491.
                self.dialog.cancel_retry();
                let mut h = a.headers();
                h.push((HeaderName::Supported, "timer".into()));
                Ok(h)
            }
        }
    }

    fn reply_with(&self, msg: &Message, code: u16, reason: &str, extra: &[(HeaderName, String)]) {
        let mut r = response(msg, code, reason, Some(&self.local_tag), &self.local);
        for (n, v) in extra {
            r.push_header(n.clone(), v.clone());
        }
        self.send_reply(msg, r);
    }

    /// The dialog's verdict on a re-INVITE or UPDATE: true to go on, else answered.
    fn dialog_admits(&mut self, msg: &Message) -> bool {
        let r = match self.dialog.handle_request(msg) {
            Verdict::Accept => return true,
            Verdict::Ack | Verdict::Stray => return false,
            Verdict::Reject(r) => r,
        };
        let what = msg.method().map(Method::to_string).unwrap_or_default();
        match r {
            Rejection::RequestPending => info!(%what, "overlaps our outstanding request: 491"),
            Rejection::RetryLater { retry_after } => info!(
                %what,
                retry_after, "overlaps an offer/answer not yet finished: 500 with Retry-After"
            ),
            Rejection::NoDialog | Rejection::OutOfOrder => {}
        }
        self.reject(msg, r);
        false
    }

    /// A re-INVITE (To tag ours). Every path answers it (the dialog's 481/500/491/500 +
    /// Retry-After, 422, 488, or 200): the router's transaction waits for that answer.
    pub(super) fn on_reinvite_request(&mut self, now: Instant, msg: &Message) {
        let cseq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        if !self.dialog_admits(msg) {
            return;
        }
        let timer_headers = match self.refresh_answer(now, msg) {
            Ok(h) => h,
            Err(h) => {
                self.reply_with(msg, 422, "Session Interval Too Small", &h);
                return;
            }
        };
        self.on_reinvite(now, msg, cseq, timer_headers);
    }

    /// UPDATE (RFC 3311): a session refresh, with or without a new offer.
    pub(super) fn on_update(&mut self, now: Instant, msg: &Message) {
        // (Its retransmissions are the router's transaction's: they never come here.)
        // Our offer (late-offer 200) awaiting its answer in the ACK makes an UPDATE with
        // an offer wait (RFC 3311 §5.2): the dialog answers 500 with Retry-After.
        if !self.dialog_admits(msg) {
            return;
        }
        let has_offer = !msg.body.is_empty();
        let mut extra = match self.refresh_answer(now, msg) {
            Ok(h) => h,
            Err(h) => {
                self.reply_with(msg, 422, "Session Interval Too Small", &h);
                return;
            }
        };
        let mut body = None;
        if has_offer {
            let Some(n) = self.apply_offer(now, msg) else {
                return;
            };
            self.sdp_version += 1;
            body = Some(self.local_sdp(Some(&n)));
            extra.push((HeaderName::ContentType, "application/sdp".into()));
            if self.relay.is_some() || self.held {
                self.bridged_reinvite(now, &n);
            }
        }
        let mut r = response(msg, 200, "OK", Some(&self.local_tag), &self.local);
        r.push_header(HeaderName::Contact, self.local.contact.clone());
        for (n, v) in extra {
            r.push_header(n, v);
        }
        if let Some(b) = body {
            r.body = Bytes::from(b);
        }
        self.send_reply(msg, r);
        self.record_event("update", if has_offer { "offer" } else { "refresh" }.into());
    }

    /// Negotiate the offer in a re-INVITE or UPDATE and apply it to the media (488 when
    /// unusable). An empty body keeps the current session (we offer it again).
    pub(super) fn apply_offer(&mut self, now: Instant, msg: &Message) -> Option<Negotiated> {
        let current = self.offer;
        // Mid-call the codec stays: only the one in use is acceptable.
        let allowed: Vec<crate::media::codec::Codec> =
            current.map_or(self.ctx.config.codecs.clone(), |n| vec![n.codec]);
        let neg = if msg.body.is_empty() {
            current.ok_or(sdp::SdpError::NoAudio)
        } else {
            SessionDescription::parse(&msg.body).and_then(|sd| sdp::negotiate(&sd, &allowed))
        };
        let n = match neg {
            Ok(n) => n,
            Err(e) => {
                info!(error = %e, "offer in dialog refused");
                self.reply(msg, 488, "Not Acceptable Here");
                return None;
            }
        };
        let was_held = current.is_some_and(|c| c.is_on_hold());
        self.offer = Some(n);
        if let Some(media) = self.media.as_mut() {
            let we_send = matches!(n.direction, Direction::SendRecv | Direction::SendOnly);
            let they_send = matches!(n.direction, Direction::SendRecv | Direction::RecvOnly);
            media.update_remote(n.remote, we_send && !n.remote.ip().is_unspecified());
            media.set_expect_rx(now, they_send);
        }
        // The caller's hold (our answer recvonly/inactive) and its end, for the record.
        let dir_changed = current.is_some_and(|c| c.direction != n.direction);
        if n.is_on_hold() && (dir_changed || !was_held) {
            self.record_event("hold", format!("caller:{}", n.direction.as_attr()));
        } else if was_held && !n.is_on_hold() {
            self.record_event("unhold", format!("caller:{}", n.direction.as_attr()));
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hold → sendonly (inactive when the peer holds us too); resume → what we answered.
    #[test]
    fn our_hold_offers_sendonly_and_resume_offers_the_answered_direction() {
        use crate::sip::sdp::Direction::*;
        assert_eq!(offer_direction(SendRecv, true), SendOnly);
        assert_eq!(offer_direction(SendOnly, true), SendOnly);
        assert_eq!(offer_direction(RecvOnly, true), Inactive);
        assert_eq!(offer_direction(Inactive, true), Inactive);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(offer_direction(d, false), d, "{d:?}");
        }
    }

    /// A hold change needs an offer: a re-INVITE even when the peer allows UPDATE.
    #[test]
    fn a_hold_change_goes_in_a_reinvite_a_plain_refresh_in_update_when_allowed() {
        assert_eq!(own_request_method(true, true), Method::Invite);
        assert_eq!(own_request_method(true, false), Method::Invite);
        assert_eq!(own_request_method(false, true), Method::Update);
        assert_eq!(own_request_method(false, false), Method::Invite);
    }

    /// Accepted: agreed. Refused: no re-offer, unless the wish changed meanwhile. An
    /// UPDATE's answer (no offer) changes nothing.
    #[test]
    fn hold_is_due_until_accepted_and_dropped_when_refused() {
        assert!(!Hold::default().due());
        let mut h = Hold {
            wanted: true,
            agreed: false,
        };
        assert!(h.due());
        h.answered(None, true);
        assert!(h.due(), "an UPDATE's 200 agrees to nothing");
        h.answered(Some(true), true);
        assert!(!h.due() && h.agreed);

        // Resume refused: still held on both sides' books, nothing more to offer.
        h.wanted = false;
        h.answered(Some(false), false);
        assert!(!h.due() && h.wanted && h.agreed);

        // Resume offered, then hold asked again before the answer; the resume is refused:
        // the newer wish (hold) equals what is agreed, nothing is due.
        h.wanted = false;
        let offered = h.wanted;
        h.wanted = true;
        h.answered(Some(offered), false);
        assert!(!h.due() && h.wanted);

        // Resume offered, hold asked again meanwhile, the resume accepted: hold is due.
        h.wanted = false;
        let offered = h.wanted;
        h.wanted = true;
        h.answered(Some(offered), true);
        assert!(h.due() && !h.agreed && h.wanted);
    }
}
