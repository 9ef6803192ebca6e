# Helpers the benchmark scripts share. Source it after setting OUT (the
# run's directory) and BENCH (the script's name, for messages); it keeps
# the pids of what it starts in PIDS, for the caller's cleanup. The herald
# helpers also read KEY (the API key), HERALD_CONCURRENCY and
# RELAY_CONNECTIONS, and PG_SERVER and PG_DB for fresh_pg.

PIDS=()
PF_DIR=
HERALD_PID=
HERALD_ADDR=
# The release build the scripts run (they build it first).
BIN=${CARGO_TARGET_DIR:-target}/release

log() { printf '%s\n' "$*" >&2; }
die() {
    log "$BENCH: $*"
    exit 1
}
now() { date +%s.%N; }

port_busy() { ss -Htln "sport = :$1" | grep -q .; }
NEXT_PORT=${PORT:-2625}
free_port() {
    while port_busy "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    echo "$NEXT_PORT"
    NEXT_PORT=$((NEXT_PORT + 1))
}

# wait_listening PORT LOG: until something listens on PORT (or dies
# pointing at LOG).
wait_listening() {
    for _ in $(seq 1 200); do
        port_busy "$1" && return 0
        sleep 0.05
    done
    die "nothing listens on $1 (see $2)"
}

# start_sink NAME [ARGS…]: Postfix's smtp-sink on a free port; sets
# SINK_PORT and SINK_LOG. Extra arguments go to smtp-sink (e.g. -w 3600 to
# never answer DATA).
start_sink() {
    local name=$1
    shift
    SINK_PORT=$(free_port)
    SINK_LOG=$OUT/$name.log
    local user=()
    [[ $EUID -eq 0 ]] && user=(-u root)
    # -c: running counters; -m: simultaneous sessions; 1024: backlog.
    smtp-sink -c "${user[@]}" -m 1024 "$@" "127.0.0.1:$SINK_PORT" 1024 >"$SINK_LOG" 2>&1 &
    PIDS+=($!)
    wait_listening "$SINK_PORT" "$SINK_LOG"
}

# Messages a sink has counted so far (its -c counter).
sink_count() {
    tail -c 256 "$1" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0
}

# start_postfix RELAY_PORT: a throw-away Postfix instance (config, queue
# and data directories under OUT, smtpd on 127.0.0.1 only, everything
# relayed to RELAY_PORT). Sets PF_DIR and PF_PORT.
start_postfix() {
    local relay_port=$1
    PF_DIR=$OUT/postfix
    PF_PORT=$(free_port)
    rm -rf "$PF_DIR"
    mkdir -p "$PF_DIR/etc" "$PF_DIR/queue" "$PF_DIR/data"
    cp /etc/postfix/master.cf "$PF_DIR/etc/"
    : >"$PF_DIR/etc/main.cf"
    chown postfix "$PF_DIR/data"
    postconf -c "$PF_DIR/etc" -e \
        "compatibility_level=3.6" \
        "queue_directory=$PF_DIR/queue" \
        "data_directory=$PF_DIR/data" \
        "mail_owner=postfix" "setgid_group=postdrop" \
        "inet_interfaces=127.0.0.1" "inet_protocols=ipv4" \
        "myhostname=bench.localhost" "mydestination=" \
        "mynetworks=127.0.0.0/8" \
        "smtpd_relay_restrictions=permit_mynetworks,reject" \
        "relayhost=[127.0.0.1]:$relay_port" \
        "smtp_tls_security_level=none" "smtpd_tls_security_level=none" \
        "alias_maps=" "alias_database=" \
        "maillog_file=$PF_DIR/maillog" "maillog_file_prefixes=$PF_DIR"
    postconf -c "$PF_DIR/etc" -F '*/*/chroot = n'
    postconf -c "$PF_DIR/etc" -M# smtp/inet
    postconf -c "$PF_DIR/etc" -Me "127.0.0.1:$PF_PORT/inet=127.0.0.1:$PF_PORT inet n - n - - smtpd"
    postfix -c "$PF_DIR/etc" check >"$OUT/postfix-start.log" 2>&1 || true
    postfix -c "$PF_DIR/etc" start >>"$OUT/postfix-start.log" 2>&1 ||
        die "postfix did not start (see $OUT/postfix-start.log, $PF_DIR/maillog)"
    wait_listening "$PF_PORT" "$PF_DIR/maillog"
}

stop_postfix() {
    postfix -c "$PF_DIR/etc" stop >>"$OUT/postfix-start.log" 2>&1 || true
}

# Stops Postfix (if started) and every process in PIDS.
stop_all() {
    if [[ -n $PF_DIR && -e $PF_DIR/data/master.pid ]]; then
        postfix -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true
    fi
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# start_herald NAME RELAY_PORT [STORE_URL] [EXTRA]: a herald serve of the
# release build under OUT/NAME, relaying everything to RELAY_PORT, on
# STORE_URL (by default a fresh SQLite database of its own); EXTRA is more
# lines for its [[relays]] table (limits). Sets HERALD_PID, HERALD_ADDR.
start_herald() {
    local name=$1 relay_port=$2 dir=$OUT/$1 port
    local url=${3:-sqlite://$OUT/$1/herald.db} extra=${4:-}
    port=$(free_port)
    mkdir -p "$dir"
    rm -f "$dir"/herald.db*
    cat >"$dir/herald.toml" <<EOF
[server]
http_listen = "127.0.0.1:$port"
drain_timeout = "5s"
[store]
url = "$url"
[auth]
api_keys = ["$KEY"]
[limits]
max_queue_depth = 1000000
[delivery]
concurrency = $HERALD_CONCURRENCY
helo_name = "bench.localhost"
[[relays]]
name = "sink"
host = "127.0.0.1"
port = $relay_port
tls = "none"
max_connections = $RELAY_CONNECTIONS
max_messages_per_connection = 1000
$extra
EOF
    "$BIN/herald" serve --config "$dir/herald.toml" >"$dir/herald.log" 2>&1 &
    HERALD_PID=$!
    PIDS+=("$HERALD_PID")
    HERALD_ADDR=127.0.0.1:$port
    wait_listening "$port" "$dir/herald.log"
}

# Stops the herald start_herald started, as an operator would (SIGTERM).
stop_herald() {
    kill -TERM "$HERALD_PID"
    wait "$HERALD_PID" || log "herald exited with status $?"
}

# A fresh PostgreSQL database PG_DB on PG_SERVER; prints its URL.
fresh_pg() {
    psql -X -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
    psql -X -q "$PG_SERVER/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null
    echo "$PG_SERVER/$PG_DB?sslmode=disable"
}
