"""Opens N connections to HOST:PORT, on each sends a request whose response
closes the connection (plus three bytes more, so the server lingers), reads
the response to the server's FIN, and keeps every socket open without
closing: clients that never close. Prints "held N", then waits until its
standard input is closed. Used by tests/abuse.rs, and imported by
benches/nginx_compare.py for `hold`.

    python3 hold.py HOST PORT N
"""
import socket
import sys


def hold(host, port, n):
    """The N sockets, each lingering on the server's side."""
    held = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(b"GET /close/16 HTTP/1.1\r\nHost: lab\r\n\r\nxyz")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        if not got.endswith(b"b" * 16):
            sys.exit(f"bad response from {port}: {got[:200]!r}")
        held.append(s)
    return held


if __name__ == "__main__":
    held = hold(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    print("held", len(held), flush=True)
    sys.stdin.read()
