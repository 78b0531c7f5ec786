#!/usr/bin/env bash
# Cross-checks wsbench against an independent client (tools/peers/node-ws/echo-client.js,
# built on Node's `ws`): both run the same scenario *at the same time* against one slow
# server (Python `websockets`, tools/peers/python/echo_server.py), each with CONNS
# connections, so neither client is the bottleneck and both see the same server at the
# same moment (a shared machine's noise hits both alike). A server that is fair to its
# connections then gives each client the same rate and latency, and two clients that
# measure correctly must agree. RUNS runs (fresh server each; server on core 0, clients
# on core 1); prints the medians and how far apart they are.
#
#   tools/crosscheck.sh [RUNS] [CONNS] [SIZE] [IN_FLIGHT] [SECONDS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-3}; CONNS=${2:-50}; SIZE=${3:-64}; W=${4:-1}; SECS=${5:-4}
WSBENCH="$ROOT/target/release/wsbench"
PEERS="$ROOT/tools/peers"
PORT=20900
SRV=

cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

python3 -c 'import websockets' 2>/dev/null || pip install -q websockets
[ -d "$PEERS/node-ws/node_modules" ] || (cd "$PEERS/node-ws" && npm ci --no-audit --no-fund --loglevel=error)
[ -x "$WSBENCH" ] || (cd "$ROOT" && cargo build --release -q -p wsbench)

start() {
    PORT=$((PORT + 1))
    taskset -c 0 python3 "$PEERS/python/echo_server.py" "$PORT" >/dev/null 2>&1 &
    SRV=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "server did not start" >&2
    return 1
}
stop() { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; SRV=; }

node_rates=(); node_p50=(); ws_rates=(); ws_p50=()
for run in $(seq "$RUNS"); do
    start
    taskset -c 1 timeout 60 node "$PEERS/node-ws/echo-client.js" "ws://127.0.0.1:$PORT/" "$CONNS" "$SIZE" "$W" \
        "$SECS" 1 >/tmp/crosscheck-node.$$ &
    NODE=$!
    wsline=$(taskset -c 1 timeout 60 "$WSBENCH" echo -u "ws://127.0.0.1:$PORT/" -c "$CONNS" -s "$SIZE" -w "$W" \
        -d "${SECS}s" --warmup 1s --json --quiet)
    wait "$NODE"
    line=$(cat /tmp/crosscheck-node.$$)
    rm -f /tmp/crosscheck-node.$$
    stop
    node_rates+=("$(jq .msgs_per_s <<<"$line")"); node_p50+=("$(jq .p50_us <<<"$line")")
    ws_rates+=("$(jq .msgs_per_s <<<"$wsline")"); ws_p50+=("$(jq .latency.p50_us <<<"$wsline")")
    echo "run $run: node-ws client ${node_rates[-1]} msg/s p50 ${node_p50[-1]} us;" \
        "wsbench ${ws_rates[-1]} msg/s p50 ${ws_p50[-1]} us" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
nr=$(median "${node_rates[@]}"); wr=$(median "${ws_rates[@]}")
np=$(median "${node_p50[@]}"); wp=$(median "${ws_p50[@]}")
awk -v nr="$nr" -v wr="$wr" -v np="$np" -v wp="$wp" -v c="$CONNS" -v s="$SIZE" -v w="$W" -v n="$RUNS" 'BEGIN {
    printf "echo, each client %d conns x %d B x %d in flight, both at once on one Python websockets server, medians of %d runs:\n", c, s, w, n
    printf "| client | messages/s | RTT p50 |\n|---|---|---|\n"
    printf "| wsbench | %.0f | %.0f us |\n| Node ws client | %.0f | %.0f us |\n", wr, wp, nr, np
    dr = 100 * (wr - nr) / nr; dp = 100 * (wp - np) / np
    printf "| difference | %+.1f%% | %+.1f%% |\n", dr, dp
    ok = (dr < 10 && dr > -10 && dp < 10 && dp > -10)
    printf "\nwithin 10%%: %s\n", ok ? "yes" : "NO"
}'
