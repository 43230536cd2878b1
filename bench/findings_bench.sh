#!/usr/bin/env bash
# A report with very many findings: `capledger report --backend cpu` with `--out` and with
# `--format json` on a log where nearly every line is its own UNAUTHORIZED_PATHWAY finding (AIA
# shipments to tier-2 countries by entities without a tier-1 HQ, a new entity every two lines),
# for each capledger binary given, one after another, so their time and peak memory compare. The
# outputs of every binary must be the same bytes (checked).
#
# Usage: bench/findings_bench.sh [-l LINES] [-w WORK_DIR] CAPLEDGER...
#   -l  data lines (default 1000000: about 967,000 findings)
#   -w  where the log and outputs go (default ${TMPDIR:-/tmp}/capledger-findings)
# Prints one line per run: binary, mode, wall s, user s, system s, peak RSS KB.
set -euo pipefail

lines=1000000
work="${TMPDIR:-/tmp}/capledger-findings"
while getopts "l:w:" opt; do
  case "$opt" in
    l) lines="$OPTARG" ;;
    w) work="$OPTARG" ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || { sed -n '2,12p' "$0"; exit 2; }

log="$work/findings-$lines.csv"
mkdir -p "$work"
if [[ ! -s "$log" ]]; then
  python3 - "$lines" "$log" <<'EOF'
import sys
lines, path = int(sys.argv[1]), sys.argv[2]
countries = ["IN", "BR", "MX", "SA", "AE", "PL", "TR", "VN"]
with open(path, "w") as f:
    f.write("shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n")
    for i in range(lines):
        f.write(f"S{i},2025-0{1 + i % 9}-1{i % 10},ENT{i // 2:07d},{countries[i % 8]},H100-SXM,{1 + i % 5},AIA,,Exp{i % 7},\n")
EOF
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "log: $lines lines, $(stat -c %s "$log") bytes"
first=""
for bin in "$@"; do
  out="$work/out-$(basename "$bin")"
  rm -rf "$out"
  for mode in out json; do
    args=(--out "$out")
    [[ $mode == json ]] && args=(--format json)
    rc=0
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" report "$log" --backend cpu "${args[@]}" \
      >"$work/stdout" 2>"$work/stderr" || rc=$?
    (( rc <= 1 )) || { cat "$work/stderr" >&2; exit "$rc"; }  # 1: violations found
    echo "$bin $mode $(tail -1 "$work/time")"
    [[ $mode == json ]] && mv "$work/stdout" "$out/stdout.json"
  done
  if [[ -z "$first" ]]; then
    first="$out"
  elif ! diff -r -q "$first" "$out" >/dev/null; then
    echo "$bin: outputs differ from $(basename "$first")'s" >&2
    exit 1
  fi
done
