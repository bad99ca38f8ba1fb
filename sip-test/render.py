#!/usr/bin/env python3
"""Render a SIPp scenario template from sip-test/: replace its @TOKENS@ and write a copy.

SIPp reads file names such as play_pcap_audio="..." when it loads the scenario, so they
cannot come from -set variables. The templates carry placeholders instead:

  @PCAP@      pcap for play_pcap_audio (written as an absolute path)     uac_call
  @HOLD_MS@   ms to wait after the ACK before hanging up ourselves       uac_call, uac_hangup_early
  @RING_MS@   ms between the 180 and the CANCEL                          uac_cancel

Usage
  render.py TEMPLATE OUT.xml [--pcap FILE] [--hold-ms N] [--ring-ms N] [--set NAME=VALUE ...]
  render.py uac_call.xml /tmp/t/call.xml --pcap /tmp/t/digits.pcap --hold-ms 8000
  render.py uac_call.xml /tmp/t/call.xml --dtmf "--script 1500:2,5000:2 --tail-ms 1000" --hold-ms 9000
      (--dtmf runs make_dtmf_pcap.py with these arguments, writing OUT.xml's name with .pcap)
  render.py uac_cancel.xml /tmp/t/cancel.xml --ring-ms 300

Defaults: HOLD_MS 5000, RING_MS 300. Every @TOKEN@ of the template must get a value
(a template needing @PCAP@ without --pcap/--dtmf is an error); unknown --set names are
an error too. The output is checked to be well-formed XML. Prints the output path.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import xml.dom.minidom
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS = {"HOLD_MS": "5000", "RING_MS": "300"}
TOKEN = re.compile(r"@([A-Z][A-Z0-9_]*)@")


COMMENT = re.compile(r"(<!--.*?-->)", re.S)


def tokens(template_text):
    """@TOKENS@ used outside XML comments (comments keep their @TOKEN@ text as documentation)."""
    parts = COMMENT.split(template_text)
    return {t for i, p in enumerate(parts) if i % 2 == 0 for t in TOKEN.findall(p)}


def render(template_text, values):
    missing = sorted(tokens(template_text) - set(values))
    if missing:
        raise SystemExit("render.py: no value for " + ", ".join(f"@{m}@" for m in missing))
    parts = COMMENT.split(template_text)
    return "".join(p if i % 2 else
                   TOKEN.sub(lambda m: escape(values[m.group(1)], {'"': "&quot;"}), p)
                   for i, p in enumerate(parts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("template", help="scenario template (a bare name is looked up in sip-test/)")
    ap.add_argument("out", help="rendered scenario to write")
    ap.add_argument("--pcap", help="pcap for @PCAP@ (made absolute; must exist)")
    ap.add_argument("--dtmf", metavar="ARGS",
                    help="make the @PCAP@ file with make_dtmf_pcap.py ARGS (written next to OUT)")
    ap.add_argument("--hold-ms", type=int, help="@HOLD_MS@ (default 5000)")
    ap.add_argument("--ring-ms", type=int, help="@RING_MS@ (default 300)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="any other @NAME@ token")
    a = ap.parse_args(argv)

    template = a.template
    if not os.path.exists(template) and os.path.exists(os.path.join(HERE, template)):
        template = os.path.join(HERE, template)
    with open(template, encoding="iso-8859-1") as f:
        text = f.read()
    needed = tokens(text)

    values = dict(DEFAULTS)
    if a.hold_ms is not None:
        values["HOLD_MS"] = str(a.hold_ms)
    if a.ring_ms is not None:
        values["RING_MS"] = str(a.ring_ms)
    for item in a.set:
        name, sep, value = item.partition("=")
        if not sep or not TOKEN.fullmatch(f"@{name}@"):
            ap.error(f"--set {item!r}: want NAME=VALUE with NAME in [A-Z0-9_]")
        if name not in needed:
            ap.error(f"--set {name}: {template} has no @{name}@")
        values[name] = value
    for name in ("HOLD_MS", "RING_MS"):
        if not values[name].isdigit():
            ap.error(f"@{name}@ must be a whole number of milliseconds")

    if a.pcap and a.dtmf:
        ap.error("give --pcap or --dtmf, not both")
    pcap = a.pcap
    if a.dtmf is not None:
        pcap = os.path.splitext(a.out)[0] + ".pcap"
        subprocess.run([sys.executable, os.path.join(HERE, "make_dtmf_pcap.py"), "-o", pcap]
                       + shlex.split(a.dtmf), check=True)
    if pcap is not None:
        pcap = os.path.abspath(pcap)
        if not os.path.isfile(pcap):
            raise SystemExit(f"render.py: pcap {pcap} does not exist")
        values["PCAP"] = pcap
    elif "PCAP" in needed:
        raise SystemExit("render.py: the template plays a pcap (@PCAP@): give --pcap or --dtmf")

    out_text = render(text, values)
    try:
        xml.dom.minidom.parseString(out_text.encode("iso-8859-1"))
    except Exception as e:  # noqa: BLE001 - report any parser error the same way
        raise SystemExit(f"render.py: rendered scenario is not well-formed XML: {e}")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="iso-8859-1") as f:
        f.write(out_text)
    os.replace(tmp, a.out)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
