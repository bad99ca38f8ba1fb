//! Registration to carriers: one tokio task per `[[trunk]]` with `register = true`, the
//! thin shell around [`crate::sip::registration::Registration`].
//!
//! The task announces its Call-ID to the router (answers come back like a call's), sends
//! what the core returns on the trunk's transport, sleeps until the core's next deadline,
//! and at shutdown removes the binding (`Expires: 0`, waiting at most [`UNREGISTER_WAIT`]
//! for the answer). Each step's state is published on [`TrunkRegistrations`] for the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::call::actor::CallInput;
use crate::call::router::RouterControl;
use crate::call::CallContext;
use crate::config::{Trunk, TrunkTransport};
use crate::sip::registration::{Phase, RegConfig, RegStatus, Registration};
use crate::sip::transport::ReplyPath;
use crate::sip::uri::Uri;

/// How long shutdown waits for the registrar to answer our `Expires: 0`.
pub const UNREGISTER_WAIT: Duration = Duration::from_secs(3);
/// First retry after a failed attempt; doubles up to [`RETRY_MAX`].
const RETRY_BASE: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

// The status table lives in `sip::reg_table` so `call::CallContext` can hold it without
// importing this module (which sits above `call`); re-exported under its old path.
pub use crate::sip::reg_table::TrunkRegistrations;

/// `[host]` for an IPv6 literal, the host as is otherwise.
fn host_part(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The core's configuration for `trunk` sending on `flow`.
fn reg_config(ctx: &CallContext, trunk: &Trunk, flow: &ReplyPath) -> Option<RegConfig> {
    let user = trunk.username.clone()?;
    let password = trunk.password.clone()?;
    let local = ctx.local_identity(flow);
    let host = host_part(&trunk.host);
    let port = trunk.address.port();
    let registrar = match trunk.transport {
        TrunkTransport::Tcp => format!("sip:{host}:{port};transport=tcp"),
        TrunkTransport::Tls => format!("sips:{host}:{port}"),
        TrunkTransport::Udp => format!("sip:{host}:{port}"),
    };
    let contact_user = trunk.contact_user.clone().unwrap_or_else(|| user.clone());
    // Our usual Contact on this transport, with the account's user instead of ours: the
    // carrier sends calls for the account there.
    let contact = local
        .contact
        .replacen("switchboard@", &format!("{contact_user}@"), 1);
    Some(RegConfig {
        registrar: Uri::parse(&registrar).ok()?,
        aor: format!("sip:{user}@{host}"),
        contact,
        via_transport: local.transport.via_name(),
        via_host: local.via_host,
        user_agent: ctx.config.user_agent.clone(),
        auth_user: trunk.auth_user().unwrap_or(&user).to_string(),
        password,
        expires: trunk.register_expires,
        unreliable: local.transport.unreliable(),
        call_id: format!(
            "reg-{}@{}",
            uuid::Uuid::new_v4().simple(),
            ctx.sip_local.ip()
        ),
        from_tag: crate::sip::build::new_tag(),
        retry_base: RETRY_BASE,
        retry_max: RETRY_MAX,
    })
}

async fn flow_for(ctx: &CallContext, trunk: &Trunk) -> std::io::Result<ReplyPath> {
    match trunk.transport {
        TrunkTransport::Tcp | TrunkTransport::Tls => ctx.trunk_flows.flow(trunk).await,
        TrunkTransport::Udp => Ok(ReplyPath::Udp {
            socket: ctx.udp.clone(),
            peer: trunk.address,
        }),
    }
}

/// Start a registration task for every trunk with `register = true` on `tracker`.
pub fn spawn_all(
    ctx: &Arc<CallContext>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
) {
    for t in ctx.config.trunks.iter().filter(|t| t.register) {
        let span = info_span!("trunk_reg", trunk = %t.name);
        tracker.spawn(run(ctx.clone(), t.clone(), shutdown.clone()).instrument(span));
    }
}

async fn run(ctx: Arc<CallContext>, trunk: Trunk, shutdown: CancellationToken) {
    // A stream trunk must be connected before the first REGISTER (our Via and Contact
    // depend on the connection); retry the connect with the same back-off.
    let mut wait = RETRY_BASE;
    let mut flow = loop {
        match flow_for(&ctx, &trunk).await {
            Ok(f) => break f,
            Err(e) => {
                warn!(error = %e, "cannot reach the trunk to register");
                ctx.trunk_registrations.publish(
                    &trunk.name,
                    RegStatus {
                        phase: Phase::Backoff,
                        registered: false,
                        expires_in: None,
                        last_error: Some(format!("transport: {e}")),
                        successes: 0,
                    },
                    Instant::now(),
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    };
    let Some(cfg) = reg_config(&ctx, &trunk, &flow) else {
        return; // config.rs refuses register without credentials
    };
    let call_id = cfg.call_id.clone();
    let (tx, mut rx) = mpsc::channel::<CallInput>(64);
    if ctx
        .router
        .send(RouterControl::Register {
            call_id: call_id.clone(),
            tx,
        })
        .await
        .is_err()
    {
        return;
    }
    let mut reg = Registration::new(cfg);
    let mut was_registered = false;
    let mut out = Some(reg.start(Instant::now()));
    let mut stopping = false;
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        if let Some(bytes) = out.take() {
            if !flow.is_open() {
                // The carrier closed our connection: open a new one for the next request.
                if let Ok(f) = flow_for(&ctx, &trunk).await {
                    flow = f;
                }
            }
            flow.send(bytes);
        }
        let now = Instant::now();
        let st = reg.status(now);
        if st.registered != was_registered {
            if st.registered {
                info!(expires_in = ?st.expires_in, "registered with the trunk");
            } else {
                warn!(error = ?st.last_error, "not registered with the trunk");
            }
            was_registered = st.registered;
        }
        ctx.trunk_registrations.publish(&trunk.name, st, now);
        if stopping && reg.phase() == Phase::Done {
            break;
        }
        let deadline = reg
            .deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let deadline = match stop_by {
            Some(s) => deadline.min(s),
            None => deadline,
        };
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                stop_by = Some(tokio::time::Instant::now() + UNREGISTER_WAIT);
                out = reg.unregister(Instant::now());
                if out.is_some() {
                    info!("unregistering from the trunk (Expires: 0)");
                }
            }
            input = rx.recv() => match input {
                Some(CallInput::Sip(inbound)) => out = reg.on_response(Instant::now(), &inbound.msg),
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                if stop_by.is_some_and(|s| tokio::time::Instant::now() >= s) {
                    warn!("no answer to the unregister in time");
                    break;
                }
                out = reg.on_timer(Instant::now());
            }
        }
    }
    let _ = ctx
        .router
        .send(RouterControl::CallEnded {
            invite: None,
            call_id,
        })
        .await;
}
