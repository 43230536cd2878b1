#!/usr/bin/env bash
# Logs at the extremes of what a report holds besides totals, for each capledger binary given, one
# after another, so their time and peak memory compare (`capledger report --backend cpu`):
#   findings: nearly every line is its own UNAUTHORIZED_PATHWAY finding (AIA shipments to tier-2
#             countries by entities without a tier-1 HQ, a new entity every two lines), reported
#             with `--out` and with `--format json`;
#   rejects:  every other line names an unknown country, reported with `--out` and `--rejects`.
# The outputs of every binary must be the same bytes (checked).
#
# Usage: bench/extreme_logs_bench.sh [-l LINES] [-w WORK_DIR] CAPLEDGER...
#   -l  data lines of each log (default 1000000: about 967,000 findings, 500,000 rejects)
#   -w  where the logs and outputs go (default ${TMPDIR:-/tmp}/capledger-extreme)
# Prints one line per run: binary, log and mode, wall s, user s, system s, peak RSS KB.
set -euo pipefail

lines=1000000
work="${TMPDIR:-/tmp}/capledger-extreme"
while getopts "l:w:" opt; do
  case "$opt" in
    l) lines="$OPTARG" ;;
    w) work="$OPTARG" ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || { sed -n '2,15p' "$0"; exit 2; }

findings="$work/findings-$lines.csv"
rejects="$work/rejects-$lines.csv"
mkdir -p "$work"
if [[ ! -s "$findings" || ! -s "$rejects" ]]; then
  python3 - "$lines" "$findings" "$rejects" <<'EOF'
import sys
lines, findings, rejects = int(sys.argv[1]), sys.argv[2], sys.argv[3]
header = "shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter,tpp_per_unit\n"
countries = ["IN", "BR", "MX", "SA", "AE", "PL", "TR", "VN"]
with open(findings, "w") as f:
    f.write(header)
    for i in range(lines):
        f.write(f"S{i},2025-0{1 + i % 9}-1{i % 10},ENT{i // 2:07d},{countries[i % 8]},H100-SXM,{1 + i % 5},AIA,,Exp{i % 7},\n")
with open(rejects, "w") as f:
    f.write(header)
    for i in range(lines):
        f.write(f"S{i},2025-0{1 + i % 9}-1{i % 10},ENT{i % 5000:05d},{'XX' if i % 2 == 0 else 'DE'},H100-SXM,{1 + i % 5},LICENSE,,Exp{i % 7},\n")
EOF
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "logs: $lines lines each; findings $(stat -c %s "$findings") bytes, rejects $(stat -c %s "$rejects") bytes"
first=""
for bin in "$@"; do
  out="$work/out-$(basename "$bin")"
  rm -rf "$out"
  mkdir -p "$out"
  for mode in findings-out findings-json rejects-out; do
    case "$mode" in
      findings-out) args=("$findings" --out "$out/findings") ;;
      findings-json) args=("$findings" --format json) ;;
      rejects-out) args=("$rejects" --out "$out/rejects" --rejects "$out/rejects.csv") ;;
    esac
    rc=0
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" report "${args[@]}" --backend cpu \
      >"$work/stdout" 2>"$work/stderr" || rc=$?
    (( rc <= 1 )) || { cat "$work/stderr" >&2; exit "$rc"; }  # 1: violations found
    echo "$bin $mode $(tail -1 "$work/time")"
    [[ $mode == findings-json ]] && mv "$work/stdout" "$out/findings.json"
  done
  if [[ -z "$first" ]]; then
    first="$out"
  elif ! diff -r -q "$first" "$out" >/dev/null; then
    echo "$bin: outputs differ from $(basename "$first")'s" >&2
    exit 1
  fi
done
