//! Running the server: logging set up before anything else, `check-dialplans`, the two
//! runtimes (the call runtime's threads at real-time priority, runtime::calls; everything
//! else on the main one), and SIGTERM/SIGHUP handling while it runs.

use std::process::ExitCode;

use tracing::{error, info, warn};

use crate::config::{Config, LogFormat};
use crate::server;

/// `[server] log_format` of the config file, read before the configuration proper so that
/// its own warnings are already written in the chosen format. A file that does not parse
/// says nothing here (loading it reports the error).
pub(super) fn peek_log_format(path: Option<&std::path::Path>) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path?).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    LogFormat::parse(v.get("server")?.get("log_format")?.as_str()?)
}

pub(super) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // One JSON object per line: timestamp, level, target, fields, and the spans the event
        // happened in (an HTTP request's `request_id`).
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

pub(super) fn check(mut cfg: Config) -> ExitCode {
    cfg.resolve_asset_dirs();
    let prompts = match crate::media::prompts::PromptLibrary::load(&cfg.audio_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match server::load_dialplans(&cfg, &prompts) {
        Ok(set) => {
            println!(
                "ok: {} dialplans, {} prompts",
                set.plans.len(),
                prompts.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::from(2)
        }
    }
}

pub(super) async fn run(cfg: Config, calls_rt: tokio::runtime::Handle) -> ExitCode {
    let db_url = cfg.database.clone();
    let api_token_given = cfg.api_token.is_some();
    let srv = match server::start_on(cfg, calls_rt).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    println!("switchboard is running");
    println!(
        "  SIP   udp+tcp {}   call: sip:hotline@{}",
        srv.sip_addr, srv.sip_addr
    );
    if let Some(tls) = srv.tls_addr {
        println!("  SIP   tls     {tls}   call: sips:hotline@{tls}");
    }
    println!(
        "  SIP   ws      ws://{}/ws (subprotocol sip)",
        srv.http_addr
    );
    println!("  HTTP  http://{}/healthz", srv.http_addr);
    if api_token_given {
        println!(
            "  API   http://{}/api/campaigns (Authorization: Bearer <your --api-token>)",
            srv.http_addr
        );
    } else {
        println!(
            "  API   http://{}/api/campaigns (Authorization: Bearer {})",
            srv.http_addr, srv.api_token
        );
    }
    println!(
        "  DB    {} ({} demo tickets inserted)",
        redact(&db_url),
        srv.demo_tickets_inserted
    );
    // What the kernel gave the call threads, not what the config asked for.
    match crate::runtime::calls::call_priority() {
        crate::runtime::calls::CallPriority::Realtime(p) => {
            println!("  CPU   call threads at real-time priority SCHED_RR {p}; signalling at normal priority")
        }
        crate::runtime::calls::CallPriority::Refused => {
            println!("  CPU   normal priority (real-time asked for but not permitted)")
        }
        crate::runtime::calls::CallPriority::Normal => {
            println!("  CPU   normal priority (realtime_priority = 0)")
        }
    }
    println!("  Try:  a caller from +15551230001 has a delayed order: press 2, then 1 (wait) or 2 (refund).");
    println!("  Stop: Ctrl-C (SIGINT) or SIGTERM; SIGHUP reloads dialplans.");
    wait_for_signals(&srv).await;
    info!("shutting down: hanging up calls and flushing records");
    srv.shutdown().await;
    info!("stopped");
    ExitCode::SUCCESS
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(unix)]
async fn wait_for_signals(srv: &server::RunningServer) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                // Drain first: the edge stops sending calls here (OPTIONS and INVITEs get
                // 503), calls in progress get `[cluster] drain_s` to finish. A second
                // SIGTERM or a SIGINT stops at once.
                srv.drain().await;
                let window = srv.context().config.cluster.drain;
                if window.is_zero() {
                    return;
                }
                info!(calls = srv.active_calls(), drain_s = window.as_secs(), "SIGTERM: draining; SIGTERM again or SIGINT stops at once");
                let deadline = tokio::time::Instant::now() + window;
                loop {
                    if srv.active_calls() == 0 {
                        info!("drained: no call in progress");
                        return;
                    }
                    tokio::select! {
                        _ = term.recv() => return,
                        _ = int.recv() => return,
                        _ = tokio::time::sleep_until(deadline) => {
                            warn!(calls = srv.active_calls(), "drain window over; hanging up the calls left");
                            return;
                        }
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
            }
            _ = int.recv() => return,
            _ = hup.recv() => match srv.reload_dialplans() {
                Ok(n) => info!(dialplans = n, "dialplans reloaded"),
                Err(errors) => {
                    for e in errors {
                        error!("{e}");
                    }
                    warn!("dialplan reload refused; the running dialplans stay");
                }
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_srv: &server::RunningServer) {
    let _ = tokio::signal::ctrl_c().await;
}
