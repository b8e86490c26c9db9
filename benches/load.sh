#!/usr/bin/env bash
# Server CPU time per request under load (wrk, h2load), each wiring against
# plain axum in the same run, over alternating rounds: see benches/load.py.
#
#     benches/load.sh                          # 5 rounds of 3 s, every workload
#     benches/load.sh --rounds 7 --seconds 5 --wirings readme,whole-app,inside-the-app
#
# Installs wrk and h2load (Debian's wrk and nghttp2-client) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
cargo bench --bench cost --no-run >/dev/null 2>&1
exec python3 benches/load.py "$@"
