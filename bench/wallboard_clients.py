#!/usr/bin/env python3
"""Clients for bench/wallboard.sh (docs/benchmarks.md, "Open wallboards"): standard library
only, one process, so the clients' own cost stays out of the server's /proc figures.

  agents   --port P --token ADMIN --agents N
           pauses ("lunch") agent k when k % 4 == 2 through the admin API (one keep-alive
           connection) and prints how many agents the wallboard shows in each state.
  measure  --port P --token READ --pid PID --streams "0 1 200" --window S --requests R
           for each count C in --streams: opens C `GET /api/wallboard/events` streams, waits
           until every one has its first snapshot, then reads the server's utime+stime
           (/proc/PID/stat) over S seconds while counting the `snapshot` events each stream
           receives; fails when a stream did not get what a snapshot at least every 2 s
           (HEARTBEAT) gives. Then R sequential `GET /api/wallboard` (no stream open): wall
           time of each (p50/p99) and the server's CPU per request. With --db-pids (the
           PostgreSQL backends of the server's pool, when the database runs on this host)
           their CPU is reported beside the server's: with PostgreSQL the queries run there.

Output: one `key=value` line per phase (parsed by bench/wallboard.sh); `FAIL: ...` and exit
1 when the run breaks.
"""

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import time

TCK = os.sysconf("SC_CLK_TCK")
# The server sends a snapshot at least every 2 s (src/api/wallboard.rs HEARTBEAT) and its
# builder looks every 0.5 s (TICK): a stream gets one at least every 2.5 s.
MAX_GAP_S = 2.5


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def cpu_s(pid):
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of the whole line; 3 is the first after ")".
    return (int(fields[11]) + int(fields[12])) / TCK


def db_cpu_s(pids):
    """utime + stime of the database's server processes (PostgreSQL backends on this host);
    one that ended meanwhile counts 0 (bench/wallboard.sh passes the pool's backends, which
    live as long as the server's connections)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_s(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


class Stream:
    """One open `GET /api/wallboard/events`: counts `snapshot` events."""

    def __init__(self):
        self.events = 0
        self.bytes = 0
        self.first = asyncio.Event()
        self.error = None
        self.writer = None

    async def run(self, port, token):
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, limit=1 << 24
            )
            self.writer = writer
            writer.write(
                (
                    "GET /api/wallboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            status = await reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"status {status.decode(errors='replace').strip()!r}")
            chunked = False
            while True:
                line = await reader.readline()
                if not line:
                    raise RuntimeError("closed in the headers")
                if line in (b"\r\n", b"\n"):
                    break
                k, _, v = line.decode(errors="replace").partition(":")
                if k.strip().lower() == "transfer-encoding" and "chunked" in v.lower():
                    chunked = True
            buf = b""
            while True:
                if chunked:
                    size_line = await reader.readline()
                    if not size_line:
                        raise RuntimeError("stream closed by the server")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        raise RuntimeError("stream ended by the server")
                    data = await reader.readexactly(size)
                    await reader.readline()  # the chunk's CRLF
                else:
                    data = await reader.read(1 << 16)
                    if not data:
                        raise RuntimeError("stream closed by the server")
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.rstrip(b"\r") == b"event: snapshot":
                        self.events += 1
                        self.first.set()
                    elif line.startswith(b"data:"):
                        self.bytes += len(line)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported as the stream's failure
            self.error = f"{type(e).__name__}: {e}"
            self.first.set()

    def close(self):
        if self.writer is not None:
            self.writer.close()


async def window(args, count):
    streams = [Stream() for _ in range(count)]
    tasks = [asyncio.create_task(s.run(args.port, args.token)) for s in streams]
    try:
        if streams:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(s.first.wait() for s in streams)), timeout=60
                )
            except asyncio.TimeoutError:
                waiting = sum(1 for s in streams if not s.first.is_set())
                fail(f"streams={count}: {waiting} streams without a first snapshot in 60 s")
            errors = [s.error for s in streams if s.error]
            if errors:
                fail(f"streams={count}: {len(errors)} streams failed, e.g. {errors[0]}")
        # Let the connection burst settle: the window measures streams that are open.
        await asyncio.sleep(args.settle)
        before = [s.events for s in streams]
        bytes_before = sum(s.bytes for s in streams)
        d0, c0, t0 = db_cpu_s(args.db_pids), cpu_s(args.pid), time.monotonic()
        await asyncio.sleep(args.window)
        d1, c1, t1 = db_cpu_s(args.db_pids), cpu_s(args.pid), time.monotonic()
        got = [s.events - b for s, b in zip(streams, before)]
        nbytes = sum(s.bytes for s in streams) - bytes_before
        errors = [s.error for s in streams if s.error]
    finally:
        for s in streams:
            s.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wall = t1 - t0
    line = (
        f"streams={count} window_s={wall:.1f} server_cpu_s={c1 - c0:.2f} "
        f"cpu_pct_of_core={(c1 - c0) / wall * 100:.2f}"
    )
    if args.db_pids:
        line += f" db_cpu_s={d1 - d0:.2f} db_cpu_pct_of_core={(d1 - d0) / wall * 100:.2f}"
    if streams:
        expected = max(1, int(wall / MAX_GAP_S) - 1)
        line += (
            f" events_min={min(got)} events_max={max(got)} events_total={sum(got)}"
            f" expected_min={expected} data_bytes={nbytes}"
        )
    print(line, flush=True)
    if errors:
        fail(f"streams={count}: {len(errors)} streams broke in the window, e.g. {errors[0]}")
    if streams and min(got) < expected:
        short = sum(1 for g in got if g < expected)
        fail(
            f"streams={count}: {short} streams got fewer than {expected} snapshots in "
            f"{wall:.0f} s (min {min(got)})"
        )


def latency(args):
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
    headers = {"Authorization": f"Bearer {args.token}"}
    times, size = [], 0
    d0, c0 = db_cpu_s(args.db_pids), cpu_s(args.pid)
    for _ in range(args.requests):
        t = time.perf_counter()
        conn.request("GET", "/api/wallboard", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        times.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            fail(f"GET /api/wallboard: HTTP {resp.status}: {body[:300]!r}")
        size = len(body)
    d1, c1 = db_cpu_s(args.db_pids), cpu_s(args.pid)
    snap = json.loads(body)
    # Cold requests: the server reuses its last read of the day's figures for 2 s
    # (HISTORY_EVERY), so the requests above mostly join live state with a kept read. Each of
    # these comes 2.1 s after the last, when no stream is open: it pays for a new read.
    cold, cold_cpu, cold_db = [], 0.0, 0.0
    for _ in range(args.cold):
        time.sleep(2.1)
        dc, cc = db_cpu_s(args.db_pids), cpu_s(args.pid)
        t = time.perf_counter()
        conn.request("GET", "/api/wallboard", headers=headers)
        resp = conn.getresponse()
        cbody = resp.read()
        cold.append((time.perf_counter() - t) * 1000)
        cold_cpu += cpu_s(args.pid) - cc
        cold_db += db_cpu_s(args.db_pids) - dc
        if resp.status != 200:
            fail(f"GET /api/wallboard: HTTP {resp.status}: {cbody[:300]!r}")
    conn.close()
    if cold:
        cold.sort()
        print(
            f"history reads={len(cold)} p50_ms={statistics.median(cold):.1f} "
            f"max_ms={cold[-1]:.1f} server_cpu_ms_per_read={cold_cpu * 1000 / len(cold):.1f}"
            + (f" db_cpu_ms_per_read={cold_db * 1000 / len(cold):.1f}" if args.db_pids else ""),
            flush=True,
        )
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"snapshot requests={len(times)} p50_ms={statistics.median(times):.1f} "
        f"p99_ms={p99:.1f} max_ms={times[-1]:.1f} "
        f"server_cpu_ms_per_request={(c1 - c0) * 1000 / len(times):.1f} "
        + (
            f"db_cpu_ms_per_request={(d1 - d0) * 1000 / len(times):.1f} "
            if args.db_pids
            else ""
        )
        + f"bytes={size} "
        f"queues={len(snap['queues'])} agents={len(snap['agents'])} "
        f"campaigns={len(snap['campaigns'])} "
        f"running={sum(1 for c in snap['campaigns'] if c['state'] == 'running')}",
        flush=True,
    )


def agents(args):
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    for k in range(2, args.agents, 4):
        conn.request(
            "POST", f"/api/agents/agent{k}/pause", body='{"reason": "lunch"}', headers=headers
        )
        resp = conn.getresponse()
        text = resp.read()
        if resp.status != 200:
            fail(f"POST /api/agents/agent{k}/pause: HTTP {resp.status}: {text[:300]!r}")
    conn.request("GET", "/api/wallboard", headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    if resp.status != 200:
        fail(f"GET /api/wallboard: HTTP {resp.status}: {text[:300]!r}")
    conn.close()
    states = {}
    for a in json.loads(text)["agents"]:
        states[a["state"]] = states.get(a["state"], 0) + 1
    print("agents " + " ".join(f"{k}={v}" for k, v in sorted(states.items())), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["agents", "measure"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--agents", type=int, default=500)
    p.add_argument("--streams", default="0 200")
    p.add_argument("--window", type=float, default=60)
    p.add_argument("--settle", type=float, default=3)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--cold", type=int, default=5)
    p.add_argument(
        "--db-pids",
        default="",
        help="PostgreSQL backends on this host whose CPU counts as the database's",
    )
    args = p.parse_args()
    if args.what == "agents":
        agents(args)
        return
    if args.pid is None:
        fail("--pid is required for measure")
    args.db_pids = [int(p) for p in args.db_pids.split()]
    for count in (int(c) for c in args.streams.split()):
        asyncio.run(window(args, count))
    latency(args)


if __name__ == "__main__":
    main()
