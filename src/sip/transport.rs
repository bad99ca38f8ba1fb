//! SIP transports: the UDP socket and the stream transports — TCP, TLS (RFC 3261 §18,
//! §26.3.1) and SIP over WebSocket (RFC 7118, accepted by `sip::ws` on the HTTP port).
//!
//! Readers parse and hand [`Inbound`] messages to the router over a bounded channel; every
//! message carries the [`ReplyPath`] it arrived on, so responses and in-dialog requests go
//! back on the same flow (RFC 3581 rport for UDP, the same connection for TCP, TLS and
//! WebSocket — what lets NATed phones and `.invalid` WebSocket clients work).
//!
//! Every stream transport ends in one writer channel ([`ReplyPath::Stream`]): TCP and TLS
//! share [`spawn_stream`] (Content-Length framing, RFC 3261 §18.3), WebSocket writes one SIP
//! message per WebSocket message (RFC 7118 §5). Connections we open ourselves (trunks over
//! TCP/TLS) run through the same code and feed the same router channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket: WebSocket behind a TLS-terminating proxy
    /// (`X-Forwarded-Proto: https`), RFC 7118 §5.
    Wss,
}

impl TransportKind {
    pub fn via_name(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }

    /// Whether the transport is unreliable (RFC 3261 §17: retransmission timers apply).
    pub fn unreliable(self) -> bool {
        self == TransportKind::Udp
    }

    /// Whether the peer is only reachable on the connection it opened: WebSocket clients
    /// use `.invalid` hosts (RFC 7118 §5.2), so there is nothing to connect back to.
    pub fn connection_only(self) -> bool {
        matches!(self, TransportKind::Ws | TransportKind::Wss)
    }
}

/// Queue depth of one connection's writer: a peer that stops reading loses messages
/// (as over UDP) instead of stalling the router.
pub const STREAM_QUEUE: usize = 256;

/// Where to send anything that belongs to the flow a message came in on.
#[derive(Debug, Clone)]
pub enum ReplyPath {
    Udp {
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
    },
    /// A TCP, TLS or WebSocket connection: each item is one whole SIP message, written by
    /// the connection's writer task (framed as the transport wants).
    Stream {
        tx: mpsc::Sender<Bytes>,
        peer: SocketAddr,
        local: SocketAddr,
        kind: TransportKind,
    },
}

impl ReplyPath {
    /// Send without waiting: a full socket buffer or connection queue drops the message, as
    /// UDP would; retransmission timers recover (RFC 3261 §17).
    pub fn send(&self, bytes: Vec<u8>) {
        crate::metrics::global().sip_sent(&bytes);
        match self {
            ReplyPath::Udp { socket, peer } => {
                if let Err(e) = socket.try_send_to(&bytes, *peer) {
                    debug!(error = %e, "udp send failed");
                }
            }
            ReplyPath::Stream { tx, kind, .. } => {
                if tx.try_send(Bytes::from(bytes)).is_err() {
                    debug!(
                        transport = kind.via_name(),
                        "connection queue full or closed"
                    );
                }
            }
        }
    }

    pub fn peer(&self) -> SocketAddr {
        match self {
            ReplyPath::Udp { peer, .. } | ReplyPath::Stream { peer, .. } => *peer,
        }
    }

    pub fn kind(&self) -> TransportKind {
        match self {
            ReplyPath::Udp { .. } => TransportKind::Udp,
            ReplyPath::Stream { kind, .. } => *kind,
        }
    }

    /// Whether messages can still go out: false once a connection has closed (its writer
    /// is gone). UDP is always open.
    pub fn is_open(&self) -> bool {
        match self {
            ReplyPath::Udp { .. } => true,
            ReplyPath::Stream { tx, .. } => !tx.is_closed(),
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

/// Time a TLS client gets to finish its handshake before the connection is dropped (a
/// slow-handshake flood must not hold connection slots).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to open an outbound connection (TCP connect plus TLS handshake, each).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accept connections and run one reader/writer task pair per connection: plain TCP when
/// `tls` is None, else a TLS server handshake first (RFC 3261 §26.3.1; the certificate is
/// the acceptor's).
pub async fn run_stream_listener(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    to_router: mpsc::Sender<Inbound>,
    shutdown: CancellationToken,
    max_connections: usize,
) {
    let kind = if tls.is_some() {
        TransportKind::Tls
    } else {
        TransportKind::Tcp
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, transport = kind.via_name(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, transport = kind.via_name(), "too many connections; refusing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let to_router = to_router.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let (_reply, reader) = stream_connection(stream, peer, local, kind, to_router);
                    reader.await;
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls_stream)) => {
                            let (_reply, reader) =
                                stream_connection(tls_stream, peer, local, kind, to_router);
                            reader.await;
                        }
                        Ok(Err(e)) => warn!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => warn!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Open a connection to `addr` (TLS when `tls` gives a connector and the name to verify the
/// peer's certificate against) and start its reader and writer; what the peer sends goes
/// to the router like any inbound message.
pub async fn connect_stream(
    addr: SocketAddr,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    to_router: mpsc::Sender<Inbound>,
) -> std::io::Result<ReplyPath> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())??;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr()?;
    match tls {
        None => {
            let (reply, reader) =
                stream_connection(tcp, addr, local, TransportKind::Tcp, to_router);
            tokio::spawn(reader);
            Ok(reply)
        }
        Some((connector, name)) => {
            let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                .await
                .map_err(|_| timed_out())??;
            let (reply, reader) =
                stream_connection(tls, addr, local, TransportKind::Tls, to_router);
            tokio::spawn(reader);
            Ok(reply)
        }
    }
}

/// How long a stream connection may stay silent before we close it.
const STREAM_IDLE: Duration = Duration::from_secs(600);

/// One stream connection: its [`ReplyPath`] and the reader future that runs it (Content-
/// Length framing, RFC 3261 §18.3; CRLF keep-alives, RFC 5626 §3.5.1). The writer task is
/// spawned here; it ends (and the path reports closed) once the reader has ended and the
/// queued messages are written.
pub fn stream_connection<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    kind: TransportKind,
    to_router: mpsc::Sender<Inbound>,
) -> (
    ReplyPath,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Bytes>(STREAM_QUEUE);
    let reader_done = CancellationToken::new();
    let writer_stop = reader_done.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                m = rx.recv() => match m {
                    Some(b) => if wr.write_all(&b).await.is_err() { break },
                    None => break,
                },
                _ = writer_stop.cancelled() => {
                    // Flush what was queued before the reader ended (our last answers).
                    while let Ok(b) = rx.try_recv() {
                        if wr.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let reply = ReplyPath::Stream {
        tx,
        peer,
        local,
        kind,
    };
    let conn = reply.clone();
    let reader = async move {
        read_stream(&mut rd, &conn, peer, kind, &to_router).await;
        drop(conn);
        reader_done.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    };
    (reply, reader)
}

async fn read_stream<R: AsyncRead + Unpin>(
    rd: &mut R,
    reply: &ReplyPath,
    peer: SocketAddr,
    kind: TransportKind,
    to_router: &mpsc::Sender<Inbound>,
) {
    let transport = kind.via_name();
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        // Drain every complete message in the buffer first.
        loop {
            match frame_stream(&buf) {
                Ok(StreamFrame::Partial) => break,
                Ok(StreamFrame::KeepAlive(n)) => {
                    // RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
                    if n >= 4 {
                        reply.send(b"\r\n".to_vec());
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
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(%peer, transport, error = %e, "malformed SIP message");
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
                    warn!(%peer, transport, error = %e, "unframeable SIP stream; closing");
                    if let Some(resp) =
                        error_response_for_unparsed(&buf, e.status(), &e.to_string())
                    {
                        reply.send(resp);
                    }
                    return;
                }
            }
        }
        if buf.len() > MAX_MESSAGE_BYTES {
            return;
        }
        buf.reserve(4096);
        // Not tied to shutdown: during a graceful stop in-dialog answers (our BYE's 200) must
        // still be read; the reader ends when the peer closes or the router goes away.
        let read = tokio::time::timeout(STREAM_IDLE, rd.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
    }
}
