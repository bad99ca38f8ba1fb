//! The module layers (docs/architecture.md, "Layers") as a test: every `crate::…` (and
//! `super::…`) reference in `src/**/*.rs`, outside comments and `#[cfg(test)]` items, must
//! point to a module in a lower layer. So the module graph stays a DAG: a service can be
//! read, tested and changed without the ones above it, and no import cycle comes back.
//!
//! Nodes are the top-level modules, plus the pure cores that live in a service's folder
//! but sit lower than the service (`dialer::core` is used by `dialer::gate`, which `call`
//! uses; `dialer::sms_reply` is a `[sms]` config section). A reference resolves to the
//! longest node that prefixes its path. A module missing from [`LAYERS`] fails the test:
//! a new module is placed deliberately.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first. A node may use nodes of lower layers only (not its own layer: that keeps
/// the graph acyclic by construction).
const LAYERS: &[&[&str]] = &[
    // Leaves: no crate imports at all.
    &[
        "net",
        "metrics",
        "ivr",
        "webrtc",
        "dialer::zones",
        "dialer::sms_reply",
        // Typed call results (dispositions, hangup causes) every service passes around.
        "call::disposition",
    ],
    // Media and the dialer's pacing/scheduling core.
    &["media", "dialer::core"],
    // SIP (uses media's codecs for SDP); the OS runtime pieces (RTP ports, call threads).
    &["sip", "runtime"],
    // Storage and the HTTP client (both use sip: digest hashes, TLS roots).
    &["store", "http_client"],
    // Services below the call: the ACD, then the registrar that feeds it.
    &["acd"],
    &["registrar"],
    // Configuration assembles the services' own config types.
    &["config"],
    // A node's block of a shared cap (cluster timing from config, the table in store).
    &["dialer::share"],
    // Per-trunk channel and rate gates (config's trunks, the dialer's pacer, the block).
    &["dialer::gate"],
    // Calls: router, actors, dialog, dialplans.
    &["call"],
    // Services that start or watch calls.
    &["dialer", "trunk_reg", "cluster"],
    // The HTTP API, the wiring, the command line.
    &["api"],
    &["server"],
    &["cli"],
];

fn layer_of(node: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&node))
}

/// The listed node that is the longest prefix of a module path (`["dialer", "gate", ...]`).
fn node_of(path: &[String]) -> Option<&'static str> {
    LAYERS
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|n| {
            let parts: Vec<&str> = n.split("::").collect();
            parts.len() <= path.len() && parts.iter().zip(path).all(|(a, b)| *a == b)
        })
        .max_by_key(|n| n.split("::").count())
}

/// The source without comments and without `#[cfg(test)]` items (test code may reach
/// anywhere). Good enough for this code base: a `//` inside a string literal cuts the rest
/// of that line only.
fn strip(src: &str) -> String {
    let mut s = String::with_capacity(src.len());
    let mut rest = src;
    // Block comments, then line comments.
    while let Some(i) = rest.find("/*") {
        s.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    s.push_str(rest);
    let s: String = s
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        rest = match (brace, semi) {
            (_, Some(j)) if brace.is_none_or(|b| j < b) => &after[j + 1..],
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = after.len();
                for (k, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                &after[end..]
            }
            _ => "",
        };
    }
    out.push_str(rest);
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Module paths referenced from a file whose module path is `module`: `crate::a::b…`,
/// `crate::{a, b}` and `super::…`/`self::…` resolved against `module` (a `mod.rs` is its
/// folder's module).
fn references(src: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    while i < src.len() {
        let starts_word = i == 0 || !(is_ident(bytes[i - 1] as char) || bytes[i - 1] == b'$');
        let rest = &src[i..];
        if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (mut base, mut j) = if rest.starts_with("crate::") {
                (Vec::new(), "crate::".len())
            } else {
                (module.to_vec(), 0)
            };
            while src[i + j..].starts_with("super::") {
                base.pop();
                j += "super::".len();
            }
            if src[i + j..].starts_with('{') {
                // `crate::{a, b::c}`: the first segment of each top-level item.
                let inner = &src[i + j + 1..];
                let end = inner.find('}').unwrap_or(inner.len());
                for item in inner[..end].split(',') {
                    let seg: String = item.trim().chars().take_while(|c| is_ident(*c)).collect();
                    if !seg.is_empty() && seg != "self" {
                        let mut p = base.clone();
                        p.push(seg);
                        refs.push(p);
                    }
                }
            } else {
                let path: String = src[i + j..]
                    .chars()
                    .take_while(|c| is_ident(*c) || *c == ':')
                    .collect();
                let mut p = base;
                p.extend(
                    path.split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                refs.push(p);
            }
            i += j;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    refs
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every node-to-node edge of the crate, with one file that makes it.
fn edges() -> BTreeMap<(&'static str, &'static str), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("under src");
        let mut module: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last = module.pop().expect("a file name");
        if module.is_empty() && (last == "lib.rs" || last == "main.rs") {
            continue; // the crate root: declares the modules, is above all of them
        }
        if module.is_empty() && last == "layers.rs" {
            continue; // this test (a `#[cfg(test)]` module)
        }
        if last != "mod.rs" {
            module.push(last.trim_end_matches(".rs").to_string());
        }
        let from = node_of(&module)
            .unwrap_or_else(|| panic!("{}: module not in LAYERS (src/layers.rs)", rel.display()));
        let text = std::fs::read_to_string(&f).expect("read source");
        for r in references(&strip(&text), &module) {
            if r.is_empty() {
                continue;
            }
            let Some(to) = node_of(&r) else {
                panic!(
                    "{}: references crate::{} which is in no layer of src/layers.rs",
                    rel.display(),
                    r.join("::")
                );
            };
            if to != from {
                edges
                    .entry((from, to))
                    .or_insert_with(|| format!("{} (crate::{})", rel.display(), r.join("::")));
            }
        }
    }
    edges
}

/// The rule itself, on a given edge set: every edge goes to a strictly lower layer.
fn upward(edges: &BTreeMap<(&'static str, &'static str), String>) -> Vec<String> {
    edges
        .iter()
        .filter_map(|((from, to), at)| {
            let (lf, lt) = (layer_of(from)?, layer_of(to)?);
            (lt >= lf).then(|| format!("{from} (layer {lf}) -> {to} (layer {lt}), e.g. {at}"))
        })
        .collect()
}

#[test]
fn no_module_uses_its_own_or_a_higher_layer() {
    let edges = edges();
    assert!(
        edges.len() > 20,
        "the scan found the crate's edges: {edges:?}"
    );
    let bad = upward(&edges);
    assert!(
        bad.is_empty(),
        "modules must only use lower layers (docs/architecture.md, src/layers.rs):\n  {}",
        bad.join("\n  ")
    );
}

#[test]
fn every_node_is_listed_once() {
    let all: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    let unique: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(all.len(), unique.len(), "a node listed twice in LAYERS");
}

#[test]
fn the_scan_sees_what_it_must() {
    let m = |p: &str| p.split("::").map(str::to_string).collect::<Vec<_>>();
    let src = "use crate::sip::message::Method; // crate::api in a comment\n\
               use super::core::Pacer;\nuse crate::{acd, store::Db};\n\
               #[cfg(test)]\nmod tests { use crate::server::X; }\nfn f() { $crate::x(); }";
    let refs = references(&strip(src), &m("dialer::gate"));
    assert_eq!(
        refs,
        vec![
            m("sip::message::Method"),
            m("dialer::core::Pacer"),
            m("acd"),
            m("store")
        ]
    );
    assert_eq!(node_of(&m("dialer::gate::TrunkSlot")), Some("dialer::gate"));
    assert_eq!(node_of(&m("dialer::service::run")), Some("dialer"));
    // An upward edge and a same-layer edge are both reported.
    let mut e = BTreeMap::new();
    e.insert(("sip", "call"), "x".to_string());
    e.insert(("acd", "acd"), "y".to_string());
    e.insert(("call", "sip"), "z".to_string());
    e.insert(("dialer", "cluster"), "w".to_string());
    let bad = upward(&e);
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].starts_with("acd (layer 4) -> acd"), "{bad:?}");
}
