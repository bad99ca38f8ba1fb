//! Wiring: load config, prompts and dialplans, load TLS files, open the database, bind
//! SIP/HTTP, start the router, TCP and TLS listeners, store writer and API (with SIP over
//! WebSocket on the HTTP port); stop them in order. `start` is what `main`
//! and the integration tests call.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::api::{self, ApiState};
use crate::call::router::Router;
use crate::call::CallContext;
use crate::config::{Config, ConfigError};
use crate::ivr::loader::LoadError;
use crate::media::prompts::{PromptError, PromptLibrary};
use crate::runtime::ports::PortRange;
use crate::store::{self, Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Prompts(#[from] PromptError),
    #[error("dialplan errors:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Dialplans(Vec<LoadError>),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Journal(crate::store::journal::JournalError),
    /// A TLS certificate, key or trust file that cannot be used (names the key and file).
    #[error("{source_file}: {error}")]
    Tls {
        source_file: String,
        error: crate::sip::tls::TlsError,
    },
    /// The SMS gateway's or the webhooks' HTTP client cannot be made (URL, `ca_file`).
    #[error("{source_file}: {error}")]
    Http {
        source_file: String,
        error: crate::http_client::HttpError,
    },
    /// `[cluster] queues = "cluster"` on a database that only one node can use.
    #[error("[cluster] queues = \"cluster\" needs PostgreSQL (the database is {0}); use \"node\" with SQLite")]
    SharedQueuesNeedPostgres(String),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started server.
pub struct RunningServer {
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The SIP/TLS listener, when `[server] tls_listen` is set.
    pub tls_addr: Option<SocketAddr>,
    pub demo_tickets_inserted: u64,
    /// The ops API bearer token (configured, or generated for this run).
    pub api_token: String,
    shutdown: CancellationToken,
    ctx: Arc<CallContext>,
    tasks: JoinHandle<()>,
}

// Dialplan loading lives in `call::dialplans` so the API can reload without importing the
// server (no `api` → `server` edge, docs/architecture.md); re-exported under the old paths.
pub use crate::call::dialplans::{load_dialplans, reload_dialplans};
// Kept beside the prompt library, which `call` uses too; re-exported under the old path.
pub use crate::media::prompts::MOH_LANG;

/// Start the server with its call tasks on the current runtime (tests, one-runtime embedders).
pub async fn start(cfg: Config) -> Result<RunningServer, StartError> {
    start_on(cfg, tokio::runtime::Handle::current()).await
}

/// Start the server with its call tasks on `calls`, the call runtime (`runtime::calls`:
/// `realtime_priority` applies to its threads only); everything else runs on the current
/// runtime.
pub async fn start_on(
    mut cfg: Config,
    calls_rt: tokio::runtime::Handle,
) -> Result<RunningServer, StartError> {
    cfg.resolve_asset_dirs();
    let mut prompts = PromptLibrary::load(&cfg.audio_dir)?;
    // Music on hold: any `<name>.wav` at the top of the audio folder a queue names.
    for q in &cfg.queue_settings {
        let path = cfg.audio_dir.join(format!("{}.wav", q.music_on_hold));
        if prompts.has(MOH_LANG, &q.music_on_hold) {
            continue;
        }
        match crate::media::prompts::read_wav_8k_mono(&path) {
            Ok(pcm) => prompts.insert(
                MOH_LANG,
                crate::media::prompts::Prompt::from_pcm(&q.music_on_hold, &pcm),
            ),
            Err(e) => {
                warn!(queue = %q.acd.name, path = %path.display(), error = %e, "no music on hold; callers wait in silence")
            }
        }
    }
    let prompts = Arc::new(prompts);
    let dialplans = load_dialplans(&cfg, &prompts).map_err(StartError::Dialplans)?;
    info!(
        prompts = prompts.len(),
        dialplans = dialplans.plans.len(),
        "assets loaded"
    );

    // Certificates before anything binds or opens: a bad file is a configuration error.
    let tls_error = |error| StartError::Tls {
        source_file: cfg.source.clone(),
        error,
    };
    let tls_acceptor = match &cfg.tls {
        Some(t) => Some(crate::sip::tls::acceptor(&t.cert, &t.key).map_err(tls_error)?),
        None => None,
    };
    let http_tls = match &cfg.http_tls {
        Some(t) => {
            let mut sc = crate::sip::tls::server_config(
                "[http] tls_cert",
                "[http] tls_key",
                &t.cert,
                &t.key,
            )
            .map_err(tls_error)?;
            sc.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
        }
        None => None,
    };
    let dialer_http =
        crate::dialer::DialerHttp::from_config(&cfg).map_err(|error| StartError::Http {
            source_file: cfg.source.clone(),
            error,
        })?;
    let (tcp_tx, tcp_rx) = mpsc::channel(4096);
    let trunk_flows =
        crate::sip::tls::TrunkConnections::new(&cfg.trunks, tcp_tx.clone()).map_err(tls_error)?;

    let db = Db::connect(&cfg.database).await?;
    if cfg.cluster.queues == crate::config::QueueScope::Cluster
        && db.dialect != store::Dialect::Postgres
    {
        return Err(StartError::SharedQueuesNeedPostgres(
            db.url_redacted.clone(),
        ));
    }
    let spool = cfg.spool_dir.join("spool.jsonl");
    // Ops a killed predecessor had journaled but maybe not written go to the end of the
    // spool first; the spool replay below then writes them (idempotently) in order.
    match store::journal::recover_into_spool(&cfg.spool_dir, &spool) {
        Ok(0) => {}
        Ok(n) => warn!(
            ops = n,
            "journal of a previous run moved to the spool for replay"
        ),
        Err(e) => return Err(StartError::Journal(e)),
    }
    let journal =
        Arc::new(store::journal::Journal::open(&cfg.spool_dir).map_err(StartError::Journal)?);
    let (store_handle, store_rx) = store::writer::channel_with_journal(Some(journal.clone()));
    let dead_letter = spool.with_extension("dead.jsonl");
    // Spooled records (a call's real end among them) go in before dangling calls are closed
    // as interrupted; if the spool cannot be replayed yet, closing them would be premature.
    match store::writer::replay_spool(&db, &spool, &dead_letter, &store_handle.stats).await {
        Ok(true) => {
            // Only this node's calls (SQLite: every open row; docs/adr/0007-cluster-state.md).
            let dangling = store::nodes::finalize_own_calls(
                &db,
                &cfg.node_id,
                cfg.cluster.dead_after.as_secs() as i64,
            )
            .await?;
            if dangling > 0 {
                warn!(
                    calls = dangling,
                    "finalized calls left open by a previous run as 'interrupted'"
                );
            }
        }
        Ok(false) => warn!("spool not replayed at start; dangling calls stay open until it is"),
        Err(e) => warn!(error = %e, "spool replay failed at start; the writer retries"),
    }
    let demo = if cfg.demo_data {
        store::demo::load(&db).await?
    } else {
        0
    };

    let udp = UdpSocket::bind(cfg.sip_listen)
        .await
        .map_err(|e| StartError::Bind {
            what: "SIP/UDP",
            addr: cfg.sip_listen,
            source: e,
        })?;
    match crate::runtime::stamped::set_receive_buffer(
        &udp,
        crate::runtime::stamped::SIP_RECEIVE_BUFFER,
    ) {
        Ok(granted) => debug!(granted, "SIP/UDP receive buffer"),
        Err(e) => warn!(error = %e, "SIP/UDP receive buffer left at the system default"),
    }
    let sip_addr = udp.local_addr().map_err(|e| StartError::Bind {
        what: "SIP/UDP",
        addr: cfg.sip_listen,
        source: e,
    })?;
    let tcp = TcpListener::bind(sip_addr)
        .await
        .map_err(|e| StartError::Bind {
            what: "SIP/TCP",
            addr: sip_addr,
            source: e,
        })?;
    let tls_listener = match &cfg.tls {
        Some(t) => Some(
            TcpListener::bind(t.listen)
                .await
                .map_err(|e| StartError::Bind {
                    what: "SIP/TLS",
                    addr: t.listen,
                    source: e,
                })?,
        ),
        None => None,
    };
    let tls_addr = match (&tls_listener, &cfg.tls) {
        (Some(l), Some(t)) => Some(l.local_addr().map_err(|e| StartError::Bind {
            what: "SIP/TLS",
            addr: t.listen,
            source: e,
        })?),
        _ => None,
    };
    let http = TcpListener::bind(cfg.http_listen)
        .await
        .map_err(|e| StartError::Bind {
            what: "HTTP",
            addr: cfg.http_listen,
            source: e,
        })?;
    let http_addr = http.local_addr().map_err(|e| StartError::Bind {
        what: "HTTP",
        addr: cfg.http_listen,
        source: e,
    })?;

    let shutdown = CancellationToken::new();
    let store_close = CancellationToken::new();
    let (router_tx, router_rx) = mpsc::channel(4096);
    let udp = Arc::new(udp);
    let queue_cfgs: Vec<crate::acd::QueueConfig> =
        cfg.queue_settings.iter().map(|q| q.acd.clone()).collect();
    let (acd, acd_rx) = crate::acd::channel(&queue_cfgs);
    let acd_core = crate::acd::AcdService::new(
        &acd,
        queue_cfgs,
        cfg.acd_auto_login,
        &db,
        store_handle.clone(),
    )
    .await;
    let (registrar, registrar_rx) = crate::registrar::channel();
    let registrar_core = crate::registrar::Registrar::new(
        db.clone(),
        store_handle.clone(),
        cfg.realm.clone(),
        cfg.digest_algorithms.clone(),
        crate::call::dialog::LocalIdentity {
            contact: format!("<sip:switchboard@{sip_addr}>"),
            via_host: sip_addr.to_string(),
            transport: crate::sip::transport::TransportKind::Udp,
            user_agent: cfg.user_agent.clone(),
        },
        Some(udp.clone()),
    )
    .await
    .with_acd(acd.clone());
    // Every call and every task a call starts (ticket lookups, agent legs, feature codes):
    // shutdown waits for them.
    let calls = TaskTracker::new();
    let cap_shares = (db.dialect == store::Dialect::Postgres)
        .then(|| crate::dialer::share::Shares::new(cfg.cluster));
    let ctx = Arc::new(CallContext {
        tracker: calls.clone(),
        trunk_gates: {
            let gates =
                crate::dialer::gate::TrunkGates::new(&cfg.trunks, std::time::Instant::now());
            // On a shared PostgreSQL every trunk's caps are held across the nodes (each
            // dials within its block); a SQLite database serves one node, which holds them alone.
            match &cap_shares {
                Some(s) => gates.with_shares(&cfg.trunks, s.clone(), std::time::Instant::now()),
                None => gates,
            }
        },
        trunk_registrations: Default::default(),
        acd,
        registrar,
        udp: udp.clone(),
        ports: PortRange::new(cfg.rtp_ports.0, cfg.rtp_ports.1),
        sip_local: sip_addr,
        tcp_local: Some(sip_addr),
        tls_local: tls_addr,
        ws_local: Some(http_addr),
        trunk_flows,
        prompts,
        dialplans: RwLock::new(Arc::new(dialplans)),
        store: store_handle.clone(),
        db: db.clone(),
        overload_refusals: Default::default(),
        calls_started: Default::default(),
        call_lag: crate::runtime::calls::CallLag::new(),
        overload: Default::default(),
        calls_rt,
        active_calls: crate::call::slots::CallSlots::new(),
        security_drops: std::sync::atomic::AtomicU64::new(0),
        router: router_tx,
        draining: std::sync::atomic::AtomicBool::new(false),
        phones: Default::default(),
        config: cfg,
    });

    let node_info = store::nodes::NodeInfo {
        node_id: ctx.config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        sip_addr: sip_addr.to_string(),
        http_addr: http_addr.to_string(),
    };
    store::nodes::register(&db, &node_info).await?;
    info!(node = %node_info.node_id, "node registered");
    let membership_close = CancellationToken::new();
    let membership = tokio::spawn(crate::cluster::run(
        ctx.clone(),
        node_info.clone(),
        membership_close.clone(),
    ));
    // Its owner: the shutdown below gives every block back once the calls have ended.
    let shares_close = CancellationToken::new();
    let shares_task = cap_shares.map(|s| {
        tokio::spawn(crate::dialer::share::run(
            db.clone(),
            s,
            node_info.node_id.clone(),
            shares_close.clone(),
        ))
    });
    let writer = tokio::spawn(store::writer::run_journaled(
        db.clone(),
        store_rx,
        spool,
        store_handle.stats.clone(),
        store_close.clone(),
        Some(journal),
    ));
    drop(store_handle);
    // The ACD outlives the calls so their last queue events (abandon, complete) are logged.
    let acd_close = CancellationToken::new();
    // Shared queues (ADR 0011): the link to the other nodes, closed after the ACD.
    let link_close = CancellationToken::new();
    let link_tasks = TaskTracker::new();
    let acd_core = match ctx.config.cluster.queues {
        crate::config::QueueScope::Cluster => acd_core.shared(crate::acd::link::start(
            ctx.config.database.clone(),
            db.clone(),
            ctx.config.node_id.clone(),
            ctx.config
                .cluster
                .heartbeat
                .min(std::time::Duration::from_secs(1)),
            &link_tasks,
            link_close.clone(),
        )),
        crate::config::QueueScope::Node => acd_core.with_node(&ctx.config.node_id),
    }
    .with_sip_addr(&sip_addr.to_string());
    link_tasks.close();
    let acd_task = tokio::spawn(acd_core.run(acd_rx, acd_close.clone()));
    let registrar_task = tokio::spawn(registrar_core.run(registrar_rx, shutdown.clone()));
    // The router routes until every call task is over (`router_stop`, below), not only
    // until the calls it knows of at the SIGTERM have ended.
    let router_stop = CancellationToken::new();
    let router =
        Router::new(ctx.clone(), calls.clone(), shutdown.clone()).stop_on(router_stop.clone());
    let router_task = tokio::spawn(router.run(udp, tcp_rx, router_rx));
    // How late call tasks run (overload control's second signal), measured where they run.
    ctx.calls_rt
        .spawn(ctx.call_lag.clone().probe(shutdown.clone()));
    // Tracked with the calls: shutdown waits for their `Expires: 0` before the router goes.
    crate::trunk_reg::spawn_all(&ctx, &calls, &shutdown);
    let tcp_task = tokio::spawn(crate::sip::transport::run_stream_listener(
        tcp,
        None,
        tcp_tx.clone(),
        shutdown.clone(),
        4096,
    ));
    let tls_task = match (tls_listener, tls_acceptor) {
        (Some(l), Some(acceptor)) => {
            Some(tokio::spawn(crate::sip::transport::run_stream_listener(
                l,
                Some(acceptor),
                tcp_tx.clone(),
                shutdown.clone(),
                4096,
            )))
        }
        _ => None,
    };
    let ws = crate::sip::ws::router(crate::sip::ws::WsState {
        to_router: tcp_tx,
        local: http_addr,
        permits: Arc::new(tokio::sync::Semaphore::new(4096)),
        tls: http_tls.is_some(),
    });
    let dialer = crate::dialer::DialerHandle::new(ctx.clone(), shutdown.clone(), dialer_http);
    let api_token = ctx
        .config
        .api_token
        .clone()
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let api_state = Arc::new(ApiState {
        ctx: ctx.clone(),
        ready: AtomicBool::new(false),
        dialer: dialer.clone(),
        token: api_token.clone(),
        read_token: ctx.config.api_read_token.clone(),
        anonymous_read: ctx.config.api_anonymous_read,
        metrics_public: ctx.config.metrics_public,
        // Its streams end at shutdown (else an open wallboard holds the HTTP server).
        wallboard: api::wallboard::Hub::new(shutdown.clone()),
        https: ctx.config.http_tls.is_some(),
        sessions: std::sync::Mutex::new(api::session::Sessions::new(ctx.config.agent_session_ttl)),
        operator_sessions: std::sync::Mutex::new(api::session::Sessions::new(
            ctx.config.agent_session_ttl,
        )),
        login_guard: Default::default(),
    });
    let app = api::router(api_state.clone())
        .merge(ws)
        .layer(axum::middleware::from_fn(api::request_span));
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        let stop = http_shutdown.clone();
        let result = match http_tls {
            Some(acceptor) => {
                use axum::serve::ListenerExt;
                // `tap_io` only to get axum's `ConnectInfo<SocketAddr>` for a custom listener.
                let listener =
                    api::https::TlsListener::new(http, http_addr, acceptor, http_shutdown.clone())
                        .tap_io(|_| {});
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            }
            None => {
                axum::serve(
                    http,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
            }
        };
        if let Err(e) = result {
            error!(error = %e, "HTTP server failed");
        }
    });
    api_state.ready.store(true, Ordering::Release);
    dialer.start_sms();
    match dialer.resume_running().await {
        Ok(n) if n > 0 => info!(campaigns = n, "resumed running campaigns"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot resume campaigns"),
    }
    if ctx.db.dialect == crate::store::Dialect::Postgres {
        // A cluster: campaigns started or resumed through another node are picked up within
        // a second (docs/deployment.md, "Campaign control across nodes").
        let (adopter, stop, ctx) = (dialer.clone(), shutdown.clone(), ctx.clone());
        tokio::spawn(async move {
            let every = ctx
                .config
                .cluster
                .heartbeat
                .min(crate::dialer::service::CONTROL_POLL);
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if ctx.draining.load(Ordering::Relaxed) {
                    continue;
                }
                match adopter.adopt_running().await {
                    Ok(n) if n > 0 => info!(
                        campaigns = n,
                        "running campaigns started or resumed elsewhere picked up"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot look for running campaigns"),
                }
            }
        });
    }
    let dialer_wait = dialer.clone();

    let sd = shutdown.clone();
    let tasks = tokio::spawn(async move {
        sd.cancelled().await;
        if tokio::time::timeout(Duration::from_secs(10), dialer_wait.wait())
            .await
            .is_err()
        {
            warn!("campaign calls did not finish within 10 s of shutdown");
        }
        calls.close();
        if tokio::time::timeout(Duration::from_secs(10), calls.wait())
            .await
            .is_err()
        {
            warn!("some calls did not finish within 10 s of shutdown");
        }
        router_stop.cancel();
        let _ = router_task.await;
        let _ = registrar_task.await;
        acd_close.cancel();
        let _ = acd_task.await;
        link_close.cancel();
        link_tasks.wait().await;
        let _ = tcp_task.await;
        if let Some(t) = tls_task {
            let _ = t.await;
        }
        let _ = http_task.await;
        // Heart-beating until the calls are done, so no survivor takes this node for dead
        // while it still finishes them; then the row says it left cleanly.
        shares_close.cancel();
        if let Some(t) = shares_task {
            let _ = t.await;
        }
        membership_close.cancel();
        let _ = membership.await;
        if let Err(e) =
            store::nodes::set_state(&db, &node_info.node_id, store::nodes::NodeState::Stopped).await
        {
            warn!(error = %e, "node state 'stopped' not written");
        }
        store_close.cancel();
        let _ = writer.await;
        db.pool.close().await;
    });
    Ok(RunningServer {
        sip_addr,
        http_addr,
        tls_addr,
        demo_tickets_inserted: demo,
        api_token,
        shutdown,
        ctx,
        tasks,
    })
}

impl RunningServer {
    /// Stop taking calls, hang up active ones, flush records, then return.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        drop(self.ctx);
        let _ = self.tasks.await;
    }

    /// Drain (SIGTERM, `POST /api/drain`): refuse new calls with 503, let current ones
    /// finish; see [`crate::cluster::drain`].
    pub async fn drain(&self) {
        crate::cluster::drain(&self.ctx).await
    }

    /// Calls in progress on this node.
    pub fn active_calls(&self) -> usize {
        self.ctx.active_calls.active()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Reload dialplans (SIGHUP): the running set stays when the new one has errors.
    pub fn reload_dialplans(&self) -> Result<usize, Vec<LoadError>> {
        reload_dialplans(&self.ctx).map(|names| names.len())
    }

    pub fn context(&self) -> &Arc<CallContext> {
        &self.ctx
    }

    pub fn dialplan_dir(&self) -> &Path {
        &self.ctx.config.dialplan_dir
    }
}
