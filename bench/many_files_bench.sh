#!/usr/bin/env bash
# A log given as many files against the same log as one file: `capledger report --backend cpu`
# on both, interleaved, for each capledger binary given (say a baseline build and this one).
# Agencies receive logs as daily or monthly files; the report of the parts must cost about what
# the whole costs, and it must be the same report (checked: every output file but summary.json,
# whose input list differs, is compared with the one-file report's).
#
# With -L the command is `ledger ingest` of the whole log, or of its parts, into a new ledger, and
# `ledger report --out` of each ledger is compared.
#
# Usage: bench/many_files_bench.sh [-l LINES] [-e ENTITIES] [-n FILES] [-r ROUNDS] [-w WORK_DIR] [-L] CAPLEDGER...
#   -l  data lines of the generated log (default 3000000)
#   -e  distinct entities (default 500000)
#   -n  files the log is split into, each with the header (default 100)
#   -r  rounds; each runs every binary on the whole log and on its parts (default 2)
#   -w  where the log and outputs go (default ${TMPDIR:-/tmp}/capledger-many-files)
#   -L  time `ledger ingest` instead of `report`
# Prints one line per run: binary, input, wall s, user s, system s, peak RSS KB.
set -euo pipefail

lines=3000000
entities=500000
files=100
rounds=2
work="${TMPDIR:-/tmp}/capledger-many-files"
ledger=0
while getopts "l:e:n:r:w:L" opt; do
  case "$opt" in
    l) lines="$OPTARG" ;;
    e) entities="$OPTARG" ;;
    n) files="$OPTARG" ;;
    r) rounds="$OPTARG" ;;
    w) work="$OPTARG" ;;
    L) ledger=1 ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || { sed -n '2,19p' "$0"; exit 2; }

dir="$work/log-$lines-$entities"
if [[ ! -s "$dir/shipments.csv" ]]; then
  "$1" generate --records "$lines" --seed 3 --entities "$entities" --out "$dir" >/dev/null
fi
parts="$dir/parts-$files"
if [[ ! -d "$parts" ]]; then
  mkdir -p "$parts.tmp"
  header="$(head -1 "$dir/shipments.csv")"
  data_lines="$(($(wc -l <"$dir/shipments.csv") - 1))"
  tail -n +2 "$dir/shipments.csv" | split -l "$(((data_lines + files - 1) / files))" -d -a 4 - "$parts.tmp/p"
  for p in "$parts.tmp"/p????; do { echo "$header"; cat "$p"; } >"$p.csv" && rm "$p"; done
  mv "$parts.tmp" "$parts"
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "log: $lines lines, $entities entities, $(stat -c %s "$dir/shipments.csv") bytes; parts: $files files"
run() {  # binary, label, inputs...
  local bin="$1" label="$2"
  local out="$work/out-$label"
  shift 2
  rm -rf "$out"
  local rc=0
  if (( ledger )); then
    rm -f "$work/l.db"
    "$bin" ledger init "$work/l.db" 2>/dev/null
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" ledger ingest "$work/l.db" "$@" \
      --entities "$dir/entities.csv" >/dev/null 2>"$work/stderr" || rc=$?
    (( rc == 0 )) || { cat "$work/stderr" >&2; exit "$rc"; }
    "$bin" ledger report "$work/l.db" --out "$out" >/dev/null 2>&1 || rc=$?
  else
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" report "$@" --entities "$dir/entities.csv" \
      --backend cpu --out "$out" >/dev/null 2>"$work/stderr" || rc=$?
  fi
  (( rc <= 1 )) || { cat "$work/stderr" >&2; exit "$rc"; }  # 1: violations found, a finished report
  echo "$bin $label $(tail -1 "$work/time")"
}
for ((r = 1; r <= rounds; ++r)); do
  for bin in "$@"; do
    run "$bin" whole "$dir/shipments.csv"
    run "$bin" parts "$parts"/p????.csv
    for f in "$work/out-whole"/*; do
      name="$(basename "$f")"
      [[ "$name" == summary.json ]] && continue
      cmp -s "$f" "$work/out-parts/$name" || { echo "$bin: $name differs between the whole log and its parts" >&2; exit 1; }
    done
  done
done
