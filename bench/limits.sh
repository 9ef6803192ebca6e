#!/usr/bin/env bash
# What relay limits cost when they are configured but not reached: the
# same end-to-end run (herald-load --(HTTP)--> herald serve --(SMTP)-->
# smtp-sink) with a relay that has no limits, and with one that has a
# rate and a daily quota far above the load (each message then takes a
# rate slot and a quota unit from the store: in memory and one write on
# SQLite; two conditional upserts on PostgreSQL). Runs alternate, ROUNDS
# times each, every run on a fresh database; the table gives the median
# delivered/s of each and the cost in per cent.
#
# Environment: MESSAGES (5000), SIZE (2048), CLIENTS (32),
#   HERALD_CONCURRENCY (64), RELAY_CONNECTIONS (20), ROUNDS (3),
#   LIMITS ('rate = "1000000/s"' + 'burst = 1000' + 'daily_quota = 100000000'),
#   PG (0; 1 runs on PostgreSQL too), PG_SERVER, OUT.
#
# Usage: bench/limits.sh              (builds --release first)
# A benchmark: it reports figures and never judges them.

set -euo pipefail

MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-2048}
CLIENTS=${CLIENTS:-32}
HERALD_CONCURRENCY=${HERALD_CONCURRENCY:-64}
RELAY_CONNECTIONS=${RELAY_CONNECTIONS:-20}
ROUNDS=${ROUNDS:-3}
LIMITS=${LIMITS:-$'rate = "1000000/s"\nburst = 1000\ndaily_quota = 100000000'}
PG=${PG:-0}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_DB=herald_limits_bench_$$
OUT=${OUT:-$(mktemp -d /tmp/herald-limits-bench.XXXXXX)}
KEY=bench-key-0123456789abcdef0123456789

export PATH="$PATH:/usr/sbin:/usr/local/sbin"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
BENCH=limits.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v smtp-sink >/dev/null || die "smtp-sink not found (apt-get install postfix)"
trap stop_all EXIT

field() { sed -n "s/.*\"$1\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$2"; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# run STORE NAME EXTRA: one e2e run; prints its delivered/s.
run() {
    local store=$1 name=$2 extra=$3 url
    if [[ $store == pg ]]; then url=$(fresh_pg); else url=sqlite://$OUT/$name/herald.db; fi
    start_herald "$name" "$SINK_PORT" "$url" "$extra"
    local line
    line=$(HERALD_API_KEY=$KEY "$BIN/herald-load" --target "$HERALD_ADDR" --size "$SIZE" \
        --pid "$HERALD_PID" --phase "$name" --messages "$MESSAGES" --concurrency "$CLIENTS" --wait-delivered)
    stop_herald
    echo "$line" >>"$OUT/results.jsonl"
    field e2e_rate "$line"
}

log "building herald and herald-load (release) ..."
cargo build --release -p herald-cli -p herald-bench --quiet
log "results in $OUT; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start_sink sink

stores=(sqlite)
[[ $PG -eq 1 ]] && stores+=(pg)
echo "relay limits configured but not reached: $MESSAGES messages of ~$SIZE bytes, $CLIENTS clients, $ROUNDS rounds, $(nproc) cores"
printf '%-8s | %16s | %16s | %8s\n' store "none, msgs/s" "limits, msgs/s" cost
for store in "${stores[@]}"; do
    plain=()
    limited=()
    for round in $(seq 1 "$ROUNDS"); do
        plain+=("$(run "$store" "$store-plain-$round" "")")
        limited+=("$(run "$store" "$store-limits-$round" "$LIMITS")")
        log "  $store round $round: none ${plain[-1]}, limits ${limited[-1]} msgs/s"
    done
    p=$(printf '%s\n' "${plain[@]}" | median)
    l=$(printf '%s\n' "${limited[@]}" | median)
    cost=$(awk -v p="$p" -v l="$l" 'BEGIN { if (p > 0) printf "%.1f %%", (p - l) * 100 / p; else print "-" }')
    printf '%-8s | %16s | %16s | %8s\n' "$store" "$p" "$l" "$cost"
done
[[ $PG -eq 1 ]] && psql -X -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
