#!/usr/bin/env bash
# Runs the whole test suite RUNS times (default 10) while two busy loops
# compete for the machine's cores, as on a loaded CI box, and prints how
# many runs passed. Exit status 0 only if every run passed.
#
#     benches/suite_under_load.sh            # 10 runs, 2 busy loops
#     RUNS=3 LOADERS=4 benches/suite_under_load.sh
#
# The tests are built once first, without load. Each busy loop is a shell
# that spins until this script ends (killed on exit, whatever happens).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=${RUNS:-10}
loaders=${LOADERS:-2}
cargo test --all-features --no-run >/dev/null

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq "$loaders"); do
    ( while :; do :; done ) &
    pids+=($!)
done

passed=0
for run in $(seq "$runs"); do
    log=$(mktemp)
    start=$(date +%s)
    if cargo test --all-features --no-fail-fast >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "run $run: passed ($(( $(date +%s) - start )) s)"
    else
        echo "run $run: FAILED ($(( $(date +%s) - start )) s); failures:"
        grep -E '^test .* FAILED|panicked at' "$log" | head -20 | sed 's/^/    /'
    fi
    rm -f "$log"
done
echo "$passed passed, $((runs - passed)) failed (under $loaders busy loops)"
[ "$passed" -eq "$runs" ]
