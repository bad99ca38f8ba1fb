//! Offline tools that need neither a server nor a database: `detect-dtmf FILE.wav`.

use std::process::ExitCode;

pub(super) fn detect_dtmf(file: &std::path::Path) -> ExitCode {
    match crate::media::dtmf_inband::detect_wav(file) {
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
