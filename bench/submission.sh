#!/usr/bin/env bash
# Accepting mail over SMTP: herald's submission listener against Postfix's
# smtpd, 16 concurrent sessions each, messages per second accepted.
#
#   herald:  herald-bench --client herald (CLIENTS pooled sessions, implicit
#            TLS, AUTH PLAIN with an API key) --> herald serve [submission]
#            (release build, SQLite WAL, synchronous=FULL; 250 only after
#            the commit) --(SMTP)--> smtp-sink
#   Postfix: smtp-source -s CLIENTS (plain SMTP, no AUTH: smtp-source has
#            neither TLS nor AUTH) --> a throw-away Postfix smtpd (its queue
#            under OUT, on the same disk, fsync on as by default)
#            --(relayhost)--> smtp-sink
#
# herald's clients do more work per message than smtp-source (TLS and
# AUTH); Postfix's accept is timed until smtp-source has its last 250.
# smtp-source cannot be pointed at herald: herald never accepts mail
# without AUTH.
#
# Environment: MESSAGES (20000), SIZE (2048), CLIENTS (16), REPEAT (3),
#   OUT (a fresh directory under /tmp).
# Usage: bench/submission.sh       (builds --release first; needs root for
#        Postfix, whose master runs as root and drops to `postfix`)
#        MESSAGES=2000 REPEAT=1 bench/submission.sh
# A benchmark: it reports figures and never judges them.

set -euo pipefail

MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-2048}
CLIENTS=${CLIENTS:-16}
REPEAT=${REPEAT:-3}
OUT=${OUT:-$(mktemp -d /tmp/herald-submission-bench.XXXXXX)}
KEY=bench-key-0123456789abcdef0123456789
FROM=from@example.com
TO=to@example.com

export PATH="$PATH:/usr/sbin:/usr/local/sbin"
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
mkdir -p "$OUT"
chmod 755 "$OUT"
RESULTS=$OUT/results.jsonl
BENCH=submission.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
NEXT_PORT=${PORT:-2725}


for tool in smtp-sink smtp-source postfix postconf ss openssl; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/deps)"
done

cleanup() {
    stop_all
    rm -f "$OUT"/herald/herald.db* 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }

log "building herald and herald-bench (release) ..."
cargo build --release -p herald-cli -p herald-bench --locked --quiet

# The relay both deliver to.
start_sink sink

# A certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -keyout "$OUT/key.pem" -out "$OUT/cert.pem" >/dev/null 2>&1

# --- herald ------------------------------------------------------------------

herald_run() {
    local dir=$OUT/herald http smtps
    mkdir -p "$dir"
    rm -f "$dir"/herald.db*
    http=$(free_port)
    # free_port runs in a subshell here: start past the port just taken.
    smtps=$(NEXT_PORT=$((http + 1)) free_port)
    cat >"$dir/herald.toml" <<EOF
[server]
http_listen = "127.0.0.1:$http"
drain_timeout = "5s"
[store]
url = "sqlite://$dir/herald.db"
[auth]
api_keys = ["$KEY"]
[delivery]
concurrency = 64
helo_name = "bench.localhost"
[[relays]]
name = "sink"
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"
max_connections = 20
max_messages_per_connection = 1000
[submission]
implicit_tls_listen = "127.0.0.1:$smtps"
cert_file = "$OUT/cert.pem"
key_file = "$OUT/key.pem"
EOF
    "$TARGET/release/herald" serve --config "$dir/herald.toml" >"$dir/herald.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_listening "$smtps" "$dir/herald.log"
    HERALD_BENCH_PASSWORD=$KEY "$TARGET/release/herald-bench" --client herald \
        --target "127.0.0.1:$smtps" --tls implicit --ca-file "$OUT/cert.pem" --auth-user bench \
        --messages "$MESSAGES" --concurrency "$CLIENTS" --size "$SIZE" --from "$FROM" --to "$TO"
    kill -TERM "$pid"
    wait "$pid" || log "herald exited with status $?"
}

# --- Postfix -----------------------------------------------------------------


postfix_run() {
    start_postfix "$SINK_PORT"
    # smtp-source's -l is the body without its 4 header lines (~148 bytes).
    local len=$((SIZE > 300 ? SIZE - 148 : SIZE)) t0 t1
    t0=$(now)
    smtp-source -s "$CLIENTS" -m "$MESSAGES" -l "$len" -d -f "$FROM" -t "$TO" -M bench.localhost \
        "127.0.0.1:$PF_PORT" >"$OUT/smtp-source.log" 2>&1 || log "smtp-source exited with $?"
    t1=$(now)
    postfix -c "$PF_DIR/etc" stop >>"$OUT/postfix-start.log" 2>&1 || true
    awk -v n="$MESSAGES" -v a="$t0" -v b="$t1" -v c="$CLIENTS" \
        'BEGIN { s = b - a; printf "{\"client\":\"smtp-source\",\"server\":\"postfix\",\"concurrency\":%d,\"messages\":%d,\"seconds\":%.3f,\"msgs_per_sec\":%.0f}\n", c, n, s, n / s }'
}

log "$MESSAGES messages of ~$SIZE bytes, $CLIENTS sessions, $REPEAT runs each; results in $RESULTS"
for run in $(seq 1 "$REPEAT"); do
    line=$(herald_run)
    echo "$line" | sed 's/^{/{"server":"herald",/' >>"$RESULTS"
    log "  herald  run $run: $line"
    line=$(postfix_run)
    echo "$line" >>"$RESULTS"
    log "  postfix run $run: $line"
done

rate() { grep "\"server\":\"$1\"" "$RESULTS" | sed -n 's/.*"msgs_per_sec":\([0-9]*\).*/\1/p' | median; }
H=$(rate herald)
P=$(rate postfix)
printf '\n%-44s %12s\n' "accepted over SMTP, $CLIENTS sessions" "msgs/s (median)"
printf '%-44s %12s\n' "herald [submission] (implicit TLS + AUTH)" "$H"
printf '%-44s %12s\n' "Postfix $(postconf -h mail_version) smtpd (plain, no AUTH)" "$P"
awk -v h="$H" -v p="$P" 'BEGIN { if (p > 0) printf "%-44s %12.2f\n", "herald / Postfix", h / p }'
