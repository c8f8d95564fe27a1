#!/usr/bin/env bash
# bench/fleet.sh: the fleet's figures (issue 8), side by side in one run. Prints them; it is
# not a test (ctest does not run it).
#
#   bench/fleet.sh [-d SECONDS] [--baseline REF] [--skip-scenarios]
#
#   1. read-your-writes under faults: tests/e2e/fleet.mjs's checker over 3 instances, once per
#      scenario (no fault, Redis stalled 2 s, killed and restarted, restored from an older
#      snapshot, Sentinel failover): stale reads, non-2xx, time to recover, write p50/p99;
#   2. what the guarantee costs: 3 instances behind nginx, this build and a baseline built
#      from REF (default main) in a scratch worktree: cached user.me req/s, user.update
#      latency on 1 and 16 connections, and a write-then-read-elsewhere probe;
#   3. cached user.me req/s with 1, 2, 3 instances behind nginx, with the CPU split;
#   4. the invalidation delay across instances, from the instances' histogram and from the
#      client's side.
# Server side (nginx, instances) pinned to core 0, wrk and Redis to core 1, as bench/api.sh.
# Loopback only; every wrk run lasts -d seconds (default 5); every process started here is
# stopped on exit, also on Ctrl-C or failure. Figures explained in bench/README.md.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dur=5 ref=main scen=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        -d) dur=$2; shift ;;
        --baseline) ref=$2; shift ;;
        --skip-scenarios) scen=0 ;;
        *) echo "usage: $0 [-d SECONDS] [--baseline REF] [--skip-scenarios]" >&2; exit 2 ;;
    esac
    shift
done
[[ "$dur" =~ ^[1-9][0-9]*$ ]] || { echo "bench: -d: whole seconds, at least 1" >&2; exit 2; }
git -C "$root" rev-parse --verify -q "$ref^{commit}" >/dev/null ||
    { echo "bench: --baseline: '$ref' is not a commit here" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/tc-fleet-bench.XXXXXX")
pids=() # long-lived processes, stopped on exit (the fleets stop their own as they go)
fleet_pids=()
basewt=""
cleanup() {
    trap - EXIT INT TERM
    local p
    if [[ -n "${node_pid:-}" ]]; then # the scenarios' process group: node and its instances
        kill -KILL -- "-$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
    fi
    for p in "${fleet_pids[@]}" "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${fleet_pids[@]}" "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    [[ -n "${pg_pid:-}" ]] && stop_pg
    wait 2>/dev/null || true
    if [[ -n "$basewt" ]]; then
        git -C "$root" worktree remove --force "$basewt" 2>/dev/null ||
            echo "bench: could not remove the worktree $basewt (git worktree list)" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pdeath=()
setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(setpriv --pdeathsig KILL)
srv_core=() cli_core=()
if [[ $(nproc) -ge 2 ]]; then srv_core=(taskset -c 0) cli_core=(taskset -c 1); fi

# ---- builds: this tree in build/, the baseline in a scratch worktree ------------------------
bash "$root/scripts/deps.sh" >/dev/null
echo "bench: building this tree (build/)..."
cmake -S "$root" -B "$root/build" >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target tiercache >"$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log" >&2; exit 1; }
bin=$root/build/tiercache
base_commit=$(git -C "$root" rev-parse --short "$ref^{commit}")
echo "bench: building the baseline ($ref = $base_commit) in a scratch worktree..."
basewt=$work/baseline-src
git -C "$root" worktree add -q --detach "$basewt" "$ref" >/dev/null
cmake -S "$basewt" -B "$work/baseline-build" >/dev/null
cmake --build "$work/baseline-build" -j"$(nproc)" --target tiercache >"$work/build-base.log" 2>&1 ||
    { tail -30 "$work/build-base.log" >&2; exit 1; }
basebin=$work/baseline-build/tiercache
this_commit=$(git -C "$root" rev-parse --short HEAD)
[[ -n $(git -C "$root" status --porcelain -- src include) ]] && this_commit+="+changes"
basenote=""
"$basebin" --help 2>&1 | grep -q -- --lease-ms &&
    basenote=" (note: the baseline already has --lease-ms: it is not a build without the guarantee)"

# ---- one Redis and one PostgreSQL for everything but the scenarios (which start their own) --
source "$root/scripts/redis.sh"
start_redis "$work" || { echo "bench: could not start redis-server" >&2; exit 1; }
rport=$redis_port
pids+=("$redis_pid")
[[ ${#cli_core[@]} -gt 0 ]] && taskset -pc 1 "$redis_pid" >/dev/null
source "$root/scripts/pg.sh"
start_pg "$work" || { echo "bench: could not start postgres" >&2; exit 1; }
pg_bindir=${TC_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
"$pg_bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U tiercache tiercache_bench
pgurl="postgresql://tiercache@127.0.0.1:$pg_port"

echo "bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); this build $this_commit," \
    "baseline $ref = $base_commit$basenote; wrk runs of ${dur} s"

# ---- 1. scenarios --------------------------------------------------------------------------
if [[ $scen -eq 1 ]]; then
    echo
    echo "== 1. read-your-writes under faults: 3 instances, one PostgreSQL, checker of tests/e2e/fleet.mjs =="
    # setsid: its own process group, so that cleanup can stop the instances it spawned too
    TIERCACHE_BIN=$bin TC_REDIS_PORT=$rport TC_PG_URL="$pgurl/tiercache_bench" TMPDIR=$work \
        setsid node "$root/bench/fleet.mjs" scenarios 2> >(grep --line-buffered -v '^Could not connect to Redis' >&2) &
    node_pid=$!
    wait "$node_pid" || { echo "bench: the scenarios failed" >&2; exit 1; }
    node_pid=""
fi

# ---- fleets of N instances behind nginx ----------------------------------------------------
# A port nobody listens on, below the ephemeral range: a port in that range may be the local
# end of some connection, which a connect() test does not see but bind() does.
eph_lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[[ $eph_lo -gt 12000 ]] || eph_lo=32768
free_port() {
    local p
    while :; do
        p=$((10000 + RANDOM % (eph_lo - 10000)))
        ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && { echo "$p"; return; }
    done
}
wait_for() { # wait_for WHAT PID CMD...: until CMD succeeds, up to 20 s, while PID lives
    local what=$1 pid=$2; shift 2
    for _ in $(seq 400); do
        kill -0 "$pid" 2>/dev/null || break
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench: $what did not come up" >&2
    return 1
}
declare -A seeded=()
nfleet=0
# fleet_up LABEL BIN N: N instances of BIN on database tiercache_LABEL (seeded by BIN once) and
# the one Redis (a prefix of its own), nginx in front; sets inst_pids, inst_urls, ngx_pid, lb.
fleet_up() {
    local label=$1 b=$2 n=$3 i port upstream=""
    local dir=$work/fleet$((++nfleet))
    mkdir -p "$dir"
    db="$pgurl/tiercache_$label"
    if [[ -z ${seeded[$label]:-} ]]; then
        "$pg_bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U tiercache "tiercache_$label"
        "$b" seed --db "$db" --seed-users 200 --seed-activity 5 --fast-password-hash >"$dir/seed.log" 2>&1 ||
            { cat "$dir/seed.log" >&2; exit 1; }
        seeded[$label]=1
    fi
    inst_pids=() inst_urls=()
    for i in $(seq "$n"); do
        for try in 1 2 3; do # a port can be taken between free_port and bind
            port=$(free_port)
            "${pdeath[@]}" "${srv_core[@]}" "$b" serve --listen "127.0.0.1:$port" --db "$db" \
                --redis "127.0.0.1:$rport" --prefix "bench$nfleet:" --access-log off \
                --login-limit 100000 --fast-password-hash >"$dir/instance$i.log" 2>&1 </dev/null &
            p=$!
            fleet_pids+=("$p")
            wait_for "instance $i" "$p" curl -sf "http://127.0.0.1:$port/healthz" && break
            [[ $try -lt 3 ]] || { tail -20 "$dir/instance$i.log" >&2; exit 1; }
        done
        inst_pids+=("$p")
        inst_urls+=("http://127.0.0.1:$port")
        upstream+="        server 127.0.0.1:$port;\n"
    done
    local lb_port
    for try in 1 2 3; do
        lb_port=$(free_port)
        sed -e "s|@LB_PORT@|$lb_port|" -e "s|@DIR@|$dir|g" -e "s|^ *# @UPSTREAM@.*$|$upstream|" \
            "$root/deploy/nginx-fleet.conf" >"$dir/nginx.conf"
        "${pdeath[@]}" "${srv_core[@]}" nginx -p "$dir" -e "$dir/nginx.error.log" -c "$dir/nginx.conf" \
            -g 'daemon off;' </dev/null 2>>"$dir/nginx.error.log" &
        ngx_pid=$!
        fleet_pids+=("$ngx_pid")
        lb="http://127.0.0.1:$lb_port"
        wait_for nginx "$ngx_pid" curl -sf "$lb/healthz" && break
        [[ $try -lt 3 ]] || { tail -20 "$dir/nginx.error.log" >&2; exit 1; }
    done
}
fleet_down() {
    local p
    for p in "${fleet_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${fleet_pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    fleet_pids=()
}
login() { # login EMAIL -> token (through nginx)
    curl -sf -X POST "$lb/trpc/auth.login" -H 'content-type: application/json' \
        -d "{\"email\":\"$1\",\"password\":\"demo1234\"}" | grep -o '"token":"[^"]*"' | cut -d'"' -f4
}
# user 1 reads user.me under wrk, user 2 is the probe's, users 3..40 write
login_all() {
    reader=$(login user1@example.com)
    prober=$(login user2@example.com)
    : >"$work/writers"
    for i in $(seq 3 40); do login "user$i@example.com" >>"$work/writers"; done
    [[ -n $reader && -n $prober && $(grep -c . "$work/writers") -eq 38 ]] ||
        { echo "bench: logins failed" >&2; exit 1; }
}
warm() { # user.me of the reader in every instance's L1
    local u
    for u in "${inst_urls[@]}"; do
        curl -sf -H "Authorization: Bearer $reader" "$u/trpc/user.me" >/dev/null
        curl -sf -H "Authorization: Bearer $reader" "$u/trpc/user.me" >/dev/null
    done
}

# CPU time (clock ticks, utime+stime of every thread) of processes, by pid.
ticks() {
    local t=0 p f
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] || continue
        read -r -a f <"/proc/$p/stat" || continue
        # fields after "(comm)": comm has no spaces here (nginx, tiercache, redis-server)
        t=$((t + f[13] + f[14]))
    done
    echo "$t"
}
cores() { # busy and total ticks of cpu0 and cpu1 and the whole machine: "b0 t0 b1 t1 b t"
    awk '/^cpu[01]? / { b = $2+$3+$4+$7+$8+$9; t = b+$5+$6; printf "%d %d ", b, t }' /proc/stat |
        awk '{ print $3, $4, $5, $6, $1, $2 }'
}
hz=$(getconf CLK_TCK)

# wrk_cpu NAME [wrk args...]: wrk on the client core, -t1 -d$dur --latency, with the CPU split
# of nginx, the instances, Redis and wrk over the run. Output in $work/NAME.out, the split in
# $work/NAME.cpu.
wrk_cpu() {
    local name=$1; shift
    local ngx_all=("$ngx_pid" $(pgrep -P "$ngx_pid" || true))
    local n0 i0 r0 n1 i1 r1 c0 c1 t0 t1
    n0=$(ticks "${ngx_all[@]}") i0=$(ticks "${inst_pids[@]}") r0=$(ticks "$redis_pid")
    c0=$(cores) t0=$(date +%s%N)
    ( "${cli_core[@]}" wrk -t1 -d"${dur}s" --latency "$@" >"$work/$name.out"
      read -r -a f <"/proc/$BASHPID/stat"; echo $((f[15] + f[16])) >"$work/$name.wrkticks" )
    t1=$(date +%s%N) c1=$(cores)
    n1=$(ticks "${ngx_all[@]}") i1=$(ticks "${inst_pids[@]}") r1=$(ticks "$redis_pid")
    awk -v hz="$hz" -v wall="$(( (t1 - t0) / 1000000 ))" -v n=$((n1 - n0)) -v i=$((i1 - i0)) \
        -v k="${#inst_pids[@]}" -v r=$((r1 - r0)) -v w="$(cat "$work/$name.wrkticks")" \
        -v c0="$c0" -v c1="$c1" 'BEGIN {
            s = wall / 1000; split(c0, a, " "); split(c1, b, " ")
            ours = (n + i + r + w) / hz / s
            all = (b[5] - a[5]) / hz / s
            printf "CPU in cores: nginx %.2f, instances %.2f (%.2f each), redis %.2f, wrk %.2f; ", \
                n / hz / s, i / hz / s, i / hz / s / k, r / hz / s, w / hz / s
            printf "core0 %d%% core1 %d%% busy; everything else on the machine %.2f\n", \
                100 * (b[1] - a[1]) / (b[2] - a[2]), 100 * (b[3] - a[3]) / (b[4] - a[4]), all - ours
        }' >"$work/$name.cpu"
}
figs() { # req/s, p50, p99, non-2xx, socket errors of a wrk output
    awk '/Requests\/sec/ { rps = $2 } /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
         /Non-2xx/ { bad = $NF } /Socket errors/ { sub(/^ *Socket errors: */, ""); sock = $0 }
         END { printf "%s req/s, p50 %s, p99 %s", rps, p50, p99
               printf ", non-2xx %d", bad; if (sock != "") printf " (socket errors: %s)", sock }' "$1"
}
scrape() { # scrape TAG: every instance's /metrics into $work/TAG.<i>
    local i
    for i in "${!inst_urls[@]}"; do curl -sf "${inst_urls[$i]}/metrics" >"$work/$1.$i" || : >"$work/$1.$i"; done
}
lapses() { # lapses BEFORE AFTER: ack timeouts and lease lapses between two scrapes, all instances
    local i b=() a=() x y
    for i in "${!inst_urls[@]}"; do b+=("$work/$1.$i"); a+=("$work/$2.$i"); done
    grep -q '^tiercache_cache_ack_timeouts_total ' "${a[@]}" || return 0
    sum() { awk '/^tiercache_cache_ack_timeouts_total / { t += $2 } /^tiercache_cache_lease_lapses_total / { l += $2 }
                 END { print t + 0, l + 0 }' "$@"; }
    read -r -a x < <(sum "${b[@]}")
    read -r -a y < <(sum "${a[@]}")
    echo "; ack timeouts $((y[0] - x[0])), lease lapses $((y[1] - x[1]))"
}
hist() { # hist BEFORE AFTER: the invalidate-duration histogram's increase between two scrapes
    local i b=() a=()
    for i in "${!inst_urls[@]}"; do b+=("$work/$1.$i"); a+=("$work/$2.$i"); done
    node "$root/bench/fleet.mjs" hist "${b[@]}" -- "${a[@]}"
}

# ---- 2. with and without the guarantee, 3 instances ----------------------------------------
declare -A R=()
for build in this base; do
    b=$bin
    [[ $build == base ]] && b=$basebin
    echo "bench: 3 instances of the $build build behind nginx..." >&2
    fleet_up "$build" "$b" 3
    login_all
    warm
    wrk_cpu "$build-me" -c64 -H "Authorization: Bearer $reader" "$lb/trpc/user.me"
    R[$build-me]="$(figs "$work/$build-me.out")"
    R[$build-me-cpu]="$(cat "$work/$build-me.cpu")"
    scrape "$build-m0"
    TOKENS=$work/writers wrk_cpu "$build-w1" -c1 -s "$root/bench/fleet-write.lua" "$lb"
    scrape "$build-m1"
    TOKENS=$work/writers wrk_cpu "$build-w16" -c16 -s "$root/bench/fleet-write.lua" "$lb"
    scrape "$build-m2"
    R[$build-w1]="$(figs "$work/$build-w1.out")$(lapses "$build-m0" "$build-m1")"
    R[$build-w16]="$(figs "$work/$build-w16.out")$(lapses "$build-m1" "$build-m2")"
    R[$build-h1]="$(hist "$build-m0" "$build-m1")"
    R[$build-h16]="$(hist "$build-m1" "$build-m2")"
    # the probe, beside 4 connections of writes by the other users
    TOKENS=$work/writers "${cli_core[@]}" wrk -t1 -c4 -d"${dur}s" -s "$root/bench/fleet-write.lua" \
        "$lb" >"$work/$build-bg.out" &
    bg=$!
    fleet_pids+=("$bg")
    R[$build-probe]="$(node "$root/bench/fleet.mjs" probe --token "$prober" --trials 300 \
        --ms $((dur * 1000)) "${inst_urls[@]}")"
    wait "$bg"
    unset 'fleet_pids[-1]'
    scrape "$build-m3"
    R[$build-counters]="$(cat "$work/$build-m3".* | awk '
        /^tiercache_cache_ack_timeouts_total / { a += $2 } /^tiercache_cache_lease_lapses_total / { l += $2 }
        /^tiercache_cache_l1_trusted / { t += $2; n++ }
        END { if (n) printf "since start: ack timeouts %d, lease lapses %d; L1 trusted now on %d of %d instances", a, l, t, n
              else printf "n/a" }')"
    fleet_down
done

echo
echo "== 2. the fleet guarantee's cost: 3 instances behind nginx (round robin), one Redis, one PostgreSQL =="
echo "this build ($this_commit):"
echo "  user.me cached, 64 conn:  ${R[this-me]}"
echo "    ${R[this-me-cpu]}"
echo "  user.update, 1 conn:      ${R[this-w1]}"
echo "  user.update, 16 conn:     ${R[this-w16]}"
echo "  instances' counters:      ${R[this-counters]}"
echo "baseline ($ref = $base_commit$basenote):"
echo "  user.me cached, 64 conn:  ${R[base-me]}"
echo "    ${R[base-me-cpu]}"
echo "  user.update, 1 conn:      ${R[base-w1]}"
echo "  user.update, 16 conn:     ${R[base-w16]}"

# ---- 3. 1, 2, 3 instances --------------------------------------------------------------------
echo
echo "== 3. cached user.me through nginx, 64 connections, this build: 1, 2, 3 instances =="
for n in 1 2 3; do
    echo "bench: $n instance(s)..." >&2
    fleet_up this "$bin" "$n"
    reader=$(login user1@example.com)
    warm
    wrk_cpu "scale$n" -c64 -H "Authorization: Bearer $reader" "$lb/trpc/user.me"
    fleet_down
    echo "$n instance(s):  $(figs "$work/scale$n.out")"
    echo "    $(cat "$work/scale$n.cpu")"
done
echo "  What limits it on 2 cores: core 0, which nginx and every instance share (wrk and Redis have"
echo "  core 1). More instances add no CPU, they split the same core; nginx's proxying (a second"
echo "  connection per request, a parse and a copy) takes about as much of it as the instances' work."

# ---- 4. invalidation delay -----------------------------------------------------------------
echo
echo "== 4. invalidation delay across 3 instances (a write until every other instance applied it) =="
echo "from tiercache_cache_invalidate_duration_seconds (summed over the instances; log2 buckets):"
echo "  this build, writes on 1 conn:   ${R[this-h1]}"
echo "  this build, writes on 16 conn:  ${R[this-h16]}"
echo "  baseline:                       ${R[base-h1]}"
echo "from the client (write on one instance, read at once on the next; beside 4 writing connections):"
echo "  this build: ${R[this-probe]}"
echo "  baseline:   ${R[base-probe]}"
echo
echo "command: bench/fleet.sh -d $dur --baseline $ref  ($(nproc) cores; nginx and instances on core 0," \
    "wrk and Redis on core 1; load average at the end $(cut -d' ' -f1-3 /proc/loadavg))"
