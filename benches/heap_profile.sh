#!/usr/bin/env bash
# Where a lingering connection's memory goes: valgrind's DHAT over the lab
# server while N clients that never close linger (tests/clients/hold.py),
# then the allocation sites live at the peak, per connection.
#
#   benches/heap_profile.sh              # in place (with_detach(false)), N = 1000
#   benches/heap_profile.sh --detach     # the default
#   N=2000 benches/heap_profile.sh
#
# Needs valgrind and python3. Builds the lab server with line tables into
# target/heap-profile, so that DHAT can name the sites.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${N:-1000}
mode=--in-place
[ "${1:-}" = "--detach" ] && mode=
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release --example reset_lab --target-dir target/heap-profile >/dev/null
out=$(mktemp)
port=18391
valgrind --tool=dhat --dhat-out-file="$out" target/heap-profile/release/examples/reset_lab \
    serve --port "$port" --idle-timeout 120 --max-lingering 100000 $mode 2>/dev/null &
server=$!
for _ in $(seq 1 300); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" \
        2>/dev/null && break
    sleep 0.1
done
# Hold N lingering connections for a moment, then let them go and stop the server.
(sleep 2) | python3 tests/clients/hold.py 127.0.0.1 "$port" "$n" >/dev/null
kill -TERM "$server"
wait "$server" || true
python3 - "$out" "$n" <<'PY'
import collections, json, re, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2]); ftbl = d["ftbl"]
# One row per allocating site, summed over the call paths that reach it.
size, blocks = collections.Counter(), collections.Counter()
for p in d["pps"]:
    frames = [re.sub(r"^0x[0-9A-F]+: ", "", ftbl[i]) for i in p["fs"]]
    frames = [f for f in frames if not re.search(
        r"library/(alloc|core|std)|vgpreload|^alloc |UnknownInlinedFun \(library|raw_vec|unix\.rs", f)]
    # Name the site by the first frame in a crate a reader knows.
    known = [f for f in frames if re.search(r"(hyper|hyper_util|axum|tokio|linger|http)::", f)]
    site = (known or frames or ["?"])[0][:120]
    size[site] += p.get("gb", 0)
    blocks[site] += p.get("gbk", 0)
print(f"bytes live at the peak, per lingering connection ({n} connections), by allocating site:")
total = 0
for site, b in size.most_common():
    if blocks[site] < n / 2 or b / n < 64:
        continue  # not one per connection
    total += b / n
    print(f"{b / n:8.0f} B  {site}")
print(f"{total:8.0f} B  in all (sites with at least one block per two connections)")
PY
rm -f "$out"
