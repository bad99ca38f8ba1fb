//! The call's role: whom a call actor serves, and the state only that role has.
//!
//! A call actor runs one of four kinds of call, fixed when it starts:
//! - [`Role::Inbound`]: a call that came in (trunk, or a registered phone) and runs its
//!   dialplan; its initial INVITE's server transaction is the router's, and each response
//!   to it is reported there (`invite_key`).
//! - [`Role::Campaign`]: a call the dialer placed; it may detect an answering machine and
//!   leave the voicemail message.
//! - [`Role::AgentLeg`]: an agent's phone rung for a queue caller (an outbound INVITE); it
//!   writes no records of its own and reports to its caller's actor ([`LegLink`]).
//! - [`Role::Callback`]: a queue callback, which keeps the place in line of a caller who
//!   hung up: parked until an agent answers, then it dials the customer and bridges the
//!   two when the customer answers ([`Callback`]).
//!
//! (A blind transfer is not a role: it moves an inbound, campaign or callback call to
//! another queue or agent, `actor/queue.rs`.)
//!
//! Before this type the same state was seven `Option` fields of `Call` (`invite_key`,
//! `machine`, `voicemail_language`, `leg`, `pending_dial`, `callback`, `uac`), and nothing
//! kept an agent leg from holding a parked dial, a campaign's machine handling, or an
//! inbound call from holding an INVITE client. Here each role holds only its own (the
//! three roles that dial hold their UAC, [`Dialing`]), so such a combination cannot be
//! written. Queue membership is not
//! here: inbound, campaign and callback calls all may wait in a queue (a campaign's
//! dialplan can `enqueue`), so it stays beside the role.

use super::actor::{AnsweredLeg, LegLink, MachineHandling, PeerLeg, PendingDial, Uac};
use crate::sip::transaction::TransactionKey;

/// The INVITE client side of a role that dials (`actor/uac.rs`): None until its INVITE is
/// sent (a parked callback's until an agent answers; a campaign call's or an agent leg's
/// only between the call's creation and its `dial`), then kept for the call's life (the
/// ACK of the 2xx, the result to report). Inbound calls and a peer's browser leg have no
/// such slot, so a UAC on an inbound call cannot be written.
pub(crate) type Dialing = Option<Box<Uac>>;

/// Whom the call serves (see the module doc).
#[derive(Debug)]
pub(crate) enum Role {
    Inbound {
        /// The router's server transaction of the initial INVITE: every response to it is
        /// reported there (None when the router tracks none for it).
        invite_key: Option<TransactionKey>,
    },
    Campaign {
        /// What to do when a machine answers; None: no detection.
        machine: Option<MachineHandling>,
        /// The call's language when a machine answered (the voicemail message's).
        voicemail_language: Option<String>,
        uac: Dialing,
    },
    AgentLeg(LegLink, Dialing),
    Callback(Callback<Box<PendingDial>, Box<AnsweredLeg>>, Dialing),
    /// Another node's caller for a browser agent whose page this node serves
    /// (`actor/peer_leg.rs`, `acd::peer`): an inbound INVITE from a cluster peer that rings
    /// the page. It writes no records: the caller's node does.
    PeerBrowser(Box<PeerLeg>),
}

impl Role {
    /// The router's server transaction of the initial INVITE (inbound calls).
    pub(crate) fn invite_key(&self) -> Option<&TransactionKey> {
        match self {
            Role::Inbound { invite_key } => invite_key.as_ref(),
            Role::PeerBrowser(p) => p.invite_key.as_ref(),
            _ => None,
        }
    }

    /// The caller an agent leg serves.
    pub(crate) fn agent_leg(&self) -> Option<&LegLink> {
        match self {
            Role::AgentLeg(link, _) => Some(link),
            _ => None,
        }
    }

    pub(crate) fn agent_leg_mut(&mut self) -> Option<&mut LegLink> {
        match self {
            Role::AgentLeg(link, _) => Some(link),
            _ => None,
        }
    }

    pub(crate) fn is_agent_leg(&self) -> bool {
        matches!(self, Role::AgentLeg(..))
    }

    /// Whether the call writes records of its own (`call_records`, `call_events`, the
    /// trunk it used). An agent leg does not: it is part of its caller's call, whose
    /// record tells the story.
    pub(crate) fn keeps_records(&self) -> bool {
        !self.is_agent_leg() && !self.is_peer_browser()
    }

    /// Another node's caller for our browser agent (`actor/peer_leg.rs`).
    pub(crate) fn is_peer_browser(&self) -> bool {
        matches!(self, Role::PeerBrowser(_))
    }

    /// Whether a failed INVITE may go on to the trunk's `failover` trunk. Not for an agent
    /// leg: its "trunk" is the agent's phone, and the ACD offers the call elsewhere.
    pub(crate) fn may_fail_over(&self) -> bool {
        !self.is_agent_leg()
    }

    /// What to do when an answering machine picks up (campaign calls with detection).
    pub(crate) fn machine(&self) -> Option<MachineHandling> {
        match self {
            Role::Campaign { machine, .. } => *machine,
            _ => None,
        }
    }

    /// A machine answered and the voicemail message will be left in `language`. Only a
    /// campaign call detects machines; for any other role this does nothing.
    pub(crate) fn set_voicemail_language(&mut self, language: String) {
        if let Role::Campaign {
            voicemail_language, ..
        } = self
        {
            *voicemail_language = Some(language);
        }
    }

    /// The voicemail message's language, once a machine answered.
    pub(crate) fn voicemail_language(&self) -> Option<&str> {
        match self {
            Role::Campaign {
                voicemail_language, ..
            } => voicemail_language.as_deref(),
            _ => None,
        }
    }

    /// The outbound INVITE, once this role dialed it (`actor/uac.rs`).
    pub(crate) fn uac(&self) -> Option<&Uac> {
        match self {
            Role::Campaign { uac, .. } | Role::AgentLeg(_, uac) | Role::Callback(_, uac) => {
                uac.as_deref()
            }
            Role::Inbound { .. } | Role::PeerBrowser(_) => None,
        }
    }

    pub(crate) fn uac_mut(&mut self) -> Option<&mut Uac> {
        match self {
            Role::Campaign { uac, .. } | Role::AgentLeg(_, uac) | Role::Callback(_, uac) => {
                uac.as_deref_mut()
            }
            Role::Inbound { .. } | Role::PeerBrowser(_) => None,
        }
    }

    /// The role's INVITE was sent: it keeps its client side. A role that does not dial
    /// (inbound, a peer's browser leg) takes none and hands it back.
    pub(crate) fn dialed(&mut self, sent: Box<Uac>) -> Result<(), Box<Uac>> {
        match self {
            Role::Campaign { uac, .. } | Role::AgentLeg(_, uac) | Role::Callback(_, uac) => {
                *uac = Some(sent);
                Ok(())
            }
            Role::Inbound { .. } | Role::PeerBrowser(_) => Err(sent),
        }
    }

    pub(crate) fn callback(&self) -> Option<&Callback<Box<PendingDial>, Box<AnsweredLeg>>> {
        match self {
            Role::Callback(c, _) => Some(c),
            _ => None,
        }
    }

    pub(crate) fn callback_mut(
        &mut self,
    ) -> Option<&mut Callback<Box<PendingDial>, Box<AnsweredLeg>>> {
        match self {
            Role::Callback(c, _) => Some(c),
            _ => None,
        }
    }
}

/// Where a queue callback is: `D` is the customer's INVITE not sent yet, `A` the agent leg
/// that answered. Generic so its steps are tested without sockets and channels.
#[derive(Debug)]
pub(crate) enum Callback<D, A> {
    /// Waiting for an agent; the customer is not called yet.
    Parked(D),
    /// The agent answered and waits on the line while the customer rings.
    Ringing(A),
    /// The customer answered: bridged to the agent (or the call is over).
    Bridged,
}

impl<D, A> Callback<D, A> {
    /// Still waiting for an agent, with the customer's INVITE ready.
    pub(crate) fn is_parked(&self) -> bool {
        matches!(self, Callback::Parked(_))
    }

    /// An agent is on the line and the customer has not answered yet.
    pub(crate) fn awaiting_customer(&self) -> bool {
        matches!(self, Callback::Ringing(_))
    }

    /// An agent answered: it waits on the line from now on; the INVITE to send to the
    /// customer, if it was still waiting (the caller dials it).
    pub(crate) fn agent_answered(&mut self, agent: A) -> Option<D> {
        match std::mem::replace(self, Callback::Ringing(agent)) {
            Callback::Parked(dial) => Some(dial),
            Callback::Ringing(_) | Callback::Bridged => None,
        }
    }

    /// The customer answered: the agent leg to bridge them to, if one waits.
    pub(crate) fn customer_answered(&mut self) -> Option<A> {
        if !self.awaiting_customer() {
            return None;
        }
        match std::mem::replace(self, Callback::Bridged) {
            Callback::Ringing(agent) => Some(agent),
            Callback::Parked(_) | Callback::Bridged => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn leg() -> Role {
        let (caller_tx, _rx) = mpsc::channel(1);
        Role::AgentLeg(
            LegLink {
                leg: 3,
                agent: "alice".into(),
                caller_tx,
                reported: false,
                prefer: None,
                call: "c1".into(),
            },
            None,
        )
    }

    fn campaign(machine: Option<MachineHandling>) -> Role {
        Role::Campaign {
            machine,
            voicemail_language: None,
            uac: None,
        }
    }

    /// Only an agent leg stays out of the records and off the failover chain, and only it
    /// has a caller to report to.
    #[test]
    fn an_agent_leg_reports_to_its_caller_instead_of_keeping_records() {
        let inbound = Role::Inbound { invite_key: None };
        for (role, is_leg) in [(inbound, false), (campaign(None), false), (leg(), true)] {
            assert_eq!(role.is_agent_leg(), is_leg, "{role:?}");
            assert_eq!(role.keeps_records(), !is_leg, "{role:?}");
            assert_eq!(role.may_fail_over(), !is_leg, "{role:?}");
            assert_eq!(role.agent_leg().is_some(), is_leg, "{role:?}");
        }
        let mut l = leg();
        if let Some(link) = l.agent_leg_mut() {
            link.reported = true;
        }
        assert!(l
            .agent_leg()
            .is_some_and(|link| link.reported && link.leg == 3));
    }

    /// Machine handling and the voicemail language belong to campaign calls: another role
    /// neither detects machines nor keeps a language set for one.
    #[test]
    fn machine_handling_is_a_campaigns() {
        let mut c = campaign(Some(MachineHandling::Voicemail));
        assert_eq!(c.machine(), Some(MachineHandling::Voicemail));
        assert_eq!(c.voicemail_language(), None);
        c.set_voicemail_language("de".into());
        assert_eq!(c.voicemail_language(), Some("de"));
        assert_eq!(campaign(None).machine(), None);

        let mut inbound = Role::Inbound { invite_key: None };
        inbound.set_voicemail_language("de".into());
        assert_eq!(inbound.voicemail_language(), None);
        assert_eq!(inbound.machine(), None);
        assert_eq!(leg().machine(), None);
    }

    /// A UAC belongs to the roles that dial: an inbound call hands one back, a campaign
    /// call, an agent leg and a callback keep it (a parked callback has none yet).
    #[test]
    fn only_the_roles_that_dial_keep_a_uac() {
        let trunk = crate::config::Trunk::peer("t".into(), ([127, 0, 0, 1], 5060).into());
        let uac = || {
            let d = PendingDial::for_test(trunk.clone());
            Box::new(Uac::sent(None, std::time::Instant::now(), d))
        };
        let mut inbound = Role::Inbound { invite_key: None };
        assert!(inbound.dialed(uac()).is_err());
        assert!(inbound.uac().is_none() && inbound.uac_mut().is_none());
        let parked = Callback::Parked(Box::new(PendingDial::for_test(trunk.clone())));
        for mut role in [campaign(None), leg(), Role::Callback(parked, None)] {
            assert!(role.uac().is_none(), "none before the INVITE: {role:?}");
            assert!(role.dialed(uac()).is_ok());
            assert!(role.uac().is_some_and(|u| !u.answered() && !u.settled()));
            assert!(role.uac_mut().is_some());
        }
    }

    /// Only an inbound call reports responses to the router's INVITE transaction.
    #[test]
    fn only_an_inbound_call_has_the_routers_invite_transaction() {
        let invite = crate::sip::message::Message::parse(
            b"INVITE sip:svc@10.0.0.1 SIP/2.0\r\n\
              Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr1\r\n\
              From: <sip:c@10.0.0.2>;tag=f\r\n\
              To: <sip:svc@10.0.0.1>\r\n\
              Call-ID: r1\r\n\
              CSeq: 1 INVITE\r\n\
              Content-Length: 0\r\n\r\n",
            crate::sip::message::Framing::Datagram,
        )
        .expect("test INVITE parses");
        let key = TransactionKey::server(&invite).expect("test INVITE has a key");
        let inbound = Role::Inbound {
            invite_key: Some(key.clone()),
        };
        assert_eq!(inbound.invite_key(), Some(&key));
        assert_eq!(campaign(None).invite_key(), None);
        assert_eq!(leg().invite_key(), None);
        assert!(inbound.callback().is_none());
    }

    /// Parked → the agent answers (the customer's INVITE comes out once) → the customer
    /// answers (the agent comes out once) → bridged.
    #[test]
    fn callback_steps_in_order() {
        let mut c: Callback<&str, u32> = Callback::Parked("INVITE customer");
        assert!(c.is_parked() && !c.awaiting_customer());
        assert_eq!(c.customer_answered(), None, "no agent yet");
        assert!(c.is_parked(), "still parked");
        assert_eq!(c.agent_answered(7), Some("INVITE customer"));
        assert!(!c.is_parked() && c.awaiting_customer());
        assert_eq!(c.customer_answered(), Some(7));
        assert!(matches!(c, Callback::Bridged));
        assert_eq!(c.customer_answered(), None, "bridged once");
        assert!(!c.awaiting_customer());
    }

    /// A second agent answer never dials the customer again; the latest agent is the one
    /// kept (as the two `Option`s behaved).
    #[test]
    fn a_late_agent_answer_dials_nothing() {
        let mut c: Callback<&str, u32> = Callback::Parked("INVITE customer");
        assert!(c.agent_answered(1).is_some());
        assert_eq!(c.agent_answered(2), None);
        assert_eq!(c.customer_answered(), Some(2));
        assert_eq!(c.agent_answered(3), None, "after the bridge");
    }
}
