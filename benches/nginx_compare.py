"""Lingering memory and drain CPU, the crate beside nginx, in the same run.

    python3 benches/nginx_compare.py          # benches/nginx_compare.sh builds and runs it

Servers, each a process of its own on loopback:
- `reset_lab serve` with the crate, lingers detached (the default);
- the same with `--in-place` (`with_detach(false)`);
- the same with `--copy-drain`: each stream behind a newtype, so the drain
  reads into its scratch buffer instead of `recv(MSG_TRUNC)`;
- nginx 1 worker, `lingering_close always`, every response closing
  (`keepalive_timeout 0`), the same `/close/16` answer.

Memory: N clients (1,000 then 10,000) each take a close response, send 3
bytes more and never close; the server's RSS (nginx: its worker's) before and
while they all linger, over N.

Drain CPU: 16 clients each take a close response and then write 48 MiB as
fast as they can (under the crate's 64 MiB byte cap): the server's CPU time
(user + system, from /proc/PID/stat) over the GiB it discarded. The servers
take turns for 5 rounds; the table gives the median, the spread, and the
ratio to nginx in the same run (CPU time on a shared machine is noisy; the
ratio is the figure to read).
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "clients"))
from hold import hold  # noqa: E402

LAB = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/reset_lab"
TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port, limit=15):
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def flood(port, per_client, sent):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\n")
    got = b""
    while not got.endswith(b"b" * 16):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    chunk, total = b"f" * (1 << 20), 0
    try:
        while total < per_client:
            total += s.send(chunk)
    except OSError:
        pass
    sent.append(total)
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()


NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_timeout 0;
  lingering_close always;
  lingering_time 120s;
  lingering_timeout 120s;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "bbbbbbbbbbbbbbbb"; }}
  }}
}}
"""


def start_nginx(port, directory):
    os.makedirs(f"{directory}/body", exist_ok=True)
    conf = f"{directory}/nginx.conf"
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=directory, port=port))
    master = subprocess.Popen(["/usr/sbin/nginx", "-p", directory, "-c", conf])
    wait_port(port)
    workers = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True)
    return master, int(workers.stdout.split()[0])


def start_lab(port, *flags):
    p = subprocess.Popen([LAB, "serve", "--port", str(port), "--idle-timeout", "120",
                          "--max-lingering", "100000", *flags], stderr=subprocess.DEVNULL)
    wait_port(port)
    return p, p.pid


ROUNDS = 5


def drain_cpu(pid, port):
    """Server CPU seconds per GiB discarded while 16 clients flood after
    their response, and the GiB."""
    sent, threads = [], []
    cpu0 = cpu_seconds(pid)
    for _ in range(16):
        t = threading.Thread(target=flood, args=(port, 48 << 20, sent))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    time.sleep(0.5)
    gib = sum(sent) / (1 << 30)
    return (cpu_seconds(pid) - cpu0) / gib, gib


def main():
    directory = tempfile.mkdtemp()
    servers = [
        ("linger, detached (default)", 18301, start_lab(18301)),
        ("linger, in place (`with_detach(false)`)", 18302, start_lab(18302, "--in-place")),
        ("linger, copying drain (IO not `TcpStream`)", 18303, start_lab(18303, "--copy-drain")),
        ("nginx lingering_close always", 18304, start_nginx(18304, directory)),
    ]
    try:
        memory = {}
        for name, port, (_, pid) in servers:
            cells = []
            for n in (1000, 10000):
                before = rss_kib(pid)
                held = hold("127.0.0.1", port, n)
                time.sleep(0.5)
                during = rss_kib(pid)
                cells.append(f"{(during - before) * 1024 // n:,}")
                for s in held:
                    s.close()
                time.sleep(1.0)
            memory[name] = cells
        # Drain CPU: the servers take turns, round after round, so that
        # the machine's load falls on each alike; the median of the rounds.
        drains = {name: [] for name, _, _ in servers}
        for _ in range(ROUNDS):
            for name, port, (_, pid) in servers:
                drains[name].append(drain_cpu(pid, port))
        nginx = sorted(c for c, _ in drains[servers[-1][0]])[ROUNDS // 2]
        print(f"| server | B per lingering connection, 1,000 | B per lingering connection, 10,000 "
              f"| CPU s per GiB drained (median of {ROUNDS} rounds; min – max) | × nginx |")
        print("|---|---|---|---|---|")
        for name, _, _ in servers:
            cpu = sorted(c for c, _ in drains[name])
            gib = sum(g for _, g in drains[name])
            median = cpu[ROUNDS // 2]
            print(f"| {name} | " + " | ".join(memory[name])
                  + f" | {median:.3f} ({cpu[0]:.3f} – {cpu[-1]:.3f}; {gib:.1f} GiB) | {median / nginx:.2f} |",
                  flush=True)
    finally:
        for _, _, (proc, _) in servers:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
