//! SIP transports: the UDP socket and TCP connections (RFC 3261 §18).
//!
//! Readers parse and hand [`Inbound`] messages to the router over a bounded channel; every
//! message carries the [`ReplyPath`] it arrived on, so responses and in-dialog requests go
//! back on the same flow (RFC 3581 rport for UDP, the same connection for TCP — what lets
//! NATed phones and `.invalid` WebSocket clients work).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::message::{
    error_response_for_unparsed, frame_stream, Framing, Message, StreamFrame, MAX_MESSAGE_BYTES,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }

    /// Whether the transport is unreliable (RFC 3261 §17: retransmission timers apply).
    pub fn unreliable(self) -> bool {
        self == TransportKind::Udp
    }
}

/// Where to send anything that belongs to the flow a message came in on.
#[derive(Debug, Clone)]
pub enum ReplyPath {
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    Tcp {
        tx: mpsc::Sender<Bytes>,
        peer: SocketAddr,
        local: SocketAddr,
    },
}

impl ReplyPath {
    /// Send without waiting: a full socket buffer or connection queue drops the message, as
    /// UDP would; retransmission timers recover (RFC 3261 §17).
    pub fn send(&self, bytes: Vec<u8>) {
        match self {
            ReplyPath::Udp { socket, peer } => {
                if let Err(e) = socket.try_send_to(&bytes, *peer) {
                    debug!(error = %e, "udp send failed");
                }
            }
            ReplyPath::Tcp { tx, .. } => {
                if tx.try_send(Bytes::from(bytes)).is_err() {
                    debug!("tcp connection queue full or closed");
                }
            }
        }
    }

    pub fn peer(&self) -> SocketAddr {
        match self {
            ReplyPath::Udp { peer, .. } | ReplyPath::Tcp { peer, .. } => *peer,
        }
    }

    pub fn kind(&self) -> TransportKind {
        match self {
            ReplyPath::Udp { .. } => TransportKind::Udp,
            ReplyPath::Tcp { .. } => TransportKind::Tcp,
        }
    }
}

/// A parsed message and its flow.
#[derive(Debug)]
pub struct Inbound {
    pub msg: Message,
    pub reply: ReplyPath,
    /// Bytes as received, for logs at trace level.
    pub size: usize,
}

/// Parse one datagram. Unparseable requests get their error answer here; unparseable
/// responses and junk are dropped (RFC 4475 §3.1.2).
pub fn handle_datagram(data: &[u8], reply: &ReplyPath) -> Option<Inbound> {
    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        // RFC 5626 keep-alive ping (CRLFCRLF) over UDP: nothing to answer.
        return None;
    }
    match Message::parse(data, Framing::Datagram) {
        Ok(msg) => Some(Inbound {
            msg,
            reply: reply.clone(),
            size: data.len(),
        }),
        Err(e) => {
            warn!(peer = %reply.peer(), error = %e, "malformed SIP datagram");
            if let Some(resp) = error_response_for_unparsed(data, e.status(), &e.to_string()) {
                reply.send(resp);
            }
            None
        }
    }
}

/// Accept TCP connections and run one reader/writer task pair per connection.
pub async fn run_tcp_listener(
    listener: TcpListener,
    to_router: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "too many TCP connections; refusing");
            continue;
        };
        let to_router = to_router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_tcp(stream, peer, to_router, shutdown).await;
            drop(permit);
        });
    }
}

const TCP_IDLE: Duration = Duration::from_secs(600);

async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    to_router: mpsc::Sender<Inbound>,
    _shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reply = ReplyPath::Tcp {
        tx: tx.clone(),
        peer,
        local,
    };
    let mut buf = BytesMut::with_capacity(8192);
    'conn: loop {
        // Drain every complete message in the buffer first.
        loop {
            match frame_stream(&buf) {
                Ok(StreamFrame::Partial) => break,
                Ok(StreamFrame::KeepAlive(n)) => {
                    // RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
                    if n >= 4 {
                        let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                    }
                    let _ = buf.split_to(n);
                }
                Ok(StreamFrame::Message(n)) => {
                    let frame = buf.split_to(n);
                    match Message::parse(&frame, Framing::Stream) {
                        Ok(msg) => {
                            let inbound = Inbound {
                                msg,
                                reply: reply.clone(),
                                size: n,
                            };
                            if to_router.send(inbound).await.is_err() {
                                break 'conn;
                            }
                        }
                        Err(e) => {
                            warn!(%peer, error = %e, "malformed SIP message on TCP");
                            if let Some(resp) =
                                error_response_for_unparsed(&frame, e.status(), &e.to_string())
                            {
                                reply.send(resp);
                            }
                        }
                    }
                }
                Err(e) => {
                    // Framing lost (bad Content-Length, oversized header): answer if we can,
                    // then close, since the stream cannot be resynchronised.
                    warn!(%peer, error = %e, "unframeable SIP stream; closing");
                    if let Some(resp) =
                        error_response_for_unparsed(&buf, e.status(), &e.to_string())
                    {
                        reply.send(resp);
                    }
                    break 'conn;
                }
            }
        }
        if buf.len() > MAX_MESSAGE_BYTES {
            break;
        }
        buf.reserve(4096);
        // Not tied to shutdown: during a graceful stop in-dialog answers (our BYE's 200) must
        // still be read; the reader ends when the peer closes or the router goes away.
        let read = tokio::time::timeout(TCP_IDLE, rd.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
    drop(reply);
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
