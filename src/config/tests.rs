//! Unit tests of the configuration: every section's keys, defaults and refusals.

use super::trunks::split_host;
use super::*;

/// `[metrics] public` and `[server] log_format`: off / text by default, read when set,
/// and a log format other than text or json is refused at load.
#[test]
fn metrics_public_and_log_format() {
    let c = Config::embedded().expect("default config");
    assert!(!c.metrics_public);
    assert_eq!(c.log_format, LogFormat::Text);
    let c = Config::parse(
        "x.toml",
        "[server]\nlog_format = \"json\"\n[metrics]\npublic = true\n",
    )
    .expect("parses");
    assert!(c.metrics_public);
    assert_eq!(c.log_format, LogFormat::Json);
    Config::parse("x.toml", "[server]\nlog_format = \"xml\"\n").expect_err("xml refused");
    Config::parse("x.toml", "[metrics]\nopen = true\n").expect_err("unknown key");
}

#[test]
fn operators_from_the_file_are_checked() {
    use crate::store::operators::{hash_password, Role};
    assert!(Config::embedded().expect("default").operators.is_empty());
    let h = hash_password("pw").expect("hash");
    let src = format!(
        "[[operator]]\nname = \"olga\"\nrole = \"admin\"\npassword_hash = \"{h}\"\n\
             [[operator]]\nname = \"vic\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n"
    );
    let c = Config::parse("x.toml", &src).expect("parses");
    assert_eq!(c.operators.len(), 2);
    assert_eq!(
        (c.operators[0].name.as_str(), c.operators[0].role),
        ("olga", Role::Admin)
    );
    assert_eq!(c.operators[1].role, Role::Viewer);
    for (bad, why) in [
        (
            "name = \"olga\"\nrole = \"root\"\npassword_hash = \"H\"",
            "role",
        ),
        (
            "name = \"olga\"\nrole = \"admin\"\npassword_hash = \"s3cret\"",
            "argon2",
        ),
        (
            "name = \"bad name\"\nrole = \"admin\"\npassword_hash = \"H\"",
            "name",
        ),
        ("name = \"olga\"\nrole = \"admin\"", "password_hash"),
    ] {
        let src = format!("[[operator]]\n{}\n", bad.replace('H', &h));
        let e = Config::parse("x.toml", &src).expect_err(why);
        assert!(e.reason.contains(why), "{why}: {e}");
        assert_eq!(e.line, 1, "{e}");
    }
    let twice =
        format!("{src}[[operator]]\nname = \"olga\"\nrole = \"viewer\"\npassword_hash = \"{h}\"\n");
    let e = Config::parse("x.toml", &twice).expect_err("twice");
    assert!(e.reason.contains("twice"), "{e}");
}

#[test]
fn embedded_default_parses() {
    let c = Config::embedded().expect("default config");
    assert_eq!(c.sip_listen.to_string(), "127.0.0.1:5060");
    assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(
        c.route_for("hotline").map(|r| r.dialplan.as_str()),
        Some("hotline")
    );
    assert_eq!(c.queues, vec!["support".to_string()]);
}

#[test]
fn session_timer_keys() {
    let c = Config::embedded().expect("default config");
    assert_eq!((c.session_expires_s, c.session_min_se_s), (1800, 90));
    let c = Config::parse(
        "t.toml",
        "[server]\nsession_expires_s = 4\nsession_min_se_s = 1\n",
    )
    .expect("low values for tests");
    assert_eq!((c.session_expires_s, c.session_min_se_s), (4, 1));
    for bad in [
        "[server]\nsession_min_se_s = 0\n",
        "[server]\nsession_expires_s = 60\n",
    ] {
        let e = Config::parse("t.toml", bad).expect_err(bad);
        assert!(e.reason.contains("session_min_se_s"), "{e}");
    }
}

#[test]
fn trunks_and_cidrs() {
    let c = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:5090\"\ntransport = \"udp\"\n\
             inbound_cidrs = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\nmax_channels = 30\nmax_cps = 10\n",
    )
    .expect("trunk config");
    let t = c.trunk("carrier").expect("trunk");
    assert_eq!(t.address.port(), 5090);
    assert!(t.inbound_cidrs[1].contains("10.1.2.3".parse().expect("ip")));
    assert!(!t.inbound_cidrs[0].contains("127.0.0.2".parse().expect("ip")));
    assert_eq!(
        Cidr::parse("::1/128").map(|c| c.contains("::1".parse().expect("ip"))),
        Some(true)
    );
    assert!(Cidr::parse("1.2.3.4/33").is_none());
}

#[test]
fn errors_name_file_and_line() {
    let e = Config::parse("x.toml", "[server]\nsip_listen = \"nope\"\n").expect_err("bad");
    assert_eq!((e.file.as_str(), e.line), ("x.toml", 2));
    let e = Config::parse("x.toml", "[server]\n\nbogus = 1\n").expect_err("bad");
    assert_eq!(e.line, 3);
    assert!(e.reason.contains("bogus"), "{e}");
    let e =
        Config::parse("x.toml", "[[trunk]]\nname = \"c\"\naddress = \"nope\"\n").expect_err("bad");
    assert_eq!(e.line, 1, "{e}");
    let e = Config::parse("x.toml", "[server]\nrealtime_priority = 100\n").expect_err("bad");
    assert!(
        e.to_string()
            .starts_with("x.toml:2: realtime_priority = 100"),
        "{e}"
    );
    let off = Config::parse("x.toml", "[server]\nrealtime_priority = 0\n");
    assert_eq!(off.map(|c| c.realtime_priority).ok(), Some(0));
    let e = Config::parse("x.toml", "[server]\nrtp_ports = \"9-1\"\n").expect_err("bad");
    assert!(e.to_string().starts_with("x.toml:2: rtp_ports"), "{e}");
}

#[test]
fn sms_inbound_keys() {
    let c = Config::parse(
            "t.toml",
            "[sms]\nurl = \"http://gw:8088/\"\nfrom = \"+1\"\ninbound_secret = \"0123456789abcdef\"\n\
             replay_window_s = 60\nhelp_text = \"1 or 2\"\n[sms.replies]\nrefund = [\"R\", \"退款\"]\n",
        )
        .expect("inbound");
    let inbound = c.sms.and_then(|s| s.inbound).expect("inbound");
    assert_eq!(inbound.replay_window_s, 60);
    assert_eq!(inbound.help_text, "1 or 2");
    assert_eq!(
        inbound.choice("r"),
        Some(crate::dialer::sms_reply::ReplyChoice::Refund)
    );
    assert_eq!(inbound.choice("2"), None);
    let off = Config::parse("t.toml", "[sms]\nurl = \"http://gw/\"\nfrom = \"+1\"\n");
    assert_eq!(off.ok().and_then(|c| c.sms).map(|s| s.inbound), Some(None));
    for (bad, want) in [
        ("inbound_secret = \"short\"\n", "at least 16"),
        (
            "inbound_secret = \"0123456789abcdef\"\nreplay_window_s = 5\n",
            "replay_window_s",
        ),
        ("help_text = \"x\"\n", "need inbound_secret"),
        (
            "inbound_secret = \"0123456789abcdef\"\n[sms.replies]\nmaybe = [\"x\"]\n",
            "not a choice",
        ),
    ] {
        let text = format!("[sms]\nurl = \"http://gw/\"\nfrom = \"+1\"\n{bad}");
        let e = Config::parse("t.toml", &text).expect_err(bad);
        assert!(e.reason.contains(want), "{e}");
    }
}

#[test]
fn sms_and_webhook_https_keys() {
    let c = Config::parse(
        "t.toml",
        "[sms]\nurl = \"https://gw.example:8443/v1/sms\"\nfrom = \"+1\"\nca_file = \"ca.pem\"\n\
             [webhooks]\nca_file = \"hooks.pem\"\ntimeout_s = 3\n",
    )
    .expect("https gateway");
    let sms = c.sms.expect("sms");
    assert_eq!(sms.url, "https://gw.example:8443/v1/sms");
    assert_eq!(sms.ca_file, Some(PathBuf::from("ca.pem")));
    assert_eq!(
        c.webhooks,
        Webhooks {
            ca_file: Some(PathBuf::from("hooks.pem")),
            timeout_s: 3
        }
    );
    // Plain http stays accepted; no [webhooks] gives the defaults.
    let c = Config::parse(
        "t.toml",
        "[sms]\nurl = \"http://gw:8088/\"\nfrom = \"+1\"\n",
    )
    .expect("http gateway");
    assert_eq!(c.sms.expect("sms").ca_file, None);
    assert_eq!(c.webhooks, Webhooks::default());
    for (bad, want) in [
        (
            "[sms]\nurl = \"ftp://gw/\"\nfrom = \"+1\"\n",
            "[sms] url must be",
        ),
        (
            "[sms]\nurl = \"gw:80\"\nfrom = \"+1\"\n",
            "[sms] url must be",
        ),
        ("[webhooks]\ntimeout_s = 0\n", "[webhooks] timeout_s"),
        ("[webhooks]\nca = \"x\"\n", "unknown field"),
    ] {
        let e = Config::parse("t.toml", bad).expect_err(bad);
        assert!(e.reason.contains(want), "{bad}: {e}");
    }
}

#[test]
fn http_tls_and_agent_lists() {
    let c = Config::embedded().expect("default config");
    assert_eq!(c.http_tls, None);
    assert_eq!(c.pause_reasons, DEFAULT_PAUSE_REASONS.map(String::from));
    assert_eq!(c.dispositions.len(), DEFAULT_DISPOSITIONS.len());
    let c = Config::parse(
        "t.toml",
        "[http]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[acd]\npause_reasons = [\"coffee\"]\n",
    )
    .expect("https config");
    assert_eq!(
        c.http_tls,
        Some(HttpTls {
            cert: "c.pem".into(),
            key: "k.pem".into()
        })
    );
    assert_eq!(c.pause_reasons, vec!["coffee".to_string()]);
    let e = Config::parse("t.toml", "\n[http]\ntls_cert = \"c.pem\"\n").expect_err("half");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.reason.contains("tls_key"), "{e}");
    let e = Config::parse("t.toml", "[acd]\npause_reasons = []\n").expect_err("empty");
    assert!(e.reason.contains("pause_reasons"), "{e}");
}

#[test]
fn webrtc_keys() {
    let c = Config::embedded().expect("default config");
    assert_eq!(c.webrtc_public_address, None);
    assert!(c.webrtc_ice_servers.is_empty());
    let c = Config::parse(
            "t.toml",
            "[webrtc]\npublic_address = \"203.0.113.7\"\n\
             ice_servers = [{ urls = [\"turn:turn.example:3478\"], username = \"u\", credential = \"p\" }]\n",
        )
        .expect("webrtc config");
    assert_eq!(
        c.webrtc_public_address,
        Some("203.0.113.7".parse().expect("ip"))
    );
    assert_eq!(c.webrtc_ice_servers.len(), 1);
    assert_eq!(c.webrtc_ice_servers[0].username.as_deref(), Some("u"));
    let e = Config::parse("t.toml", "\n[webrtc]\npublic_address = \"0.0.0.0\"\n")
        .expect_err("unspecified");
    assert_eq!(e.line, 2, "{e}");
    assert!(e.reason.contains("public_address"), "{e}");
    let e =
        Config::parse("t.toml", "[webrtc]\nice_servers = [{ urls = [] }]\n").expect_err("no urls");
    assert!(e.reason.contains("urls"), "{e}");
}

#[test]
fn tls_listener_keys() {
    let c = Config::parse(
        "t.toml",
        "[server]\ntls_listen = \"127.0.0.1:5061\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
    )
    .expect("tls config");
    let t = c.tls.expect("tls on");
    assert_eq!(t.listen.port(), 5061);
    assert_eq!(t.cert, PathBuf::from("c.pem"));
    assert!(Config::embedded().expect("default").tls.is_none());
    let e = Config::parse("t.toml", "[server]\n\ntls_listen = \"127.0.0.1:5061\"\n")
        .expect_err("no files");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.reason.contains("tls_cert and tls_key"), "{e}");
    let e = Config::parse("t.toml", "[server]\ntls_cert = \"c.pem\"\n").expect_err("no listen");
    assert!(e.reason.contains("tls_listen is not"), "{e}");
    let e = Config::parse(
        "t.toml",
        "[server]\ntls_listen = \"nope\"\ntls_cert = \"c\"\ntls_key = \"k\"\n",
    )
    .expect_err("bad addr");
    assert!(e.reason.starts_with("tls_listen = 'nope'"), "{e}");
}

#[test]
fn stream_trunks() {
    let c = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5061\"\ntransport = \"TLS\"\ntls_ca = \"ca.pem\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"[::1]:5060\"\ntransport = \"tcp\"\n",
        )
        .expect("stream trunks");
    let a = c.trunk("a").expect("a");
    assert_eq!(
        (a.transport.as_str(), a.host.as_str()),
        ("tls", "127.0.0.1")
    );
    assert_eq!(a.tls_ca, Some(PathBuf::from("ca.pem")));
    let b = c.trunk("b").expect("b");
    assert_eq!((b.transport.as_str(), b.host.as_str()), ("tcp", "::1"));
    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"u\"\naddress = \"127.0.0.1:5060\"\ntls_ca = \"ca.pem\"\n",
    )
    .expect_err("tls_ca on udp");
    assert!(e.reason.contains("tls_ca needs transport"), "{e}");
    assert_eq!(split_host("carrier.example:5061"), "carrier.example");
}

#[test]
fn trunk_registration_and_failover_keys() {
    let c = Config::parse(
            "t.toml",
            "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nusername = \"u\"\npassword = \"p\"\n\
             register = true\nregister_expires = 120\nauth_username = \"au\"\nfailover = \"b\"\npai = true\n\
             from_user = \"acct\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"127.0.0.1:5091\"\n",
        )
        .expect("keys");
    let a = c.trunk("a").expect("a");
    assert!(a.register && a.pai);
    assert_eq!(a.register_expires, 120);
    assert_eq!(a.auth_user(), Some("au"));
    assert_eq!(a.failover.as_deref(), Some("b"));
    assert_eq!(a.from_user.as_deref(), Some("acct"));
    let b = c.trunk("b").expect("b");
    assert_eq!(
        (b.register_expires, b.pai, b.failover.is_none()),
        (3600, false, true)
    );
    assert_eq!(b.auth_user(), None);

    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\n\n[[trunk]]\nname = \"b\"\n\
             address = \"127.0.0.1:5091\"\nfailover = \"zz\"\n",
    )
    .expect_err("unknown failover");
    assert_eq!(e.line, 5, "{e}");
    assert!(e.reason.contains("failover 'zz' is not a [[trunk]]"), "{e}");
    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nfailover = \"b\"\n\
             [[trunk]]\nname = \"b\"\naddress = \"127.0.0.1:5091\"\nfailover = \"c\"\n\
             [[trunk]]\nname = \"c\"\naddress = \"127.0.0.1:5092\"\nfailover = \"a\"\n",
    )
    .expect_err("cycle");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.reason.contains("failover cycle a -> b -> c -> a"), "{e}");
    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nfailover = \"a\"\n",
    )
    .expect_err("self");
    assert!(e.reason.contains("failover cycle a -> a"), "{e}");
    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nregister = true\n",
    )
    .expect_err("register without credentials");
    assert!(e.reason.contains("needs username and password"), "{e}");
    let e = Config::parse(
        "t.toml",
        "[[trunk]]\nname = \"a\"\naddress = \"127.0.0.1:5090\"\nregister_expires = 5\n",
    )
    .expect_err("expires");
    assert!(e.reason.contains("register_expires"), "{e}");
}

#[test]
fn codecs_are_an_ordered_preference_list() {
    let c = Config::embedded().expect("default config");
    assert_eq!(
        c.codecs,
        DEFAULT_CODECS.to_vec(),
        "default.toml matches the built-in default"
    );
    let c = Config::parse(
        "c.toml",
        "[server]\ncodecs = [\"OPUS\", \"g722\", \"opus\", \"PCMU\"]\n",
    )
    .expect("codecs");
    assert_eq!(
        c.codecs,
        vec![Codec::Opus, Codec::G722, Codec::Pcmu],
        "order kept, duplicate dropped"
    );
    let e = Config::parse("c.toml", "[server]\ncodecs = [\"G729\"]\n").expect_err("unknown");
    assert!(
        e.reason
            .contains("unknown codec 'G729' (PCMU, PCMA, G722, opus)"),
        "{e}"
    );
    let e = Config::parse("c.toml", "[server]\ncodecs = []\n").expect_err("empty");
    assert!(e.reason.contains("must not be empty"), "{e}");
}

#[test]
fn service_hours_and_language_prefixes() {
    let c = Config::parse(
            "t.toml",
            "[service]\ntimezone = \"Asia/Shanghai\"\nhours = { mon = \"09:00-18:00\", sat = \"10:00-12:00,13:00-16:00\" }\n\n[language]\nprefixes = { \"+65\" = \"zh\" }\n",
        )
        .expect("config");
    let h = c.service_hours.expect("hours");
    assert_eq!(h.tz, chrono_tz::Asia::Shanghai);
    // Monday 2026-12-07 10:00 Shanghai.
    let t = chrono::DateTime::parse_from_rfc3339("2026-12-07T02:00:00Z")
        .expect("t")
        .with_timezone(&chrono::Utc);
    assert!(h.is_open(t));
    assert_eq!(c.language_prefixes.lookup("+6591234567"), Some("zh"));
    assert_eq!(
        c.language_prefixes.lookup("+8613800138000"),
        None,
        "replaced"
    );
    assert_eq!(
        Config::embedded()
            .expect("default")
            .language_prefixes
            .lookup("+8613800138000"),
        Some("zh")
    );
    for bad in [
        "[service]\ntimezone = \"Mars/Base\"\n",
        "[service]\nhours = { monday = \"09:00-18:00\" }\n",
        "[service]\nhours = { mon = \"18:00-09:00\" }\n",
        "[language]\nprefixes = { \"86\" = \"zh\" }\n",
    ] {
        let e = Config::parse("t.toml", bad).expect_err(bad);
        assert!(e.to_string().contains("t.toml:1"), "{bad}: {e}");
    }
}
