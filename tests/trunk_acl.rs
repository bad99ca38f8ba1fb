//! Toll-fraud safety at the door: once a `[[trunk]]` lists `inbound_cidrs`, an INVITE from
//! any other network is refused with 403 before anything is set up (and logged as a security
//! event), while the trunk's own network reaches the hotline as before.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::{repo_root, sdp_offer, Server, SipClient, SipRequest};

fn config_with_trunk(cidr: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("dir");
    let default = std::fs::read_to_string(repo_root().join("config/default.toml")).expect("read");
    let spool = dir.path().join("spool");
    let mut text: String = default
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("spool_dir") {
                format!("spool_dir = {:?}\n", spool.display().to_string())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    text.push_str(&format!(
        "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:5999\"\ninbound_cidrs = [\"{cidr}\"]\n"
    ));
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write");
    let p = path.display().to_string();
    (dir, p)
}

fn invite_from(server: &Server, ip: Ipv4Addr) -> u16 {
    let client = SipClient::from_ip(server.sip_addr, ip);
    let sdp = sdp_offer(40_000, "0", &["0 PCMU/8000"]);
    let req = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    client.send(&req.bytes());
    let r = client
        .final_response(Duration::from_secs(5))
        .expect("a final response");
    client.send(&req.ack_for(&r).bytes());
    r.code
}

#[test]
fn invites_from_outside_the_trunk_networks_get_403() {
    let (_dir, cfg) = config_with_trunk("127.0.0.2/32");
    let server = Server::start(&["--config", &cfg]);
    assert_eq!(invite_from(&server, Ipv4Addr::new(127, 0, 0, 1)), 403);
    assert!(
        server.log().contains("no configured trunk"),
        "security event logged\n{}",
        server.log()
    );
    // Nothing was set up for the refused call.
    assert_eq!(server.db().count("call_records"), 0);
    // The trunk's network is served (the hotline answers after ring_ms).
    assert_eq!(invite_from(&server, Ipv4Addr::new(127, 0, 0, 2)), 200);
}
