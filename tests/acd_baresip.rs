//! ACD acceptance with a real softphone as the agent: baresip (Debian `baresip-core` 1.0.0)
//! REGISTERs as agent `bea` with digest auth, answers automatically (`answermode=auto`) and
//! sends a 440 Hz tone from a WAV (`aufile`); a SIPp caller presses 0 in the hotline, lands in
//! queue `support`, is offered to bea's phone and bridged. Checked: the agent became
//! available through baresip's own registration, the call record names the agent, and the
//! bridge counted at least 100 RTP packets in each direction.
//!
//! baresip 1.0.0 links libre 1.1.0, whose digest code gives up on a 401 as soon as one of its
//! `WWW-Authenticate` headers has an algorithm other than MD5 (`sip/auth.c`: `ENOSYS`, logged
//! as "Register: Function not implemented"), even when an MD5 challenge is also present. The
//! registrar knows this client (User-Agent `baresip v0.`/`v1.`) and challenges it with MD5
//! only, so the phone registers directly with the server: this test proves that too.

use crate::support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{free_port, read_lossy, tail, wait_child, wait_for, Scenario, Server};
use serde_json::Value;

const AGENT: &str = "bea";
const PASSWORD: &str = "bea-s3cret";
const CALLER: &str = "+15551239101";

fn baresip_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("baresip"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "baresip not found on PATH: this test needs a real softphone \
                 (Debian package baresip-core; scripts/test installs it)"
            )
        })
}

fn agent_state(server: &Server, name: &str) -> String {
    // The read endpoints need a token ([api] anonymous_read is off by default).
    let body = server
        .api_get("/api/agents")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .and_then(|x| x["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// 8 kHz mono 16-bit PCM WAV with a 440 Hz tone. baresip hangs up when the `aufile` source
/// ends, so it must outlast the call.
/// baresip's `aufile` source must match the codec's sampling rate and channels (8000 mono
/// for G.711, 16000 mono for G.722, 48000 stereo for Opus: `opus/48000/2`).
fn write_tone_wav(path: &Path, secs: u32, rate: u32, channels: u16) {
    let n = rate * secs * channels as u32;
    let mut b = Vec::with_capacity(44 + 2 * n as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * 2 * channels as u32).to_le_bytes());
    b.extend_from_slice(&(2 * channels).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n / channels as u32 {
        let t = i as f64 / rate as f64;
        let s = (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        for _ in 0..channels {
            b.extend_from_slice(&s.to_le_bytes());
        }
    }
    std::fs::write(path, b).expect("write tone wav");
}

/// A loopback port free for UDP and TCP whose next port is free for TCP too: baresip listens
/// on `sip_listen` (UDP, TCP) and on the port after it (TLS).
fn baresip_sip_port() -> u16 {
    for _ in 0..50 {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no loopback port pair free for baresip");
}

/// baresip with its own config folder; stopped on drop (SIGTERM so its log is flushed, then
/// SIGKILL after 2 s).
struct Baresip {
    child: Child,
    log: PathBuf,
}

impl Baresip {
    /// `module` is the codec module to load, `codecs` the account's `audio_codecs`.
    fn start_with(
        binary: &Path,
        dir: &Path,
        sip_port: u16,
        registrar: SocketAddr,
        module: &str,
        codecs: &str,
    ) -> Baresip {
        std::fs::create_dir_all(dir).expect("baresip dir");
        let wav = dir.join("tone.wav");
        let (rate, channels) = match module {
            "g722.so" => (16000, 1),
            "opus.so" => (48000, 2),
            _ => (8000, 1),
        };
        write_tone_wav(&wav, 60, rate, channels);
        let (rtp_lo, rtp_hi) = support::rtp_range();
        let config = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 60\n\
             audio_path /usr/share/baresip\n\
             audio_source aufile,{wav}\n\
             audio_player aubridge,nowhere\n\
             audio_alert aubridge,nowhere\n\
             ausrc_format s16\nauplay_format s16\nauenc_format s16\naudec_format s16\n\
             rtp_ports {rtp_lo}-{rtp_hi}\n\
             rtcp_mux no\n\
             dns_server 127.0.0.1:53\n\
             module_path /usr/lib/baresip/modules\n\
             module {module}\nmodule aufile.so\nmodule aubridge.so\n\
             module_tmp uuid.so\nmodule_tmp account.so\n\
             module_app menu.so\n",
            wav = wav.display()
        );
        std::fs::write(dir.join("config"), config).expect("baresip config");
        // User and auth user = the agent name; auto-answer; re-register every 600 s.
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{AGENT}@{registrar};transport=udp>;auth_pass={PASSWORD};\
                 answermode=auto;regint=600;audio_codecs={codecs}\n"
            ),
        )
        .expect("baresip accounts");
        let log = dir.join("baresip.log");
        let child = Command::new(binary)
            .arg("-v")
            .arg("-f")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("baresip log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("baresip log"),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Baresip { child, log }
    }

    fn log(&self) -> String {
        read_lossy(&self.log)
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if wait_child(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "==== baresip log (test failed) ====\n{}",
                tail(&self.log(), 150)
            );
        }
    }
}

fn packets(detail: &str, key: &str) -> u64 {
    detail
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A caller presses 0, the queue offers the call to bea's baresip, which answers by itself;
/// audio flows both ways through the bridge until the caller hangs up.
#[test]
fn baresip_agent_answers_a_queued_call_with_audio_both_ways() {
    bridged_call_with_baresip("g711.so", "PCMU,PCMA", "Pcmu");
}

/// The same with a G.722-only baresip (Debian's `g722.so` module): the caller's PCMU and the
/// agent's G.722 meet in the relay, which transcodes both ways through 8 kHz PCM.
#[test]
fn g722_baresip_agent_is_bridged_to_a_pcmu_caller() {
    bridged_call_with_baresip("g722.so", "G722", "G722");
}

/// And with an Opus-only baresip (`opus.so`): PCMU/8000 <-> opus/48000, timestamps rescaled.
#[test]
fn opus_baresip_agent_is_bridged_to_a_pcmu_caller() {
    bridged_call_with_baresip("opus.so", "opus", "Opus");
}

fn bridged_call_with_baresip(module: &str, codecs: &str, expect_codec: &str) {
    let binary = baresip_binary();
    let server = Server::start(&[]);
    server.add_agent(AGENT, PASSWORD, &[]);
    let phone_port = baresip_sip_port();
    let phone = Baresip::start_with(
        &binary,
        &server.dir.path().join("baresip"),
        phone_port,
        server.sip_addr,
        module,
        codecs,
    );

    wait_for(
        Duration::from_secs(10),
        "baresip to register (agent available in GET /api/agents)",
        || (agent_state(&server, AGENT) == "available").then_some(()),
    );
    let registered = server.db().count(&format!(
        "registrations WHERE aor = '{AGENT}' AND user_agent LIKE 'baresip%'"
    ));
    assert_eq!(
        registered,
        1,
        "baresip's own binding\n{}",
        server.db().dump()
    );

    // 0 at 1.5 s, then 9 s more audio; the caller hangs up 8 s after its ACK.
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 9000, 8000),
        &["-set", "caller", CALLER],
    );
    call.wait().assert_ok(&server);

    let rec = server.wait_db(Duration::from_secs(15), "the caller's record", |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE caller = '{CALLER}' AND ended_at IS NOT NULL"
        ))
        .pop()
    });
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["agent"], AGENT, "{rec:?}");
    assert_eq!(rec["disposition"], "answered", "{rec:?}");
    let id = rec["id"].as_str().expect("call id").to_string();
    let bridge = server.wait_db(Duration::from_secs(5), "bridge_packets", |db| {
        db.rows(&format!(
            "SELECT detail FROM call_events WHERE call_id = '{id}' AND kind = 'bridge_packets'"
        ))
        .pop()
        .and_then(|r| r["detail"].as_str().map(str::to_string))
    });
    let to_agent = packets(&bridge, "caller_to_agent");
    let to_caller = packets(&bridge, "agent_to_caller");
    eprintln!("bridge_packets: {bridge}");
    // ~6 s bridged at 50 packets/s each way.
    assert!(to_agent >= 100, "caller -> agent: {bridge}");
    assert!(to_caller >= 100, "agent (baresip) -> caller: {bridge}");
    // baresip's side: stop it (SIGTERM flushes its log) and look for the answered call.
    let log_path = phone.log.clone();
    drop(phone);
    let log = read_lossy(&log_path);
    assert!(
        log.contains("Call established") && log.contains("aufile"),
        "baresip did not report the established call with its aufile source\n{}",
        tail(&log, 150)
    );
    // The agent leg negotiated the phone's codec (the answer to our 4-codec offer).
    let server_log = server.log();
    assert!(
        server_log.contains(&format!("codec={expect_codec}")),
        "agent leg codec {expect_codec}\n{}",
        tail(&server_log, 60)
    );
}
