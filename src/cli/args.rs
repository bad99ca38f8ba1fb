//! The command line's shape (clap): global flags, the subcommands and their flags, and how
//! the run flags and the config file become a `Config`. Flags are a public contract
//! (docs/configuration.md).

use clap::{Args, Parser, Subcommand};

use std::path::PathBuf;

use tracing::warn;

use crate::config::Config;
use crate::runtime::ports::PortRange;

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "Telephony call-center and outbound-dialing server"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Option<Command>,
    #[command(flatten)]
    pub(super) run: RunArgs,
    /// Log line format on standard error: text or json (one object per line, for log
    /// shippers). Default: [server] log_format, else text.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub(super) log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
    /// Run the server (the default when no subcommand is given).
    Run(RunArgs),
    /// Load and check the dialplans and config, print problems as FILE:LINE: reason.
    CheckDialplans(RunArgs),
    /// Agent (SIP account) management.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Operators (console and wallboard logins) management.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Ticket import for operations.
    #[command(subcommand)]
    Tickets(TicketsCommand),
    /// Call record export for operations.
    #[command(subcommand)]
    Calls(CallsCommand),
    /// Outbound campaigns through the running server's HTTP API (docs/api.md).
    Campaign(super::campaign::CampaignArgs),
    /// Print the DTMF digits found in-band in an 8 kHz mono 16-bit WAV file.
    DetectDtmf {
        /// The WAV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum TicketsCommand {
    /// Import tickets from CSV (header: order_id, phone[, customer_name, language, segment,
    /// timezone, status, delay_days, new_eta]); bad rows are listed, good rows imported.
    Import {
        file: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum CallsCommand {
    /// Write call records (with their outcome) started since a date or timestamp as CSV.
    Export {
        /// e.g. 2026-11-01 or 2026-11-23T08:00:00.000Z
        #[arg(long)]
        since: String,
        /// Output file (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum AgentCommand {
    /// Create or update an agent/phone account (the password is stored as HA1 only).
    Add {
        /// SIP user name (also the name in call_records.agent).
        name: String,
        /// The password on the command line: visible in `ps` and shell history; prefer
        /// --password-stdin.
        #[arg(long, required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input (the preferred form,
        /// e.g. `printf '%s\n' "$PW" | switchboard agent add NAME --password-stdin`).
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[arg(long)]
        extension: Option<String>,
        /// Queue the agent serves (repeatable).
        #[arg(long = "queue", value_name = "Q")]
        queues: Vec<String>,
        /// Skill with level 0-10, e.g. lang:zh=5 (repeatable).
        #[arg(long = "skill", value_name = "S=LEVEL")]
        skills: Vec<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List agents.
    List {
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum OperatorCommand {
    /// Create or update an operator (the password is stored as an argon2id hash only).
    Add {
        /// Login name (1-64 of A-Z a-z 0-9 - _ .).
        name: String,
        /// admin (everything) or viewer (wallboard, reports, reads).
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
        /// The password on the command line: visible in `ps` and shell history; prefer
        /// --password-stdin.
        #[arg(long, required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List operators.
    List {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print the argon2id hash of a password, for `password_hash` of an `[[operator]]` in the
    /// config file (nothing is stored).
    Hash {
        /// The password on the command line (prefer --password-stdin).
        #[arg(long, required_unless_present = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
    },
}

#[derive(Args, Debug, Default, Clone)]
pub(super) struct RunArgs {
    /// Configuration file (TOML); the embedded default is used when absent.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// SIP listen address (UDP and TCP), e.g. 127.0.0.1:5060.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(super) sip_listen: Option<String>,
    /// HTTP listen address for the API and health check, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(super) http_listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB.
    #[arg(long, value_name = "URL")]
    pub(super) database: Option<String>,
    /// RTP port range, inclusive, e.g. 20000-29999.
    #[arg(long, value_name = "LO-HI")]
    pub(super) rtp_ports: Option<String>,
    /// Do not insert the demo tickets.
    #[arg(long)]
    pub(super) no_demo_data: bool,
    /// Address put in SDP and used for RTP sockets (default: the SIP listen address).
    #[arg(long, value_name = "IP")]
    pub(super) media_address: Option<String>,
    /// API bearer token (also SWITCHBOARD_API_TOKEN).
    #[arg(
        long,
        env = "SWITCHBOARD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(super) api_token: Option<String>,
    /// Read-only API bearer token for /api/status, /api/agents, /api/queues (also
    /// SWITCHBOARD_API_READ_TOKEN; default: [api] read_token). The admin token also reads.
    #[arg(
        long,
        env = "SWITCHBOARD_API_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(super) api_read_token: Option<String>,
    /// SCHED_RR priority for the call threads, 1-99; 0 runs them at normal priority
    /// (default: [server] realtime_priority, 10; applies to the call threads only).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=99))]
    pub(super) realtime_priority: Option<u8>,
    /// This node's name in a cluster: on its call records, its `nodes` row and its campaign
    /// leases (default: [server] node_id, else the host name).
    #[arg(long, value_name = "NAME")]
    pub(super) node_id: Option<String>,
}

impl RunArgs {
    /// Flags given before a subcommand count too (`switchboard --config X check-dialplans`).
    pub(super) fn merged(self, outer: &RunArgs) -> RunArgs {
        RunArgs {
            config: self.config.or_else(|| outer.config.clone()),
            sip_listen: self.sip_listen.or_else(|| outer.sip_listen.clone()),
            http_listen: self.http_listen.or_else(|| outer.http_listen.clone()),
            database: self.database.or_else(|| outer.database.clone()),
            rtp_ports: self.rtp_ports.or_else(|| outer.rtp_ports.clone()),
            no_demo_data: self.no_demo_data || outer.no_demo_data,
            media_address: self.media_address.or_else(|| outer.media_address.clone()),
            api_token: self.api_token.or_else(|| outer.api_token.clone()),
            api_read_token: self.api_read_token.or_else(|| outer.api_read_token.clone()),
            realtime_priority: self.realtime_priority.or(outer.realtime_priority),
            node_id: self.node_id.or_else(|| outer.node_id.clone()),
        }
    }
}

/// [`build_config`], or exit code 2 after saying why on stderr (every command that needs
/// the configuration refuses a bad one the same way).
pub(super) fn config_or_exit(args: &RunArgs) -> Result<Config, std::process::ExitCode> {
    build_config(args).map_err(|e| {
        eprintln!("switchboard: configuration error: {e}");
        std::process::ExitCode::from(2)
    })
}

/// The configuration: the file given (or the embedded default) with the run flags over it.
fn build_config(args: &RunArgs) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::embedded().map_err(|e| e.to_string())?,
    };
    if let Some(s) = &args.sip_listen {
        cfg.sip_listen = s
            .parse()
            .map_err(|_| format!("--sip-listen '{s}' is not ADDR:PORT"))?;
        // Media follows the SIP address unless the file set `media_address`: a file that
        // left it out (its default was the file's own `sip_listen`) must not keep RTP,
        // and browser legs' ICE candidates, on an address the server no longer listens on.
        if !cfg.media_address_explicit {
            cfg.media_address = cfg.sip_listen.ip();
        }
    }
    if let Some(s) = &args.media_address {
        cfg.media_address = s
            .parse()
            .map_err(|_| format!("--media-address '{s}' is not an IP address"))?;
        cfg.media_address_explicit = true;
    }
    if let Some(s) = &args.http_listen {
        cfg.http_listen = s
            .parse()
            .map_err(|_| format!("--http-listen '{s}' is not ADDR:PORT"))?;
    }
    if let Some(s) = &args.database {
        cfg.database = s.clone();
    }
    if let Some(s) = &args.rtp_ports {
        cfg.rtp_ports = PortRange::parse(s)
            .ok_or_else(|| format!("--rtp-ports '{s}' must be LO-HI with 1024 <= LO < HI"))?;
    }
    if args.no_demo_data {
        cfg.demo_data = false;
    }
    if args.api_token.is_some() {
        cfg.api_token = args.api_token.clone();
    }
    if let Some(t) = args.api_read_token.as_ref().filter(|t| !t.is_empty()) {
        cfg.api_read_token = Some(t.clone());
    }
    if let Some(p) = args.realtime_priority {
        cfg.realtime_priority = p;
    }
    if let Some(n) = &args.node_id {
        if !crate::config::valid_node_id(n) {
            return Err(format!("--node-id '{n}' must be 1-64 of A-Z a-z 0-9 - _ ."));
        }
        cfg.node_id = n.clone();
    }
    if cfg.media_address.is_unspecified() {
        warn!("media address is unspecified; set media_address so SDP carries a reachable IP");
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str, args: RunArgs) -> Config {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write config");
        build_config(&RunArgs {
            config: Some(path),
            ..args
        })
        .expect("config")
    }

    /// `--sip-listen` on a LAN address with a file that does not set `media_address`: the
    /// media (SDP, browser candidates) moves with it, as without a file; an explicit
    /// `media_address` in the file or on the command line stays.
    #[test]
    fn media_address_follows_sip_listen_unless_set() {
        let lan = || RunArgs {
            sip_listen: Some("10.77.1.1:5060".into()),
            ..RunArgs::default()
        };
        let plain = "[server]\nsip_listen = \"127.0.0.1:5060\"\n";
        let c = with_file(plain, lan());
        assert_eq!(
            c.media_address,
            "10.77.1.1".parse::<std::net::IpAddr>().expect("ip")
        );

        let explicit = "[server]\nsip_listen = \"127.0.0.1:5060\"\nmedia_address = \"192.0.2.9\"\n";
        let c = with_file(explicit, lan());
        assert_eq!(
            c.media_address,
            "192.0.2.9".parse::<std::net::IpAddr>().expect("ip")
        );

        let c = with_file(
            plain,
            RunArgs {
                media_address: Some("192.0.2.10".into()),
                ..lan()
            },
        );
        assert_eq!(
            c.media_address,
            "192.0.2.10".parse::<std::net::IpAddr>().expect("ip")
        );

        let c = with_file(plain, RunArgs::default());
        assert_eq!(
            c.media_address,
            "127.0.0.1".parse::<std::net::IpAddr>().expect("ip")
        );
    }
}
