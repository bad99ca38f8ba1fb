//! `switchboard` command line: run the server (default), and operator subcommands. The
//! commands live in the library (`switchboard::cli`) so they are built, linted and tested
//! with it; this binary only calls them. Flags are a public contract (docs/configuration.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    switchboard::cli::main()
}
