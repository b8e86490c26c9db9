"""A burst of N connections opened at once against a server on 127.0.0.1:PORT,
each sending `GET /ok` and reading the answer: prints how long the burst took
and how much the kernel's TcpExtListenOverflows grew meanwhile.

    python3 benches/burst.py PORT [N]

Run it against `reset_lab serve --no-linger` (tokio's bind: backlog 128) and
`reset_lab serve` (LingerListener::bind: backlog 4096); see benches/burst.sh.
"""
import selectors
import socket
import sys
import time


def overflows():
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table["ListenOverflows"])
    return 0


def burst(port, n, limit=60.0):
    """Opens n non-blocking connections in one tight loop (the SYNs leave
    together), then sends each a request once it is connected and reads its
    answer to EOF. Returns (seconds, failed)."""
    sel = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sel.register(s, selectors.EVENT_WRITE, "connecting")
    pending, failed = n, 0
    while pending and time.monotonic() - started < limit:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            if key.data == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed, pending = failed + 1, pending - 1
                    sel.unregister(s)
                    s.close()
                    continue
                s.send(b"GET /ok HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
                sel.modify(s, selectors.EVENT_READ, "reading")
            else:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk, failed = b"", failed + 1
                if not chunk:
                    pending -= 1
                    sel.unregister(s)
                    s.close()
    return time.monotonic() - started, failed + pending


def main(port, n):
    before = overflows()
    took, failed = burst(port, n)
    print(f"{n} connections: {took:.3f} s, {failed} failed, ListenOverflows +{overflows() - before}")


if __name__ == "__main__":
    port = int(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    main(port, n)
