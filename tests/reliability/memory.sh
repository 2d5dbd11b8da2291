#!/usr/bin/env bash
# Runs `make test-sanitizers` and `make test-nginx-valgrind`, then writes what they found
# as Markdown to $1 (make memory-report: docs/reliability/memory.md), for RELIABILITY.md.
# Never edit that file by hand. Exits non-zero when either run failed (the report is
# written anyway, saying so).
set -uo pipefail
out=${1:?usage: memory.sh <report.md>}
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.." || exit 1
MAKE=${MAKE:-make}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run() { # run <name> <make target>: its output to $logs/<name>.log and the console
  local start rc
  start=$(date +%s)
  "$MAKE" "$2" 2>&1 | tee "$logs/$1.log"
  rc=${PIPESTATUS[0]}
  echo "$(( $(date +%s) - start ))" > "$logs/$1.seconds"
  return "$rc"
}
verdict() { if [ "$1" = 0 ]; then echo "**passed**"; else echo "**FAILED**"; fi; }

run sanitizers test-sanitizers; san=$?
run valgrind test-nginx-valgrind; vg=$?

# "Running tests/core.rs (…)" then "test result: ok. 15 passed; 0 failed; …": one row each.
suites() {
  awk '/^ *Running / { name = ($2 == "unittests") ? $3 : $2 }
       /^test result:/ { printf "| %s | %s passed, %s failed |\n", name, $4, $6 }'
}

{
  echo "## Memory errors and undefined behaviour"
  echo
  echo "Written by \`tests/reliability/memory.sh\` (\`make memory-report\`); do not edit by hand."
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
  echo "$(rustc --version), $(gcc --version | head -n 1), $(valgrind --version)."
  echo
  echo "### \`make test-sanitizers\`: $(verdict "$san") in $(cat "$logs/sanitizers.seconds") s"
  echo
  echo "The in-process suites with the library built under AddressSanitizer (LeakSanitizer"
  echo "on), Rust debug assertions and overflow checks; the C tests linking that library,"
  echo "built with GCC's \`-fsanitize=address,undefined -fno-sanitize-recover=all\`."
  echo
  echo "| suite | result |"
  echo "|---|---|"
  suites < "$logs/sanitizers.log"
  echo "| C tests (tests/c/test_*.c) | $(grep -q 'c tests under ASan+UBSan: all passed' "$logs/sanitizers.log" && echo 'all passed' || echo FAILED) |"
  echo
  echo "### \`make test-nginx-valgrind\`: $(verdict "$vg") in $(cat "$logs/valgrind.seconds") s"
  echo
  echo "The nginx suites with every nginx process under valgrind memcheck."
  echo
  echo "| suite | result |"
  echo "|---|---|"
  suites < "$logs/valgrind.log"
  echo
  echo "- $(grep '^valgrind: ' "$logs/valgrind.log" || echo 'valgrind: no summary (the run did not reach its check)')"
} > "$out"
echo "wrote $out"
[ "$san" = 0 ] && [ "$vg" = 0 ]
