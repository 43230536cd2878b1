#!/usr/bin/env bash
# Logs at the extremes of what a report holds besides totals, for each capledger binary given, one
# after another, so their time and peak memory compare (`capledger report --backend cpu`):
#   findings: nearly every line is its own UNAUTHORIZED_PATHWAY finding (AIA shipments to tier-2
#             countries by entities without a tier-1 HQ, a new entity every two lines), reported
#             with `--out` and with `--format json`;
#   rejects:  every other line names an unknown country, reported with `--out` and `--rejects`;
#   pairs:    every line its own (entity, country) pair (40 countries, a new entity every 40
#             lines), reported with `--out`.
# The outputs of every binary must be the same bytes (checked).
#
# Usage: bench/extreme_logs_bench.sh [-l LINES] [-p PAIR_LINES] [-w WORK_DIR] CAPLEDGER...
#   -l  data lines of the findings and rejects logs (default 1000000: about 967,000 findings,
#       500,000 rejects)
#   -p  data lines (and pairs) of the pairs log (default 2000000)
#   -w  where the logs and outputs go (default ${TMPDIR:-/tmp}/capledger-extreme)
# Prints one line per run: binary, log and mode, wall s, user s, system s, peak RSS KB.
set -euo pipefail

lines=1000000
pair_lines=2000000
work="${TMPDIR:-/tmp}/capledger-extreme"
while getopts "l:p:w:" opt; do
  case "$opt" in
    l) lines="$OPTARG" ;;
    p) pair_lines="$OPTARG" ;;
    w) work="$OPTARG" ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(( $# > 0 )) || { sed -n '2,19p' "$0"; exit 2; }

findings="$work/findings-$lines.csv"
rejects="$work/rejects-$lines.csv"
pairs="$work/pairs-$pair_lines.csv"
mkdir -p "$work"
if [[ ! -s "$findings" || ! -s "$rejects" || ! -s "$pairs" ]]; then
  python3 - "$lines" "$findings" "$rejects" "$pair_lines" "$pairs" <<'EOF'
import sys
lines, findings, rejects = int(sys.argv[1]), sys.argv[2], sys.argv[3]
pair_lines, pairs = int(sys.argv[4]), sys.argv[5]
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
forty = ["US", "DE", "FR", "GB", "JP", "KR", "NL", "IT", "ES", "CA", "AU", "NZ", "IE", "BE", "DK", "FI", "NO", "SE", "TW", "IN",
         "BR", "MX", "SA", "AE", "PL", "TR", "VN", "ID", "TH", "MY", "SG", "PH", "CL", "AR", "CO", "PE", "ZA", "EG", "NG", "KE"]
with open(pairs, "w") as f:
    f.write(header)
    for i in range(pair_lines):
        f.write(f"S{i},2025-0{1 + i % 9}-1{i % 10},ENT{i // 40:06d},{forty[i % 40]},H100-SXM,1,LICENSE,,X{i % 5},\n")
EOF
fi

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "logs: findings and rejects $lines lines each ($(stat -c %s "$findings") and $(stat -c %s "$rejects") bytes), pairs $pair_lines lines ($(stat -c %s "$pairs") bytes)"
first=""
for bin in "$@"; do
  out="$work/out-$(basename "$bin")"
  rm -rf "$out"
  mkdir -p "$out"
  for mode in findings-out findings-json rejects-out pairs-out; do
    case "$mode" in
      findings-out) args=("$findings" --out "$out/findings") ;;
      findings-json) args=("$findings" --format json) ;;
      rejects-out) args=("$rejects" --out "$out/rejects" --rejects "$out/rejects.csv") ;;
      pairs-out) args=("$pairs" --out "$out/pairs") ;;
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
