#!/usr/bin/env bash
# Runs the same wsbench scenarios against wsreactor and its peers (tokio-tungstenite,
# fastwebsockets, Bun/uWebSockets, Node ws) and prints a table of medians and ratios
# (wsreactor / peer), plus one latency SVG per scenario.
#
#   tools/compare.sh [--runs N] [--duration 4s] [--servers "wsreactor bun ..."]
#                    [--scenarios "echo64 echo20 echo16k fanout topic1k topic10k topics1000 connect"]
#                    [--out DIR] [--server-cpus 0] [--client-cpus 1] [--client-threads 1]
#                    [--base-bin PATH]
#
# --base-bin PATH adds the server "wsreactor-base": another build of wsreactor (e.g. main,
# built in a worktree) run exactly like this one, for before/after tables in the same run:
#   git worktree add --detach ../base main && (cd ../base && cargo build --release -p wsreactor)
#   tools/compare.sh --runs 5 --servers "wsreactor wsreactor-base" --base-bin ../base/target/release/wsreactor
#
# The topic scenarios run only against servers with a pubsub mode (wsreactor, Bun,
# tokio-tungstenite).
#
# Every server listens on 127.0.0.1 only, is pinned to core 0 (taskset -c 0) and
# is stopped by PID when its run ends (and by the EXIT trap on any failure);
# wsbench is pinned to core 1 (on a bigger machine give it more: --client-cpus 1-3
# --client-threads 3, so that it is never the bottleneck). Runs are interleaved over servers so slow drift on
# a shared machine hits every server alike; each run gets a fresh server and port.
# A load run in which neither side used 85% of its core was disturbed by another
# process and is run again (at most twice per run, RETRY_BUDGET=15 in all).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
DURATION=4s
WARMUP=1s
SERVERS="wsreactor tokio-tungstenite fastwebsockets bun node-ws"
SCENARIOS="echo64 echo20 echo16k fanout topic1k topic10k topics1000 connect"
OUT="$ROOT/target/compare"
SERVER_CPUS=0
CLIENT_CPUS=1
CLIENT_THREADS=1
BASE_BIN=
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --scenarios) SCENARIOS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --server-cpus) SERVER_CPUS=$2; shift 2 ;;
        --client-cpus) CLIENT_CPUS=$2; shift 2 ;;
        --client-threads) CLIENT_THREADS=$2; shift 2 ;;
        --base-bin) BASE_BIN=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

PEERS="$ROOT/tools/peers"
PEER_TARGET="$ROOT/target/peers"
WSBENCH="$ROOT/target/release/wsbench"
SERVER_PIDS=()

cleanup() {
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT INT TERM

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }

# --- build ------------------------------------------------------------------
log "building wsreactor and wsbench (release)"
(cd "$ROOT" && cargo build --release -q -p wsreactor -p wsbench)
for peer in tokio-tungstenite fastwebsockets; do
    case " $SERVERS " in *" $peer "*)
        log "building peer $peer"
        CARGO_TARGET_DIR="$PEER_TARGET" cargo build --release -q --manifest-path "$PEERS/$peer/Cargo.toml" ;;
    esac
done
for peer in bun node-ws; do
    case " $SERVERS " in *" $peer "*)
        if [ ! -d "$PEERS/$peer/node_modules" ]; then
            log "installing npm packages for $peer"
            (cd "$PEERS/$peer" && npm ci --no-audit --no-fund --loglevel=error)
        fi ;;
    esac
done

# --- servers ----------------------------------------------------------------
server_cmd() { # NAME MODE PORT
    local name=$1 mode=$2 port=$3
    case "$name" in
        wsreactor|wsreactor-base)
            local extra="" bin="$ROOT/target/release/wsreactor"
            [ "$mode" = pubsub ] && extra="--publish-token $TOKEN"
            if [ "$name" = wsreactor-base ]; then
                [ -x "$BASE_BIN" ] || { echo "wsreactor-base needs --base-bin PATH" >&2; return 1; }
                bin=$BASE_BIN
            fi
            echo "$bin $mode --bind 127.0.0.1:$port --reactors 1 $extra" ;;
        tokio-tungstenite) echo "$PEER_TARGET/release/peer-tokio-tungstenite $mode $port" ;;
        fastwebsockets) echo "$PEER_TARGET/release/peer-fastwebsockets $mode $port" ;;
        bun) echo "$PEERS/bun/node_modules/.bin/bun $PEERS/bun/server.js $mode $port" ;;
        node-ws) echo "node $PEERS/node-ws/server.js $mode $port" ;;
        *) echo "unknown server $name" >&2; return 1 ;;
    esac
}

SRV_PID=
start_server() { # NAME MODE PORT
    local cmd
    cmd=$(server_cmd "$1" "$2" "$3")
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPUS" $cmd >"$OUT/logs/$1-$2-$3.log" 2>&1 &
    SRV_PID=$!
    SERVER_PIDS+=("$SRV_PID")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    log "$1 did not start listening on $3"
    return 1
}

stop_server() {
    kill "$SRV_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
}

# Whether a server has a mode (fastwebsockets and Node ws have no pubsub mode).
has_mode() { # NAME MODE
    [ "$2" != pubsub ] || case "$1" in wsreactor|wsreactor-base|bun|tokio-tungstenite) true ;; *) false ;; esac
}

# --- scenarios --------------------------------------------------------------
# The topic scenarios speak wsreactor's topic protocol (wsbench fanout --topics,
# peers in pubsub mode); the publisher presents the token in the URL.
TOKEN=bench
scenario_mode() {
    case "$1" in fanout) echo broadcast ;; topic*) echo pubsub ;; *) echo echo ;; esac
}
scenario_args() {
    case "$1" in
        echo64) echo "echo -c 100 -s 64 -w 32" ;;
        echo20) echo "echo -c 100 -s 20 -w 1" ;;
        echo16k) echo "echo -c 500 -s 16KiB -w 1" ;;
        fanout) echo "fanout -n 1000 -s 64 -w 16" ;;
        topic1k) echo "fanout -n 1000 --topics 1 -s 64 -w 8" ;;
        topic10k) echo "fanout -n 10000 --topics 1 -s 64 -w 8" ;;
        topics1000) echo "fanout -n 10000 --topics 1000 -s 64 -w 8" ;;
        connect) echo "connect -c 15000 --src-ips 127.0.0.2,127.0.0.3" ;;
        *) echo "unknown scenario $1" >&2; return 1 ;;
    esac
}

mkdir -p "$OUT/runs" "$OUT/logs"
rm -f "$OUT"/runs/*.json
PORT=20100
START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RETRY_BUDGET=${RETRY_BUDGET:-15}
RETRIES=0
DISTURBED=0
for scen in $SCENARIOS; do
    mode=$(scenario_mode "$scen")
    args=$(scenario_args "$scen")
    dur=$DURATION
    [ "$scen" = connect ] && dur=2s
    for run in $(seq "$RUNS"); do
        for srv in $SERVERS; do
            has_mode "$srv" "$mode" || continue
            query=""
            [ "$mode" = pubsub ] && query="?token=$TOKEN"
            for attempt in 1 2 3; do
                PORT=$((PORT + 1))
                start_server "$srv" "$mode" "$PORT"
                out="$OUT/runs/${scen}__${srv}__${run}.json"
                log "$scen run $run/$RUNS: $srv"
                # Exit 3 (wrong payloads) still leaves a report: keep it, the summary flags it.
                rc=0
                # shellcheck disable=SC2086
                timeout 120 taskset -c "$CLIENT_CPUS" "$WSBENCH" $args -t "$CLIENT_THREADS" -u "ws://127.0.0.1:$PORT/$query" \
                    -d "$dur" --warmup "$WARMUP" --server-pid "$SRV_PID" --label "$srv" \
                    --json --quiet >"$out" 2>"$OUT/logs/${scen}__${srv}__${run}.err" || rc=$?
                stop_server
                if [ "$rc" != 0 ]; then
                    log "  wsbench exited $rc against $srv (see $OUT/logs)"
                    [ -s "$out" ] || rm -f "$out"
                    break
                fi
                # Load runs saturate one side. When neither side got near a full core,
                # another process had it: run again (within a budget).
                [ "$scen" = connect ] && break
                busy=$(jq '[.cpu.server_cpu_pct // 0, .cpu.client_cpu_pct // 0] | max' "$out" 2>/dev/null || echo 0)
                awk -v b="$busy" 'BEGIN { exit !(b >= 85) }' && break
                if [ "$RETRIES" -ge "$RETRY_BUDGET" ] || [ "$attempt" = 3 ]; then
                    log "  disturbed run kept: busiest side used ${busy}% of its core"
                    DISTURBED=$((DISTURBED + 1))
                    break
                fi
                RETRIES=$((RETRIES + 1))
                log "  neither side was busy (at most ${busy}% of a core): another process had the core; again"
            done
        done
    done
done
log "measured in $(( $(date +%s) - START )) s"

# --- summary ----------------------------------------------------------------
{
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)"
    echo "Runs per cell: $RUNS (median shown), window $DURATION after $WARMUP warmup;"
    echo "Server on CPU $SERVER_CPUS (one reactor/thread), wsbench on CPU $CLIENT_CPUS ($CLIENT_THREADS thread(s))."
    echo "connect: 15,000 connections held 2 s; server RSS read from /proc/PID/status before and after."
    echo "Load average (1/5/15 min) before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "Runs repeated because neither side reached 85% of its core (another process had it): $RETRIES;"
    echo "disturbed runs kept (retry budget spent): $DISTURBED. Compare the CPU rows before trusting a cell."
    echo
    "$WSBENCH" summarize --dir "$OUT/runs" --baseline wsreactor --svg-dir "$OUT"
} | tee "$OUT/summary.md"
log "summary: $OUT/summary.md; charts: $OUT/*.svg"
