#!/usr/bin/env bash
# Reads the memcheck logs of nginx processes (one file per pid, from
# `make test-nginx-valgrind`) and fails on any memory error anywhere in nginx, and on any
# definite leak whose allocation stack passes through the library.
# Usage: check-nginx.sh LOG_DIR
set -euo pipefail
dir=${1:?usage: check-nginx.sh LOG_DIR}
shopt -s nullglob
logs=("$dir"/vg.*)
if [ ${#logs[@]} -eq 0 ]; then
  echo "no valgrind logs in $dir" >&2
  exit 1
fi
status=0
finished=0
for log in "${logs[@]}"; do
  grep -q "ERROR SUMMARY" "$log" && finished=$((finished + 1))
  # Memory errors, whoever makes them: each is a record that starts with one of these.
  if grep -E "== (Invalid (read|write|free)|Mismatched free|Conditional jump or move depends on uninitialised|Use of uninitialised|Syscall param .* uninitialised|Source and destination overlap)" "$log"; then
    echo "memory error in $log" >&2
    status=1
  fi
  # Definite leaks in our frames: the loss record's stack mentions the library.
  if awk '/definitely lost in loss record/ { rec = 1; ours = 0; next }
          rec && /kong_client_tls/ { ours = 1 }
          rec && /^==[0-9]+== *$/ { if (ours) found = 1; rec = 0 }
          END { exit found ? 0 : 1 }' "$log"; then
    echo "definite leak through kong_client_tls in $log" >&2
    status=1
  fi
done
echo "valgrind: ${#logs[@]} nginx processes, ${finished} ran to their leak check;" \
     "$( [ $status -eq 0 ] && echo "no memory error, no definite leak in kong_client_tls" || echo FAILED )"
[ "$finished" -eq "${#logs[@]}" ] || { echo "a process did not reach its leak check" >&2; status=1; }
exit $status
