//! Agent and operator accounts from the command line (`agent add|list|...`, `operator
//! add|hash|...`): written straight to the database, passwords read from standard input.

use std::process::ExitCode;

use super::args::{AgentCommand, OperatorCommand, RunArgs};
use super::data::with_db;

/// An operator's password from `--password-stdin` or `--password` (not empty); `None`
/// after saying why on stderr.
pub(super) fn operator_password(flag: Option<&str>, stdin: bool) -> Option<String> {
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

/// `--password-stdin`: the first line of `input` without its line ending; an empty line or
/// no input at all is refused (an account must not get an empty password by accident).
pub(super) fn password_from(mut input: impl std::io::BufRead) -> Result<String, String> {
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

pub(super) fn agent_command(cmd: AgentCommand, outer: &RunArgs) -> ExitCode {
    use crate::store::agents;
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

pub(super) fn operator_command(cmd: OperatorCommand, outer: &RunArgs) -> ExitCode {
    use crate::store::operators::{self, Role};
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

#[cfg(test)]
mod tests {
    use super::password_from;

    /// The first line only, without LF or CRLF; an empty line or no input is refused.
    #[test]
    fn password_from_stdin_takes_the_first_line() {
        assert_eq!(password_from(&b"s3cret\n"[..]).as_deref(), Ok("s3cret"));
        assert_eq!(
            password_from(&b"s3cret\r\nnext\n"[..]).as_deref(),
            Ok("s3cret")
        );
        assert_eq!(
            password_from(&b"no newline"[..]).as_deref(),
            Ok("no newline")
        );
        assert!(password_from(&b"\n"[..]).is_err());
        assert!(password_from(&b""[..]).is_err());
    }
}
