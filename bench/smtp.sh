#!/usr/bin/env bash
# SMTP delivery throughput on loopback, into Postfix's smtp-sink.
#
# For each concurrency (1, 16, 64) it delivers MESSAGES messages of about
# SIZE bytes with:
#   smtp-source   Postfix's own load generator (-s sessions, -d: every
#                 session carries many messages; no pipelining)
#   herald        herald_smtp::Pool, max_connections = concurrency
#   per-message   herald_smtp::Connection per message, then QUIT
#                 (like Go's smtp.SendMail)
#   lettre        lettre's AsyncSmtpConnection, one per task, TCP_NODELAY
# and prints messages per second (the median of REPEAT runs) as a table.
# Raw JSON lines and smtp-sink's counters are kept in OUT.
#
# Environment: MESSAGES (20000), SIZE (2048), PORT (2525, the first free
# port from there is used), CONCURRENCY ("1 16 64"), REPEAT (5),
# OUT (a fresh directory under /tmp; it keeps results.jsonl).
#
# Usage: bench/smtp.sh            (from anywhere; builds --release)
#        MESSAGES=2000 REPEAT=1 bench/smtp.sh   (a quick run)
#
# A benchmark: it reports figures and never judges them.

set -euo pipefail

MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-2048}
PORT=${PORT:-2525}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
REPEAT=${REPEAT:-5}
OUT=${OUT:-$(mktemp -d /tmp/herald-bench.XXXXXX)}
# When 20,000 fresh connections per run would exhaust ephemeral ports.
PER_MESSAGE_FALLBACK=5000
FROM=from@example.com
TO=to@example.com
HELO=bench.localhost

export PATH="$PATH:/usr/sbin:/usr/local/sbin"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"

log() { printf '%s\n' "$*" >&2; }

# --- Postfix's smtp-sink and smtp-source -----------------------------------

ensure_postfix() {
    if command -v smtp-sink >/dev/null && command -v smtp-source >/dev/null; then
        return
    fi
    # Postfix may already be installing in the background.
    if [[ -e /tmp/apt-install.log ]] && ! grep -q 'apt rc=' /tmp/apt-install.log; then
        log "waiting for the background apt-get (/tmp/apt-install.log) ..."
        for _ in $(seq 1 1800); do
            grep -q 'apt rc=' /tmp/apt-install.log && break
            sleep 1
        done
    fi
    if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null; then
        log "installing postfix (for smtp-sink and smtp-source) ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >"$OUT/apt.log" 2>&1
    fi
    command -v smtp-sink >/dev/null && command -v smtp-source >/dev/null || {
        log "smtp-sink/smtp-source not found"
        exit 1
    }
}

port_busy() { ss -Htln "sport = :$1" | grep -q .; }

SINK_PID=
cleanup() {
    if [[ -n $SINK_PID ]]; then
        kill "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    # The counter log grows by ~1 MB per 20,000 messages; only its tail
    # was ever needed.
    rm -f "$OUT/sink.log" "$OUT/time.tmp"
}
trap cleanup EXIT INT TERM

start_sink() {
    while port_busy "$PORT"; do PORT=$((PORT + 1)); done
    local user=()
    [[ $EUID -eq 0 ]] && user=(-u root)
    # -c: running counters (used to check every message arrived);
    # -m: up to 1024 simultaneous sessions; 1024: listen backlog.
    # Sessions in total are unlimited (no -n / -M).
    smtp-sink -c "${user[@]}" -m 1024 "127.0.0.1:$PORT" 1024 >"$OUT/sink.log" 2>&1 &
    SINK_PID=$!
    for _ in $(seq 1 100); do
        port_busy "$PORT" && return
        sleep 0.05
    done
    log "smtp-sink did not start (see $OUT/sink.log)"
    exit 1
}

# Messages smtp-sink has seen so far (its -c counter).
sink_messages() {
    sleep 0.2
    tail -c 256 "$OUT/sink.log" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}

time_wait() { ss -Htan state time-wait | wc -l; }

# --- one run of each client --------------------------------------------------

# CPU seconds (user + system) smtp-sink has used so far.
sink_cpu() { sed 's/.*) //' "/proc/$SINK_PID/stat" | awk '{ printf "%.2f", ($12 + $13) / 100 }'; }

# Prints one JSON line for one smtp-source run.
run_source() {
    local c=$1 n=$2
    # smtp-source's -l is the payload without its 4 header lines (~140 bytes).
    local len=$((SIZE > 300 ? SIZE - 148 : SIZE))
    local rc=0 wall user sys TIMEFORMAT='%R %U %S'
    {
        time smtp-source -s "$c" -m "$n" -l "$len" -d -f "$FROM" -t "$TO" -M "$HELO" \
            "127.0.0.1:$PORT" >>"$OUT/smtp-source.log" 2>&1 || rc=$?
    } 2>"$OUT/time.tmp"
    read -r wall user sys <"$OUT/time.tmp"
    awk -v c="$c" -v n="$n" -v s="$wall" -v u="$user" -v y="$sys" -v rc="$rc" 'BEGIN {
        printf "{\"client\":\"smtp-source\",\"concurrency\":%d,\"messages\":%d,\"seconds\":%.3f,\"msgs_per_sec\":%.0f,\"errors\":%d,\"connections\":%d,\"cpu_seconds\":%.3f,\"cpu_us_per_msg\":%.1f}\n",
            c, n, s, n / s, (rc != 0), c, u + y, (u + y) * 1e6 / n
    }'
}

# Runs one client once; prints its JSON line with smtp-sink's view added:
# messages received (from its -c counter), CPU per message, load average.
run_one() {
    local client=$1 c=$2 n=$3 line before after cpu0 cpu1 load
    load=$(cut -d' ' -f1 /proc/loadavg)
    before=$(sink_messages)
    cpu0=$(sink_cpu)
    if [[ $client == smtp-source ]]; then
        line=$(run_source "$c" "$n")
    else
        line=$(./target/release/herald-bench --target "127.0.0.1:$PORT" --client "$client" \
            --messages "$n" --concurrency "$c" --size "$SIZE" 2>>"$OUT/bench.err") || true
    fi
    after=$(sink_messages)
    cpu1=$(sink_cpu)
    [[ -n $line ]] || line='{"client":"'"$client"'","errors":-1}'
    line=$(awk -v l="$line" -v r=$((after - before)) -v a="$cpu0" -v b="$cpu1" -v n="$n" -v ld="$load" 'BEGIN {
        sub(/}$/, "", l)
        printf "%s,\"sink_received\":%d,\"sink_cpu_us_per_msg\":%.1f,\"load1\":%s}\n", l, r, (b - a) * 1e6 / n, ld
    }')
    echo "$line" >>"$OUT/results.jsonl"
    log "  $line"
    if [[ $((after - before)) -ne $n || $(field errors "$line") != 0 ]]; then
        log "  WARNING: $client c=$c: $((after - before)) of $n arrived, errors=$(field errors "$line")"
    fi
    echo "$line"
}

field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR ? v[int((NR + 1) / 2)] : "-")}'; }

# --- main --------------------------------------------------------------------

ensure_postfix
log "building herald-bench (release) ..."
cargo build --release -p herald-bench --quiet
start_sink
log "smtp-sink on 127.0.0.1:$PORT; $MESSAGES messages of ~$SIZE bytes; median of $REPEAT; raw results in $OUT"
log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Fresh connections per message: 3 concurrencies x REPEAT x MESSAGES
# connects. Linux reuses loopback TIME_WAIT ports when tcp_tw_reuse is 1 or
# 2; otherwise stay well inside the ephemeral port range.
read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse 2>/dev/null || echo 0)
PM_MESSAGES=$MESSAGES
PM_NOTE=""
if [[ $tw_reuse -eq 0 && $((MESSAGES * REPEAT * 3)) -gt $(((hi - lo) / 2)) ]]; then
    PM_MESSAGES=$((MESSAGES < PER_MESSAGE_FALLBACK ? MESSAGES : PER_MESSAGE_FALLBACK))
    PM_NOTE="per-message ran $PM_MESSAGES messages per run (tcp_tw_reuse=0, ports $lo-$hi)"
fi

# Rates and CPU per message, keyed "concurrency,client"; the clients take
# turns within each repetition so that a burst of load elsewhere on the
# machine hits them alike.
declare -A RATE CPU SINKCPU
CLIENTS="smtp-source herald per-message lettre"
for c in $CONCURRENCY; do
    log "concurrency $c"
    for r in $(seq 1 "$REPEAT"); do
        for client in $CLIENTS; do
            n=$MESSAGES
            [[ $client == per-message ]] && n=$PM_MESSAGES
            line=$(run_one "$client" "$c" "$n")
            if [[ $client == per-message && $PM_MESSAGES -gt $PER_MESSAGE_FALLBACK ]] &&
                grep -qi 'address not available\|assign requested address' "$OUT/bench.err" 2>/dev/null; then
                PM_MESSAGES=$PER_MESSAGE_FALLBACK
                PM_NOTE="per-message ran out of ephemeral ports; it ran $PM_MESSAGES messages per run from concurrency $c on"
                log "  $PM_NOTE"
                sleep 60 # let TIME_WAIT drain
                line=$(run_one "$client" "$c" "$PM_MESSAGES")
            fi
            RATE[$c,$client]+=" $(field msgs_per_sec "$line")"
            CPU[$c,$client]+=" $(field cpu_us_per_msg "$line")"
            SINKCPU[$c,$client]+=" $(field sink_cpu_us_per_msg "$line")"
        done
    done
    log "  TIME_WAIT sockets now: $(time_wait)"
done

m() { median <<<"$1"; }
echo
echo "SMTP throughput, messages/s (median of $REPEAT), $MESSAGES messages of ~$SIZE bytes -> smtp-sink on loopback, $(nproc) cores"
printf '%-11s | %11s | %11s | %11s | %15s | %13s\n' \
    concurrency smtp-source "herald pool" per-message "lettre(nodelay)" herald/lettre
printf '%-11s-|-%11s-|-%11s-|-%11s-|-%15s-|-%13s\n' \
    ----------- ----------- ----------- ----------- --------------- -------------
for c in $CONCURRENCY; do
    h=$(m "${RATE[$c,herald]}")
    l=$(m "${RATE[$c,lettre]}")
    ratio=$(awk -v h="$h" -v l="$l" 'BEGIN { if (l > 0) printf "%.2f", h / l; else print "-" }')
    printf '%-11s | %11s | %11s | %11s | %15s | %13s\n' \
        "$c" "$(m "${RATE[$c,smtp-source]}")" "$h" "$(m "${RATE[$c,per-message]}")" "$l" "$ratio"
done
echo
echo "CPU microseconds per message (median): client / smtp-sink"
printf '%-11s | %15s | %15s | %15s | %15s\n' concurrency smtp-source "herald pool" per-message "lettre(nodelay)"
printf '%-11s-|-%15s-|-%15s-|-%15s-|-%15s\n' ----------- --------------- --------------- --------------- ---------------
for c in $CONCURRENCY; do
    row=()
    for client in $CLIENTS; do
        row+=("$(m "${CPU[$c,$client]}") / $(m "${SINKCPU[$c,$client]}")")
    done
    printf '%-11s | %15s | %15s | %15s | %15s\n' "$c" "${row[@]}"
done
if [[ -n $PM_NOTE ]]; then echo "note: $PM_NOTE"; fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews wall-clock figures)"
echo "raw results: $OUT/results.jsonl"
