#!/usr/bin/env bash
# Where herald serve's CPU goes per delivered message, on the embedded
# store (SQLite), under the end-to-end load of bench/service.sh's phase 1.
#
#   herald-load --(HTTP)--> herald serve (release, SQLite) --(SMTP)--> smtp-sink
#
# perf samples the herald process (every thread, user and kernel) while
# MESSAGES messages go through; each sample's function is put in a bucket
# (HTTP, JSON, validation, MIME, store writes, claim and store reads, SMTP,
# runtime, allocation, kernel by thread) and the buckets are scaled to the
# process's measured CPU per message. Self time, not call trees: a memcpy
# counts as allocation/copies wherever it was called from.
#
# Environment: MESSAGES (20000), SIZE (2048), CLIENTS (64),
#   HERALD_CONCURRENCY (64), FREQ (perf sampling Hz, 2000), OUT.
# A benchmark: it reports figures and never judges them.

set -euo pipefail
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-2048}
CLIENTS=${CLIENTS:-64}
HERALD_CONCURRENCY=${HERALD_CONCURRENCY:-64}
FREQ=${FREQ:-2000}
OUT=${OUT:-$(mktemp -d /tmp/herald-profile.XXXXXX)}
KEY=bench-key-0123456789abcdef0123456789
export PATH="$PATH:/usr/sbin:/usr/local/sbin"
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
BENCH=profile.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
NEXT_PORT=${PORT:-2725}
for tool in perf smtp-sink ss python3; do
    command -v "$tool" >/dev/null || { log "profile.sh: $tool not found"; exit 1; }
done

cleanup() { stop_all; }
trap cleanup EXIT

log "building herald and herald-load (release) ..."
cargo build --release -p herald-cli -p herald-bench --quiet

start_sink sink

RELAY_CONNECTIONS=20
start_herald profile "$SINK_PORT"

perf record -F "$FREQ" -p "$HERALD_PID" -o "$OUT/perf.data" >"$OUT/perf-record.log" 2>&1 &
PERF_PID=$!
sleep 0.5
LINE=$(HERALD_API_KEY=$KEY "$BIN/herald-load" --target "$HERALD_ADDR" \
    --size "$SIZE" --pid "$HERALD_PID" --phase e2e --messages "$MESSAGES" \
    --concurrency "$CLIENTS" --wait-delivered)
kill -INT "$PERF_PID"
wait "$PERF_PID" || true
log "$LINE"
CPU_US=$(sed -n 's/.*"herald_cpu_us_per_msg_total":\([0-9.]*\).*/\1/p' <<<"$LINE")

perf report -i "$OUT/perf.data" --stdio --no-children --sort comm,dso,sym \
    -F overhead,comm,dso,sym 2>/dev/null >"$OUT/report.txt"
python3 - "$OUT/report.txt" "${CPU_US:-0}" "$MESSAGES" <<'PY'
import re, sys
report, cpu_us, messages = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ALLOC = r"malloc|_int_free|cfree|realloc|memmove|memcpy|memset|memcmp|unlink_chunk|alloc::"
# The SQLite writer thread (its name is cut to 15 characters by the kernel).
WRITER = [
    ("store writes: kernel (WAL writes, fsync)", r"\[kernel"),
    ("store writes: allocation and copies", ALLOC),
    ("store writes: SQLite's mutexes", r"pthread_mutex"),
    ("store writes: SQLite (statements, B-trees, WAL)", r"."),
]
# Every other thread (the async runtime's workers, blocking readers).
OTHERS = [
    ("kernel: network and scheduling", r"\[kernel"),
    ("allocation and copies", ALLOC),
    ("store reads and claims", r"sqlite3|rusqlite|herald_store"),
    ("MIME rendering", r"mail_builder|herald_message::(render|mime)|normalize_line_endings|quoted_printable|base64"),
    ("validation (addresses, headers)", r"herald_message|idna|unicode"),
    ("JSON", r"serde_json|serde::"),
    ("HTTP (hyper, axum)", r"hyper|axum|http::|httparse|tower"),
    ("SMTP client", r"herald_smtp|smtp_proto"),
    ("async runtime", r"tokio|futures|parking_lot|crossbeam|std::thread::local|vdso|pthread"),
    ("dispatcher, API and bookkeeping", r"herald_server|herald_policy|metrics|tracing|ulid|sha2|time::|core::fmt"),
    ("other (libc, unresolved)", r"."),
]
buckets, total = {}, 0.0
for line in open(report, errors="replace"):
    m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+(\S+)\s+(.*)", line)
    if not m:
        continue
    pct, comm, dso, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    rules = WRITER if comm.startswith("herald-sqlite-w") else OTHERS
    text = f"{dso} {sym}"
    name = next(b for b, p in rules if re.search(p, text))
    buckets[name] = buckets.get(name, 0.0) + pct
    total += pct
print(f"\nherald serve (SQLite), {messages} messages: {cpu_us:.0f} us of CPU per delivered message")
print(f"{'where (self time)':<48} | {'share':>6} | {'us/msg':>7}")
print(f"{'-'*48}-|-{'-'*6}-|-{'-'*7}")
for name, pct in sorted(buckets.items(), key=lambda kv: -kv[1]):
    share = pct / total if total else 0
    print(f"{name:<48} | {share*100:5.1f}% | {share*cpu_us:7.0f}")
PY
echo "raw: $OUT/report.txt"
