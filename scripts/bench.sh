#!/usr/bin/env bash
# Load benchmark of Frameguard against the direct path and nginx, in one run, back to back.
#
#   scripts/bench.sh           full matrix (about 13 minutes after the build)
#   scripts/bench.sh --quick   reduced matrix with short windows (CI smoke, about 2 minutes)
#
# Builds frameguard and frameguard-load in release mode, starts the echo upstreams (plain,
# fan-out, and large replies to small requests), nginx (default and 64 KiB proxy buffers) and
# Frameguard (inspection off, on, and inbound only on each data path of the uninspected
# direction) on 127.0.0.1, drives the matrix through each, and writes the markdown report to
# bench-results/<timestamp>.md (raw JSON results next to it), printing it too.
# Every process it starts is stopped on exit. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
    --quick) quick=1 ;;
    "") ;;
    *)
        echo "usage: $0 [--quick]" >&2
        exit 2
        ;;
esac

if ((quick)); then
    warmup=0.5 duration=1.5 idle_conns=1000 lifetime=600
else
    warmup=1 duration=6 idle_conns=10000 lifetime=3000
fi
drain=2

# 10,000 idle connections through a proxy take 20,000 descriptors in the proxy alone; everything
# started below inherits this limit. Without the privilege to go past the hard limit, the idle
# test opens as many as fit (the report shows how many).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
fd_reserve=200
if ((idle_conns > (nofile - fd_reserve) / 2)); then
    idle_conns=$(((nofile - fd_reserve) / 2))
    echo "open-file limit $nofile: idle test with $idle_conns connections" >&2
fi

target_dir=${CARGO_TARGET_DIR:-target}
echo "building (release)..." >&2
cargo build --release --quiet -p frameguard -p frameguard-load
fg_bin=$target_dir/release/frameguard
load_bin=$target_dir/release/frameguard-load

stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench-results
report=bench-results/$stamp.md
results=bench-results/$stamp.jsonl
: >"$results"
work=$(mktemp -d "${TMPDIR:-/tmp}/frameguard-bench.XXXXXX")

started_pids=()
cleanup() {
    local pid tries
    for pid in "${started_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${started_pids[@]}"; do
        for ((tries = 0; tries < 50; tries++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free port below the ephemeral range, so the load's own connections never take it.
pick_port() {
    local port tries
    for ((tries = 0; tries < 100; tries++)); do
        port=$((20000 + RANDOM % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# wait_port PORT PID NAME LOG: until something accepts on PORT, for at most 10 s.
wait_port() {
    local tries
    for ((tries = 0; tries < 100; tries++)); do
        if ! kill -0 "$2" 2>/dev/null; then
            echo "$3 exited during startup:" >&2
            cat "$4" >&2
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "$3 did not listen on port $1 within 10 s:" >&2
    cat "$4" >&2
    return 1
}

declare -A addr pid
configs=()

# start_echo NAME FANOUT [ECHO ARGS...]
start_echo() {
    local name=$1 fanout=$2 out=$work/$1.out tries
    shift 2
    # Created here: the background job opens its redirection asynchronously, so a sed run
    # before it did would fail (and end the script under set -e).
    : >"$out"
    "$load_bin" echo --listen 127.0.0.1:0 --fanout "$fanout" --exit-after "$lifetime" "$@" \
        >"$out" 2>"$work/$name.log" &
    pid[$name]=$!
    started_pids+=("$!")
    for ((tries = 0; tries < 100; tries++)); do
        addr[$name]=$(sed -n 's/^listening on //p' "$out")
        [[ -n ${addr[$name]} ]] && return 0
        sleep 0.1
    done
    echo "echo server $name did not start" >&2
    return 1
}

# start_nginx NAME PROXY_BUFFER_SIZE (in KiB, e.g. 4k)
start_nginx() {
    local dir=$work/$1 port buffers=""
    port=$(pick_port)
    # nginx refuses a proxy_buffer_size above its busy-buffers default; those buffers only serve
    # plain HTTP responses, so they are raised just enough to be accepted.
    if [[ $2 != 4k ]]; then
        buffers="proxy_buffers 8 $2; proxy_busy_buffers_size $((2 * ${2%k}))k;"
    fi
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile $nofile;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 30000; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$connection_upgrade;
        proxy_set_header Host \$host;
        proxy_read_timeout 3600s;
        proxy_send_timeout 3600s;
        proxy_buffer_size $2;
        $buffers
        location /ws { proxy_pass http://${addr[echo]}; }
        location /fanout { proxy_pass http://${addr[fanout]}; }
    }
}
EOF
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout.log" 2>&1 &
    pid[$1]=$!
    started_pids+=("$!")
    addr[$1]=127.0.0.1:$port
    wait_port "$port" "${pid[$1]}" "nginx ($1)" "$dir/error.log"
    configs+=("$1")
}

# start_frameguard NAME INSPECT(none|both|inbound) DATA_PATH(auto|splice|kernel)
start_frameguard() {
    local config=$work/$1.kdl port agents="" agents_block=""
    port=$(pick_port)
    if [[ $2 != none ]]; then
        agents='agents "inspector";'
        agents_block="agents { agent \"inspector\" { xss-detection #true; sqli-detection #true; command-injection #true; direction \"$2\" } }"
    fi
    cat >"$config" <<EOF
system { worker-threads 0; graceful-shutdown-timeout-secs 1 }
listeners { listener "bench" { address "127.0.0.1:$port"; protocol "http" } }
routes {
    route "ws" { priority 100; matches { path "/ws" }; upstream "echo"; $agents data-path "$3"
        websocket { enabled #true; max-message-size "1MB" } }
    route "fanout" { priority 100; matches { path "/fanout" }; upstream "fanout"; $agents data-path "$3"
        websocket { enabled #true; max-message-size "1MB" } }
    route "bulk" { priority 100; matches { path "/bulk" }; upstream "bulk"; $agents data-path "$3"
        websocket { enabled #true; max-message-size "1MB" } }
}
upstreams {
    upstream "echo" { target "${addr[echo]}" }
    upstream "fanout" { target "${addr[fanout]}" }
    upstream "bulk" { target "${addr[bulk]}" }
}
$agents_block
observability { logging { level "warn"; format "text" } }
EOF
    "$fg_bin" check "$config" >/dev/null
    "$fg_bin" run --config "$config" >"$work/$1.log" 2>&1 &
    pid[$1]=$!
    started_pids+=("$!")
    addr[$1]=127.0.0.1:$port
    wait_port "$port" "${pid[$1]}" "frameguard ($1)" "$work/$1.log"
    configs+=("$1")
}

unavailable() {
    printf '{"kind":"unavailable","config":"%s","reason":"%s"}\n' "$1" "$2" >>"$results"
}

start_echo echo 1
start_echo fanout 10
# Small requests, large answers: the upstream -> client direction carries almost all bytes.
bulk_fanout=4 bulk_reply=65536
start_echo bulk "$bulk_fanout" --reply-size "$bulk_reply"
addr[direct]=${addr[echo]}
configs+=(direct)
if command -v nginx >/dev/null; then
    start_nginx nginx 4k
    start_nginx nginx-64k 64k
    nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
else
    nginx_version="not installed"
    unavailable nginx "nginx: not installed (apt-get install nginx)"
fi
start_frameguard fg-off none auto
start_frameguard fg-on both auto
# The uninspected upstream -> client direction on each data path, inbound inspection on: the
# kernel path needs root and the eBPF object, and refuses to start without them.
start_frameguard fg-in inbound auto
start_frameguard fg-splice inbound splice
if ! start_frameguard kernel inbound kernel 2>/dev/null; then
    unavailable kernel "kernel data path: $(grep -m 1 -o 'cannot load: .*' "$work/kernel.log" | tr -d '"\\' || echo "did not start")"
fi

has_config() {
    local c
    for c in "${configs[@]}"; do [[ $c == "$1" ]] && return 0; done
    return 1
}

# watch_args CONFIG ECHO: the processes sampled for a configuration in front of echo server ECHO.
watch_args() {
    if [[ $1 == direct ]]; then
        echo "--watch echo=${pid[$2]}"
    else
        echo "--watch proxy=${pid[$1]} --watch echo=${pid[$2]}"
    fi
}

total_runs=0
last_result=""
# run_case CONFIG PATH CONNS SIZE PIPELINE [EXTRA ARGS...]: one load run, its JSON line appended
# to the results and kept in last_result.
run_case() {
    local config=$1 path=$2 conns=$3 size=$4 pipeline=$5 line echo=echo target
    shift 5
    [[ $path == /fanout ]] && echo=fanout
    [[ $path == /bulk ]] && echo=bulk
    # The proxies route /fanout and /bulk to their echo servers; the direct path goes to them
    # itself.
    target=${addr[$config]}
    [[ $config == direct ]] && target=${addr[$echo]}
    total_runs=$((total_runs + 1))
    # shellcheck disable=SC2046 # watch_args is a list of words on purpose
    line=$("$load_bin" run --url "ws://$target$path" --conns "$conns" --size "$size" \
        --pipeline "$pipeline" --warmup "$warmup" --duration "$duration" --drain "$drain" \
        $(watch_args "$config" "$echo") --tag "config=$config" "$@")
    echo "$line" >>"$results"
    last_result=$line
    printf '  [%d] %s: %s conns, %s B, pipeline %s %s: %.0f msgs/s, p99 %.0f us\n' "$total_runs" \
        "$config" "$conns" "$size" "$pipeline" "$*" "$(field recv_msgs_per_sec "$line")" \
        "$(field p99 "$line")" >&2
}

# field KEY JSON: a number from one of frameguard-load's JSON lines (0 if absent or null).
field() {
    local value
    value=$(sed -n "s/.*\"$1\":\([-0-9.]*\).*/\1/p" <<<"$2" | head -n 1)
    echo "${value:-0}"
}

matrix_configs() { # SIZE
    local c
    for c in direct nginx nginx-64k fg-off fg-on kernel; do
        [[ $c == nginx-64k && $1 -lt 4096 ]] && continue
        has_config "$c" && echo "$c"
    done
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
bench_start=$(date +%s)

echo "idle connections ($idle_conns per configuration)..." >&2
for config in direct nginx fg-off fg-on; do
    has_config "$config" || continue
    if [[ $config == direct ]]; then watch="echo=${pid[echo]}"; else watch="proxy=${pid[$config]}"; fi
    "$load_bin" idle --url "ws://${addr[$config]}/ws" --conns "$idle_conns" --settle 1 \
        --connect-concurrency 200 --watch "$watch" --tag "config=$config" >>"$results"
    printf '  %s: %.1f KiB per connection\n' "$config" "$(field kib_per_conn "$(tail -n 1 "$results")")" >&2
    sleep 1
done

if ((quick)); then
    cases=("100 64 16" "10 4096 16")
else
    cases=()
    for size in 64 4096; do
        for conns in 1 100 1000; do
            for pipeline in 1 16; do
                cases+=("$conns $size $pipeline")
            done
        done
    done
fi

echo "throughput and latency..." >&2
max_inspected=""
for case in "${cases[@]}"; do
    read -r conns size pipeline <<<"$case"
    for config in $(matrix_configs "$size"); do
        run_case "$config" /ws "$conns" "$size" "$pipeline"
        if [[ $config == fg-on && $case == "100 64 16" ]]; then
            max_inspected=$(field recv_msgs_per_sec "$last_result")
        fi
    done
done

echo "fan-out (1 message in, 10 out)..." >&2
for config in $(matrix_configs 64); do
    run_case "$config" /fanout 100 64 16 --expect-fanout 10
done

echo "uninspected upstream -> client direction..." >&2
# PATH CONNS SIZE PIPELINE FANOUT [REPLY SIZE]
spliced_cases=("/bulk 10 64 4 $bulk_fanout $bulk_reply")
((quick)) || spliced_cases+=("/fanout 100 64 16 10" "/fanout 10 4096 16 10")
for case in "${spliced_cases[@]}"; do
    read -r path conns size pipeline fanout reply <<<"$case"
    for config in fg-in fg-splice kernel; do
        has_config "$config" || continue
        run_case "$config" "$path" "$conns" "$size" "$pipeline" --expect-fanout "$fanout" \
            ${reply:+--expect-reply-size "$reply"} --tag group=spliced
    done
done

# The latency target is for half of the maximum full-inspection load of 100 conns x 64 B; a
# tenth of it shows the added latency of a proxy that is not near saturation.
if [[ -n $max_inspected ]] && awk "BEGIN { exit !($max_inspected >= 20) }"; then
    loads=("half-load 2")
    ((quick)) || loads+=("tenth-load 10")
    for load in "${loads[@]}"; do
        read -r group divisor <<<"$load"
        rate=$(awk "BEGIN { printf \"%d\", $max_inspected / $divisor }")
        echo "$group: $rate msgs/s open loop..." >&2
        for config in $(matrix_configs 64); do
            run_case "$config" /ws 100 64 1024 --rate "$rate" --tag "group=$group"
        done
    done
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - bench_start))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null | head -n 1) ]]; then commit="$commit (uncommitted changes in the tree)"; fi

{
    echo "# Frameguard load benchmark $stamp"
    echo
    echo "- mode: $( ((quick)) && echo quick || echo full); each run: ${warmup} s warm-up, ${duration} s measured; $total_runs load runs in ${elapsed} s"
    echo "- commit $commit; $(nproc) cores, Linux $(uname -r); load average before $load_before, after $load_after"
    echo "- generator, echo upstream and proxy share the machine's cores: figures are noisy, compare ratios from the same run and CPU per message"
    echo "- configurations: \`direct\` = generator to the echo upstream (the ceiling); \`nginx\` = $nginx_version as a plain WebSocket reverse proxy, default 4 KiB proxy_buffer_size; \`nginx-64k\` = the same with a 64 KiB buffer (4 KiB messages only); \`fg-off\` = Frameguard, no agents on the route; \`fg-on\` = Frameguard, inspector with XSS, SQLi and command-injection detection; \`kernel\` = the same inspector on inbound messages only, the upstream -> client direction carried by the kernel data path; \`fg-in\` and \`fg-splice\` = that inspector with the frame relay and with splice(2)"
    echo
    "$load_bin" report --input "$results"
} >"$report"

cat "$report"
echo >&2
echo "report: $report (raw results: $results)" >&2
