//! SIP over WebSocket (RFC 7118) on the HTTP port: the upgrade on `/` and `/ws` with the
//! `sip` subprotocol (§4.1), one SIP message per WebSocket message (§5), and the connection
//! as the flow of everything the client sends (§5.2: clients put `.invalid` hosts in Via
//! and Contact, so answers and in-dialog requests can only go back on this connection).
//!
//! [`classify`] is the sans-IO core: one WebSocket payload in, what to do with it out.
//! [`router`] is the axum side: it upgrades, then runs one task per connection that feeds
//! the router channel shared with TCP and TLS and writes what the [`ReplyPath`] is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use super::message::{
    error_response_for_unparsed, Framing, Message, ParseError, MAX_MESSAGE_BYTES,
};
use super::transport::{Inbound, ReplyPath, TransportKind, STREAM_QUEUE};

/// The WebSocket subprotocol RFC 7118 §4.1 registers for SIP.
pub const SUBPROTOCOL: &str = "sip";
/// How often we ping an idle client, and how long it may stay silent (pongs included)
/// before the connection is considered dead and closed. Browsers answer pings by themselves.
const PING_EVERY: Duration = Duration::from_secs(30);
const SILENCE_LIMIT: Duration = Duration::from_secs(90);

/// What one WebSocket message carries.
#[derive(Debug)]
pub enum WsInput {
    /// A SIP message for the router.
    Sip(Message),
    /// CRLF keep-alive (RFC 5626 §3.5.1, sent by SIP.js over WebSocket): answer a
    /// double-CRLF ping with a CRLF pong when `pong`.
    KeepAlive { pong: bool },
    /// Not a SIP message: the error, and the answer to send when it looked like a request.
    Malformed {
        error: ParseError,
        answer: Option<Vec<u8>>,
    },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Classify one WebSocket payload (text or binary). The message boundary is the WebSocket
/// message's (RFC 7118 §5), so a missing Content-Length is fine; one that is present must
/// match the body exactly — a shorter one would hide trailing bytes.
pub fn classify(data: &[u8]) -> WsInput {
    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return WsInput::KeepAlive {
            pong: data.len() >= 4,
        };
    }
    let malformed = |error: ParseError| WsInput::Malformed {
        answer: error_response_for_unparsed(data, error.status(), &error.to_string()),
        error,
    };
    let msg = match Message::parse(data, Framing::Datagram) {
        Ok(m) => m,
        Err(e) => return malformed(e),
    };
    if msg
        .header(&super::message::HeaderName::ContentLength)
        .is_some()
    {
        let on_wire = find(data, b"\r\n\r\n")
            .map(|i| data.len() - i - 4)
            .or_else(|| find(data, b"\n\n").map(|i| data.len() - i - 2));
        if on_wire != Some(msg.body.len()) {
            return malformed(ParseError::BadContentLength);
        }
    }
    WsInput::Sip(msg)
}

/// What the WebSocket endpoint needs from the server.
pub struct WsState {
    pub to_router: mpsc::Sender<Inbound>,
    /// The HTTP listener's address (the `local` side of every WebSocket flow).
    pub local: SocketAddr,
    pub permits: Arc<Semaphore>,
    /// The HTTP port serves HTTPS (`[http] tls_cert`): every connection is WSS.
    pub tls: bool,
}

/// `GET /` and `GET /ws` upgraded to SIP over WebSocket. Merged into the API router; no
/// API token is asked for, since SIP digest authenticates what matters (REGISTER).
pub fn router(state: WsState) -> axum::Router {
    axum::Router::new()
        .route("/", get(upgrade))
        .route("/ws", get(upgrade))
        .with_state(Arc::new(state))
}

fn refuse(code: StatusCode, why: &str) -> Response {
    (code, why.to_string()).into_response()
}

async fn upgrade(
    State(state): State<Arc<WsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws
        .protocols([SUBPROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES);
    if ws.selected_protocol().is_none() {
        // RFC 7118 §4.1: the client MUST ask for "sip"; anything else is not SIP over WS.
        return refuse(
            StatusCode::BAD_REQUEST,
            "SIP over WebSocket needs Sec-WebSocket-Protocol: sip (RFC 7118)",
        );
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        warn!(%peer, "too many WebSocket connections; refusing");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    };
    // Served over HTTPS ([http] tls_cert), or behind a TLS-terminating proxy: the client
    // speaks wss (Via transport WSS).
    let kind = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        _ if state.tls => TransportKind::Wss,
        Some(p) if p.eq_ignore_ascii_case("https") => TransportKind::Wss,
        _ => TransportKind::Ws,
    };
    let to_router = state.to_router.clone();
    let local = state.local;
    ws.on_upgrade(move |socket| async move {
        serve(socket, peer, local, kind, to_router).await;
        drop(permit);
    })
}

/// One SIP-over-WebSocket connection: reads, writes and pings in one task.
async fn serve(
    mut socket: WebSocket,
    peer: SocketAddr,
    local: SocketAddr,
    kind: TransportKind,
    to_router: mpsc::Sender<Inbound>,
) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    let reply = ReplyPath::Stream {
        tx,
        peer,
        local,
        kind,
    };
    debug!(%peer, transport = kind.via_name(), "WebSocket connected");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let data = match incoming {
                    Some(Ok(WsMessage::Text(t))) => Bytes::from(t),
                    Some(Ok(WsMessage::Binary(b))) => b,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {
                        last_heard = tokio::time::Instant::now();
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(%peer, error = %e, "WebSocket error; closing");
                        break;
                    }
                };
                last_heard = tokio::time::Instant::now();
                match classify(&data) {
                    WsInput::Sip(msg) => {
                        let inbound = Inbound { msg, reply: reply.clone(), size: data.len() };
                        if to_router.send(inbound).await.is_err() {
                            break;
                        }
                    }
                    WsInput::KeepAlive { pong } => {
                        if pong {
                            reply.send(b"\r\n".to_vec());
                        }
                    }
                    WsInput::Malformed { error, answer } => {
                        warn!(%peer, transport = kind.via_name(), %error, "malformed SIP message");
                        if let Some(a) = answer {
                            reply.send(a);
                        }
                    }
                }
            }
            out = rx.recv() => {
                let Some(bytes) = out else { break };
                // Text when it can be (what JsSIP and SIP.js send), binary for bodies that
                // are not UTF-8 (RFC 7118 §5 allows both).
                let frame = match String::from_utf8(bytes.to_vec()) {
                    Ok(s) => WsMessage::Text(s.into()),
                    Err(_) => WsMessage::Binary(bytes),
                };
                if socket.send(frame).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    debug!(%peer, "WebSocket silent too long; closing");
                    break;
                }
                if socket.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Closing the receiver marks the flow closed for bindings that still hold it.
    rx.close();
    let _ = socket.send(WsMessage::Close(None)).await;
    debug!(%peer, "WebSocket closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:switchboard@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK1\r\n\
        From: <sip:a@b.invalid>;tag=1\r\nTo: <sip:switchboard@127.0.0.1>\r\n\
        Call-ID: x1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";

    #[test]
    fn one_message_per_ws_message() {
        // No Content-Length: the WebSocket message is the boundary.
        let m = format!("{OPTIONS}\r\n");
        assert!(matches!(classify(m.as_bytes()), WsInput::Sip(_)));
        // A matching Content-Length is fine.
        let m = format!("{OPTIONS}Content-Length: 4\r\n\r\nabcd");
        match classify(m.as_bytes()) {
            WsInput::Sip(msg) => assert_eq!(&msg.body[..], b"abcd"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn content_length_must_match_the_ws_message() {
        let m = format!("{OPTIONS}Content-Length: 2\r\n\r\nabcd");
        match classify(m.as_bytes()) {
            WsInput::Malformed { error, answer } => {
                assert_eq!(error, ParseError::BadContentLength);
                let a = String::from_utf8(answer.expect("answer")).expect("utf8");
                assert!(a.starts_with("SIP/2.0 400 "), "{a}");
                assert!(a.contains("Call-ID: x1"), "{a}");
            }
            other => panic!("{other:?}"),
        }
        let m = format!("{OPTIONS}Content-Length: 9\r\n\r\nabcd");
        assert!(matches!(
            classify(m.as_bytes()),
            WsInput::Malformed {
                error: ParseError::BodyTruncated,
                ..
            }
        ));
    }

    #[test]
    fn keepalives_and_junk() {
        assert!(matches!(
            classify(b"\r\n\r\n"),
            WsInput::KeepAlive { pong: true }
        ));
        assert!(matches!(
            classify(b"\r\n"),
            WsInput::KeepAlive { pong: false }
        ));
        assert!(matches!(
            classify(b"hello"),
            WsInput::Malformed { answer: None, .. }
        ));
        // A response that does not parse gets no answer.
        assert!(matches!(
            classify(b"SIP/2.0 99999 x\r\n\r\n"),
            WsInput::Malformed { answer: None, .. }
        ));
    }
}
