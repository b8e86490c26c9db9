#!/usr/bin/env bash
# Burst time both ways: 2,000 connections at once (ROUNDS times) against the
# lab server bound by tokio (backlog 128) and by LingerListener::bind (4096).
#
#     benches/burst.sh            # ROUNDS=5 N=2000 by default
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --all-features --example reset_lab >/dev/null
lab=target/release/examples/reset_lab
"$lab" serve --port 18181 --no-linger 2>/dev/null & plain=$!
"$lab" serve --port 18182 2>/dev/null & cured=$!
trap 'kill $plain $cured 2>/dev/null || true' EXIT
sleep 1
for round in $(seq "${ROUNDS:-5}"); do
    echo "round $round"
    echo -n "  tokio's bind (backlog 128):            "; python3 benches/burst.py 18181 "${N:-2000}"
    echo -n "  LingerListener::bind (backlog 4096):   "; python3 benches/burst.py 18182 "${N:-2000}"
done
