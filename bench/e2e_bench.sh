#!/usr/bin/env bash
# End-to-end benchmark: `capledger report --backend cpu` against DuckDB's one-pass
# GROUP BY GROUPING SETS query (bench/duckdb_peer.py) and, when pyarrow is installed, PyArrow's
# multithreaded read_csv + group_by (bench/pyarrow_peer.py), on the same generated log, in the
# same run.
#
# Usage: bench/e2e_bench.sh [-b BUILD_DIR] [-e ENTITIES] [-r REPEATS] [-s] [-w WORK_DIR] [LINES ...]
#   LINES     log sizes in data lines (default: 5000000)
#   -e        distinct entities of the generated logs (default 20000)
#   -r        runs per tool; the figures are the median run's (default 3)
#   -s        the same lines in random date order instead (shuf with a fixed random source):
#             generated logs are in date order, which capledger's second look at crossing
#             days favours; a log merged from many sources need not be
#   -w        where logs and outputs go (default ${TMPDIR:-/tmp}/capledger-e2e)
# Needs /usr/bin/time and Python 3 with duckdb (pip install duckdb); pyarrow is optional.
# Every run checks that the tools agree on the country, entity and (entity, country) totals.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
build="$root/build"
entities=20000
repeats=3
shuffled=0
work="${TMPDIR:-/tmp}/capledger-e2e"
while getopts "b:e:r:sw:" opt; do
  case "$opt" in
    b) build="$OPTARG" ;;
    e) entities="$OPTARG" ;;
    r) repeats="$OPTARG" ;;
    s) shuffled=1 ;;
    w) work="$OPTARG" ;;
    *) sed -n '2,17p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
sizes=("${@:-5000000}")
capledger="$build/capledger"
[[ -x "$capledger" ]] || { echo "no $capledger: build first (cmake --build $build)" >&2; exit 2; }
python3 -c "import duckdb" 2>/dev/null || { echo "needs python3 -m pip install duckdb" >&2; exit 2; }
# PyArrow (multithreaded CSV reader + group_by) is the second peer when it is installed.
have_arrow=0
python3 -c "import pyarrow" 2>/dev/null && have_arrow=1
mkdir -p "$work"

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "capledger: $("$capledger" --version 2>/dev/null || echo "$capledger"); duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')$([[ $have_arrow -eq 1 ]] && python3 -c 'import pyarrow; print("; pyarrow", pyarrow.__version__)')"

# Runs a command under /usr/bin/time; prints "seconds peak_kb cpu_seconds" (cpu: user + system,
# the steadier figure on a shared machine); its stdout goes to $work/stdout.$$.
timed() {
  local log="$work/time.$$"
  /usr/bin/time -f "%e %M %U %S" -o "$log" "$@" >"$work/stdout.$$" 2>"$work/stderr.$$" || {
    local rc=$?
    # capledger exits 1 when checks find violations: a finished report, not a failure.
    if [[ $rc -ne 1 || "$1" != "$capledger" ]]; then cat "$work/stderr.$$" >&2; return "$rc"; fi
  }
  tail -1 "$log" | awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

for lines in "${sizes[@]}"; do
  dir="$work/log-$lines-$entities"
  if [[ ! -s "$dir/shipments.csv" ]]; then
    "$capledger" generate --records "$lines" --seed 1 --entities "$entities" --out "$dir" >/dev/null 2>&1
  fi
  if [[ $shuffled -eq 1 ]]; then
    from="$dir"
    dir="$work/log-$lines-$entities-shuffled"
    if [[ ! -s "$dir/shipments.csv" ]]; then
      mkdir -p "$dir"
      cp "$from/entities.csv" "$dir/"
      { head -1 "$from/shipments.csv"; tail -n +2 "$from/shipments.csv" | shuf --random-source=<(yes); } \
        >"$dir/shipments.csv"
    fi
  fi
  log="$dir/shipments.csv"
  bytes=$(stat -c %s "$log")
  cat "$log" >/dev/null  # both tools read it from the page cache
  ours_s=(); ours_kb=(); ours_cpu=(); duck_s=(); duck_kb=(); duck_cpu=(); query_s=(); arrow_s=(); arrow_kb=()
  for ((run = 0; run < repeats; ++run)); do
    read -r s kb cpu < <(timed "$capledger" report "$log" --entities "$dir/entities.csv" --backend cpu --out "$dir/out")
    ours_s+=("$s"); ours_kb+=("$kb"); ours_cpu+=("$cpu")
    read -r s kb cpu < <(timed python3 "$here/duckdb_peer.py" "$log" --chips "$root/datasets/chips.csv")
    duck_s+=("$s"); duck_kb+=("$kb"); duck_cpu+=("$cpu")
    query_s+=("$(sed -n 's/^duckdb seconds=\([0-9.]*\).*/\1/p' "$work/stdout.$$")")
    if [[ $have_arrow -eq 1 ]]; then
      read -r s kb cpu < <(timed python3 "$here/pyarrow_peer.py" "$log" --chips "$root/datasets/chips.csv")
      arrow_s+=("$(sed -n 's/^pyarrow seconds=\([0-9.]*\).*/\1/p' "$work/stdout.$$")"); arrow_kb+=("$kb")
    fi
  done
  python3 "$here/duckdb_peer.py" "$log" --chips "$root/datasets/chips.csv" --check "$dir/out" | tail -1
  if [[ $have_arrow -eq 1 ]]; then
    python3 "$here/pyarrow_peer.py" "$log" --chips "$root/datasets/chips.csv" --check "$dir/out" | tail -1
  fi
  o_s=$(printf '%s\n' "${ours_s[@]}" | median); o_kb=$(printf '%s\n' "${ours_kb[@]}" | median)
  d_s=$(printf '%s\n' "${duck_s[@]}" | median); d_kb=$(printf '%s\n' "${duck_kb[@]}" | median)
  q_s=$(printf '%s\n' "${query_s[@]}" | median)
  o_cpu=$(printf '%s\n' "${ours_cpu[@]}" | median); d_cpu=$(printf '%s\n' "${duck_cpu[@]}" | median)
  # The ratio is against DuckDB's query time alone (Python start-up and import excluded): the
  # stricter comparison. capledger's time is the whole process: load, ingest, checks, writing.
  awk -v lines="$lines" -v bytes="$bytes" -v os="$o_s" -v okb="$o_kb" -v ds="$d_s" -v dkb="$d_kb" -v qs="$q_s" -v ocpu="$o_cpu" -v dcpu="$d_cpu" \
      -v runs="$repeats" -v oall="${ours_s[*]}" -v dall="${query_s[*]}" 'BEGIN {
    mb = bytes / 1e6
    printf "log: %d lines, %.1f MB; median of %d runs (all: capledger %s s; duckdb query %s s)\n", lines, mb, runs, oall, dall
    printf "%-44s %8s %10s %12s %10s\n", "tool", "seconds", "MB/s", "peak MB", "CPU s"
    printf "%-44s %8.2f %10.0f %12.0f %10.2f\n", "capledger report --backend cpu (process)", os, mb / os, okb / 1024, ocpu
    printf "%-44s %8.2f %10.0f %12s %10s\n", "duckdb grouping sets (query only)", qs, mb / qs, "-", "-"
    printf "%-44s %8.2f %10.0f %12.0f %10.2f\n", "duckdb grouping sets (python process)", ds, mb / ds, dkb / 1024, dcpu
    printf "ratio: capledger is %.2fx faster than the duckdb query, peak memory %.2fx of duckdb\n", qs / os, okb / dkb
  }'
  if [[ $have_arrow -eq 1 ]]; then
    a_s=$(printf '%s\n' "${arrow_s[@]}" | median); a_kb=$(printf '%s\n' "${arrow_kb[@]}" | median)
    awk -v bytes="$bytes" -v as="$a_s" -v akb="$a_kb" -v os="$o_s" -v all="${arrow_s[*]}" 'BEGIN {
      printf "%-44s %8.2f %10.0f %12.0f %10s   (all: %s s)\n", "pyarrow read_csv + group_by (read+group)", as, bytes / 1e6 / as, akb / 1024, "-", all
      printf "ratio: capledger is %.2fx faster than pyarrow\n", as / os
    }'
  fi
done
rm -f "$work/time.$$" "$work/stdout.$$" "$work/stderr.$$"
