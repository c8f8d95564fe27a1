#!/usr/bin/env bash
# mutants.sh: the mutation run (docs/mutants.md). Each row of tests/mutants.tsv is a
# one-line bug in a guarantee; for each, in a scratch copy of the tree (build-mutants/src,
# never the working tree), the bug is put in, what its tests need is built (incrementally:
# the copy and its build dir, build-mutants/build, are kept between mutants and runs), only
# the tests the row names run, and the mutant is reported caught (a test failed) or
# SURVIVED (every test passed: the guarantee is unguarded), with the time it took.
# Exit status 1 if any mutant survived, or its pattern does not occur exactly once in its
# file, or it did not build, or a test it names does not exist or selects no test.
#
#   bash scripts/mutants.sh [ID...]              every mutant, or those named
#   bash scripts/mutants.sh --baseline [ID...]   their tests on the tree as it is: all must pass
#   bash scripts/mutants.sh --check [ID...]      only the table: each pattern occurs once, each
#                                                test exists (no build, no servers)
#   bash scripts/mutants.sh --list               the mutants, their tests and guarantees
#
# It needs the private Redis and PostgreSQL of the test suite: run without them (that is,
# not from scripts/test.sh), it runs itself as `scripts/test.sh --mutants`, which starts
# them and stops them after. Tests run with TC_CHECK_FAIL_FAST=1 (a C test stops at its
# first failed check) and, for e2e files, TC_E2E_TESTS = the row's test-name pattern.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
table="$root/tests/mutants.tsv"
work="$root/build-mutants"
src="$work/src" build="$work/build" logs="$work/logs"

mode=run only=()
for a in "$@"; do
    case "$a" in
        --list) mode=list ;;
        --check) mode=check ;;
        --baseline) mode=baseline ;;
        -*) echo "usage: $0 [--baseline|--check|--list] [ID...]" >&2; exit 2 ;;
        *) only+=("$a") ;;
    esac
done

# ---- the table: id, file, pattern, replacement, tests, test-name pattern, guarantee ----------
ids=() files=() pats=() reps=() tests=() names=() whats=()
lineno=0
while IFS= read -r line || [[ -n "$line" ]]; do
    lineno=$((lineno + 1))
    [[ -z "$line" || "$line" == \#* ]] && continue
    mapfile -t -d $'\t' f < <(printf '%s\t' "$line") # every field, empty ones too
    if [[ ${#f[@]} -ne 7 ]]; then
        echo "mutants.sh: $table:$lineno: ${#f[@]} fields, not 7 (tab-separated)" >&2
        exit 2
    fi
    for id in "${ids[@]}"; do
        [[ "$id" != "${f[0]}" ]] || { echo "mutants.sh: $table:$lineno: id ${f[0]} twice" >&2; exit 2; }
    done
    ids+=("${f[0]}") files+=("${f[1]}") pats+=("${f[2]}") reps+=("${f[3]}")
    tests+=("${f[4]}") names+=("${f[5]}") whats+=("${f[6]}")
done <"$table"

if [[ $mode == list ]]; then
    for i in "${!ids[@]}"; do
        printf '%-28s %-44s %s\n' "${ids[$i]}" "${tests[$i]}" "${whats[$i]}"
    done
    exit 0
fi

sel=()
if [[ ${#only[@]} -eq 0 ]]; then
    sel=("${!ids[@]}")
else
    for want in "${only[@]}"; do
        found=""
        for i in "${!ids[@]}"; do [[ "${ids[$i]}" == "$want" ]] && found=$i; done
        if [[ -z "$found" ]]; then echo "mutants.sh: no mutant '$want' in $table" >&2; exit 2; fi
        sel+=("$found")
    done
fi

# ---- helpers ----------------------------------------------------------------------------------

# mutate FILE PATTERN REPLACEMENT OUT: writes FILE to OUT with PATTERN replaced, if it
# occurs exactly once; else says how often it occurs and fails. OUT empty: only the check.
# Fixed strings, no escapes. "SCOPE :: PATTERN": SCOPE (e.g. the first line of a function)
# occurs once, and PATTERN once between it and the next line that is just "}".
mutate() {
    perl -e '
        my ($file, $pat, $rep, $out) = @ARGV;
        local $/; open(my $fh, "<", $file) or die "$file: $!\n"; my $s = <$fh>; close $fh;
        sub count { my ($str, $p) = @_; my ($n, $at) = (0, 0);
                    while (($at = index($str, $p, $at)) >= 0) { $n++; $at += length($p); } $n }
        my ($from, $to, $where) = (0, length($s), $file);
        if ($pat =~ /^(.*?) :: (.*)$/s) {
            my $scope = $1; $pat = $2;
            my $n = count($s, $scope);
            die "scope occurs $n times in $file, not once\n" if $n != 1;
            $from = index($s, $scope);
            my $end = index($s, "\n}\n", $from);
            $to = $end >= 0 ? $end + 3 : length($s);
            $where = "its scope in $file";
        }
        my $region = substr($s, $from, $to - $from);
        my $n = count($region, $pat);
        die "pattern occurs $n times in $where, not once\n" if $n != 1;
        substr($s, $from + index($region, $pat), length($pat)) = $rep;
        exit 0 if $out eq "";
        open(my $o, ">", $out) or die "$out: $!\n"; print $o $s; close $o or die "$out: $!\n";
    ' "$1" "$2" "$3" "$4"
}

# The source of a ctest test (CMakeLists.txt names the tests after their files; a test run
# again on a Redis Cluster is "<name>@cluster...", the same file).
test_file() {
    case "$1" in
        unit/* | integration/*) echo "tests/${1%%@*}.c" ;;
        e2e/*) echo "tests/e2e/${1#e2e/}.test.mjs" ;;
        lint/*) echo "tests/lint/${1#lint/}.sh" ;;
        *) echo "tests/$1" ;;
    esac
}

# What is wrong with row i before anything is built ("KIND message"), or nothing.
row_problem() {
    local i=$1 t msg
    if ! msg=$(mutate "$root/${files[$i]}" "${pats[$i]}" "${reps[$i]}" "" 2>&1); then
        echo "PATTERN $msg"
        return
    fi
    [[ -n "${tests[$i]}" ]] || { echo "NO-TEST no test named"; return; }
    for t in ${tests[$i]}; do
        if [[ ! -f "$root/$(test_file "$t")" ]]; then
            echo "NO-TEST no test $t ($(test_file "$t"))"
            return
        fi
    done
    if [[ -n "${names[$i]}" && " ${tests[$i]}" != *" e2e/"* ]]; then
        echo "NO-TEST a test-name pattern, but no e2e test to apply it to"
    fi
}

# The scratch copy: the tree's files (tracked, and new ones git does not ignore). Only files
# that differ are copied, with a new time, so the build stays incremental and a file a
# mutant changed (also one left by an interrupted run) is rebuilt.
sync_tree() {
    local f want=() tmp
    mkdir -p "$src" "$logs"
    mapfile -t want < <(cd "$root" && git ls-files -co --exclude-standard)
    for f in "${want[@]}"; do
        [[ -f "$root/$f" ]] || continue
        if ! cmp -s "$root/$f" "$src/$f"; then
            mkdir -p "$(dirname "$src/$f")"
            cp "$root/$f" "$src/$f"
        fi
    done
    tmp=$(mktemp)
    printf '%s\n' "${want[@]}" | sort >"$tmp"
    (cd "$src" && find . -path ./tests/e2e/node_modules -prune -o -type f -print | sed 's|^\./||' |
        sort | comm -23 - "$tmp" | while IFS= read -r f; do rm -f "$f"; done)
    rm -f "$tmp"
    ln -sfn "$root/tests/e2e/node_modules" "$src/tests/e2e/node_modules"
}

# The build targets of ctest tests: tests/<kind>/<dir>/<name>.c is <kind>_<dir>_<name>; an
# e2e test needs the server; a lint test, everything.
targets_of() {
    local t
    for t in $1; do
        case "$t" in
            e2e/*) echo tiercache ;;
            lint/*) echo all ;;
            *) t=${t%%@*}; echo "${t//\//_}" ;;
        esac
    done | sort -u
}

# run_tests I LOG: builds and runs row I's tests in the scratch build; sets outcome to
# build (did not build), idle (a test-name pattern selected nothing in: $by), pass, or
# fail (failed: $by).
run_tests() {
    local i=$1 log=$2 re rc=0 idle tg
    mapfile -t tg < <(targets_of "${tests[$i]}")
    if ! cmake --build "$build" -j2 --target "${tg[@]}" >>"$log" 2>&1; then
        outcome=build by=""
        return
    fi
    re=$(printf '%s\n' ${tests[$i]} | sed 's/[][\.^$*+?(){}|]/\\&/g' | paste -sd'|')
    TC_E2E_TESTS="${names[$i]}" TC_CHECK_FAIL_FAST=1 ctest --test-dir "$build" -V \
        --no-tests=error -j2 -R "^($re)\$" >"$log.ctest" 2>&1 || rc=$?
    cat "$log.ctest" >>"$log"
    by=$(sed -n 's/^[[:space:]]*[0-9][0-9]* - \([^ ]*\) (\(.*\))$/\1 (\2)/p' "$log.ctest" |
        sed 's/ (Failed)$//' | paste -sd' ')
    idle=$(perl -ne '$t{$1} = $2 if /Start +(\d+): (\S+)/;
                     $n{$1} += $2 if /^(\d+): \S+ (?:pass|fail) (\d+)$/;
                     END { print join(" ", grep { m{^e2e/} } map { $t{$_} } grep { !$n{$_} }
                                           sort keys %t) }' "$log.ctest")
    rm -f "$log.ctest"
    if [[ -n "$idle" ]]; then
        outcome=idle by=$idle
    elif [[ $rc -eq 0 ]]; then
        outcome=pass
    else
        outcome=fail by=${by:-"ctest failed, see $log"}
    fi
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

if [[ $mode == check ]]; then
    bad=0
    for i in "${sel[@]}"; do
        p=$(row_problem "$i")
        if [[ -n "$p" ]]; then
            printf '%-28s %s\n' "${ids[$i]}" "$p"
            bad=$((bad + 1))
        fi
    done
    echo "mutants.sh: ${#sel[@]} mutants checked, $bad with a problem"
    [[ $bad -eq 0 ]]
    exit
fi

# ---- the private Redis and PostgreSQL: scripts/test.sh starts them ----------------------------
if [[ -z "${TC_REDIS_PORT:-}" || -z "${TC_PG_URL:-}" ]]; then
    exec bash "$root/scripts/test.sh" --mutants -- "$@"
fi

t_start=$(date +%s%N)
sync_tree
echo "mutants.sh: scratch tree ${src#"$root"/}, build ${build#"$root"/}, logs ${logs#"$root"/}"
cmake -S "$src" -B "$build" -DTC_WERROR=OFF -DTC_SANITIZE= >"$logs/configure.log" 2>&1 ||
    { cat "$logs/configure.log" >&2; exit 1; }

good=0 bad=0
if [[ $mode == baseline ]]; then
    # each distinct set of tests once, on the tree as it is
    declare -A seen=()
    printf '%-44s %-8s %7s  %s\n' tests result time "test names"
    for i in "${sel[@]}"; do
        k="${tests[$i]}|${names[$i]}"
        [[ -z "${seen[$k]:-}" ]] || continue
        seen[$k]=1
        t0=$(date +%s%N) log="$logs/baseline-${ids[$i]}.log"
        : >"$log"
        run_tests "$i" "$log"
        case $outcome in
            pass) result=pass detail="" good=$((good + 1)) ;;
            build) result=BUILD detail="the tree does not build (see $log)" bad=$((bad + 1)) ;;
            idle) result=NO-TEST detail="the test-name pattern selects no test in $by" bad=$((bad + 1)) ;;
            fail) result=FAIL detail="failed: $by (see $log)" bad=$((bad + 1)) ;;
        esac
        printf '%-44s %-8s %6ss  %s\n' "${tests[$i]}" "$result" "$(secs "$t0" "$(date +%s%N)")" \
            "${names[$i]}"
        [[ -z "$detail" ]] || printf '%-44s   %s\n' "" "$detail"
    done
    echo "mutants.sh: baseline: $good sets of tests pass, $bad do not" \
        "($(secs "$t_start" "$(date +%s%N)") s)"
    [[ $bad -eq 0 ]]
    exit
fi

printf '%-28s %-8s %7s  %s\n' mutant result time tests
for i in "${sel[@]}"; do
    id=${ids[$i]} file=${files[$i]} t0=$(date +%s%N)
    log="$logs/$id.log"
    : >"$log"
    result="" detail=""
    p=$(row_problem "$i")
    if [[ -n "$p" ]]; then
        result=${p%% *} detail=${p#* }
    else
        mutate "$root/$file" "${pats[$i]}" "${reps[$i]}" "$src/$file"
        run_tests "$i" "$log"
        case $outcome in
            fail) result=caught detail="" ;;
            pass) result=SURVIVED detail="every test passed with the bug in (see $log)" ;;
            build) result=BUILD detail="the mutant does not build (see $log)" ;;
            idle) result=NO-TEST detail="the test-name pattern selects no test in $by" ;;
        esac
        cp "$root/$file" "$src/$file" # back as it was, with a new time: rebuilt next time
    fi
    if [[ "$result" == caught ]]; then good=$((good + 1)); else bad=$((bad + 1)); fi
    shown=""
    for t in ${tests[$i]}; do # a caught mutant: * marks the tests that failed
        if [[ "$result" == caught && (" $by " == *" $t "* || " $by " == *" $t ("*) ]]; then
            t="$t*"
        fi
        shown+="${shown:+ }$t"
    done
    printf '%-28s %-8s %6ss  %s%s\n' "$id" "$result" "$(secs "$t0" "$(date +%s%N)")" \
        "$shown" "${names[$i]:+ [${names[$i]}]}"
    [[ -z "$detail" ]] || printf '%-28s   %s\n' "" "$detail"
done
echo "mutants.sh: ${#sel[@]} mutants, $good caught, $bad not caught" \
    "(SURVIVED, or a problem with the row); $(secs "$t_start" "$(date +%s%N)") s in all"
[[ $bad -eq 0 ]]
