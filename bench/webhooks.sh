#!/usr/bin/env bash
# How many webhook events per second herald's sender delivers to a local
# receiver.
#
#   POST /v1/suppressions (1000 addresses each) --> herald serve (SQLite)
#        --> outbox (one suppression.added event per address)
#        --> webhook sender --(signed HTTP POSTs, CONCURRENCY at a time)--> receiver
#
# The receiver is a small threaded Python HTTP/1.1 server answering 204
# with keep-alive. Events are written far faster than they are sent, so
# the rate printed (events / seconds from the first POST until the
# receiver has counted them all) is the sender's.
#
# Environment: EVENTS (20000), CONCURRENCY (1, the endpoint's
#   `concurrency`), DELAY_MS (0: how long the receiver takes to answer,
#   standing in for a round trip to an endpoint far away), HERALD_BIN
#   (default: a release build made here), OUT (a fresh directory under /tmp).
# Usage: bench/webhooks.sh
#        EVENTS=5000 HERALD_BIN=target/debug/herald bench/webhooks.sh
#        EVENTS=2000 DELAY_MS=20 CONCURRENCY=8 bench/webhooks.sh
# A benchmark: it reports figures and never judges them.

set -euo pipefail

EVENTS=${EVENTS:-20000}
CONCURRENCY=${CONCURRENCY:-1}
DELAY_MS=${DELAY_MS:-0}
OUT=${OUT:-$(mktemp -d /tmp/herald-webhooks-bench.XXXXXX)}
KEY=bench-key-0123456789abcdef0123456789
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw

cd "$(dirname "$0")/.."
mkdir -p "$OUT"
BENCH=webhooks.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
trap stop_all EXIT

command -v python3 >/dev/null || die "python3 not found"
if [[ -z ${HERALD_BIN:-} ]]; then
    log "building herald (release)…"
    cargo build --release -q -p herald-cli
    HERALD_BIN=${CARGO_TARGET_DIR:-target}/release/herald
fi

# --- the receiver -------------------------------------------------------------
RECV_PORT=$(free_port)
cat >"$OUT/receiver.py" <<'PY'
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = 0
lock = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(DELAY)
        with lock:
            count += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

DELAY = int(sys.argv[2]) / 1000
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
python3 "$OUT/receiver.py" "$RECV_PORT" "$DELAY_MS" >"$OUT/receiver.log" 2>&1 &
PIDS+=($!)
wait_listening "$RECV_PORT" "$OUT/receiver.log"

# --- herald -------------------------------------------------------------------
HTTP_PORT=$(free_port)
cat >"$OUT/herald.toml" <<TOML
[server]
http_listen = "127.0.0.1:$HTTP_PORT"
[store]
url = "sqlite://$OUT/herald.db"
[auth]
api_keys = ["$KEY"]
[outbox]
dir = "$OUT/outbox"
[[webhooks]]
name = "bench"
url = "http://127.0.0.1:$RECV_PORT/events"
secret_env = "BENCH_WEBHOOK_SECRET"
concurrency = $CONCURRENCY
TOML
BENCH_WEBHOOK_SECRET=$SECRET RUST_LOG=warn "$HERALD_BIN" serve --config "$OUT/herald.toml" \
    >"$OUT/herald.log" 2>&1 &
PIDS+=($!)
wait_listening "$HTTP_PORT" "$OUT/herald.log"

# --- the events ---------------------------------------------------------------
start=$(now)
sent=0
batch=0
while ((sent < EVENTS)); do
    n=$((EVENTS - sent < 1000 ? EVENTS - sent : 1000))
    python3 -c "import json,sys; print(json.dumps({'addresses': ['u%d.%d@bench.example' % ($batch, i) for i in range($n)]}))" |
        curl -sf -o /dev/null -X POST "http://127.0.0.1:$HTTP_PORT/v1/suppressions" \
            -H "Authorization: Bearer $KEY" -H 'content-type: application/json' --data-binary @- ||
        die "POST /v1/suppressions failed (see $OUT/herald.log)"
    sent=$((sent + n))
    batch=$((batch + 1))
done
posted=$(now)
log "$EVENTS events written in $(echo "$posted - $start" | bc) s; waiting for the receiver…"
while :; do
    got=$(curl -sf "http://127.0.0.1:$RECV_PORT/count" || echo 0)
    ((got >= EVENTS)) && break
    sleep 0.2
done
end=$(now)
secs=$(echo "$end - $start" | bc)
printf 'webhook sender: %d events in %.2f s = %.0f events/s (one endpoint, concurrency %d, receiver delay %d ms, SQLite, %s)\n' \
    "$EVENTS" "$secs" "$(echo "$EVENTS / $secs" | bc -l)" "$CONCURRENCY" "$DELAY_MS" "$(basename "$(dirname "$HERALD_BIN")")"
