#!/usr/bin/env bash
# What each wiring the README shows costs beside the same server without the
# crate: instructions per request (callgrind) and server CPU per request
# under load (wrk, h2load), in one run. See benches/cost/main.rs.
#
#     benches/cost.sh                  # every wiring (about 15 minutes)
#     benches/cost.sh --quick          # fewer requests and rounds
#     benches/cost.sh --only readme --workloads get,post --rounds 7
#
# Installs valgrind, wrk and h2load (Debian's valgrind, wrk and
# nghttp2-client) when missing, then runs `cargo bench --bench cost`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
exec cargo bench --bench cost -- "$@"
