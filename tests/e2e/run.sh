#!/bin/sh
# run.sh NODE FILE: one e2e test file under node's test runner, as ctest runs it (CMakeLists.txt).
# TC_E2E_TESTS, when set, is a regular expression passed on as --test-name-pattern: only the
# tests whose names match run (scripts/mutants.sh runs just the tests a mutant is checked by).
node=$1 file=$2
if [ -n "${TC_E2E_TESTS:-}" ]; then
    exec "$node" --test --test-reporter=spec --test-name-pattern="$TC_E2E_TESTS" "$file"
fi
exec "$node" --test --test-reporter=spec "$file"
