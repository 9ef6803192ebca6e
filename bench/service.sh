#!/usr/bin/env bash
# herald as a service, end to end, against Postfix doing the same job.
#
#   herald:  herald-load --(HTTP, CLIENTS connections)--> herald serve
#            (release build, SQLite WAL, synchronous=FULL) --(SMTP)--> smtp-sink
#   Postfix: smtp-source --(SMTP, CLIENTS sessions)--> Postfix smtpd
#            (its queue, fsync on as by default) --(SMTP, relayhost)--> smtp-sink
#
# Phases (each herald phase starts a fresh herald on a fresh database):
#   1. MESSAGES messages of ~SIZE bytes as fast as CLIENTS clients get
#      answers: accept rate, p50/p99 accept latency, end-to-end delivered/s
#      (first post until nothing is queued, sending or deferred), peak RSS.
#      On SQLite; then, with PG=1, on PostgreSQL (fsync and
#      synchronous_commit on, as by default) with one node, and with two
#      nodes sharing the queue (the clients post to the first; both
#      deliver).
#   2. RATE_MESSAGES messages at a fixed offered load of RATE msg/s (open
#      loop; latency counted from when each message was due): p99.
#   3. QUEUED messages posted while the relay stalls (smtp-sink -w 3600
#      never answers DATA), so they stay queued: RSS after the posts.
#   4. Postfix: the same MESSAGES through a throw-away Postfix instance
#      (config, queue and data under OUT) into the same smtp-sink; time
#      until smtp-sink has counted them all.
# Then a table, with herald e2e / Postfix e2e.
#
# Environment: MESSAGES (20000), SIZE (2048), CLIENTS (64),
#   HERALD_CONCURRENCY (64, [delivery] concurrency),
#   RELAY_CONNECTIONS (20, the relay's max_connections; Postfix's
#   default_destination_concurrency_limit is 20),
#   RATE (500), RATE_MESSAGES (10000), QUEUED (100000; 0 skips phase 3),
#   POSTFIX (1; 0 skips phase 4), PG (1; 0 skips PostgreSQL),
#   PG_SERVER (postgres://postgres@127.0.0.1:5432, trust auth),
#   OUT (a fresh directory under /tmp).
#
# Usage: bench/service.sh                        (builds --release first)
#        MESSAGES=2000 RATE_MESSAGES=1000 QUEUED=5000 bench/service.sh
#
# Needs root for Postfix (its master runs as root and drops to `postfix`).
# A benchmark: it reports figures and never judges them.

set -euo pipefail

MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-2048}
CLIENTS=${CLIENTS:-64}
HERALD_CONCURRENCY=${HERALD_CONCURRENCY:-64}
RELAY_CONNECTIONS=${RELAY_CONNECTIONS:-20}
RATE=${RATE:-500}
RATE_MESSAGES=${RATE_MESSAGES:-10000}
QUEUED=${QUEUED:-100000}
POSTFIX=${POSTFIX:-1}
PG=${PG:-1}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_DB=herald_bench_$$
OUT=${OUT:-$(mktemp -d /tmp/herald-service-bench.XXXXXX)}
KEY=bench-key-0123456789abcdef0123456789
FROM=from@example.com
TO=to@example.com

export PATH="$PATH:/usr/sbin:/usr/local/sbin"
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p "$OUT"
# Postfix (as user postfix) must reach its directories under OUT.
chmod 755 "$OUT"
RESULTS=$OUT/results.jsonl
BENCH=service.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh


for tool in smtp-sink smtp-source postfix postconf postqueue ss; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install postfix iproute2)"
done

# --- processes we start, stopped on exit by their pids -----------------------

cleanup() {
    stop_all
    rm -f "$OUT"/*/herald.db* 2>/dev/null || true
    if [[ $PG -eq 1 ]]; then
        psql -X -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
            >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- herald -------------------------------------------------------------------

load() {
    HERALD_API_KEY=$KEY "$BIN/herald-load" --target "$HERALD_ADDR" --size "$SIZE" \
        --pid "$HERALD_PID" "$@"
}

field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }

record() {
    echo "$1" >>"$RESULTS"
    log "  $1"
}

# --- Postfix -----------------------------------------------------------------

# --- main --------------------------------------------------------------------

log "building herald and herald-load (release) ..."
cargo build --release -p herald-cli -p herald-bench --quiet
log "results in $OUT; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start_sink sink
MAIN_SINK_PORT=$SINK_PORT
MAIN_SINK_LOG=$SINK_LOG
log "smtp-sink on 127.0.0.1:$MAIN_SINK_PORT"

# 1. Throughput and latency, end to end.
log "phase 1: $MESSAGES messages, $CLIENTS clients, closed loop"
start_herald e2e "$MAIN_SINK_PORT"
before=$(sink_count "$MAIN_SINK_LOG")
E2E=$(load --phase e2e --messages "$MESSAGES" --concurrency "$CLIENTS" --wait-delivered)
sleep 0.3
SINK_E2E=$(($(sink_count "$MAIN_SINK_LOG") - before))
record "$E2E"
[[ $SINK_E2E -eq $MESSAGES ]] || log "  WARNING: smtp-sink counted $SINK_E2E of $MESSAGES"

# 2. Latency at a fixed offered load (same herald, its queue now empty).
log "phase 2: $RATE_MESSAGES messages at $RATE msg/s, open loop"
FIXED=$(load --phase fixed-rate --messages "$RATE_MESSAGES" --concurrency "$CLIENTS" --rate "$RATE" --wait-delivered)
record "$FIXED"
stop_herald

# 1 and 2 again on PostgreSQL: one node, then two nodes on one queue.
PG_E2E=
PG_FIXED=
PG2_E2E=
if [[ $PG -eq 1 ]]; then
    command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
    PG_SETTINGS=$(psql -X -A -t "$PG_SERVER/postgres" \
        -c "SELECT 'fsync=' || current_setting('fsync') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' ' || split_part(version(), ' ', 2)")
    log "phase 1+2 on PostgreSQL ($PG_SETTINGS), one node"
    url=$(fresh_pg)
    start_herald pg1 "$MAIN_SINK_PORT" "$url"
    PG_E2E=$(load --phase e2e --messages "$MESSAGES" --concurrency "$CLIENTS" --wait-delivered)
    record "$PG_E2E"
    PG_FIXED=$(load --phase fixed-rate --messages "$RATE_MESSAGES" --concurrency "$CLIENTS" --rate "$RATE" --wait-delivered)
    record "$PG_FIXED"
    stop_herald
    log "phase 1 on PostgreSQL, two nodes on one queue"
    url=$(fresh_pg)
    start_herald pg2b "$MAIN_SINK_PORT" "$url"
    SECOND_PID=$HERALD_PID
    start_herald pg2a "$MAIN_SINK_PORT" "$url"
    PG2_E2E=$(load --phase e2e --messages "$MESSAGES" --concurrency "$CLIENTS" --wait-delivered)
    record "$PG2_E2E"
    stop_herald
    HERALD_PID=$SECOND_PID
    stop_herald
fi

# 3. Memory with a deep queue: the relay never answers DATA.
QUEUE_LINE=
if [[ $QUEUED -gt 0 ]]; then
    log "phase 3: $QUEUED messages queued behind a stalled relay"
    start_sink stalled -w 3600
    start_herald queued "$SINK_PORT"
    QUEUE_LINE=$(load --phase queued --messages "$QUEUED" --concurrency "$CLIENTS")
    sleep 2
    RSS_QUEUED=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$HERALD_PID/status")
    QUEUE_LINE=${QUEUE_LINE%\}},\"rss_mib_2s_later\":$RSS_QUEUED}
    record "$QUEUE_LINE"
    stop_herald
    log "  database: $(du -sh "$OUT/queued" | cut -f1)"
fi

# 4. The reference: Postfix.
PF_E2E=
PF_ACCEPT=
if [[ $POSTFIX -eq 1 ]]; then
    log "phase 4: $MESSAGES messages through Postfix $(postconf -h mail_version)"
    start_postfix "$MAIN_SINK_PORT"
    before=$(sink_count "$MAIN_SINK_LOG")
    target=$((before + MESSAGES))
    # smtp-source's -l is the body without its 4 header lines (~148 bytes).
    len=$((SIZE > 300 ? SIZE - 148 : SIZE))
    t0=$(now)
    smtp-source -s "$CLIENTS" -m "$MESSAGES" -l "$len" -d -f "$FROM" -t "$TO" -M bench.localhost \
        "127.0.0.1:$PF_PORT" >"$OUT/smtp-source.log" 2>&1 &
    SOURCE_PID=$!
    PIDS+=("$SOURCE_PID")
    source_done=
    deadline=$(($(date +%s) + 1200))
    while [[ $(sink_count "$MAIN_SINK_LOG") -lt $target ]]; do
        if [[ -z $source_done ]] && ! kill -0 "$SOURCE_PID" 2>/dev/null; then
            source_done=$(now)
            wait "$SOURCE_PID" || log "  smtp-source exited with status $?"
        fi
        [[ $(date +%s) -lt $deadline ]] || die "Postfix did not deliver $MESSAGES within 20 min"
        sleep 0.05
    done
    t1=$(now)
    if [[ -z $source_done ]]; then
        wait "$SOURCE_PID" || log "  smtp-source exited with status $?"
        source_done=$(now)
    fi
    PF_E2E=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    PF_ACCEPT=$(awk -v a="$t0" -v b="$source_done" 'BEGIN { printf "%.3f", b - a }')
    queue_left=$(postqueue -c "$PF_DIR/etc" -p | tail -1)
    record "{\"phase\":\"postfix\",\"messages\":$MESSAGES,\"sessions\":$CLIENTS,\"accept_seconds\":$PF_ACCEPT,\"e2e_seconds\":$PF_E2E,\"queue_after\":\"$queue_left\"}"
    stop_postfix
fi

# --- the table ---------------------------------------------------------------

rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "-" }'; }
H_E2E_RATE=$(field e2e_rate "$E2E")
P_E2E_RATE=$([[ -n $PF_E2E ]] && rate "$MESSAGES" "$PF_E2E" || echo -)
RATIO=$(awk -v h="$H_E2E_RATE" -v p="$P_E2E_RATE" 'BEGIN { if (p > 0) printf "%.2f", h / p; else print "-" }')

if [[ -n $PG_E2E ]]; then
    echo
    echo "herald on PostgreSQL ($PG_SETTINGS), same load; Postfix's rate from this run"
    printf '%-44s | %12s | %12s\n' figure "1 node" "2 nodes"
    printf '%-44s-|-%12s-|-%12s\n' -------------------------------------------- ------------ ------------
    printf '%-44s | %12s | %12s\n' "accept rate, msgs/s" "$(field accept_rate "$PG_E2E")" "$(field accept_rate "$PG2_E2E")"
    printf '%-44s | %12s | %12s\n' "accept latency p50 / p99, ms" "$(field p50_ms "$PG_E2E") / $(field p99_ms "$PG_E2E")" "$(field p50_ms "$PG2_E2E") / $(field p99_ms "$PG2_E2E")"
    printf '%-44s | %12s | %12s\n' "end to end, delivered msgs/s" "$(field e2e_rate "$PG_E2E")" "$(field e2e_rate "$PG2_E2E")"
    printf '%-44s | %12s | %12s\n' "herald CPU per message (posting node), us" "$(field herald_cpu_us_per_msg_total "$PG_E2E")" "$(field herald_cpu_us_per_msg_total "$PG2_E2E")"
    printf '%-44s | %12s | %12s\n' "p50 / p99 accept latency at $RATE msg/s, ms" "$(field p50_ms "$PG_FIXED") / $(field p99_ms "$PG_FIXED")" -
    for line in "$PG_E2E" "$PG2_E2E"; do
        r=$(field e2e_rate "$line")
        awk -v h="$r" -v p="$P_E2E_RATE" 'BEGIN { if (p > 0) printf "%.2f | ", h / p; else printf "- | " }'
    done | sed 's/^/herald on PostgreSQL \/ Postfix e2e (1 | 2 nodes): /; s/ | $//'
    echo
fi

echo
echo "herald service vs Postfix: $MESSAGES messages of ~$SIZE bytes, $CLIENTS clients, -> smtp-sink on loopback; $(nproc) cores"
echo "herald: [delivery] concurrency $HERALD_CONCURRENCY, relay max_connections $RELAY_CONNECTIONS; SQLite WAL synchronous=FULL"
printf '%-44s | %12s | %12s\n' figure herald Postfix
printf '%-44s-|-%12s-|-%12s\n' -------------------------------------------- ------------ ------------
printf '%-44s | %12s | %12s\n' "accept rate, msgs/s" "$(field accept_rate "$E2E")" \
    "$([[ -n $PF_ACCEPT ]] && rate "$MESSAGES" "$PF_ACCEPT" || echo -)"
printf '%-44s | %12s | %12s\n' "accept latency p50 / p99, ms" "$(field p50_ms "$E2E") / $(field p99_ms "$E2E")" -
printf '%-44s | %12s | %12s\n' "end to end, seconds" "$(field e2e_seconds "$E2E")" "${PF_E2E:--}"
printf '%-44s | %12s | %12s\n' "end to end, delivered msgs/s" "$H_E2E_RATE" "$P_E2E_RATE"
printf '%-44s | %12s | %12s\n' "peak RSS (VmHWM), MiB" "$(field vm_hwm_mib "$E2E")" -
printf '%-44s | %12s | %12s\n' "herald CPU per message (all of it), us" "$(field herald_cpu_us_per_msg_total "$E2E")" -
printf '%-44s | %12s | %12s\n' "p50 / p99 accept latency at $RATE msg/s, ms" "$(field p50_ms "$FIXED") / $(field p99_ms "$FIXED")" -
printf '%-44s | %12s | %12s\n' "  (max, ms; messages accepted)" "$(field max_ms "$FIXED"); $(field accepted "$FIXED")" -
if [[ -n $QUEUE_LINE ]]; then
    printf '%-44s | %12s | %12s\n' "RSS with $QUEUED queued, MiB" "$(field rss_mib_2s_later "$QUEUE_LINE")" -
    printf '%-44s | %12s | %12s\n' "  peak while posting them (VmHWM), MiB" "$(field vm_hwm_mib "$QUEUE_LINE")" -
    printf '%-44s | %12s | %12s\n' "  accept rate / p99 while posting them" "$(field accept_rate "$QUEUE_LINE") / $(field p99_ms "$QUEUE_LINE")" -
fi
printf '%-44s | %12s |\n' "herald e2e / Postfix e2e" "$RATIO"
echo "smtp-sink counted $SINK_E2E of $MESSAGES herald messages in phase 1"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews wall-clock figures)"
echo "raw results: $RESULTS"
