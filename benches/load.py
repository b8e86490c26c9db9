#!/usr/bin/env python3
"""Server CPU time per request under load, each wiring against plain axum.

Run through benches/load.sh (it installs wrk and h2load and builds the
server). Each wiring of the cost bench's server (benches/cost/serve.rs, a
current-thread runtime: one core's worth of work) serves on loopback while a
load generator drives it; the figure is the server process's CPU time (the
sum of /proc/PID/task/*/schedstat, user and system) over the requests the
generator completed. Rounds alternate the wirings' order; each round's ratio
to plain axum is taken in that round, and the table gives the median over
the rounds and the spread (min - max).

Workloads:
  keep-alive   wrk, 32 keep-alive connections, GET /ok
  close        wrk, 8 connections, GET /ok with Connection: close (one
               request per connection: the close, and with the crate the
               linger, every time)
  http2        h2load, 8 connections x 8 streams, GET /ok (h2c)
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

WORKLOADS = ("keep-alive", "close", "http2")


def server_binary():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "cost", "--no-run", "--message-format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and \
                msg["target"]["name"] == "cost":
            return msg["executable"]
    sys.exit("could not find the cost bench's executable")


class Server:
    def __init__(self, binary, wiring):
        self.wiring = wiring
        self.proc = subprocess.Popen(
            [binary, "serve", wiring], stdout=subprocess.PIPE, text=True
        )
        self.port = int(self.proc.stdout.readline())

    def cpu_ns(self):
        total = 0
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
        return total

    def stop(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/exit", timeout=5).read()
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def drive(workload, port, seconds):
    """Runs the load; returns the number of requests completed."""
    url = f"http://127.0.0.1:{port}/ok"
    if workload == "http2":
        out = subprocess.run(
            ["h2load", "-c", "8", "-m", "8", "-D", str(seconds), url],
            capture_output=True, text=True, timeout=seconds + 60,
        ).stdout
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        if not m:
            sys.exit(f"h2load said:\n{out}")
        return int(m.group(2))
    args = ["wrk", "-t", "1", "-d", f"{seconds}s"]
    if workload == "close":
        args += ["-c", "8", "-H", "Connection: close"]
    else:
        args += ["-c", "32"]
    out = subprocess.run(args + [url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        sys.exit(f"wrk said:\n{out}")
    return int(m.group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--wirings", default="readme,inside-the-app")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    a = p.parse_args()
    wirings = ["plain"] + [w for w in a.wirings.split(",") if w != "plain"]
    workloads = a.workloads.split(",")
    binary = server_binary()
    servers = {w: Server(binary, w) for w in wirings}
    # us per request, and ratio to plain, per (wiring, workload), per round.
    us = {(w, k): [] for w in wirings for k in workloads}
    try:
        for server in servers.values():  # warm-up
            drive("keep-alive", server.port, 1)
        for r in range(a.rounds):
            order = wirings if r % 2 == 0 else list(reversed(wirings))
            for k in workloads:
                for w in order:
                    s = servers[w]
                    before = s.cpu_ns()
                    n = drive(k, s.port, a.seconds)
                    time.sleep(0.2)  # the last closes and lingers
                    us[(w, k)].append((s.cpu_ns() - before) / 1e3 / max(n, 1))
            print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()

    print(f"server CPU per request (us; /proc schedstat), {a.rounds} alternating rounds "
          f"of {a.seconds} s; median (min - max); ratio to plain axum in each round\n")
    print("| wiring | " + " | ".join(workloads) + " |")
    print("|---|" + "---|" * len(workloads))
    for w in wirings:
        cells = []
        for k in workloads:
            v = us[(w, k)]
            cell = f"{statistics.median(v):.2f} ({min(v):.2f} - {max(v):.2f})"
            if w != "plain":
                ratios = [x / y for x, y in zip(v, us[("plain", k)])]
                cell += (f", x{statistics.median(ratios):.3f} "
                         f"({min(ratios):.3f} - {max(ratios):.3f})")
            cells.append(cell)
        print(f"| {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
