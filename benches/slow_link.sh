#!/usr/bin/env bash
# The reset lab over a slow link: the "slow network" case of the seed write-up
# (shared/seeds/002_*), where a close right after the response loses it more often.
#
#     sudo benches/slow_link.sh                 # RATE=10mbit TRIALS=5
#     sudo RATE=2mbit TRIALS=3 benches/slow_link.sh
#
# Needs root (network namespaces). It builds `--example reset_lab`, creates two
# network namespaces (server, client) joined by a veth pair, rate-limits both ends
# with a tbf qdisc, and runs the lab server twice in the server namespace (with
# lingering close on port 8081, `--no-linger` on 8082), then the probe against each
# from the client namespace, and prints both tables. The namespaces and the
# servers are always removed on exit (trap), whatever happened.
#
# Addresses are loopback-range only: 127.77.0.1/24 (server) and 127.77.0.2/24
# (client) on the veth ends. Linux treats 127/8 on a non-loopback interface as
# martian (connect() fails with EINVAL) unless net.ipv4.conf.all.route_localnet=1,
# which is set inside the two namespaces only. The connected /24 route wins over
# lo's `local 127.0.0.0/8` by longest prefix, so nothing else is needed.
#
# Environment:
#   RATE            tbf rate of each direction (default 10mbit)
#   TRIALS          trials per scenario and server (default 5)
#   PROBE_TIMEOUT   bound on each probe run, seconds (default 300 per trial)
# There is no DELAY: netem is not available on these machines, so the only
# latency is tbf queueing (up to `latency 50ms` of backlog, then drops).
set -euo pipefail

RATE=${RATE:-10mbit}
TRIALS=${TRIALS:-5}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-$((TRIALS * 300))}
SRV_NS=linger-srv-$$ CLI_NS=linger-cli-$$
SRV_IF=lgs$$ CLI_IF=lgc$$ # interface names: at most 15 characters
SRV_ADDR=127.77.0.1 CLI_ADDR=127.77.0.2
LINGER_PORT=8081 PLAIN_PORT=8082

cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $EUID -eq 0 ]] || { echo "slow_link.sh: run as root (network namespaces)" >&2; exit 1; }

if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y iproute2
fi
cargo build --release --example reset_lab

work=$(mktemp -d) pids=()
cleanup() {
    local status=$? pid i
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do # bounded: 5 s, then SIGKILL
        for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Deleting a namespace destroys its veth end, and with it the peer.
    ip netns del "$SRV_NS" 2>/dev/null || true
    ip netns del "$CLI_NS" 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A private copy, so a concurrent rebuild cannot swap the binary under the run.
cp target/release/examples/reset_lab "$work/reset_lab"

# The link: a veth pair, one end in each namespace, tbf on both egresses.
ip netns add "$SRV_NS"
ip netns add "$CLI_NS"
ip link add "$SRV_IF" netns "$SRV_NS" type veth peer name "$CLI_IF" netns "$CLI_NS"
for side in "$SRV_NS $SRV_IF $SRV_ADDR" "$CLI_NS $CLI_IF $CLI_ADDR"; do
    read -r ns dev addr <<<"$side"
    ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.route_localnet=1
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    tc -n "$ns" qdisc add dev "$dev" root tbf rate "$RATE" burst 32kbit latency 50ms
done

# The servers, in the server namespace (`ip netns exec` execs: $! is the server).
ip netns exec "$SRV_NS" "$work/reset_lab" serve --bind "$SRV_ADDR" --port "$LINGER_PORT" &
pids+=($!)
ip netns exec "$SRV_NS" "$work/reset_lab" serve --bind "$SRV_ADDR" --port "$PLAIN_PORT" --no-linger &
pids+=($!)

# Wait (at most ~10 s per port) until each port answers across the link.
for port in "$LINGER_PORT" "$PLAIN_PORT"; do
    for ((i = 0; ; i++)); do
        ip netns exec "$CLI_NS" timeout 1 bash -c "exec 3<>/dev/tcp/$SRV_ADDR/$port" 2>/dev/null && break
        ((i < 40)) || { echo "slow_link.sh: no server on $SRV_ADDR:$port" >&2; exit 1; }
        sleep 0.25
    done
done

# The probes, in the client namespace; in the background so that a signal
# interrupts the `wait` at once and the trap cleans up.
probe() { # PORT NAME [FLAGS]: the table goes to $work/NAME
    ip netns exec "$CLI_NS" timeout "$PROBE_TIMEOUT" "$work/reset_lab" probe \
        --host "$SRV_ADDR" --port "$1" --trials "$TRIALS" "${@:3}" >"$work/$2" &
    pids+=($!)
    wait $!
}
started=$SECONDS
# The lingering server must deliver everything whole: its probe's status is
# the script's. Below about 4.5 Mbit/s a 16 MiB upload outlasts the 30 s
# deadline, and the write-first client loses its 413 to the bound.
linger_status=0
probe "$LINGER_PORT" linger --expect-whole || linger_status=$?
probe "$PLAIN_PORT" plain
printf '\nslow link: veth with tbf rate %s burst 32kbit latency 50ms each way, %s trials\n' "$RATE" "$TRIALS"
printf '\nwith linger (port %s):\n%s\n' "$LINGER_PORT" "$(cat "$work/linger")"
printf '\nwithout linger, plain axum (port %s):\n%s\n' "$PLAIN_PORT" "$(cat "$work/plain")"
printf '\nresponses delivered whole / trials; "whole, then reset": delivered, but closed by an RST. Probes took %d s.\n' \
    $((SECONDS - started))
exit "$linger_status"
