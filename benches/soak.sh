#!/usr/bin/env bash
# Mixed traffic against the lab server with the crate for SECONDS (default
# 600): keep-alive GETs, every reset-lab scenario, clients that never close,
# clients that flood. Prints responses lost (goal 0) and descriptors, RSS
# and live tasks at the start and the end (goal: flat); exits 1 otherwise.
#
#     benches/soak.sh               # 10 minutes
#     SECONDS_TO_RUN=60 benches/soak.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --all-features --example reset_lab
exec target/release/examples/reset_lab soak --seconds "${SECONDS_TO_RUN:-600}"
