//! Dialog rules (RFC 3261 §12, §14; RFC 3311 §5.2) as pure functions, the start of the
//! dialog core of issue 15.
//!
//! Today: the overlap ("glare") decision for a re-INVITE or UPDATE that arrives while an
//! offer/answer exchange is in progress — 491 Request Pending when our own request is
//! outstanding (§14.2; the peer retries after a random delay), 500 with Retry-After when a
//! received INVITE's 2xx is not yet ACKed or its answer is still due (§14.2, RFC 3311
//! §5.2). The route set, CSeq and remote target still live in `call/dialog.rs` and the
//! call actor.

use std::ops::Range;
use std::time::Duration;

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
}
