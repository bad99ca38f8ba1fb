#!/usr/bin/env python3
"""Build a classic pcap holding ONE RTP stream: G.711 audio/silence plus RFC 4733 DTMF.

The file is meant for SIPp's <exec play_pcap_audio="FILE"/>. SIPp replays the RTP
bytes as recorded (SSRC, sequence numbers, timestamps, payload types) with the
capture's packet timing; it rewrites the IP addresses and UDP ports (source = its
-mp media port, destination = the m=audio port of the peer's SDP), so the
addresses written here are placeholders. Frames are Ethernet II / IPv4 / UDP
(link type DLT_EN10MB = 1), which is what SIPp's pcap loader accepts.

Stream layout (one SSRC, sequence numbers +1 per packet, RTP clock 8 kHz):
  * audio packets every 20 ms (160 bytes G.711, PT 0 PCMU or PT 8 PCMA); silence is
    0xFF (mu-law) / 0xD5 (A-law); --lead-audio puts real G.711 audio first;
  * per digit an RFC 4733 telephone-event (PT --pt, default 101): one packet per 20 ms,
    all with the RTP timestamp of the event start, marker bit on the first one,
    duration 160, 320, 480 ... (grows by 160 each packet), volume 10; the final
    packet has the E bit and is sent --end-repeats (3) times, each with a new
    sequence number, 20 ms apart; no audio is sent while an event is in progress;
  * audio (silence) resumes after the event so the stream stays continuous.

Digits: 0-9 * # A-D (event codes 0-15).

Examples
  make_dtmf_pcap.py 1 -o /tmp/d1.pcap                        # digit 1, 100 ms
  make_dtmf_pcap.py 12# -o /tmp/d.pcap --lead-ms 1000 --gap-ms 300 --tail-ms 2000
  make_dtmf_pcap.py --script "1500:2,5000:2" --tail-ms 1000 -o /tmp/s.pcap
      (digit 2 at 1.5 s and again at 5.0 s after the first packet, silence between)
  make_dtmf_pcap.py 3 --codec PCMA --lead-audio prompt.alaw -o /tmp/p.pcap
  make_dtmf_pcap.py --script "1500:2,9000:#" --audio-at 5000:hello.wav -o /tmp/a.pcap
      (digit 2 at 1.5 s, the caller says hello.wav at 5 s, # at 9 s)
  make_dtmf_pcap.py --info /tmp/s.pcap        # parse a pcap, print a JSON summary
  make_dtmf_pcap.py --selftest                # build + re-parse in memory, exit 1 on error

Times in --script are milliseconds from the first packet of the stream (rounded
down to the 20 ms packet grid); entries must not overlap (a digit occupies
duration + (end-repeats - 1) * 20 ms).
"""
import argparse
import io
import json
import os
import random
import struct
import sys
import wave

EVENT_CODES = {**{str(i): i for i in range(10)}, "*": 10, "#": 11,
               "A": 12, "B": 13, "C": 14, "D": 15}
CODE_DIGITS = {v: k for k, v in EVENT_CODES.items()}
PTIME_MS = 20
SAMPLES_PER_PACKET = 160  # 20 ms at 8 kHz
CODECS = {"PCMU": (0, 0xFF), "PCMA": (8, 0xD5), "none": (None, None)}

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
PCAP_EPOCH = 1_700_000_000  # arbitrary capture start time


# ---------------------------------------------------------------- G.711 encoders
def linear_to_ulaw(sample):
    """16-bit signed linear PCM -> mu-law byte (ITU-T G.711)."""
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def linear_to_alaw(sample):
    """16-bit signed linear PCM -> A-law byte (ITU-T G.711)."""
    sign = 0x80 if sample >= 0 else 0
    if sample < 0:
        sample = -sample - 1 if sample > -32768 else 32767
    sample >>= 3  # 13-bit magnitude
    if sample < 32:
        code = sample >> 1
    else:
        seg = 1
        v = sample >> 5
        while v > 1 and seg < 7:
            v >>= 1
            seg += 1
        code = (seg << 4) | ((sample >> seg) & 0x0F)
    return (code | sign) ^ 0x55


def load_audio(path, codec):
    """Return G.711 bytes for codec ('PCMU'/'PCMA') from raw .ul/.ulaw/.al/.alaw or .wav."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".ul", ".ulaw", ".u", ".pcmu"):
        if codec != "PCMU":
            raise SystemExit(f"{path}: mu-law file but --codec {codec}")
        return open(path, "rb").read()
    if ext in (".al", ".alaw", ".a", ".pcma"):
        if codec != "PCMA":
            raise SystemExit(f"{path}: A-law file but --codec {codec}")
        return open(path, "rb").read()
    if ext == ".wav":
        with wave.open(path, "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
                raise SystemExit(f"{path}: need 8 kHz mono 16-bit WAV "
                                 "(sox in.wav -r 8000 -c 1 -b 16 out.wav)")
            pcm = w.readframes(w.getnframes())
        enc = linear_to_ulaw if codec == "PCMU" else linear_to_alaw
        samples = struct.unpack(f"<{len(pcm) // 2}h", pcm[: len(pcm) // 2 * 2])
        return bytes(enc(s) for s in samples)
    raise SystemExit(f"{path}: unknown audio file type (want .ulaw/.alaw/.wav)")


# ---------------------------------------------------------------- stream builder
def parse_script(text):
    """'1500:2,5000:2' -> [(1500, '2'), (5000, '2')] sorted by time."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(","))):
        try:
            at, digit = item.split(":")
            at_ms = int(at)
        except ValueError:
            raise SystemExit(f"bad --script entry {item!r} (want MS:DIGIT)")
        check_digits(digit)
        if len(digit) != 1:
            raise SystemExit(f"bad --script entry {item!r}: one digit per entry")
        if at_ms < 0:
            raise SystemExit(f"bad --script entry {item!r}: negative time")
        out.append((at_ms, digit.upper()))
    if not out:
        raise SystemExit("empty --script")
    return sorted(out)


def check_digits(digits):
    for d in digits:
        if d.upper() not in EVENT_CODES:
            raise SystemExit(f"bad digit {d!r} (allowed: 0-9 * # A-D)")


class Stream:
    """Accumulates (time_ms, rtp_bytes) for one RTP stream."""

    def __init__(self, codec="PCMU", pt=101, volume=10, end_repeats=3,
                 ssrc=None, seq0=None, ts0=None, rng=None):
        rng = rng or random.Random()
        self.audio_pt, self.silence_byte = CODECS[codec]
        self.pt = pt
        self.volume = volume
        self.end_repeats = max(1, end_repeats)
        self.ssrc = rng.getrandbits(32) if ssrc is None else ssrc
        self.seq = rng.getrandbits(15) if seq0 is None else seq0
        self.ts = rng.getrandbits(31) if ts0 is None else ts0
        self.t_ms = 0
        self.first_audio = True
        self.packets = []  # (time_ms, rtp bytes)

    def _rtp(self, pt, marker, ts, payload):
        hdr = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | (pt & 0x7F),
                          self.seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc)
        self.packets.append((self.t_ms, hdr + payload))
        self.seq = (self.seq + 1) & 0xFFFF

    def _tick(self):
        self.t_ms += PTIME_MS
        self.ts = (self.ts + SAMPLES_PER_PACKET) & 0xFFFFFFFF

    def audio(self, payload):
        """One 20 ms audio packet (or just time passing when codec is 'none')."""
        if self.audio_pt is not None:
            payload = payload + bytes([self.silence_byte]) * (SAMPLES_PER_PACKET - len(payload))
            self._rtp(self.audio_pt, self.first_audio, self.ts, payload)
            self.first_audio = False
        self._tick()

    def audio_bytes(self, data):
        for off in range(0, len(data), SAMPLES_PER_PACKET):
            self.audio(data[off:off + SAMPLES_PER_PACKET])

    def silence_until(self, t_ms):
        while self.t_ms + PTIME_MS <= t_ms:
            self.audio(b"")

    def silence_for(self, ms):
        self.silence_until(self.t_ms + ms)

    def event(self, digit, duration_ms):
        code = EVENT_CODES[digit.upper()]
        ev_ts = self.ts
        steps = max(1, duration_ms // PTIME_MS)
        for k in range(1, steps + 1):
            last = k == steps
            dur = k * SAMPLES_PER_PACKET
            for _ in range(self.end_repeats if last else 1):
                flags = (0x80 if last else 0) | (self.volume & 0x3F)
                self._rtp(self.pt, k == 1, ev_ts, struct.pack("!BBH", code, flags, dur))
                self._tick()

    def span_ms(self, duration_ms):
        return (max(1, duration_ms // PTIME_MS) + self.end_repeats - 1) * PTIME_MS


def build(digits="", script=None, codec="PCMU", pt=101, duration_ms=100, gap_ms=100,
          lead_ms=0, tail_ms=0, lead_audio=b"", volume=10, end_repeats=3,
          ssrc=None, seq0=None, ts0=None, seed=None, audio_at=()):
    """Return (packets, meta); packets = [(time_ms, rtp_bytes)] in send order.

    audio_at: [(ms, g711_bytes)] audio placed on the --script timeline (script only)."""
    if duration_ms < PTIME_MS:
        raise SystemExit("--duration-ms must be >= 20")
    st = Stream(codec, pt, volume, end_repeats, ssrc, seq0, ts0,
                random.Random(seed) if seed is not None else None)
    starts = []
    st.audio_bytes(lead_audio)
    if audio_at and not script:
        raise SystemExit("--audio-at needs --script")
    if script:
        timeline = sorted([(at, 0, d) for at, d in script] + [(at, 1, a) for at, a in audio_at],
                          key=lambda e: (e[0], e[1]))
        for at_ms, is_audio, d in timeline:
            at_ms -= at_ms % PTIME_MS
            what = "audio" if is_audio else f"digit {d}"
            if at_ms < st.t_ms:
                raise SystemExit(f"--script: {what} at {at_ms} ms overlaps the previous "
                                 f"entry or the lead audio (stream already at {st.t_ms} ms)")
            st.silence_until(at_ms)
            if is_audio:
                st.audio_bytes(d)
                continue
            starts.append((st.t_ms, d))
            st.event(d, duration_ms)
    else:
        st.silence_for(lead_ms)
        for i, d in enumerate(digits):
            if i:
                st.silence_for(gap_ms)
            starts.append((st.t_ms, d.upper()))
            st.event(d, duration_ms)
    st.silence_for(tail_ms)
    if not st.packets:
        raise SystemExit("nothing to write (no digits, no audio)")
    meta = {"ssrc": st.ssrc, "digit_starts_ms": starts, "end_ms": st.t_ms}
    return st.packets, meta


# ---------------------------------------------------------------- pcap writer/reader
def ip_checksum(hdr):
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(payload, ip_id, src=("127.0.0.1", 6000), dst=("127.0.0.1", 10000)):
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xB8, 20 + len(udp), ip_id & 0xFFFF,
                               0x4000, 64, 17, 0, bytes(map(int, src[0].split("."))),
                               bytes(map(int, dst[0].split(".")))))
    ip[10:12] = struct.pack("!H", ip_checksum(bytes(ip)))
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    return eth + bytes(ip) + udp


def write_pcap(fh, packets, src=("127.0.0.1", 6000), dst=("127.0.0.1", 10000)):
    fh.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
    for n, (t_ms, rtp) in enumerate(packets):
        fr = frame(rtp, n, src, dst)
        sec, ms = divmod(t_ms, 1000)
        fh.write(struct.pack("<IIII", PCAP_EPOCH + sec, ms * 1000, len(fr), len(fr)))
        fh.write(fr)


def read_pcap(data):
    """Parse a classic pcap (Ethernet or Linux cooked or raw IPv4) -> [(t_s, udp_dport, rtp)]."""
    if len(data) < 24:
        raise ValueError("short pcap")
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif struct.unpack(">I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
        e = ">"
    else:
        raise ValueError("not a classic pcap (pcapng? capture with dumpcap -P)")
    nano = struct.unpack(e + "I", data[:4])[0] == 0xA1B23C4D
    linktype = struct.unpack(e + "I", data[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(e + "IIII", data[off:off + 16])
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        t = sec + frac / (1e9 if nano else 1e6)
        if linktype == 1:
            if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:  # Linux cooked (SLL)
            if len(pkt) < 16 or pkt[14:16] != b"\x08\x00":
                continue
            ip = pkt[16:]
        elif linktype in (101, 228):  # raw IPv4
            ip = pkt
        elif linktype == 0:  # BSD loopback
            ip = pkt[4:]
        else:
            raise ValueError(f"unsupported link type {linktype}")
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        if ip_checksum(ip[:ihl]) != 0:
            raise ValueError("bad IPv4 header checksum")
        udp = ip[ihl:]
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        out.append((t, dport, udp[8:ulen]))
    return out


def analyse(data, pt=101):
    """Summarise the RTP in a pcap: streams, digits (RFC 4733), errors."""
    frames = read_pcap(data)
    errors, streams, events = [], {}, []
    t0 = frames[0][0] if frames else 0.0
    prev = {}
    cur = None  # (ssrc, ts) of the event in progress
    for t, _dport, rtp in frames:
        if len(rtp) < 12 or rtp[0] >> 6 != 2:
            continue
        m_pt = rtp[1]
        marker, ptype = bool(m_pt & 0x80), m_pt & 0x7F
        seq, ts, ssrc = struct.unpack("!HII", rtp[2:12])
        s = streams.setdefault(ssrc, {"packets": 0, "pts": {}, "seq_gaps": 0, "ts_backwards": 0,
                                      "first_s": round(t - t0, 3)})
        s["packets"] += 1
        s["pts"][ptype] = s["pts"].get(ptype, 0) + 1
        s["last_s"] = round(t - t0, 3)
        if ssrc in prev:
            pseq, pts_ = prev[ssrc]
            if (pseq + 1) & 0xFFFF != seq:
                s["seq_gaps"] += 1
            if ((ts - pts_) & 0xFFFFFFFF) >= 0x80000000:
                s["ts_backwards"] += 1
        prev[ssrc] = (seq, ts)
        if ptype != pt:
            continue
        if len(rtp) < 16:
            errors.append(f"short telephone-event packet seq {seq}")
            continue
        code, flags, dur = struct.unpack("!BBH", rtp[12:16])
        end = bool(flags & 0x80)
        if cur is None or cur["key"] != (ssrc, ts):
            cur = {"key": (ssrc, ts), "digit": CODE_DIGITS.get(code, f"?{code}"),
                   "code": code, "at_s": round(t - t0, 3), "marker": marker, "packets": 0,
                   "end_packets": 0, "duration": 0, "volume": flags & 0x3F, "durations": []}
            events.append(cur)
        cur["packets"] += 1
        cur["end_packets"] += end
        cur["durations"].append(dur)
        cur["duration"] = max(cur["duration"], dur)
        if code != cur["code"]:
            errors.append(f"event code changed within one event at seq {seq}")
    digits = "".join(e["digit"] for e in events if e["end_packets"])
    for e in events:
        e.pop("key")
    summary = {
        "packets": len(frames),
        "duration_s": round(frames[-1][0] - t0, 3) if frames else 0.0,
        "streams": [{"ssrc": f"0x{k:08x}", **v} for k, v in streams.items()],
        "digits": digits,
        "events": events,
        "errors": errors,
    }
    return summary


# ---------------------------------------------------------------- self-test
def selftest():
    fails = []

    def check(cond, what):
        if not cond:
            fails.append(what)

    def roundtrip(packets):
        buf = io.BytesIO()
        write_pcap(buf, packets)
        return analyse(buf.getvalue())

    # 1. plain digit string, every digit, PCMU silence lead/gap/tail, seq wraps past 65535
    digits = "0123456789*#ABCD"
    pk, meta = build(digits, codec="PCMU", duration_ms=100, gap_ms=60, lead_ms=200,
                     tail_ms=100, seq0=65530, seed=1)
    s = roundtrip(pk)
    check(s["digits"] == digits, f"digits {s['digits']!r} != {digits!r}")
    check(len(s["streams"]) == 1, f"{len(s['streams'])} SSRCs, want 1")
    st = s["streams"][0]
    check(st["seq_gaps"] == 0, f"seq gaps {st['seq_gaps']}")
    check(st["ts_backwards"] == 0, "timestamps went backwards")
    check(set(st["pts"]) == {0, 101}, f"payload types {st['pts']}")
    for e in s["events"]:
        check(e["end_packets"] == 3, f"digit {e['digit']}: {e['end_packets']} E-bit packets, want 3")
        check(e["packets"] == 5 + 2, f"digit {e['digit']}: {e['packets']} packets, want 7")
        check(e["marker"], f"digit {e['digit']}: no marker bit on the first packet")
        check(e["durations"] == [160, 320, 480, 640, 800, 800, 800],
              f"digit {e['digit']}: durations {e['durations']}")
        check(e["volume"] == 10, f"digit {e['digit']}: volume {e['volume']}")
    silence = [r for _, r in pk if r[1] & 0x7F == 0]
    check(all(r[12:] == b"\xff" * 160 for r in silence), "PCMU silence payload is not 0xFF")
    audio = [r for _, r in pk if r[1] & 0x7F == 0]
    check(audio[0][1] & 0x80 and not any(r[1] & 0x80 for r in audio[1:]),
          "marker bit must be set on the first audio packet only")
    times = [t for t, _ in pk]
    check(times == sorted(times) and all(b - a == 20 for a, b in zip(times, times[1:])),
          "packets are not exactly 20 ms apart")

    # 2. --script: timed digits with PCMA silence between, tail
    script = parse_script("1500:2,5000:2")
    pk, meta = build(script=script, codec="PCMA", tail_ms=1000, seed=2)
    s = roundtrip(pk)
    check(s["digits"] == "22", f"script digits {s['digits']!r}")
    check([e["at_s"] for e in s["events"]] == [1.5, 5.0],
          f"script times {[e['at_s'] for e in s['events']]}")
    st = s["streams"][0]
    check(len(s["streams"]) == 1 and st["seq_gaps"] == 0, "script stream not continuous")
    check(set(st["pts"]) == {8, 101}, f"script payload types {st['pts']}")
    check(all(r[12:] == b"\xd5" * 160 for _, r in pk if r[1] & 0x7F == 8),
          "PCMA silence payload is not 0xD5")
    check(all(e["end_packets"] == 3 for e in s["events"]), "script E-bit counts")
    check(abs(s["duration_s"] - (5.0 + 0.14 + 1.0 - 0.02)) < 1e-6,
          f"script stream length {s['duration_s']}")
    # RTP timestamps follow wall-clock time (8 samples per ms)
    ts0 = struct.unpack("!I", pk[0][1][4:8])[0]
    for t_ms, r in pk:
        ts = struct.unpack("!I", r[4:8])[0]
        if r[1] & 0x7F == 8:
            check((ts - ts0) & 0xFFFFFFFF == t_ms * 8, f"audio ts off at {t_ms} ms")
    ev_ts = {struct.unpack("!I", r[4:8])[0] for _, r in pk if r[1] & 0x7F == 101}
    check(len(ev_ts) == 2, f"{len(ev_ts)} distinct event timestamps, want 2 (one per event)")

    # 3. overlapping script must be rejected
    try:
        build(script=parse_script("100:1,150:2"))
        fails.append("overlapping --script accepted")
    except SystemExit:
        pass

    # 4. G.711 encoders: known values
    check(linear_to_ulaw(0) == 0xFF and linear_to_alaw(0) == 0xD5, "G.711 encoding of zero")
    check(linear_to_ulaw(32767) == 0x80 and linear_to_ulaw(-32768) == 0x00, "mu-law clipping")
    check(linear_to_alaw(32767) == 0xAA and linear_to_alaw(-32768) == 0x2A, "A-law clipping")

    # 5. lead audio then digit, codec none (events only)
    pk, _ = build("5", codec="PCMU", lead_audio=b"\x10" * 400, seed=3)
    s = roundtrip(pk)
    check(s["digits"] == "5" and s["events"][0]["at_s"] == 0.06, f"lead audio: {s['events']}")
    pk, _ = build("#", codec="none", lead_ms=100, tail_ms=100, seed=4)
    s = roundtrip(pk)
    check(s["digits"] == "#" and len(pk) == 7 and s["events"][0]["at_s"] == 0.0,
          "codec none: wrong packets")

    if fails:
        for f in fails:
            print("SELFTEST FAIL:", f, file=sys.stderr)
        return 1
    print("SELFTEST PASS", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- CLI
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("digits", nargs="?", default="", help="digits to send one after another, e.g. 12#")
    ap.add_argument("-o", "--output", help="pcap file to write")
    ap.add_argument("--script", help="timed digits MS:DIGIT[,MS:DIGIT...], ms from stream start")
    ap.add_argument("--pt", type=int, default=101, help="telephone-event payload type (101)")
    ap.add_argument("--codec", choices=sorted(CODECS), default="PCMU",
                    help="audio/silence codec PCMU (PT 0) or PCMA (PT 8); none = events only")
    ap.add_argument("--duration-ms", type=int, default=100, help="digit duration (100, step 20)")
    ap.add_argument("--gap-ms", type=int, default=100, help="silence between digits (100)")
    ap.add_argument("--lead-ms", type=int, default=0, help="silence before the first digit")
    ap.add_argument("--lead-audio", help="G.711 audio (.ulaw/.alaw raw, or 8 kHz mono .wav) first")
    ap.add_argument("--tail-ms", type=int, default=0, help="silence after the last digit")
    ap.add_argument("--audio-at", action="append", default=[], metavar="MS:FILE",
                    help="with --script: G.711 audio (as --lead-audio) at MS (repeatable)")
    ap.add_argument("--volume", type=int, default=10, help="event volume (10 = -10 dBm0)")
    ap.add_argument("--end-repeats", type=int, default=3, help="E-bit packets per digit (3)")
    ap.add_argument("--ssrc", type=lambda v: int(v, 0), help="fixed SSRC (default random)")
    ap.add_argument("--seed", type=int, help="seed for random SSRC/seq/timestamp")
    ap.add_argument("--src", default="127.0.0.1:6000", help="placeholder source ip:port")
    ap.add_argument("--dst", default="127.0.0.1:10000", help="placeholder destination ip:port")
    ap.add_argument("--info", metavar="PCAP", help="print a JSON summary of PCAP and exit")
    ap.add_argument("--selftest", action="store_true", help="run the built-in self-test")
    a = ap.parse_args(argv)

    if a.selftest:
        return selftest()
    if a.info:
        with open(a.info, "rb") as f:
            print(json.dumps(analyse(f.read(), a.pt), indent=1))
        return 0
    if not a.output:
        ap.error("-o/--output is required")
    if a.script and a.digits:
        ap.error("give either DIGITS or --script, not both")
    check_digits(a.digits)
    script = parse_script(a.script) if a.script else None
    lead = b""
    if a.lead_audio:
        if a.codec == "none":
            ap.error("--lead-audio needs --codec PCMU or PCMA")
        lead = load_audio(a.lead_audio, a.codec)
    audio_at = []
    for item in a.audio_at:
        at, sep, path = item.partition(":")
        if not sep or not at.isdigit():
            ap.error(f"bad --audio-at {item!r} (want MS:FILE)")
        if a.codec == "none":
            ap.error("--audio-at needs --codec PCMU or PCMA")
        audio_at.append((int(at), load_audio(path, a.codec)))
    packets, meta = build(a.digits, script, a.codec, a.pt, a.duration_ms, a.gap_ms, a.lead_ms,
                          a.tail_ms, lead, a.volume, a.end_repeats, a.ssrc, seed=a.seed,
                          audio_at=audio_at)
    sip, sport = a.src.rsplit(":", 1)
    dip, dport = a.dst.rsplit(":", 1)
    tmp = a.output + ".tmp"
    with open(tmp, "wb") as f:
        write_pcap(f, packets, (sip, int(sport)), (dip, int(dport)))
    os.replace(tmp, a.output)
    starts = " ".join(f"{d}@{t}ms" for t, d in meta["digit_starts_ms"])
    print(f"wrote {a.output}: {len(packets)} packets, {meta['end_ms']} ms, "
          f"ssrc 0x{meta['ssrc']:08x}, digits {starts or '-'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
