//! One-shot commands on the database with no server running: `tickets import` (CSV into the
//! ticket table) and `calls export` (call records as CSV).

use std::process::ExitCode;

use super::args::{config_or_exit, RunArgs};
use crate::config::Config;

/// Config, a small runtime and the database, for one-shot operator commands.
pub(super) fn with_db<F, Fut>(run: RunArgs, f: F) -> ExitCode
where
    F: FnOnce(Config, crate::store::Db) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let cfg = match config_or_exit(&run) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match super::runtime(
        tokio::runtime::Builder::new_current_thread(),
        ExitCode::FAILURE,
    ) {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match crate::store::Db::connect(&cfg.database).await {
            Ok(db) => f(cfg, db).await,
            Err(e) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(2)
            }
        }
    })
}

pub(super) fn tickets_import(file: &std::path::Path, run: RunArgs) -> ExitCode {
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
        let progress = |p: crate::store::csv::ImportProgress| {
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
        match crate::store::csv::import_tickets(&db, input, &cfg.default_country_code, progress)
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

pub(super) fn calls_export(
    since: &str,
    output: Option<&std::path::Path>,
    run: RunArgs,
) -> ExitCode {
    let since = since.to_string();
    let output = output.map(std::path::Path::to_path_buf);
    with_db(run, |_cfg, db| async move {
        let mut buf = Vec::new();
        match crate::store::csv::export_calls(&db, &since, &mut buf).await {
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
