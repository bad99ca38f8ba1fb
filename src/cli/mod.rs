//! The `switchboard` command line: every subcommand lives here, `main.rs` only calls [`main`].
//! Flags are a public contract (docs/configuration.md).
//!
//! - `args`: the clap definitions and the config built from the run flags;
//! - `serve`: run the server (the default) and `check-dialplans`;
//! - `accounts`: `agent ...` and `operator ...` on the database;
//! - `data`: `tickets import`, `calls export`;
//! - `tools`: `detect-dtmf`;
//! - `campaign`: operator commands that talk to a running server over its HTTP API
//!   (docs/api.md) rather than to the database, through the crate's one HTTP client
//!   (`crate::http_client`).

mod accounts;
mod args;
pub mod campaign;
mod data;
mod serve;
mod tools;

use std::process::ExitCode;

use clap::Parser;
use tracing::{info, warn};

use crate::config::LogFormat;
use accounts::{agent_command, operator_command};
use args::{config_or_exit, CallsCommand, Cli, Command, TicketsCommand};
use data::{calls_export, tickets_import};
use serve::{check, init_logging, peek_log_format, run};
use tools::detect_dtmf;

/// Parse the command line and run what it asks for.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = match &cli.command {
        Some(Command::Run(a) | Command::CheckDialplans(a)) => a.config.clone(),
        _ => None,
    }
    .or_else(|| cli.run.config.clone());
    let format = cli
        .log_format
        .as_deref()
        .and_then(LogFormat::parse)
        .or_else(|| peek_log_format(config_path.as_deref()))
        .unwrap_or_default();
    init_logging(format);
    let (check_only, args) = match cli.command {
        Some(Command::Run(a)) => (false, a.merged(&cli.run)),
        Some(Command::CheckDialplans(a)) => (true, a.merged(&cli.run)),
        Some(Command::Agent(cmd)) => return agent_command(cmd, &cli.run),
        Some(Command::Operator(cmd)) => return operator_command(cmd, &cli.run),
        Some(Command::DetectDtmf { file }) => return detect_dtmf(&file),
        Some(Command::Campaign(args)) => return campaign::run(args, cli.run.api_token),
        Some(Command::Tickets(TicketsCommand::Import { file, run })) => {
            return tickets_import(&file, run.merged(&cli.run))
        }
        Some(Command::Calls(CallsCommand::Export { since, output, run })) => {
            return calls_export(&since, output.as_deref(), run.merged(&cli.run))
        }
        None => (false, cli.run),
    };
    let cfg = match config_or_exit(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if check_only {
        return check(cfg);
    }
    // Call tasks get their own runtime, and only its threads get the real-time policy
    // (runtime::calls): signalling, the store and the API stay at normal priority.
    let calls = match crate::runtime::calls::build(cfg.realtime_priority, cfg.call_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the call runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    use crate::runtime::calls::{call_priority, CallPriority};
    match (cfg.realtime_priority, call_priority()) {
        (0, _) => info!("real-time priority off: call threads at normal priority"),
        (p, CallPriority::Realtime(_)) => {
            info!(
                priority = p,
                "call threads at real-time priority (SCHED_RR)"
            )
        }
        (p, _) => warn!(
            priority = p,
            "real-time priority not permitted (needs CAP_SYS_NICE or RLIMIT_RTPRIO): call \
             threads at normal priority; send timing may suffer on a busy machine \
             (docs/operations.md \"Real-time priority\")"
        ),
    }
    let runtime = match runtime(
        tokio::runtime::Builder::new_multi_thread(),
        ExitCode::FAILURE,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = runtime.block_on(run(cfg, calls.handle().clone()));
    // Calls have ended (shutdown waited for them); what is left (a lookup past its
    // deadline) is not waited for.
    calls.shutdown_background();
    code
}

/// A tokio runtime from `builder` (all drivers on); on failure says why on stderr and gives
/// `fail` as the exit code.
fn runtime(
    mut builder: tokio::runtime::Builder,
    fail: ExitCode,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|e| {
        eprintln!("switchboard: cannot start runtime: {e}");
        fail
    })
}
