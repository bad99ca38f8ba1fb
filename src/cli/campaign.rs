//! `switchboard campaign ...`: the campaign REST API (docs/api.md) from the command line.
//! Each action is one HTTP request to the running server (`http://` or `https://`, through
//! [`crate::http_client`]); the answer is printed human-readable, or as the server's raw
//! JSON with `--json`.
//!
//! Exit codes: 0 success; 1 the server answered 4xx/5xx (its `error` reason goes to
//! stderr); 2 usage errors (bad flags, unreadable file, bad `--server` URL) and failures to
//! reach or understand the server.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::http_client::{HttpClient, HttpError, Method, Request, Response, Url};

/// Default `--server` when neither the flag nor `SWITCHBOARD_SERVER` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Bound on connecting to the server, and again on one exchange.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted (a long contact listing).
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// How often `status --watch` polls and redraws.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// `switchboard campaign ...` flags and action.
#[derive(Args, Debug, Clone)]
pub struct CampaignArgs {
    #[command(subcommand)]
    pub action: CampaignAction,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// How to reach the server; accepted before or after the action.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// The running server's HTTP address (its `http_listen`).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_SERVER",
        value_name = "URL",
        default_value = DEFAULT_SERVER
    )]
    pub server: String,
    /// API bearer token (also SWITCHBOARD_API_TOKEN).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Extra trust anchors (PEM) for an `https://` server, beside the Mozilla roots (also
    /// SWITCHBOARD_CA_FILE).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_CA_FILE",
        value_name = "FILE.pem"
    )]
    pub ca_file: Option<PathBuf>,
    /// Print the server's JSON answer as is instead of the human-readable form.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The server's API: its base URL (a path prefix is kept) and token.
struct Client {
    url: Url,
    token: Option<String>,
    http: HttpClient,
}

impl Client {
    /// `method` on the API path (which starts with `/`); any HTTP status is `Ok`.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let mut req = Request::new(method, self.url.join(path)).bearer(self.token.as_deref());
        if let Some(b) = body {
            req = req.json_bytes(b.to_vec());
        }
        self.http.send(req).await
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum CampaignAction {
    /// Create a campaign from a JSON body (POST /api/campaigns); `-` reads standard input.
    Create {
        /// The JSON file (the body documented in docs/api.md), or `-`.
        #[arg(value_name = "FILE.json|-")]
        file: PathBuf,
    },
    /// List every campaign.
    List,
    /// Start a created campaign (dialing begins).
    Start {
        /// The campaign id.
        id: i64,
    },
    /// Pause a running campaign (no new dials; calls in progress finish).
    Pause {
        /// The campaign id.
        id: i64,
    },
    /// Resume a paused campaign.
    Resume {
        /// The campaign id.
        id: i64,
    },
    /// Stop a campaign for good.
    Stop {
        /// The campaign id.
        id: i64,
    },
    /// Show state, contacts by state and outcomes.
    Status {
        /// The campaign id.
        id: i64,
        /// Redraw a progress bar on stderr every second until the campaign is stopped or
        /// completed, then print the final summary.
        #[arg(long)]
        watch: bool,
    },
    /// List the campaign's contacts.
    Contacts {
        /// The campaign id.
        id: i64,
        /// Only contacts in this state (pending, dialing, retry, completed, failed, dnc,
        /// opted_out).
        #[arg(long)]
        state: Option<String>,
        /// Page size (server default 100, at most 10000).
        #[arg(long)]
        limit: Option<i64>,
        /// Contacts to skip.
        #[arg(long)]
        offset: Option<i64>,
    },
}

/// A failed command: what to print and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered 4xx/5xx: exit 1.
    #[error("{}", server_reason(.status, .body, .hint))]
    Server {
        status: u16,
        body: Vec<u8>,
        hint: Option<&'static str>,
    },
    /// Bad input on our side: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or its answer not understood: exit 2.
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the server's answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// A status that is neither success nor error (1xx, 3xx): exit 2.
    #[error("unexpected answer {status} {reason} from {url}")]
    Unexpected {
        status: u16,
        reason: String,
        url: String,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Server { .. } => 1,
            _ => 2,
        }
    }
}

/// `server answered 400: <the "error" field>`, or the body text when it is not our JSON.
fn server_reason(status: &u16, body: &[u8], hint: &Option<&'static str>) -> String {
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty answer)".to_string()
            } else {
                text.chars().take(500).collect()
            }
        });
    match hint {
        Some(h) => format!("server answered {status}: {reason} ({h})"),
        None => format!("server answered {status}: {reason}"),
    }
}

/// Run one `campaign` command; `outer_token` is the top-level `--api-token` (used when the
/// command has none of its own).
pub fn run(args: CampaignArgs, outer_token: Option<String>) -> ExitCode {
    let runtime = match super::runtime(
        tokio::runtime::Builder::new_current_thread(),
        ExitCode::from(2),
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let json = args.conn.json;
    match runtime.block_on(execute(args, outer_token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match &e {
                CliError::Server { body, .. } if json => {
                    eprintln!("{}", String::from_utf8_lossy(body).trim_end());
                }
                _ => eprintln!("switchboard: {e}"),
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn execute(args: CampaignArgs, outer_token: Option<String>) -> Result<(), CliError> {
    let url = Url::parse(&args.conn.server).map_err(|e| CliError::Usage(e.to_string()))?;
    if url.path.contains('?') {
        return Err(CliError::Usage(format!(
            "--server '{url}': must not have a query"
        )));
    }
    let http = HttpClient::new(
        TIMEOUT,
        MAX_BODY,
        args.conn.ca_file.as_deref().map(|p| ("--ca-file", p)),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    let token = args.conn.api_token.clone().or(outer_token);
    let client = Client { url, token, http };
    let json = args.conn.json;
    match args.action {
        CampaignAction::Create { file } => {
            let body = read_body(&file)?;
            let v = call(&client, Method::POST, "/api/campaigns", Some(&body), json).await?;
            if let Some(v) = v {
                println!("{}", render_created(&v));
            }
        }
        CampaignAction::List => {
            if let Some(v) = call(&client, Method::GET, "/api/campaigns", None, json).await? {
                print!("{}", render_list(&v));
            }
        }
        CampaignAction::Start { id } => action(&client, id, "start", json).await?,
        CampaignAction::Pause { id } => action(&client, id, "pause", json).await?,
        CampaignAction::Resume { id } => action(&client, id, "resume", json).await?,
        CampaignAction::Stop { id } => action(&client, id, "stop", json).await?,
        CampaignAction::Status { id, watch: false } => {
            if let Some(v) = call(
                &client,
                Method::GET,
                &format!("/api/campaigns/{id}"),
                None,
                json,
            )
            .await?
            {
                print!("{}", render_status(&v));
            }
        }
        CampaignAction::Status { id, watch: true } => watch(&client, id, json).await?,
        CampaignAction::Contacts {
            id,
            state,
            limit,
            offset,
        } => {
            let mut query = Vec::new();
            if let Some(s) = &state {
                query.push(format!("state={}", percent_encode(s)));
            }
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            if let Some(n) = offset {
                query.push(format!("offset={n}"));
            }
            let mut path = format!("/api/campaigns/{id}/contacts");
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            if let Some(v) = call(&client, Method::GET, &path, None, json).await? {
                print!("{}", render_contacts(&v));
            }
        }
    }
    Ok(())
}

fn read_body(file: &std::path::Path) -> Result<Vec<u8>, CliError> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::Usage(format!("reading standard input: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(file).map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))
    }
}

/// One request. A 2xx answer is printed raw when `json` (returns None), else parsed and
/// returned for the caller to render; 4xx/5xx becomes [`CliError::Server`].
async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
    json: bool,
) -> Result<Option<Value>, CliError> {
    let resp = request(client, method, path, body).await?;
    if json {
        println!("{}", String::from_utf8_lossy(&resp.body).trim_end());
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&resp.body)?))
}

/// The request, with 4xx/5xx turned into errors.
async fn request(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Response, CliError> {
    let resp = client.request(method, path, body).await?;
    if resp.status >= 400 {
        let hint = (resp.status == 401)
            .then_some("give the server's token with --api-token or SWITCHBOARD_API_TOKEN");
        return Err(CliError::Server {
            status: resp.status,
            body: resp.body.to_vec(),
            hint,
        });
    }
    if !resp.is_success() {
        return Err(CliError::Unexpected {
            status: resp.status,
            reason: resp.reason().to_string(),
            url: client.url.to_string(),
        });
    }
    Ok(resp)
}

async fn action(client: &Client, id: i64, what: &str, json: bool) -> Result<(), CliError> {
    let path = format!("/api/campaigns/{id}/{what}");
    if let Some(v) = call(client, Method::POST, &path, None, json).await? {
        print!("{}", render_status(&v));
    }
    Ok(())
}

/// States after which a campaign never dials again.
fn is_finished(state: &str) -> bool {
    matches!(state, "stopped" | "completed")
}

async fn watch(client: &Client, id: i64, json: bool) -> Result<(), CliError> {
    let path = format!("/api/campaigns/{id}");
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drawn = false;
    let mut width = 0;
    loop {
        ticker.tick().await;
        let resp = match request(client, Method::GET, &path, None).await {
            Ok(r) => r,
            Err(e) => {
                if drawn {
                    eprintln!();
                }
                return Err(e);
            }
        };
        let v: Value = serde_json::from_slice(&resp.body)?;
        let state = str_field(&v, "state");
        // Padded to the longest line so far: a shorter line leaves no leftovers.
        let line = progress_line(&v);
        width = width.max(line.chars().count());
        eprint!("\r{line:<width$}");
        drawn = true;
        if is_finished(state) {
            eprintln!();
            if json {
                println!("{}", String::from_utf8_lossy(&resp.body).trim_end());
            } else {
                print!("{}", render_status(&v));
            }
            return Ok(());
        }
    }
}

// ---- rendering -------------------------------------------------------------------------------

/// Contact states in lifecycle order; others (if the server adds some) follow by name.
const STATE_ORDER: [&str; 7] = [
    "pending",
    "dialing",
    "retry",
    "completed",
    "failed",
    "dnc",
    "opted_out",
];
/// States in which a contact may still be dialed.
const OPEN_STATES: [&str; 3] = ["pending", "dialing", "retry"];

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `(name, count)` pairs of a JSON object of counts.
fn counts(v: Option<&Value>) -> Vec<(String, i64)> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn contact_states(v: &Value) -> Vec<(String, i64)> {
    let mut states = counts(v.pointer("/progress/contacts"));
    let rank = |s: &str| {
        STATE_ORDER
            .iter()
            .position(|k| *k == s)
            .unwrap_or(STATE_ORDER.len())
    };
    states.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    states
}

fn render_created(v: &Value) -> String {
    format!(
        "created campaign {} \"{}\" ({}) with {} contacts",
        scalar(v.get("id")),
        str_field(v, "name"),
        str_field(v, "state"),
        scalar(v.get("contacts")),
    )
}

fn render_list(v: &Value) -> String {
    let mut out = format!("{:>6}  {:<10} name\n", "id", "state");
    for c in v.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>6}  {:<10} {}",
            scalar(c.get("id")),
            str_field(c, "state"),
            str_field(c, "name")
        );
    }
    out
}

/// The campaign as `GET /api/campaigns/{id}` returns it: state, contacts by state, outcomes.
pub fn render_status(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "campaign {} \"{}\": {}",
        scalar(v.get("id")),
        str_field(v, "name"),
        str_field(v, "state")
    );
    for (label, key) in [
        ("dialplan", "dialplan"),
        ("trunk", "trunk"),
        ("caller id", "caller_id"),
        ("created", "created_at"),
        ("started", "started_at"),
        ("ended", "ended_at"),
        ("active calls", "active_calls"),
    ] {
        let _ = writeln!(out, "  {label:<14}{}", scalar(v.get(key)));
    }
    let _ = writeln!(out, "contacts: {}", scalar(v.pointer("/progress/total")));
    let states = contact_states(v);
    if states.is_empty() {
        out.push_str("  (none)\n");
    }
    for (s, n) in &states {
        let _ = writeln!(out, "  {s:<14}{n}");
    }
    out.push_str("outcomes:\n");
    let mut outcomes = counts(v.pointer("/progress/outcomes"));
    outcomes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if outcomes.is_empty() {
        out.push_str("  (none yet)\n");
    }
    for (s, n) in &outcomes {
        let _ = writeln!(out, "  {s:<14}{n}");
    }
    // The SMS fallback's texts, only when the campaign has any.
    let sms = counts(v.pointer("/progress/sms"));
    if !sms.is_empty() {
        out.push_str("sms:\n");
        for (s, n) in &sms {
            let _ = writeln!(out, "  {s:<14}{n}");
        }
    }
    out
}

/// One line for `status --watch`: a bar of contacts done (no longer pending, dialing or
/// retry) out of the total, the state and the calls in progress.
pub fn progress_line(v: &Value) -> String {
    const WIDTH: usize = 30;
    let total = v
        .pointer("/progress/total")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0);
    let open: i64 = contact_states(v)
        .iter()
        .filter(|(s, _)| OPEN_STATES.contains(&s.as_str()))
        .map(|(_, n)| *n)
        .sum();
    let done = (total - open).clamp(0, total);
    let filled = if total == 0 {
        WIDTH
    } else {
        // Both fit in i64 comfortably; the result is at most WIDTH.
        usize::try_from(done * WIDTH as i64 / total).unwrap_or(WIDTH)
    };
    format!(
        "[{}{}] {done}/{total} done  {}  {} active",
        "#".repeat(filled.min(WIDTH)),
        "-".repeat(WIDTH - filled.min(WIDTH)),
        str_field(v, "state"),
        scalar(v.get("active_calls")),
    )
}

fn render_contacts(v: &Value) -> String {
    let mut out = format!(
        "{:>6} {:>7} {:<16} {:<10} {:>8} {:<20} {:<12} {:<8} next attempt\n",
        "id", "ticket", "phone", "state", "attempts", "last disposition", "outcome", "sms"
    );
    for c in v.as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>6} {:>7} {:<16} {:<10} {:>8} {:<20} {:<12} {:<8} {}",
            scalar(c.get("id")),
            scalar(c.get("ticket_id")),
            scalar(c.get("phone")),
            scalar(c.get("state")),
            scalar(c.get("attempts")),
            scalar(c.get("last_disposition")),
            scalar(c.get("outcome")),
            scalar(c.get("sms")),
            scalar(c.get("next_attempt_at")),
        );
    }
    out
}

/// Percent-encode a query value (everything but RFC 3986 unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "active_calls": 1, "caller_id": "+15550100", "created_at": "2026-11-23T16:57:33.538Z",
            "dialplan": "delay-notify", "ended_at": null, "id": 2, "name": "n",
            "progress": {"contacts": {"retry": 1, "completed": 2, "pending": 1},
                         "outcomes": {"wait": 1, "busy": 1, "refund": 1}, "total": 4},
            "started_at": "2026-11-23T16:57:33.568Z", "state": "running", "trunk": "carrier"
        })
    }

    #[test]
    fn status_lists_states_in_lifecycle_order_and_outcomes() {
        let text = render_status(&sample());
        assert!(text.starts_with("campaign 2 \"n\": running\n"), "{text}");
        assert!(text.contains("  ended         -\n"), "{text}");
        assert!(text.contains("  active calls  1\n"), "{text}");
        let p = text.find("pending").expect("pending");
        let r = text.find("retry").expect("retry");
        let c = text.find("completed").expect("completed");
        assert!(p < r && r < c, "{text}");
        assert!(text.contains("contacts: 4\n"));
        assert!(
            text.contains("outcomes:\n  busy          1\n  refund        1\n  wait          1\n")
        );
    }

    #[test]
    fn status_shows_sms_counts_only_when_there_are_texts() {
        assert!(!render_status(&sample()).contains("sms:"));
        let mut v = sample();
        v["progress"]["sms"] = json!({"sent": 3, "failed": 1});
        let text = render_status(&v);
        assert!(
            text.ends_with("sms:\n  failed        1\n  sent          3\n"),
            "{text}"
        );
    }

    #[test]
    fn status_survives_missing_fields() {
        let text = render_status(&json!({"weird": true}));
        assert!(text.contains("campaign - \"-\": -"));
        assert!(text.contains("(none)"));
        assert!(progress_line(&json!(null)).contains("0/0 done"));
    }

    #[test]
    fn progress_counts_closed_contacts() {
        let line = progress_line(&sample());
        assert!(line.starts_with(&format!("[{}{}] 2/4 done", "#".repeat(15), "-".repeat(15))));
        assert!(line.contains("running"));
        assert!(line.contains("1 active"));
    }

    #[test]
    fn server_reasons() {
        let e = CliError::Server {
            status: 400,
            body: br#"{"error":"unknown field `colour`"}"#.to_vec(),
            hint: None,
        };
        assert_eq!(e.to_string(), "server answered 400: unknown field `colour`");
        assert_eq!(e.exit_code(), 1);
        let e = CliError::Server {
            status: 502,
            body: b"<html>bad gateway</html>".to_vec(),
            hint: None,
        };
        assert_eq!(
            e.to_string(),
            "server answered 502: <html>bad gateway</html>"
        );
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
    }

    #[test]
    fn query_encoding() {
        assert_eq!(percent_encode("opted_out"), "opted_out");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn tables() {
        let list = render_list(&json!([{"id": 1, "name": "x", "state": "created"}]));
        assert!(list
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("created") && l.ends_with('x')));
        let contacts = render_contacts(&json!([{"id": 5, "ticket_id": 1, "phone": "+15551230001",
            "state": "pending", "attempts": 0, "last_disposition": null, "outcome": null,
            "next_attempt_at": "2026-11-24T03:00:00.000Z"}]));
        assert!(contacts.contains("+15551230001"));
        assert!(contacts.contains("2026-11-24T03:00:00.000Z"));
    }
}
