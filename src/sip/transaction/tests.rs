//! Transaction tests in virtual time: one test per path of RFC 3261 Figures 5–8 (as
//! modified by RFC 6026), the table's matching rules, a lossy simulated network, and a
//! property test that arbitrary input never panics.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::message::{Framing, Message};

const MS: Duration = Duration::from_millis(1);

fn cfg() -> TimerConfig {
    TimerConfig::default()
}

fn request(method: &str, branch: &str, sent_by: &str) -> Message {
    let raw = format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:proxy.example.com;lr>\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: call-1\r\n\
         CSeq: 7 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(raw.as_bytes(), Framing::Datagram).expect("test request parses")
}

fn invite(branch: &str) -> Message {
    request("INVITE", branch, "10.0.0.1:5060")
}

fn response(req: &Message, code: u16) -> Message {
    let tag = (code > 100).then_some("b1");
    req.response(code, "Test", tag)
}

fn drain<T>(mut f: impl FnMut() -> Option<T>) -> Vec<T> {
    std::iter::from_fn(&mut f).collect()
}

/// Step a machine through time (one ms at a time would be slow; jump to each deadline)
/// up to `until`, collecting the offsets (from `t0`) at which something was transmitted.
macro_rules! run_until {
    ($t:expr, $t0:expr, $until:expr) => {{
        let mut sent = Vec::new();
        while let Some(at) = $t.poll_timeout() {
            if at > $t0 + $until {
                break;
            }
            $t.handle_timeout(at);
            for _ in drain(|| $t.poll_transmit()) {
                sent.push(at - $t0);
            }
        }
        sent
    }};
}

fn secs(v: &[f64]) -> Vec<Duration> {
    v.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

// ---- Figure 5: INVITE client ----

#[test]
fn fig5_calling_retransmits_on_timer_a_then_timer_b_times_out() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite("z9hG4bK1"), t0, cfg(), false);
    assert_eq!(drain(|| c.poll_transmit()).len(), 1, "sent at once");
    let sent = run_until!(c, t0, Duration::from_secs(64));
    // Timer A doubles without cap: 0.5, 1, 2, 4, 8, 16 s; Timer B at 64·T1 = 32 s.
    assert_eq!(sent, secs(&[0.5, 1.5, 3.5, 7.5, 15.5, 31.5]));
    assert_eq!(c.state(), InviteClientState::Terminated);
    let ev = drain(|| c.poll_event());
    assert_eq!(ev, vec![Event::Timeout(Timer::B), Event::Terminated]);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn fig5_timer_b_fires_at_64_t1_with_a_custom_t1() {
    let t0 = Instant::now();
    let cfg = TimerConfig {
        t1: Duration::from_millis(100),
        ..cfg()
    };
    let mut c = InviteClient::new(invite("z9hG4bK1"), t0, cfg, false);
    let _ = run_until!(c, t0, Duration::from_millis(6399));
    assert_eq!(c.state(), InviteClientState::Calling);
    c.handle_timeout(t0 + 6400 * MS);
    assert_eq!(c.state(), InviteClientState::Terminated);
}

#[test]
fn fig5_provisional_stops_retransmission_and_timer_b() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK1");
    let mut c = InviteClient::new(inv.clone(), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    c.handle_response(response(&inv, 180), t0 + 100 * MS);
    assert_eq!(c.state(), InviteClientState::Proceeding);
    assert!(matches!(c.poll_event(), Some(Event::Response(r)) if r.status() == Some(180)));
    assert_eq!(
        c.poll_timeout(),
        None,
        "no retransmission, no Timer B in Proceeding"
    );
    c.handle_response(response(&inv, 183), t0 + 200 * MS);
    assert!(matches!(c.poll_event(), Some(Event::Response(r)) if r.status() == Some(183)));
}

#[test]
fn fig5_non_2xx_is_acked_here_and_retransmissions_re_acked_until_timer_d() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK1");
    let mut c = InviteClient::new(inv.clone(), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    c.handle_response(response(&inv, 180), t0 + 100 * MS);
    let busy = response(&inv, 486);
    c.handle_response(busy.clone(), t0 + 2 * 1000 * MS);
    assert_eq!(c.state(), InviteClientState::Completed);
    let acks = drain(|| c.poll_transmit());
    assert_eq!(acks.len(), 1);
    let ack = &acks[0];
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().map(|c| c.seq), Ok(7));
    assert_eq!(
        ack.top_via().unwrap().branch(),
        Some("z9hG4bK1"),
        "same branch"
    );
    assert_eq!(
        ack.to_header().unwrap().tag(),
        Some("b1"),
        "To of the response"
    );
    assert_eq!(
        ack.header(&HeaderName::Route),
        Some("<sip:proxy.example.com;lr>")
    );
    assert_eq!(ack.request_uri(), inv.request_uri());
    let ev = drain(|| c.poll_event());
    assert_eq!(ev.len(), 2, "180 then 486 passed up once");
    // Retransmitted 486: absorbed, ACK re-sent.
    c.handle_response(busy.clone(), t0 + 3000 * MS);
    assert_eq!(drain(|| c.poll_transmit()), vec![ack.clone()]);
    assert_eq!(c.poll_event(), None);
    // Timer D: 32 s after entering Completed.
    assert_eq!(c.poll_timeout(), Some(t0 + 34 * 1000 * MS));
    c.handle_timeout(t0 + 34 * 1000 * MS);
    assert_eq!(c.poll_event(), Some(Event::Terminated));
}

#[test]
fn fig5_rfc6026_2xx_moves_to_accepted_and_further_2xx_go_up_until_timer_m() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK1");
    let mut c = InviteClient::new(inv.clone(), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    let ok = response(&inv, 200);
    c.handle_response(ok.clone(), t0 + 300 * MS);
    assert_eq!(c.state(), InviteClientState::Accepted);
    assert!(drain(|| c.poll_transmit()).is_empty(), "the TU ACKs a 2xx");
    c.handle_response(ok.clone(), t0 + 800 * MS);
    assert_eq!(drain(|| c.poll_event()).len(), 2, "both 2xx passed up");
    c.handle_response(response(&inv, 486), t0 + 900 * MS);
    assert_eq!(c.poll_event(), None, "non-2xx in Accepted absorbed");
    assert_eq!(c.poll_timeout(), Some(t0 + 300 * MS + 32 * 1000 * MS));
    c.handle_timeout(t0 + 300 * MS + 32 * 1000 * MS);
    assert_eq!(c.poll_event(), Some(Event::Terminated));
}

#[test]
fn fig5_reliable_transport_no_retransmission_timer_d_zero() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK1");
    let mut c = InviteClient::new(inv.clone(), t0, cfg(), true);
    assert_eq!(drain(|| c.poll_transmit()).len(), 1);
    assert_eq!(c.poll_timeout(), Some(t0 + 32 * 1000 * MS), "only Timer B");
    c.handle_response(response(&inv, 603), t0 + 50 * MS);
    assert_eq!(drain(|| c.poll_transmit()).len(), 1, "ACK");
    assert_eq!(c.poll_timeout(), Some(t0 + 50 * MS), "Timer D = 0");
    c.handle_timeout(t0 + 50 * MS);
    assert!(c.is_terminated());
}

#[test]
fn fig5_transport_error_informs_the_tu() {
    let t0 = Instant::now();
    let mut c = InviteClient::new(invite("z9hG4bK1"), t0, cfg(), true);
    c.handle_transport_error();
    assert_eq!(
        drain(|| c.poll_event()),
        vec![Event::TransportError, Event::Terminated]
    );
}

// ---- Figure 6: non-INVITE client ----

#[test]
fn fig6_trying_retransmits_capped_at_t2_then_timer_f() {
    let t0 = Instant::now();
    let mut c = NonInviteClient::new(request("BYE", "z9hG4bK2", "h:5060"), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    let sent = run_until!(c, t0, Duration::from_secs(64));
    // Intervals 500 ms, 1 s, 2 s, 4 s, then 4 s (T2) until Timer F at 32 s.
    assert_eq!(
        sent,
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert_eq!(
        drain(|| c.poll_event()),
        vec![Event::Timeout(Timer::F), Event::Terminated]
    );
}

#[test]
fn fig6_proceeding_retransmits_every_t2() {
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bK2", "h:5060");
    let mut c = NonInviteClient::new(req.clone(), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    c.handle_response(response(&req, 100), t0 + 100 * MS);
    assert_eq!(c.state(), NonInviteClientState::Proceeding);
    let sent = run_until!(c, t0, Duration::from_secs(12));
    // The E armed at 0.5 s still fires, then every T2.
    assert_eq!(sent, secs(&[0.5, 4.5, 8.5]));
}

#[test]
fn fig6_final_response_passed_up_once_retransmissions_absorbed_for_timer_k() {
    let t0 = Instant::now();
    let req = request("BYE", "z9hG4bK2", "h:5060");
    let mut c = NonInviteClient::new(req.clone(), t0, cfg(), false);
    let _ = drain(|| c.poll_transmit());
    c.handle_response(response(&req, 200), t0 + 100 * MS);
    c.handle_response(response(&req, 200), t0 + 600 * MS);
    assert_eq!(drain(|| c.poll_event()).len(), 1);
    assert_eq!(c.poll_timeout(), Some(t0 + 5100 * MS), "Timer K = T4");
    c.handle_timeout(t0 + 5100 * MS);
    assert_eq!(c.poll_event(), Some(Event::Terminated));
    assert!(drain(|| c.poll_transmit()).is_empty());
}

#[test]
fn fig6_reliable_transport_no_timer_e_timer_k_zero() {
    let t0 = Instant::now();
    let req = request("BYE", "z9hG4bK2", "h:5060");
    let mut c = NonInviteClient::new(req.clone(), t0, cfg(), true);
    let _ = drain(|| c.poll_transmit());
    assert_eq!(c.poll_timeout(), Some(t0 + 32 * 1000 * MS), "only Timer F");
    c.handle_response(response(&req, 481), t0 + 10 * MS);
    assert_eq!(c.poll_timeout(), Some(t0 + 10 * MS));
    c.handle_timeout(t0 + 10 * MS);
    assert!(c.is_terminated());
}

// ---- Figure 7: INVITE server ----

#[test]
fn fig7_sends_100_trying_after_200ms_unless_the_tu_answered() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    assert_eq!(s.poll_timeout(), Some(t0 + 200 * MS));
    s.handle_timeout(t0 + 200 * MS);
    let sent = drain(|| s.poll_transmit());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), Some(100));

    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    s.send_response(response(&inv, 180), t0 + 10 * MS).unwrap();
    assert_eq!(s.poll_timeout(), None, "no 100 once the TU answered");
}

#[test]
fn fig7_proceeding_invite_retransmission_gets_the_last_provisional() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    s.handle_request(inv.clone(), t0 + 10 * MS);
    assert!(
        drain(|| s.poll_transmit()).is_empty(),
        "nothing to repeat yet"
    );
    s.send_response(response(&inv, 180), t0 + 20 * MS).unwrap();
    let _ = drain(|| s.poll_transmit());
    s.handle_request(inv.clone(), t0 + 500 * MS);
    let re = drain(|| s.poll_transmit());
    assert_eq!(re.len(), 1);
    assert_eq!(re[0].status(), Some(180));
    assert_eq!(s.poll_event(), None, "retransmission never reaches the TU");
}

#[test]
fn fig7_completed_retransmits_on_timer_g_capped_at_t2_until_timer_h() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    s.send_response(response(&inv, 486), t0).unwrap();
    assert_eq!(s.state(), InviteServerState::Completed);
    assert_eq!(drain(|| s.poll_transmit()).len(), 1);
    let sent = run_until!(s, t0, Duration::from_secs(64));
    assert_eq!(
        sent,
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert_eq!(
        drain(|| s.poll_event()),
        vec![Event::Timeout(Timer::H), Event::Terminated]
    );
}

#[test]
fn fig7_ack_confirms_and_later_acks_and_invites_are_absorbed_for_timer_i() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    s.send_response(response(&inv, 404), t0).unwrap();
    let _ = drain(|| s.poll_transmit());
    // INVITE retransmitted while Completed: the final response again.
    s.handle_request(inv.clone(), t0 + 100 * MS);
    assert_eq!(drain(|| s.poll_transmit())[0].status(), Some(404));
    let ack = request("ACK", "z9hG4bK3", "10.0.0.1:5060");
    s.handle_request(ack.clone(), t0 + 200 * MS);
    assert_eq!(s.state(), InviteServerState::Confirmed);
    s.handle_request(ack.clone(), t0 + 300 * MS);
    s.handle_request(inv.clone(), t0 + 400 * MS);
    assert!(drain(|| s.poll_transmit()).is_empty());
    assert_eq!(
        s.poll_event(),
        None,
        "ACK for a non-2xx never reaches the TU"
    );
    assert_eq!(s.poll_timeout(), Some(t0 + 5200 * MS), "Timer I = T4");
    s.handle_timeout(t0 + 5200 * MS);
    assert_eq!(s.poll_event(), Some(Event::Terminated));
}

#[test]
fn fig7_rfc6026_accepted_sends_the_tus_2xx_absorbs_invites_passes_ack_until_timer_l() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), false);
    let ok = response(&inv, 200);
    s.send_response(ok.clone(), t0).unwrap();
    assert_eq!(s.state(), InviteServerState::Accepted);
    assert_eq!(drain(|| s.poll_transmit()).len(), 1);
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + 32 * 1000 * MS),
        "Timer L only, no G"
    );
    // The TU retransmits its 2xx; the transaction sends it.
    s.send_response(ok.clone(), t0 + 500 * MS).unwrap();
    assert_eq!(drain(|| s.poll_transmit()).len(), 1);
    // INVITE retransmission: absorbed, nothing sent, nothing to the TU.
    s.handle_request(inv.clone(), t0 + 600 * MS);
    assert!(drain(|| s.poll_transmit()).is_empty());
    assert_eq!(s.poll_event(), None);
    // An ACK that matches (same branch): to the TU.
    let ack = request("ACK", "z9hG4bK3", "10.0.0.1:5060");
    s.handle_request(ack.clone(), t0 + 700 * MS);
    assert_eq!(s.poll_event(), Some(Event::Ack(ack)));
    // A non-2xx after a 2xx is refused.
    assert!(s.send_response(response(&inv, 500), t0 + 800 * MS).is_err());
    s.handle_timeout(t0 + 32 * 1000 * MS);
    assert_eq!(s.poll_event(), Some(Event::Terminated));
}

#[test]
fn fig7_reliable_transport_no_timer_g_timer_i_zero() {
    let t0 = Instant::now();
    let inv = invite("z9hG4bK3");
    let mut s = InviteServer::new(inv.clone(), t0, cfg(), true);
    s.send_response(response(&inv, 486), t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0 + 32 * 1000 * MS), "Timer H only");
    s.handle_request(request("ACK", "z9hG4bK3", "10.0.0.1:5060"), t0 + 5 * MS);
    assert_eq!(s.poll_timeout(), Some(t0 + 5 * MS));
    s.handle_timeout(t0 + 5 * MS);
    assert!(s.is_terminated());
}

// ---- Figure 8: non-INVITE server ----

#[test]
fn fig8_trying_absorbs_proceeding_and_completed_repeat_the_last_response_until_timer_j() {
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bK4", "h:5060");
    let mut s = NonInviteServer::new(bye.clone(), t0, cfg(), false);
    s.handle_request(bye.clone(), t0 + 500 * MS);
    assert!(drain(|| s.poll_transmit()).is_empty(), "Trying: silent");
    s.send_response(response(&bye, 100), t0 + 600 * MS).unwrap();
    s.handle_request(bye.clone(), t0 + 1500 * MS);
    let sent = drain(|| s.poll_transmit());
    assert_eq!(
        sent.iter().map(|m| m.status()).collect::<Vec<_>>(),
        vec![Some(100), Some(100)]
    );
    s.send_response(response(&bye, 200), t0 + 2 * 1000 * MS)
        .unwrap();
    s.handle_request(bye.clone(), t0 + 3500 * MS);
    let sent = drain(|| s.poll_transmit());
    assert_eq!(
        sent.iter().map(|m| m.status()).collect::<Vec<_>>(),
        vec![Some(200), Some(200)]
    );
    assert!(s
        .send_response(response(&bye, 500), t0 + 4 * 1000 * MS)
        .is_err());
    assert_eq!(
        s.poll_timeout(),
        Some(t0 + 34 * 1000 * MS),
        "Timer J = 64·T1"
    );
    s.handle_timeout(t0 + 34 * 1000 * MS);
    assert_eq!(s.poll_event(), Some(Event::Terminated));
}

#[test]
fn fig8_reliable_transport_timer_j_zero() {
    let t0 = Instant::now();
    let bye = request("BYE", "z9hG4bK4", "h:5060");
    let mut s = NonInviteServer::new(bye.clone(), t0, cfg(), true);
    s.send_response(response(&bye, 200), t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(t0));
    s.handle_timeout(t0);
    assert!(s.is_terminated());
}

// ---- Table: matching ----

#[test]
fn table_matches_retransmissions_acks_and_cancels() {
    let t0 = Instant::now();
    let mut t: TransactionTable<u8> = TransactionTable::new(cfg());
    let inv = invite("z9hG4bKt");
    let Ok(Incoming::New(key)) = t.handle_request(inv.clone(), t0, 1, false) else {
        panic!("new INVITE")
    };
    assert_eq!(key.method, Method::Invite);
    assert_eq!(&*key.sent_by, "10.0.0.1:5060");
    // Same branch from another sent-by: another transaction (§17.2.3).
    let other = request("INVITE", "z9hG4bKt", "10.0.0.2:5060");
    assert!(matches!(
        t.handle_request(other, t0, 2, false),
        Ok(Incoming::New(k)) if k != key
    ));
    // Retransmission: matched, absorbed.
    assert_eq!(
        t.handle_request(inv.clone(), t0 + MS, 1, false),
        Ok(Incoming::Matched(key.clone()))
    );
    // CANCEL: its own transaction, pointing at the INVITE.
    let cancel = request("CANCEL", "z9hG4bKt", "10.0.0.1:5060");
    match t.handle_request(cancel, t0 + 2 * MS, 1, false) {
        Ok(Incoming::Cancel { key: ck, invite }) => {
            assert_eq!(ck.method, Method::Cancel);
            assert_eq!(invite, Some(key.clone()));
        }
        other => panic!("{other:?}"),
    }
    let stray_cancel = request("CANCEL", "z9hG4bKnone", "10.0.0.1:5060");
    assert!(matches!(
        t.handle_request(stray_cancel, t0, 1, false),
        Ok(Incoming::Cancel { invite: None, .. })
    ));
    // Final non-2xx, then the ACK matches the INVITE transaction.
    t.send_response(&key, response(&inv, 487), t0 + 3 * MS)
        .unwrap();
    let tx = t.poll_transmit().expect("487 queued");
    assert_eq!((tx.ctx, tx.message.status()), (1, Some(487)));
    let ack = request("ACK", "z9hG4bKt", "10.0.0.1:5060");
    assert_eq!(
        t.handle_request(ack, t0 + 4 * MS, 1, false),
        Ok(Incoming::Matched(key.clone()))
    );
    // An ACK with a new branch (for a 2xx) belongs to the dialog.
    let ack2 = request("ACK", "z9hG4bKnew", "10.0.0.1:5060");
    assert_eq!(
        t.handle_request(ack2, t0, 1, false),
        Ok(Incoming::Unmatched)
    );
}

#[test]
fn table_expires_terminated_transactions() {
    let t0 = Instant::now();
    let mut t: TransactionTable<()> = TransactionTable::new(cfg());
    let bye = request("BYE", "z9hG4bKe", "h:5060");
    let Ok(Incoming::New(key)) = t.handle_request(bye.clone(), t0, (), false) else {
        panic!()
    };
    t.send_response(&key, response(&bye, 200), t0).unwrap();
    assert_eq!(t.len(), 1);
    t.handle_timeout(t0 + 31 * 1000 * MS);
    assert_eq!(t.len(), 1, "Timer J still running");
    t.handle_timeout(t0 + 32 * 1000 * MS);
    assert!(t.is_empty());
    assert!(drain(|| t.poll_event()).contains(&(key.clone(), Event::Terminated)));
    // After expiry a late retransmission is a new request again (the TU's problem: RFC
    // 3261 §17.2.2 keeps J exactly long enough for that not to happen).
    assert!(t.send_response(&key, response(&bye, 200), t0).is_err());
}

#[test]
fn table_routes_responses_by_branch_and_cseq_method() {
    let t0 = Instant::now();
    let mut t: TransactionTable<()> = TransactionTable::new(cfg());
    let inv = invite("z9hG4bKc");
    let key = t.start_client(inv.clone(), t0, (), false).unwrap();
    assert!(
        t.start_client(inv.clone(), t0, (), false).is_err(),
        "duplicate"
    );
    assert_eq!(t.poll_transmit().map(|x| x.message), Some(inv.clone()));
    // Same branch, other CSeq method: not this transaction.
    let mut wrong = response(&inv, 200);
    wrong.set_header(HeaderName::CSeq, "7 BYE");
    assert_eq!(t.handle_response(wrong, t0), Incoming::Unmatched);
    assert_eq!(
        t.handle_response(response(&inv, 180), t0),
        Incoming::Matched(key.clone())
    );
    assert!(matches!(t.poll_event(), Some((k, Event::Response(_))) if k == key));
}

#[test]
fn table_defers_cancel_until_a_provisional_arrives() {
    let t0 = Instant::now();
    let mut t: TransactionTable<()> = TransactionTable::new(cfg());
    let inv = invite("z9hG4bKx");
    let key = t.start_client(inv.clone(), t0, (), false).unwrap();
    let _ = drain(|| t.poll_transmit());
    assert_eq!(t.cancel(&key, t0 + MS), Ok(None), "no 1xx yet: wait");
    assert!(t.poll_transmit().is_none());
    t.handle_response(response(&inv, 100), t0 + 2 * MS);
    let sent = t.poll_transmit().expect("CANCEL sent on the 1xx");
    assert_eq!(sent.message.method(), Some(&Method::Cancel));
    assert_eq!(sent.message.cseq().map(|c| c.seq), Ok(7));
    assert_eq!(sent.message.top_via().unwrap().branch(), Some("z9hG4bKx"));
    // Once Proceeding, a CANCEL goes at once.
    let inv2 = invite("z9hG4bKy");
    let key2 = t.start_client(inv2.clone(), t0, (), false).unwrap();
    let _ = drain(|| t.poll_transmit());
    t.handle_response(response(&inv2, 180), t0);
    let ck = t.cancel(&key2, t0).unwrap().expect("sent");
    assert_eq!(ck.method, Method::Cancel);
    assert!(t.contains(&ck));
}

#[test]
fn table_gives_up_a_cancelled_invite_after_64_t1_without_final_response() {
    let t0 = Instant::now();
    let mut t: TransactionTable<()> = TransactionTable::new(cfg());
    let inv = invite("z9hG4bKz");
    let key = t.start_client(inv.clone(), t0, (), false).unwrap();
    t.handle_response(response(&inv, 180), t0 + 100 * MS);
    t.handle_timeout(t0 + 100 * 1000 * MS);
    assert!(t.contains(&key), "Proceeding has no timer of its own");
    let now = t0 + 100 * 1000 * MS;
    t.cancel(&key, now).unwrap();
    t.handle_timeout(now + 32 * 1000 * MS);
    assert!(!t.contains(&key));
    let ev: Vec<_> = drain(|| t.poll_event())
        .into_iter()
        .filter(|(k, _)| *k == key)
        .collect();
    assert!(
        ev.iter().any(|(_, e)| *e == Event::Timeout(Timer::B)),
        "{ev:?}"
    );
}

#[test]
fn rfc2543_requests_are_keyed_without_a_magic_cookie() {
    let inv = request("INVITE", "old1", "h:5060");
    let ack = request("ACK", "old1", "h:5060");
    let ki = TransactionKey::server(&inv).unwrap();
    assert_eq!(ki, TransactionKey::server(&ack).unwrap());
    assert!(ki.branch.starts_with("2543|call-1|a1|7|"));
}

/// The router's use ([`InviteServers`]): the TU sends its own responses and reports them;
/// the last one is repeated for INVITE retransmissions, a non-2xx is retransmitted on
/// Timer G and its ACK absorbed; a 2xx leaves the table for the compact Accepted memory,
/// where INVITEs are absorbed and any ACK (even one reusing the branch) is the TU's; no copy
/// of anything is queued for what the TU already sent.
#[test]
fn invite_servers_track_an_invite_whose_tu_sends_its_own_responses() {
    let t0 = Instant::now();
    let mut t: InviteServers<u8> = InviteServers::new(cfg(), 1000);
    let inv = invite("z9hG4bKtr");
    let key = TransactionKey::server(&inv).unwrap();
    assert!(t.track(key.clone(), t0, 7, false, Tracked::Initial));
    assert!(!t.track(key.clone(), t0, 7, false, Tracked::Initial));
    assert_eq!(t.poll_timeout(), None, "no automatic 100: the TU answers");
    // Before any response a retransmission is absorbed silently.
    t.absorb(&key, inv.clone(), t0 + MS).unwrap();
    assert!(t.poll_transmit().is_none());
    t.response_sent(&key, response(&inv, 100), t0 + MS).unwrap();
    t.response_sent(&key, response(&inv, 180), t0 + 2 * MS)
        .unwrap();
    assert!(t.poll_transmit().is_none(), "the TU sent those itself");
    t.absorb(&key, inv.clone(), t0 + 3 * MS).unwrap();
    let again = t.poll_transmit().expect("the 180 again");
    assert_eq!((again.ctx, again.message.status()), (7, Some(180)));
    // Another branch is not this transaction: given back.
    let other = invite("z9hG4bKother");
    assert!(t
        .absorb(&TransactionKey::server(&other).unwrap(), other, t0)
        .is_err());
    // 2xx: Accepted, in the compact memory; INVITEs absorbed, the ACK handed back.
    t.response_sent(&key, response(&inv, 200), t0 + 4 * MS)
        .unwrap();
    assert!(t.poll_transmit().is_none());
    assert_eq!((t.len(), t.accepted_len()), (0, 1));
    t.absorb(&key, inv.clone(), t0 + 5 * MS).unwrap();
    assert!(t.poll_transmit().is_none(), "absorbed in Accepted");
    let ack = request("ACK", "z9hG4bKtr", "10.0.0.1:5060");
    assert!(t.absorb(&key, ack, t0 + 6 * MS).is_err(), "the TU's ACK");
    assert!(!t.remove_unanswered(&key), "answered: nothing to remove");
    assert_eq!(t.poll_timeout(), Some(t0 + 4 * MS + 32 * 1000 * MS));
    t.handle_timeout(t0 + 4 * MS + 32 * 1000 * MS);
    assert!(t.is_empty(), "Timer L");

    // Non-2xx: repeated on Timer G (0.5, 1.5 s ...), the ACK ends that.
    let inv2 = invite("z9hG4bKtr2");
    let k2 = TransactionKey::server(&inv2).unwrap();
    assert!(t.track(k2.clone(), t0, 1, false, Tracked::Initial));
    t.response_sent(&k2, response(&inv2, 486), t0).unwrap();
    assert!(t.poll_transmit().is_none());
    let sent = run_until!(t, t0, 2000 * MS);
    assert_eq!(sent, secs(&[0.5, 1.5]));
    t.absorb(
        &k2,
        request("ACK", "z9hG4bKtr2", "10.0.0.1:5060"),
        t0 + 1600 * MS,
    )
    .expect("the ACK of a non-2xx stays here");
    let sent = run_until!(t, t0, 60_000 * MS);
    assert!(sent.is_empty(), "{sent:?}");
    assert!(t.is_empty(), "Timer I ended it");

    // A TU that ends without a final answer: its transaction goes with it.
    let inv3 = invite("z9hG4bKtr3");
    let k3 = TransactionKey::server(&inv3).unwrap();
    assert!(t.track(k3.clone(), t0, 1, false, Tracked::Initial));
    t.response_sent(&k3, response(&inv3, 100), t0).unwrap();
    assert!(t.remove_unanswered(&k3));
    assert!(t.is_empty());
}

/// Many transactions: the heap wakes only for the ones due, in deadline order.
#[test]
fn table_deadline_heap_runs_only_what_is_due() {
    let t0 = Instant::now();
    let mut t: TransactionTable<u32> = TransactionTable::new(cfg());
    for i in 0..5000u32 {
        let inv = invite(&format!("z9hG4bKh{i}"));
        let key = TransactionKey::server(&inv).unwrap();
        let at = t0 + Duration::from_millis(u64::from(i));
        t.track_invite(key.clone(), at, i, false).unwrap();
        let code = if i % 2 == 0 { 200 } else { 486 };
        t.with_invite_server(&key, |s| s.response_sent(response(&inv, code), at))
            .unwrap()
            .unwrap();
    }
    // First: Timer G of the first 486 (i = 1) at 1 ms + T1.
    assert_eq!(t.poll_timeout(), Some(t0 + 501 * MS));
    assert_eq!(t.poll_timeout(), t.scan_timeout());
    t.handle_timeout(t0 + 501 * MS);
    let sent = drain(|| t.poll_transmit());
    assert_eq!(sent.iter().map(|s| s.ctx).collect::<Vec<_>>(), vec![1]);
    assert_eq!(t.poll_timeout(), Some(t0 + 503 * MS));
    // After Timer L/H everything is gone.
    t.handle_timeout(t0 + 40_000 * MS);
    assert!(t.is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn cancel_and_non_2xx_ack_copy_the_invite_transaction() {
    let inv = invite("z9hG4bKabc");
    let cancel = Message::parse(&build_cancel(&inv).to_bytes(), Framing::Datagram).unwrap();
    cancel.validate_request().expect("valid CANCEL");
    assert_eq!(cancel.top_via().unwrap().branch(), Some("z9hG4bKabc"));
    assert_eq!(cancel.cseq().unwrap().seq, 7);
    assert_eq!(cancel.method(), Some(&Method::Cancel));
    assert_eq!(
        cancel.header(&HeaderName::Route),
        inv.header(&HeaderName::Route)
    );
    let resp = response(&inv, 486);
    let ack = Message::parse(&build_ack(&inv, &resp).to_bytes(), Framing::Datagram).unwrap();
    ack.validate_request().expect("valid ACK");
    assert_eq!(
        ack.to_header().unwrap().tag(),
        Some("b1"),
        "To of the response"
    );
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
    assert_eq!(ack.cseq().unwrap().method, Method::Ack);
}

// ---- Simulated network: client and server tables over a lossy, reordering link ----

/// xorshift64*: deterministic, dependency-free randomness for the simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn delay(&mut self) -> Duration {
        // 10–300 ms: enough spread to reorder back-to-back messages.
        Duration::from_millis(10 + self.next() % 290)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Client,
    Server,
}

struct Net {
    rng: Rng,
    loss: u64,
    in_flight: Vec<(Instant, Side, Vec<u8>)>,
}

impl Net {
    fn send(&mut self, now: Instant, to: Side, msg: &Message) {
        if !self.rng.chance(self.loss) {
            let at = now + self.rng.delay();
            self.in_flight.push((at, to, msg.to_bytes()));
        }
    }
    fn next_at(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(at, _, _)| *at).min()
    }
    fn take_due(&mut self, now: Instant) -> Vec<(Side, Vec<u8>)> {
        let mut due: Vec<_> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].0 <= now {
                let (at, side, b) = self.in_flight.swap_remove(i);
                due.push((at, side, b));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|(at, _, _)| *at);
        due.into_iter().map(|(_, s, b)| (s, b)).collect()
    }
}

#[derive(Debug, Default)]
struct Outcome {
    /// Requests the server TU saw (must be exactly 1: retransmissions absorbed).
    server_requests: usize,
    /// Final responses the client TU saw.
    client_finals: usize,
    client_timeout: bool,
    server_timeout: bool,
    /// Virtual time until both tables were empty.
    ended: Option<Duration>,
}

/// One transaction end to end: `method` with final `code` from the server TU (answered at
/// once, with a 180 first for INVITE). For a 2xx to INVITE the TUs do their RFC 6026 part:
/// the server TU retransmits the 2xx until an ACK, the client TU ACKs each 2xx.
fn simulate(seed: u64, loss: u64, method: &str, code: u16) -> Outcome {
    let t0 = Instant::now();
    let mut net = Net {
        rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        loss,
        in_flight: Vec::new(),
    };
    let mut client: TransactionTable<()> = TransactionTable::new(cfg());
    let mut server: TransactionTable<()> = TransactionTable::new(cfg());
    let req = request(method, "z9hG4bKsim", "10.0.0.1:5060");
    client.start_client(req, t0, (), false).unwrap();
    let mut out = Outcome::default();
    let mut now = t0;
    // Server TU state for the 2xx retransmission of RFC 3261 §13.3.1.4.
    let mut ok_retx: Option<(Instant, Duration, TransactionKey, Message)> = None;
    let end = t0 + Duration::from_secs(120);
    loop {
        for tx in drain(|| client.poll_transmit()) {
            net.send(now, Side::Server, &tx.message);
        }
        for tx in drain(|| server.poll_transmit()) {
            net.send(now, Side::Client, &tx.message);
        }
        for (_, ev) in drain(|| client.poll_event()) {
            match ev {
                Event::Response(r) if r.status() >= Some(200) => {
                    out.client_finals += 1;
                    if r.status() < Some(300) && method == "INVITE" {
                        // The TU's ACK for a 2xx: a new transaction-less request.
                        let mut ack = request("ACK", "z9hG4bKack", "10.0.0.1:5060");
                        ack.set_header(
                            HeaderName::To,
                            r.header(&HeaderName::To).unwrap_or_default().to_string(),
                        );
                        net.send(now, Side::Server, &ack);
                    }
                }
                Event::Timeout(_) => out.client_timeout = true,
                _ => {}
            }
        }
        for (_, ev) in drain(|| server.poll_event()) {
            if let Event::Timeout(_) = ev {
                out.server_timeout = true;
            }
        }
        if client.is_empty() && server.is_empty() && ok_retx.is_none() {
            out.ended = Some(now - t0);
            return out;
        }
        let next = [
            client.poll_timeout(),
            server.poll_timeout(),
            net.next_at(),
            ok_retx.as_ref().map(|r| r.0),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return out;
        };
        now = next.max(now);
        if now > end {
            return out;
        }
        client.handle_timeout(now);
        server.handle_timeout(now);
        if let Some((at, iv, key, ok)) = ok_retx.as_mut() {
            if *at <= now {
                // Gives up after 64·T1 like the TU must (§13.3.1.4).
                if server.send_response(key, ok.clone(), now).is_err() {
                    ok_retx = None;
                } else {
                    *iv = (*iv * 2).min(cfg().t2);
                    *at += *iv;
                }
            }
        }
        for (side, bytes) in net.take_due(now) {
            let msg = Message::parse(&bytes, Framing::Datagram).unwrap();
            match side {
                Side::Client => {
                    client.handle_response(msg, now);
                }
                Side::Server if msg.is_request() => {
                    match server.handle_request(msg.clone(), now, (), false).unwrap() {
                        Incoming::New(key) => {
                            out.server_requests += 1;
                            if method == "INVITE" {
                                server
                                    .send_response(&key, response(&msg, 180), now)
                                    .unwrap();
                            }
                            let fin = response(&msg, code);
                            server.send_response(&key, fin.clone(), now).unwrap();
                            if method == "INVITE" && code < 300 {
                                ok_retx = Some((now + cfg().t1, cfg().t1, key, fin));
                            }
                        }
                        Incoming::Unmatched => {
                            // The ACK for our 2xx: stop retransmitting it.
                            ok_retx = None;
                        }
                        _ => {}
                    }
                }
                Side::Server => {}
            }
        }
    }
}

#[test]
fn simulated_lossy_network_completes_non_invite_and_invite_transactions() {
    for (method, code) in [("BYE", 200), ("INVITE", 486), ("INVITE", 200)] {
        for loss in [10, 20, 30] {
            let mut completed = 0;
            let runs = 200;
            for seed in 1..=runs {
                let o = simulate(seed, loss, method, code);
                let what = format!("{method} {code} loss {loss}% seed {seed}: {o:?}");
                assert!(o.ended.is_some(), "both sides end: {what}");
                assert!(o.server_requests <= 1, "retransmissions absorbed: {what}");
                assert!(o.client_finals <= 1 || code < 300, "one final: {what}");
                if o.client_finals >= 1 {
                    completed += 1;
                    assert_eq!(o.server_requests, 1, "{what}");
                    assert!(!o.client_timeout, "{what}");
                } else {
                    assert!(o.client_timeout, "no answer means Timer B/F: {what}");
                }
            }
            // The chance that all ~11 round trips of one transaction fail at 30 % loss is
            // about 0.51^11 ≈ 6e-4; at 10–20 % it is negligible.
            let floor = if loss < 30 { runs } else { runs - 2 };
            eprintln!("{method} {code} loss {loss}%: {completed}/{runs}");
            assert!(
                completed >= floor,
                "{method} {code} at {loss}% loss: {completed}/{runs} completed"
            );
        }
    }
}

#[test]
fn simulated_lossless_network_ends_with_the_rfc_timers() {
    let o = simulate(7, 0, "BYE", 200);
    assert_eq!((o.server_requests, o.client_finals), (1, 1));
    // Timer J (32 s from the answer) on the server outlives Timer K on the client.
    let took = o.ended.expect("ended");
    assert!(
        took > Duration::from_secs(32) && took < Duration::from_secs(33),
        "{took:?}"
    );
    assert!(!o.client_timeout && !o.server_timeout);
    let o = simulate(7, 0, "INVITE", 486);
    assert_eq!((o.server_requests, o.client_finals), (1, 1));
    assert!(
        !o.server_timeout,
        "the ACK confirmed the server transaction"
    );
    // Timer D (32 s from the 486) on the client is the last to end.
    let took = o.ended.expect("ended");
    assert!(
        took > Duration::from_secs(32) && took < Duration::from_secs(33),
        "{took:?}"
    );
}

// ---- Property: arbitrary input never panics ----

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Request(u8, u8),
        Response(u8, u16),
        TuResponse(u8, u16),
        Cancel(u8),
        TransportError(u8),
        Advance(u32),
        Start(u8, u8),
        Track(u8),
        Sent(u8, u16),
    }

    const METHODS: [&str; 5] = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5, 0u8..3).prop_map(|(m, b)| Op::Request(m, b)),
            (0u8..5, 100u16..700).prop_map(|(m, c)| Op::Response(m, c)),
            (0u8..4, 100u16..700).prop_map(|(k, c)| Op::TuResponse(k, c)),
            (0u8..4).prop_map(Op::Cancel),
            (0u8..4).prop_map(Op::TransportError),
            (0u32..40_000).prop_map(Op::Advance),
            (0u8..5, 0u8..3).prop_map(|(m, b)| Op::Start(m, b)),
            (0u8..3).prop_map(Op::Track),
            (0u8..4, 100u16..700).prop_map(|(k, c)| Op::Sent(k, c)),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_sequences_never_panic(ops in proptest::collection::vec(op(), 1..60), reliable: bool) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut t: TransactionTable<()> = TransactionTable::new(cfg());
            let mut keys: Vec<TransactionKey> = Vec::new();
            for op in ops {
                match op {
                    Op::Request(m, b) => {
                        let r = request(METHODS[m as usize], &format!("z9hG4bK{b}"), "h:1");
                        match t.handle_request(r, now, (), reliable) {
                            Ok(Incoming::New(k)) | Ok(Incoming::Cancel { key: k, .. }) => keys.push(k),
                            _ => {}
                        }
                    }
                    Op::Response(m, code) => {
                        let r = request(METHODS[m as usize], "z9hG4bK0", "h:1");
                        let _ = t.handle_response(response(&r, code), now);
                    }
                    Op::TuResponse(k, code) => {
                        if let Some(key) = keys.get(k as usize) {
                            let r = request(key.method.as_str(), &key.branch, "h:1");
                            let _ = t.send_response(key, response(&r, code), now);
                        }
                    }
                    Op::Cancel(k) => {
                        if let Some(key) = keys.get(k as usize) {
                            let _ = t.cancel(key, now);
                        }
                    }
                    Op::TransportError(k) => {
                        if let Some(key) = keys.get(k as usize) {
                            t.handle_transport_error(key);
                        }
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms as u64);
                        t.handle_timeout(now);
                        // Every timer due was run.
                        prop_assert!(t.poll_timeout().is_none_or(|at| at > now));
                    }
                    Op::Start(m, b) => {
                        let r = request(METHODS[m as usize], &format!("z9hG4bK{b}"), "h:1");
                        if let Ok(k) = t.start_client(r, now, (), reliable) {
                            keys.push(k);
                        }
                    }
                    Op::Track(b) => {
                        let r = request("INVITE", &format!("z9hG4bKt{b}"), "h:1");
                        let k = TransactionKey::server(&r).unwrap();
                        if t.track_invite(k.clone(), now, (), reliable).is_ok() {
                            keys.push(k);
                        }
                    }
                    Op::Sent(k, code) => {
                        if let Some(key) = keys.get(k as usize) {
                            let r = request(key.method.as_str(), &key.branch, "h:1");
                            let _ = t.with_invite_server(key, |s| s.response_sent(response(&r, code), now));
                        }
                    }
                }
                // The deadline heap agrees with a scan of every transaction.
                prop_assert_eq!(t.poll_timeout(), t.scan_timeout());
                while t.poll_transmit().is_some() {}
                while t.poll_event().is_some() {}
            }
            // Every transaction ends: after 2 minutes of virtual time only server
            // transactions the TU never answered may remain, and INVITE clients in
            // Proceeding until the TU cancels them (§9.1: then 64·T1 at most).
            for k in &keys {
                let _ = t.cancel(k, now);
            }
            now += Duration::from_secs(120);
            t.handle_timeout(now);
            prop_assert!(t.poll_timeout().is_none_or(|at| at > now));
            for k in &keys {
                prop_assert!(k.role == Role::Server || !t.contains(k), "client {k:?} outlived B/F");
            }
        }
    }
}
