//! `switchboard` command line: run the server (default), and operator subcommands.
//! Flags are a public contract (docs/configuration.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use switchboard::config::{Config, LogFormat};
use switchboard::runtime::ports::PortRange;
use switchboard::server;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "switchboard",
    version,
    about = "Telephony call-center and outbound-dialing server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
    /// Log line format on standard error: text or json (one object per line, for log
    /// shippers). Default: [server] log_format, else text.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    Campaign(switchboard::cli::campaign::CampaignArgs),
    /// Print the DTMF digits found in-band in an 8 kHz mono 16-bit WAV file.
    DetectDtmf {
        /// The WAV file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TicketsCommand {
    /// Import tickets from CSV (header: order_id, phone[, customer_name, language, segment,
    /// timezone, status, delay_days, new_eta]); bad rows are listed, good rows imported.
    Import {
        file: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Subcommand, Debug)]
enum CallsCommand {
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
enum AgentCommand {
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
enum OperatorCommand {
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
struct RunArgs {
    /// Configuration file (TOML); the embedded default is used when absent.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SIP listen address (UDP and TCP), e.g. 127.0.0.1:5060.
    #[arg(long, value_name = "ADDR:PORT")]
    sip_listen: Option<String>,
    /// HTTP listen address for the API and health check, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASS@HOST/DB.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// RTP port range, inclusive, e.g. 20000-29999.
    #[arg(long, value_name = "LO-HI")]
    rtp_ports: Option<String>,
    /// Do not insert the demo tickets.
    #[arg(long)]
    no_demo_data: bool,
    /// Address put in SDP and used for RTP sockets (default: the SIP listen address).
    #[arg(long, value_name = "IP")]
    media_address: Option<String>,
    /// API bearer token (also SWITCHBOARD_API_TOKEN).
    #[arg(
        long,
        env = "SWITCHBOARD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// Read-only API bearer token for /api/status, /api/agents, /api/queues (also
    /// SWITCHBOARD_API_READ_TOKEN; default: [api] read_token). The admin token also reads.
    #[arg(
        long,
        env = "SWITCHBOARD_API_READ_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    api_read_token: Option<String>,
    /// SCHED_RR priority for the call threads, 1-99; 0 runs them at normal priority
    /// (default: [server] realtime_priority, 10; applies to the call threads only).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=99))]
    realtime_priority: Option<u8>,
    /// This node's name in a cluster: on its call records, its `nodes` row and its campaign
    /// leases (default: [server] node_id, else the host name).
    #[arg(long, value_name = "NAME")]
    node_id: Option<String>,
}

impl RunArgs {
    /// Flags given before a subcommand count too (`switchboard --config X check-dialplans`).
    fn merged(self, outer: &RunArgs) -> RunArgs {
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

fn build_config(args: &RunArgs) -> Result<Config, String> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::embedded().map_err(|e| e.to_string())?,
    };
    if let Some(s) = &args.sip_listen {
        cfg.sip_listen = s
            .parse()
            .map_err(|_| format!("--sip-listen '{s}' is not ADDR:PORT"))?;
        if args.config.is_none() {
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
        if !switchboard::config::valid_node_id(n) {
            return Err(format!("--node-id '{n}' must be 1-64 of A-Z a-z 0-9 - _ ."));
        }
        cfg.node_id = n.clone();
    }
    if cfg.media_address.is_unspecified() {
        warn!("media address is unspecified; set media_address so SDP carries a reachable IP");
    }
    Ok(cfg)
}

/// `[server] log_format` of the config file, read before the configuration proper so that
/// its own warnings are already written in the chosen format. A file that does not parse
/// says nothing here (loading it reports the error).
fn peek_log_format(path: Option<&std::path::Path>) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path?).ok()?;
    let v: toml::Value = toml::from_str(&text).ok()?;
    LogFormat::parse(v.get("server")?.get("log_format")?.as_str()?)
}

fn init_logging(format: LogFormat) {
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

fn main() -> ExitCode {
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
        Some(Command::Campaign(args)) => {
            return switchboard::cli::campaign::run(args, cli.run.api_token)
        }
        Some(Command::Tickets(TicketsCommand::Import { file, run })) => {
            return tickets_import(&file, run.merged(&cli.run))
        }
        Some(Command::Calls(CallsCommand::Export { since, output, run })) => {
            return calls_export(&since, output.as_deref(), run.merged(&cli.run))
        }
        None => (false, cli.run),
    };
    let cfg = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        return check(cfg);
    }
    // Call tasks get their own runtime, and only its threads get the real-time policy
    // (runtime::calls): signalling, the store and the API stay at normal priority.
    let calls = match switchboard::runtime::calls::build(cfg.realtime_priority, cfg.call_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the call runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    use switchboard::runtime::calls::{call_priority, CallPriority};
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cfg, calls.handle().clone()));
    // Calls have ended (shutdown waited for them); what is left (a lookup past its
    // deadline) is not waited for.
    calls.shutdown_background();
    code
}

/// Config, a small runtime and the database, for one-shot operator commands.
fn with_db<F, Fut>(run: RunArgs, f: F) -> ExitCode
where
    F: FnOnce(Config, switchboard::store::Db) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let cfg = match build_config(&run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match switchboard::store::Db::connect(&cfg.database).await {
            Ok(db) => f(cfg, db).await,
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn tickets_import(file: &std::path::Path, run: RunArgs) -> ExitCode {
    // Streamed: the file is read record by record while the rows are inserted.
    let (input, size) = match std::fs::File::open(file).and_then(|f| {
        let size = f.metadata()?.len();
        Ok((f, size))
    }) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("switchboard: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let name = file.display().to_string();
    with_db(run, |cfg, db| async move {
        // On stderr, so that stdout stays the list of refused rows and the summary.
        let progress = |p: switchboard::store::csv::ImportProgress| {
            let width = 30u64;
            let filled = (p.bytes * width)
                .checked_div(size)
                .unwrap_or(width)
                .min(width) as usize;
            eprint!(
                "\r[{}{}] {} rows, {} %",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                p.rows,
                (p.bytes * 100).checked_div(size).unwrap_or(100).min(100)
            );
        };
        match switchboard::store::csv::import_tickets(
            &db,
            input,
            &cfg.default_country_code,
            progress,
        )
        .await
        {
            Ok(report) => {
                eprintln!();
                for (line, reason) in &report.errors {
                    println!("{name}:{line}: {reason}");
                }
                println!(
                    "imported {} tickets, {} rows refused",
                    report.imported,
                    report.errors.len()
                );
                if report.errors.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!();
                eprintln!("switchboard: {name}: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn calls_export(since: &str, output: Option<&std::path::Path>, run: RunArgs) -> ExitCode {
    let since = since.to_string();
    let output = output.map(std::path::Path::to_path_buf);
    with_db(run, |_cfg, db| async move {
        let mut buf = Vec::new();
        match switchboard::store::csv::export_calls(&db, &since, &mut buf).await {
            Ok(n) => {
                let written = match &output {
                    Some(p) => std::fs::write(p, &buf),
                    None => std::io::Write::write_all(&mut std::io::stdout(), &buf),
                };
                if let Err(e) = written {
                    eprintln!("switchboard: cannot write output: {e}");
                    return ExitCode::from(2);
                }
                eprintln!("exported {n} calls");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn detect_dtmf(file: &std::path::Path) -> ExitCode {
    match switchboard::media::dtmf_inband::detect_wav(file) {
        Ok(digits) => {
            println!("{}", digits.into_iter().collect::<String>());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard: {}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

/// `--password-stdin`: the first line of `input` without its line ending; an empty line or
/// no input at all is refused (an account must not get an empty password by accident).
/// An operator's password from `--password-stdin` or `--password` (not empty); `None`
/// after saying why on stderr.
fn operator_password(flag: Option<&str>, stdin: bool) -> Option<String> {
    if stdin {
        return password_from(std::io::stdin().lock())
            .map_err(|e| eprintln!("switchboard: --password-stdin: {e}"))
            .ok();
    }
    let p = flag.filter(|p| !p.is_empty()).map(str::to_string);
    if p.is_none() {
        eprintln!("switchboard: --password must not be empty");
    }
    p
}

fn password_from(mut input: impl std::io::BufRead) -> Result<String, String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.is_empty() {
        return Err("no password on standard input (an empty line is refused)".into());
    }
    Ok(password.to_string())
}

fn agent_command(cmd: AgentCommand, outer: &RunArgs) -> ExitCode {
    use switchboard::store::agents;
    let run = match &cmd {
        AgentCommand::Add { run, .. } | AgentCommand::List { run } => run.clone().merged(outer),
    };
    // The password is read before the database is opened: a wrong invocation fails fast.
    let stdin_password = match &cmd {
        AgentCommand::Add {
            password_stdin: true,
            ..
        } => match password_from(std::io::stdin().lock()) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("switchboard: --password-stdin: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    with_db(run, |cfg, db| async move {
        match cmd {
            AgentCommand::Add {
                name,
                password,
                extension,
                queues,
                skills,
                ..
            } => {
                if !agents::valid_name(&name) {
                    eprintln!("switchboard: agent name '{name}' must be 1-64 of A-Z a-z 0-9 - _ .");
                    return ExitCode::from(2);
                }
                let Some(password) = stdin_password.or(password).filter(|p| !p.is_empty()) else {
                    eprintln!("switchboard: --password must not be empty");
                    return ExitCode::from(2);
                };
                let mut parsed = Vec::new();
                for s in &skills {
                    match agents::parse_skill(s) {
                        Some(p) => parsed.push(p),
                        None => {
                            eprintln!(
                                "switchboard: --skill '{s}' must be NAME=LEVEL with LEVEL 0-10"
                            );
                            return ExitCode::from(2);
                        }
                    }
                }
                for q in &queues {
                    if !cfg.queues.contains(q) {
                        eprintln!("switchboard: warning: queue '{q}' is not in the configuration");
                    }
                }
                let spec = agents::AgentSpec {
                    name: name.clone(),
                    password,
                    extension,
                    queues,
                    skills: parsed,
                    realm: cfg.realm.clone(),
                };
                match agents::upsert(&db, &spec).await {
                    Ok(id) => {
                        println!("agent {name} saved (id {id}, realm {})", cfg.realm);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("switchboard: {e}");
                        ExitCode::from(2)
                    }
                }
            }
            AgentCommand::List { .. } => match agents::list(&db).await {
                Ok(list) => {
                    println!("{:<20} {:<10} {:<20} skills", "name", "extension", "queues");
                    for a in list {
                        let skills: Vec<String> =
                            a.skills.iter().map(|(s, l)| format!("{s}={l}")).collect();
                        println!(
                            "{:<20} {:<10} {:<20} {}",
                            a.name,
                            a.extension.unwrap_or_default(),
                            a.queues.join(","),
                            skills.join(",")
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(2)
                }
            },
        }
    })
}

fn operator_command(cmd: OperatorCommand, outer: &RunArgs) -> ExitCode {
    use switchboard::store::operators::{self, Role};
    let run = match &cmd {
        OperatorCommand::Add { run, .. } | OperatorCommand::List { run } => {
            run.clone().merged(outer)
        }
        OperatorCommand::Hash {
            password,
            password_stdin,
        } => {
            let Some(password) = operator_password(password.as_deref(), *password_stdin) else {
                return ExitCode::from(2);
            };
            return match operators::hash_password(&password) {
                Ok(hash) => {
                    println!("{hash}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    // Checked and hashed before the database is opened: a wrong invocation fails fast.
    let add = match &cmd {
        OperatorCommand::Add {
            name,
            role,
            password,
            password_stdin,
            ..
        } => {
            if !operators::valid_name(name) {
                eprintln!("switchboard: operator name '{name}' must be 1-64 of A-Z a-z 0-9 - _ .");
                return ExitCode::from(2);
            }
            let Some(role) = Role::parse(role) else {
                eprintln!("switchboard: --role must be admin or viewer");
                return ExitCode::from(2);
            };
            let Some(password) = operator_password(password.as_deref(), *password_stdin) else {
                return ExitCode::from(2);
            };
            match operators::hash_password(&password) {
                Ok(hash) => Some((name.clone(), role, hash)),
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        OperatorCommand::List { .. } | OperatorCommand::Hash { .. } => None,
    };
    with_db(run, |cfg, db| async move {
        if let Some((name, role, hash)) = add {
            return match operators::upsert(&db, &name, role, &hash).await {
                Ok(id) => {
                    println!("operator {name} saved (id {id}, role {})", role.as_str());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchboard: {e}");
                    ExitCode::from(2)
                }
            };
        }
        match operators::list(&db).await {
            Ok(list) => {
                println!("{:<20} {:<8} enabled", "name", "role");
                for o in list {
                    if cfg.operators.iter().any(|c| c.name == o.name) {
                        // The file's [[operator]] of the same name is the one that logs in.
                        continue;
                    }
                    println!("{:<20} {:<8} {}", o.name, o.role.as_str(), o.enabled);
                }
                for o in &cfg.operators {
                    println!("{:<20} {:<8} true (config file)", o.name, o.role.as_str());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(2)
            }
        }
    })
}

fn check(mut cfg: Config) -> ExitCode {
    cfg.resolve_asset_dirs();
    let prompts = match switchboard::media::prompts::PromptLibrary::load(&cfg.audio_dir) {
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

async fn run(cfg: Config, calls_rt: tokio::runtime::Handle) -> ExitCode {
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
    match switchboard::runtime::calls::call_priority() {
        switchboard::runtime::calls::CallPriority::Realtime(p) => {
            println!("  CPU   call threads at real-time priority SCHED_RR {p}; signalling at normal priority")
        }
        switchboard::runtime::calls::CallPriority::Refused => {
            println!("  CPU   normal priority (real-time asked for but not permitted)")
        }
        switchboard::runtime::calls::CallPriority::Normal => {
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
