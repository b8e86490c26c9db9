#!/usr/bin/env bash
# Lingering memory and drain CPU beside nginx (see benches/nginx_compare.py).
# Needs nginx (apt-get install -y nginx-light) and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --all-features --example reset_lab >/dev/null
exec python3 benches/nginx_compare.py target/release/examples/reset_lab
