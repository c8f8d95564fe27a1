# pg.sh: sourced by test.sh and fleet.sh. start_pg DIR starts a private PostgreSQL cluster in
# DIR/pg on a free loopback port (trust authentication, user "tiercache", fsync off: for
# tests and local fleets, not for data you keep) and sets pg_pid and pg_port; stop_pg stops
# it (fast shutdown, then SIGKILL). initdb refuses root: as root the cluster runs as the
# "postgres" system user, which must reach DIR (made 711) and owns DIR/pg. The server dies
# with the calling script even if that script is SIGKILLed (pdeathsig).
start_pg() {
    local dir=$1 bindir pdeath=() pgrun
    bindir=${TC_PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
    setpriv --pdeathsig KILL true 2>/dev/null && pdeath=(--pdeathsig KILL)
    pgrun=(setpriv "${pdeath[@]}")
    mkdir -p "$dir/pg"
    if [[ $(id -u) -eq 0 ]]; then
        pgrun+=(--reuid=postgres --regid=postgres --init-groups)
        chmod 711 "$dir"
        chown postgres: "$dir/pg"
    fi
    "${pgrun[@]}" "$bindir/initdb" -D "$dir/pg/data" -U tiercache -A trust -E UTF8 \
        --locale=C --no-sync >"$dir/pg/initdb.log" 2>&1 || { cat "$dir/pg/initdb.log" >&2; return 1; }
    pg_pid=""
    for _ in 1 2 3 4 5; do # a random port may be taken
        pg_port=$((20000 + RANDOM % 40000))
        "${pgrun[@]}" "$bindir/postgres" -D "$dir/pg/data" -p "$pg_port" \
            -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off </dev/null >>"$dir/pg/log" 2>&1 &
        pg_pid=$!
        for _ in $(seq 400); do # ours and ready: postmaster.pid line 1 is our pid, line 8 "ready"
            kill -0 "$pg_pid" 2>/dev/null || break
            [[ $(sed -n '1p;8p' "$dir/pg/data/postmaster.pid" 2>/dev/null | tr -s '\n ' ' ') == \
                "$pg_pid ready"* ]] && return 0
            sleep 0.05
        done
        kill -KILL "$pg_pid" 2>/dev/null || true
        wait "$pg_pid" 2>/dev/null || true
        pg_pid=""
    done
    cat "$dir/pg/log" >&2 || true
    return 1
}

stop_pg() {
    [[ -n "${pg_pid:-}" ]] || return 0
    kill -INT "$pg_pid" 2>/dev/null || true # fast shutdown
    for _ in $(seq 50); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pg_pid" 2>/dev/null || true
    wait "$pg_pid" 2>/dev/null || true
    pg_pid=""
}
