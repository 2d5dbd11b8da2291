#!/bin/sh
# The Markdown fragment of an in-process fuzzing run (`make fuzz-parser`), from the log of
# libFuzzer run with -print_final_stats=1: executions, exec/s, time, corpus, and crashes.
# Usage: fuzz/report.sh <libFuzzer log> [<corpus dir>]
set -eu
log=$1
corpus=${2:-}
stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
runs=$(stat number_of_executed_units)
rate=$(stat average_exec_per_sec)
peak=$(stat peak_rss_mb)
done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
seconds=$(echo "$done_line" | sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p')
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
crashes=$(grep -cE '^==[0-9]+== ?ERROR|deadly signal|panicked at' "$log" || true)
if [ -z "$runs" ] || [ -z "$rate" ]; then
  echo "fuzz/report.sh: no final stats in $log (was -print_final_stats=1 given?)" >&2
  exit 1
fi
echo "## In-process fuzzing of the ClientHello parser"
echo
echo "Written by \`fuzz/report.sh\` (\`make fuzz-parser\`) from libFuzzer's final stats:"
echo "\`fuzz/fuzz_targets/client_hello.rs\` (\`wire::check_invariants\`: parse, rewrite, undo,"
echo "under AddressSanitizer), seeds \`fuzz/corpus/client_hello\`."
echo
echo "- executions: **$runs** in ${seconds:-?} s, **$rate exec/s** (peak RSS ${peak:-?} MB)"
echo "- crashes, sanitizer errors or panics: **$crashes**"
if [ -n "$corpus" ] && [ -d "$corpus" ]; then
  echo "- corpus: $(find "$corpus" -type f | wc -l) inputs"
fi
echo "- libFuzzer's last status line: \`$last\`"
