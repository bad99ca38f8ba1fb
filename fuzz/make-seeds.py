#!/usr/bin/env python3
"""Regenerate the committed seed corpora under fuzz/seeds/<target>/.

Sources: the RFC 4475 torture messages in ../shared/conformance/rfc4475/*.dat (when present
beside the repository), the shipped dialplans, and hand-written SDP bodies, digest headers and
RTP packets. Run from the repository root: python3 fuzz/make-seeds.py
"""
import glob
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- sip_message: RFC 4475 torture tests plus a few ordinary messages -----------------------
for path in sorted(glob.glob(os.path.join(ROOT, "..", "shared", "conformance", "rfc4475", "*.dat"))):
    with open(path, "rb") as f:
        put("sip_message", "rfc4475-" + os.path.basename(path), f.read())

INVITE = (
    "INVITE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@example.com>\r\n"
    "From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
    "Contact: <sip:alice@192.0.2.1>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 142\r\n\r\n"
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.1\r\ns=-\r\n"
    "c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
put("sip_message", "invite.sip", INVITE)
put("sip_message", "ok.sip",
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    "To: Bob <sip:bob@example.com>;tag=a6c85cf\r\n"
    "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\n"
    "Contact: <sip:bob@192.0.2.4>\r\nContent-Length: 0\r\n\r\n")
put("sip_message", "register-compact.sip",
    "REGISTER sip:example.com SIP/2.0\r\n"
    "v: SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKreg1\r\n"
    "f: <sip:carol@example.com>;tag=x\r\nt: <sip:carol@example.com>\r\n"
    "i: reg-1\r\nCSeq: 1 REGISTER\r\nm: <sip:carol@192.0.2.9;transport=tcp>;expires=3600\r\n"
    "Authorization: Digest username=\"carol\", realm=\"example.com\", nonce=\"abc\", "
    "uri=\"sip:example.com\", response=\"0123456789abcdef0123456789abcdef\"\r\n"
    "l: 0\r\n\r\n")
put("sip_message", "keepalive-then-options.sip",
    "\r\n\r\nOPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
    "From: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n"
    "Max-Forwards: 0\r\n\r\n")
put("sip_message", "bad-content-length.sip",
    "INVITE sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK9\r\n"
    "Call-ID: q\r\nContent-Length: -5\r\n\r\n")

# --- sdp -------------------------------------------------------------------------------------
put("sdp", "offer-pcma-te.sdp",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 17000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n")
put("sdp", "minimal.sdp", "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n")
put("sdp", "hold-ipv6.sdp",
    "v=0\r\no=- 2 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\na=sendonly\r\n"
    "m=audio 5004 RTP/AVP 0 8 96\r\na=rtpmap:96 telephone-event/8000\r\na=inactive\r\n")
put("sdp", "media-level-c.sdp",
    "v=0\r\no=- 3 3 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "m=audio 4000 RTP/SAVP 0\r\nc=IN IP4 192.0.2.7\r\na=recvonly\r\n"
    "m=audio 4004 RTP/AVP 18 0\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:18 G729/8000\r\n")
put("sdp", "port-zero.sdp", "v=0\nc=IN IP4 1.2.3.4\nm=audio 0 RTP/AVP 0\n")

# --- digest_auth -----------------------------------------------------------------------------
put("digest_auth", "challenge-rfc2617.txt",
    "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", "
    "nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"")
put("digest_auth", "challenge-sha256-stale.txt",
    "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess, stale=TRUE, domain=\"sip:a sip:b\"")
put("digest_auth", "credentials-qop.txt",
    "Digest username=\"alice\", realm=\"atlanta.com\", nonce=\"84a4cc6f3082121f32b42a2187831a9e\", "
    "uri=\"sip:bob@biloxi.com\", response=\"7587245234b3434cc3412213e5f113a5\", algorithm=MD5, "
    "cnonce=\"0a4f113b\", qop=auth, nc=00000001, opaque=\"5ccc\"")
put("digest_auth", "credentials-escaped.txt",
    "Digest username=\"a\\\"b\\\\c\", realm=\"r\", nonce=\"n\", uri=\"sip:h\", response=\"00\"")
put("digest_auth", "not-digest.txt", "NoOneKnowsThisScheme opaque-data=here")

# --- rtp: header + payload; telephone-event payloads ------------------------------------------
def rtp(pt, seq, ts, ssrc, payload=b"", marker=False, csrc=(), ext=None, pad=0):
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | len(csrc)
    b1 = (0x80 if marker else 0) | pt
    h = struct.pack("!BBHII", b0, b1, seq, ts, ssrc)
    for c in csrc:
        h += struct.pack("!I", c)
    if ext is not None:
        h += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    tail = (b"\x00" * (pad - 1) + bytes([pad])) if pad else b""
    return h + payload + tail

put("rtp", "pcmu.rtp", rtp(0, 1, 160, 0x1234, bytes(range(160))))
put("rtp", "event-start.rtp", rtp(101, 7, 8000, 1, b"\x05\x0a\x00\xa0", marker=True))
put("rtp", "event-end.rtp", rtp(101, 9, 8000, 1, b"\x05\x8a\x03\x20"))
put("rtp", "csrc-ext-pad.rtp",
    rtp(8, 2, 320, 2, b"\xd5" * 20, csrc=(1, 2), ext=b"\x10\xff\x00\x00", pad=4))
put("rtp", "rtcp-sr.rtp", struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + b"\x00" * 20)
put("rtp", "event-payload.bin", b"\x0b\x8a\xff\xff")

# --- rtcp: compound SR + SDES + BYE, RR with a block, truncated -----------------------------
block = struct.pack("!IB3sIIII", 0xBEEF, 25, b"\x00\x00\x0c", 0x10005, 77, 0x12345678, 65536)
sr = struct.pack("!BBHIIIIII", 0x81, 200, 12, 0x1234, 0xE0000000, 0x80000000, 160000, 1000, 160000) + block
sdes = struct.pack("!BBHIBB", 0x81, 202, 5, 0x1234, 1, 11) + b"sb-00001234" + b"\x00" * 3
bye = struct.pack("!BBHI", 0x81, 203, 1, 0x1234)
put("rtcp", "sr-sdes-bye.rtcp", sr + sdes + bye)
put("rtcp", "rr-block.rtcp", struct.pack("!BBHI", 0x81, 201, 7, 0x99) + block)
put("rtcp", "truncated.rtcp", (sr + sdes)[:40])

# --- dialplan: the shipped dialplans plus a minimal one -------------------------------------
for path in sorted(glob.glob(os.path.join(ROOT, "dialplans", "*.toml"))):
    with open(path, "rb") as f:
        put("dialplan", os.path.basename(path), f.read())
put("dialplan", "minimal.toml",
    "[dialplan]\nname = \"m\"\nstart = \"a\"\n\n[steps.a]\naction = \"play\"\n"
    "prompts = [\"hello\"]\nnext = \"b\"\n\n[steps.b]\naction = \"hangup\"\n")
