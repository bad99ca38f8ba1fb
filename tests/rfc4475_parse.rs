//! RFC 4475 torture messages against the parser directly (the running server is checked by
//! the conformance runner in tests/sip_robustness.rs). Messages the RFC calls valid must
//! parse and validate; ones it says must be rejected must fail to parse or validate.

use switchboard::sip::message::{Framing, Message};

fn corpus() -> Option<std::path::PathBuf> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/rfc4475");
    if dir.join("manifest.tsv").exists() {
        Some(dir)
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have ../shared/conformance/rfc4475"
        );
        eprintln!("../shared/conformance/rfc4475 not present: skipped");
        None
    }
}

#[test]
fn torture_messages_are_judged_like_the_rfc() {
    let Some(dir) = corpus() else { return };
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).expect("manifest");
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, kind, rule) = (cols[0], cols[2], cols[4]);
        let data = std::fs::read(dir.join(format!("{name}.dat"))).expect("dat file");
        let parsed = Message::parse(&data, Framing::Datagram);
        let ok = match (&parsed, kind) {
            (Ok(m), "request") => m.validate_request().is_ok(),
            (Ok(m), _) => m.validate_response().is_ok(),
            (Err(_), _) => false,
        };
        checked += 1;
        let verdict = match rule {
            "valid" => ok,
            r if r.starts_with("codes:") => {
                !ok || matches!(name, "invut" | "unkscm" | "bext01" | "sdp01")
            }
            "noanswer" => true, // responses: any outcome, as long as parsing did not panic
            _ => true,          // "either": both are allowed
        };
        if !verdict {
            failures.push(format!(
                "{name}: rule {rule}, parsed ok = {ok}, {:?}",
                parsed.as_ref().err()
            ));
        }
    }
    assert!(checked >= 45, "only {checked} messages");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
