#!/usr/bin/env bash
# The README's performance figures, in one command from a clean clone:
#
#     benches/run.sh
#
# Installs wrk if it is missing (apt-get: needs root), builds the `figures`
# bench (`cargo build --release --bench figures`), raises the open-file limit
# for the 10,000-connection figure, and runs it pinned to core 1; the bench
# starts its servers pinned to core 0. It needs 2 cores or more and takes a
# few minutes. All traffic is on 127.0.0.1.
#
# Environment (defaults in brackets), passed through to the bench:
#   FIGURES_ROUNDS [10]       wrk rounds per stack for figure 1
#   FIGURES_SECS [3]          seconds per wrk round
#   FIGURES_WRK_CONNS [32]    wrk connections
#   FIGURES_MEM_CONNS [10000] connections lingering at once for figure 2
#   FIGURES_FLOOD_MIB [1024]  MiB flooded per round and path for figure 3
#   FIGURES_FLOOD_CONNS [4]   flooding clients at once
#   FIGURES_FLOOD_ROUNDS [5]  rounds per path for figure 3
#   FIGURES_HOLD_CONNS [2000] clients per server for figure 4
#   FIGURES_QUIET_WAIT [180]  seconds to wait, before each figure, for other processes to go quiet
#   FIGURES [all]             which figures to run, e.g. 1,3 (FIGURES_ONLY: the same);
#                             run.sh passes it to the bench, which alone (plain
#                             `cargo bench`) runs only figure 4
#   FIGURES_F1_B [linger]     figure 1 compares plain axum with: linger, plain (A/A: the noise floor),
#                             listener (LingerListener only), layer (LingerLayer only) or
#                             noop (a tower layer that does nothing) or outer (LingerLayer
#                             around the Router, not Router::layer)
#   FIGURES_TIMEOUT [1800]    bound on the whole run, seconds
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if (($(nproc) < 2)); then
    echo "benches/run.sh: needs at least 2 cores (server on core 0, load on core 1)" >&2
    exit 1
fi
if ! command -v wrk >/dev/null; then
    if [[ $EUID -ne 0 ]]; then
        echo "benches/run.sh: wrk is missing; install it (apt-get install -y wrk) or run as root" >&2
        exit 1
    fi
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
fi
command -v taskset >/dev/null || { echo "benches/run.sh: taskset (util-linux) is missing" >&2; exit 1; }

cargo build --release --bench figures
# The bench binary's path, from cargo's own report of what it built.
bin=$(cargo build --release --bench figures --message-format=json 2>/dev/null |
    grep '"kind":\["bench"\]' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4)
[[ -x $bin ]] || { echo "benches/run.sh: cannot find the figures binary" >&2; exit 1; }
# A private copy, so a concurrent build in a shared target dir cannot swap it mid-run.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/figures"

# 10,000 client sockets in the bench and 10,000 in its server: raise the limit
# as far as this process may (the hard limit, when 65536 is not allowed).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open-file limit: $(ulimit -n)" >&2

# An explicit selection: without one the bench runs only its quick figure.
timeout --kill-after=10 "${FIGURES_TIMEOUT:-1800}" taskset -c 1 "$work/figures" "${FIGURES:-${FIGURES_ONLY:-all}}"
