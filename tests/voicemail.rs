//! The dialplan `record` step with a real caller: SIPp calls the `voicemail` route, hears the
//! intro, talks (RTP) and presses # — the message is a mono 8 kHz WAV whose path is on the
//! call record, the step ended on the terminator, and nothing was dropped.

use std::time::Duration;

use crate::support::{repo_root, wait_for, Scenario, Server};

#[test]
fn caller_leaves_a_message_ended_by_pound() {
    let rec_dir = tempfile::tempdir().expect("dir");
    let cfg_dir = tempfile::tempdir().expect("dir");
    let default = std::fs::read_to_string(repo_root().join("config/default.toml")).expect("read");
    let text: String = default
        .lines()
        .map(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            match key {
                "spool_dir" => format!(
                    "spool_dir = {:?}\n",
                    cfg_dir.path().join("spool").display().to_string()
                ),
                "recordings_dir" => {
                    format!(
                        "recordings_dir = {:?}\n",
                        rec_dir.path().display().to_string()
                    )
                }
                _ => format!("{l}\n"),
            }
        })
        .collect();
    let cfg = cfg_dir.path().join("config.toml");
    std::fs::write(&cfg, text).expect("write");
    let server = Server::start(&["--config", &cfg.display().to_string()]);

    // The intro takes ~5 s; talk ~3 s more, then '#'.
    let run = server.run_sipp(
        &Scenario::call_with_digits(&[(9000, '#')], 1000, 20_000),
        &["-set", "caller", "+15551239020", "-s", "voicemail"],
    );
    run.assert_ok(&server);
    let rec = server.wait_db(Duration::from_secs(10), "the ended call", |db| {
        db.rows("SELECT * FROM call_records WHERE caller = '+15551239020' AND ended_at IS NOT NULL")
            .pop()
    });
    assert_eq!(rec["dialplan"], "voicemail");
    let id = rec["id"].as_str().expect("id").to_string();
    let path = rec_dir.path().join(format!("{id}-message.wav"));
    assert_eq!(rec["recording_path"], path.display().to_string().as_str());
    let ended = server.db().row(&format!(
        "SELECT detail FROM call_events WHERE call_id = '{id}' AND kind = 'record_end'"
    ));
    assert_eq!(ended["detail"], "message:terminator");
    let stats = server.db().row(&format!(
        "SELECT detail FROM call_events WHERE call_id = '{id}' AND kind = 'recording_stats'"
    ));
    assert!(
        stats["detail"]
            .as_str()
            .unwrap_or("")
            .ends_with("frames_dropped=0"),
        "{stats:?}"
    );
    let reader = wait_for(Duration::from_secs(5), "the finalized WAV", || {
        hound::WavReader::open(&path)
            .ok()
            .filter(|r| r.duration() > 0)
    });
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().sample_rate, 8000);
    let secs = reader.duration() as f64 / 8000.0;
    assert!((1.0..8.0).contains(&secs), "message of {secs:.2} s");
}
