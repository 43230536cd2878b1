#!/usr/bin/env bash
# Nightly ledger cost vs ledger size (issue 4): for each base size N, builds a ledger of N lines,
# then times `ledger ingest` + `ledger report --out` of one new night of NIGHT lines that all
# date after the ledger's lines, and prints the ratio of the largest to the smallest.
#
#   bench/ledger_bench.sh                       # SIZES="1000000 50000000"
#   SIZES="1000000 10000000" bench/ledger_bench.sh
#
# Environment: CAPLEDGER (the binary; default build-ledger2/capledger, then build/capledger),
# SIZES, NIGHT (1000000), ENTITIES (20000), WORK (scratch folder; default a fresh mktemp -d),
# REPLAY=1 also times `ledger report --replay` (the O(ledger) path) for comparison.
# Base lines date 2025-01-13..2027-06-30, the night's 2027-07-01..2027-07-31 (inside the bundled
# rule set's counting window, so the night runs every check). The night comes from its own
# seed; its shipment and order ids are renamed so that they never collide with the base's.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=${CAPLEDGER:-}
if [[ -z $CLI ]]; then
  for c in build-ledger2/capledger build/capledger; do [[ -x $c ]] && CLI=$c && break; done
fi
[[ -x ${CLI:-} ]] || { echo "no capledger binary (set CAPLEDGER)" >&2; exit 2; }
CLI=$(realpath "$CLI")
SIZES=${SIZES:-"1000000 50000000"}
NIGHT=${NIGHT:-1000000}
ENTITIES=${ENTITIES:-20000}
WORK=${WORK:-$(mktemp -d /tmp/capledger-ledger-bench.XXXXXX)}
mkdir -p "$WORK"
now() { date +%s.%N; }
# report exits 1 when it finds violations: that is a result, not a failure.
report() { local rc=0; "$CLI" "$@" || rc=$?; [[ $rc -le 1 ]] || { echo "capledger $* failed ($rc)" >&2; exit "$rc"; }; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "capledger ledger bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "binary $CLI; night $NIGHT lines; entities $ENTITIES; work $WORK"

if [[ ! -s $WORK/night.csv ]]; then
  rm -rf "$WORK/night-gen"
  "$CLI" generate --records "$NIGHT" --seed 99 --entities "$ENTITIES" \
    --first-day 2027-07-01 --last-day 2027-07-31 --out "$WORK/night-gen" 2>/dev/null
  # Own ids: SHP... -> NGT..., ORD... -> ONT... (orders are a per-night concept in the generator).
  sed -e '2,$ s/^SHP/NGT/' -e '2,$ s/,ORD\([0-9]*\),/,ONT\1,/' "$WORK/night-gen/shipments.csv" > "$WORK/night.csv"
  rm -rf "$WORK/night-gen"
fi

declare -A cost
for N in $SIZES; do
  db=$WORK/ledger-$N.db
  if [[ ! -s $db.base ]]; then
    rm -rf "$WORK/base-$N"  # generate never replaces files (a run stopped here left some)
    "$CLI" generate --records "$N" --seed 7 --entities "$ENTITIES" \
      --first-day 2025-01-13 --last-day 2027-06-30 --out "$WORK/base-$N" 2>/dev/null
    rm -f "$db.base"
    "$CLI" ledger init "$db.base" 2>/dev/null
    t0=$(now)
    "$CLI" ledger ingest "$db.base" "$WORK/base-$N/shipments.csv" --entities "$WORK/base-$N/entities.csv"
    echo "  built the $N-line ledger in $(secs "$t0" "$(now)") s (one ingest)"
    rm -f "$WORK/base-$N/shipments.csv"
  fi
  cp "$db.base" "$db"
  sync
  t0=$(now)
  "$CLI" ledger ingest "$db" "$WORK/night.csv"
  t1=$(now)
  rm -rf "$WORK/out-$N"
  report ledger report "$db" --backend cpu --out "$WORK/out-$N"
  t2=$(now)
  ingest_s=$(secs "$t0" "$t1"); report_s=$(secs "$t1" "$t2"); total=$(secs "$t0" "$t2")
  cost[$N]=$total
  echo "ledger of $N lines + night of $NIGHT: ingest $ingest_s s, report $report_s s, total $total s"
  if [[ ${REPLAY:-0} == 1 ]]; then
    t0=$(now)
    report ledger report "$db" --backend cpu --replay --out "$WORK/replay-$N" 2>/dev/null
    echo "  for comparison, ledger report --replay: $(secs "$t0" "$(now)") s"
    diff -r "$WORK/out-$N" "$WORK/replay-$N" >/dev/null && echo "  replay outputs identical" || echo "  REPLAY OUTPUTS DIFFER"
  fi
done
read -r -a sizes <<< "$SIZES"
small=${sizes[0]}; large=${sizes[${#sizes[@]}-1]}
awk -v s="${cost[$small]}" -v l="${cost[$large]}" -v a="$small" -v b="$large" \
  'BEGIN { printf "ratio (ledger of %d vs %d lines): %.2fx (goal: < 2x)\n", b, a, l / s }'
