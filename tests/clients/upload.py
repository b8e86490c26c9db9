"""Uploads 16 MiB to URL with one Python HTTP client and prints what it saw:
the status code, or "error: <exception>". Used by tests/client_matrix.rs.

    python3 upload.py http.client|urllib|requests|httpx|aiohttp URL
"""
import sys

BODY = b"u" * (16 << 20)
TIMEOUT = 30


def http_client(url):
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
    conn.request("POST", u.path, body=BODY)
    return conn.getresponse().status


def urllib_client(url):
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=BODY), timeout=TIMEOUT).status
    except urllib.error.HTTPError as e:
        return e.code


def requests_client(url):
    import requests

    return requests.post(url, data=BODY, timeout=TIMEOUT).status_code


def httpx_client(url):
    import httpx

    return httpx.post(url, content=BODY, timeout=TIMEOUT).status_code


def aiohttp_client(url):
    import asyncio

    import aiohttp

    async def post():
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url, data=BODY) as response:
                await response.read()
                return response.status

    return asyncio.run(post())


CLIENTS = {
    "http.client": http_client,
    "urllib": urllib_client,
    "requests": requests_client,
    "httpx": httpx_client,
    "aiohttp": aiohttp_client,
}

if __name__ == "__main__":
    client, url = sys.argv[1], sys.argv[2]
    try:
        print(CLIENTS[client](url))
    except ImportError as e:
        print(f"missing: {e}")
        sys.exit(3)
    except Exception as e:  # what the client saw is the result
        print(f"error: {type(e).__name__}: {e}".splitlines()[0][:200])
