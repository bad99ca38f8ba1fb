#!/usr/bin/env python3
"""Record UDP datagrams arriving on one port into a classic pcap (stdlib only).

  rtp_sink.py PORT -o OUT.pcap [--ip 127.0.0.1] [--seconds 30] [--idle-exit 0]

Stops after --seconds, on SIGTERM/SIGINT, or (with --idle-exit S > 0) S seconds after
the last datagram once at least one arrived. Each datagram is written as an
Ethernet/IPv4/UDP frame with its arrival time and real source address, so
`make_dtmf_pcap.py --info OUT.pcap` can summarise it (streams, seq gaps, digits).
Prints "listening" on stderr once the socket is bound.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ inside the repo
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_dtmf_pcap import LINKTYPE_ETHERNET, PCAP_MAGIC, frame  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--idle-exit", type=float, default=0.0)
    a = ap.parse_args()

    stop = False

    def on_signal(_signo, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((a.ip, a.port))
    sock.settimeout(0.1)
    print(f"listening on {a.ip}:{a.port}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + a.seconds
    last = None
    n = 0
    with open(a.output, "wb") as f:
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        while not stop and time.monotonic() < deadline:
            if last is not None and a.idle_exit > 0 and time.monotonic() - last > a.idle_exit:
                break
            try:
                data, src = sock.recvfrom(65535)
            except socket.timeout:
                continue
            now = time.time()
            last = time.monotonic()
            fr = frame(data, n, src, (a.ip, a.port))
            f.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(fr), len(fr)))
            f.write(fr)
            f.flush()
            n += 1
    print(f"recorded {n} datagrams to {a.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
