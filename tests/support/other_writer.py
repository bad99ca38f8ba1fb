#!/usr/bin/env python3
"""Another program writing the shared ticket database while switchboard runs
(tests/concurrent_writer.rs): the order system that owns the tickets.

It talks to SQLite through python's sqlite3 module and to PostgreSQL through one `psql`
process (no driver needed), committing every statement on its own as such a program would.

Modes
  other_writer.py DB churn --tickets 3,4,5 --seconds 20 --insert-prefix +1555950
      Until SECONDS have passed: round robin over TICKETS, update fields switchboard does not
      own (customer_name, new_eta, delay_days, updated_at); every 4th round also insert a
      new ticket (phone INSERT_PREFIX + 4 digits). Prints one JSON object at the end:
      {"last": {"ID": {"customer_name": ..., "new_eta": ..., "delay_days": ...}},
       "inserted": ["ORDER", ...], "updates": N}
  other_writer.py DB lock --ticket 7
      Lock (PostgreSQL: the ticket's row, SELECT ... FOR UPDATE; SQLite: the database,
      BEGIN IMMEDIATE), print "locked", wait for a line on stdin, then set the ticket's
      resolution to 'wait' with resolved_at = now (the decision is made now, at commit
      time), commit and print "committed".
  other_writer.py DB exec SQL
      Run one statement and print what it returns (one row per line, '|' between columns).

DB is sqlite:PATH or a postgres:// URL.
"""
import json
import subprocess
import sys
import time


class Sqlite:
    def __init__(self, path):
        import sqlite3

        self.con = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.con.execute("PRAGMA busy_timeout = 30000")

    now = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    def run(self, sql):
        return [tuple("" if v is None else str(v) for v in r) for r in self.con.execute(sql)]

    def lock(self, ticket):
        self.run("BEGIN IMMEDIATE")

    def unlock(self):
        self.run("COMMIT")


class Psql:
    """One psql session; each statement is followed by a marker so we know it is done."""

    def __init__(self, url):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.n = 0

    now = "clock_timestamp()"

    def run(self, sql):
        self.n += 1
        marker = f"--done {self.n}--"
        self.p.stdin.write(f"{sql.rstrip().rstrip(';')};\nSELECT '{marker}';\n")
        self.p.stdin.flush()
        rows = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit(f"psql ended during: {sql}")
            line = line.rstrip("\n")
            if line == marker:
                return rows
            if line:
                rows.append(tuple(line.split("|")))

    def lock(self, ticket):
        self.run("BEGIN")
        self.run(f"SELECT id FROM tickets WHERE id = {ticket} FOR UPDATE")

    def unlock(self):
        self.run("COMMIT")


def connect(db):
    if db.startswith("sqlite://"):
        return Sqlite(db[len("sqlite://"):])
    if db.startswith("sqlite:"):
        return Sqlite(db[len("sqlite:"):])
    return Psql(db)


def churn(c, tickets, seconds, prefix):
    last, inserted, n = {}, [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = tickets[n % len(tickets)]
        name = f"Owner edit {n}"
        eta = f"2027-02-{n % 28 + 1:02d}"
        days = n % 9 + 1
        c.run(
            f"UPDATE tickets SET customer_name = '{name}', new_eta = '{eta}', "
            f"delay_days = {days}, updated_at = {c.now} WHERE id = {t}"
        )
        last[str(t)] = {"customer_name": name, "new_eta": eta, "delay_days": days}
        if n % 4 == 0:
            k = len(inserted)
            order = f"88{k:04d}"
            c.run(
                "INSERT INTO tickets (order_id, customer_name, phone, status, delay_days, new_eta, updated_at) "
                f"VALUES ('{order}', 'New {k}', '{prefix}{k:04d}', 'processing', 0, '2027-03-01', {c.now})"
            )
            inserted.append(order)
        n += 1
        time.sleep(0.05)
    print(json.dumps({"last": last, "inserted": inserted, "updates": n}), flush=True)


def lock(c, ticket):
    c.lock(ticket)
    print("locked", flush=True)
    sys.stdin.readline()
    c.run(
        f"UPDATE tickets SET resolution = 'wait', resolved_at = {c.now}, updated_at = {c.now} "
        f"WHERE id = {ticket}"
    )
    c.unlock()
    print("committed", flush=True)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    c = connect(argv[1])
    mode, rest = argv[2], argv[3:]
    opts = dict(zip(rest[::2], rest[1::2]))
    if mode == "churn":
        churn(
            c,
            [int(t) for t in opts["--tickets"].split(",")],
            float(opts["--seconds"]),
            opts["--insert-prefix"],
        )
    elif mode == "lock":
        lock(c, int(opts["--ticket"]))
    elif mode == "exec":
        for r in c.run(rest[0]):
            print("|".join(r), flush=True)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
