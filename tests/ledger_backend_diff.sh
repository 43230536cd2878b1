#!/usr/bin/env bash
# ledger_backend_diff.sh -c CLI [-w WORKDIR] [-a cpu] [-b gpu]: `ledger report --replay` (which
# aggregates every stored line on the chosen backend) with two backends, byte for byte, on ledgers
# of several nights (one back-dated, one with rejected lines), with --out and every --format.
# Only the backend's name is normalised (summary.json's "backend" field and the table's first
# line). Exit 0: identical; 1: a difference; 2: could not run. DIFF_SELFTEST=1 perturbs side B.
set -uo pipefail
cli="" work="" side_a=cpu side_b=gpu
while getopts "c:w:a:b:" opt; do
  case $opt in
    c) cli=$OPTARG ;; w) work=$OPTARG ;; a) side_a=$OPTARG ;; b) side_b=$OPTARG ;; *) exit 2 ;;
  esac
done
[ -x "$cli" ] || { echo "ledger_backend_diff: no program at '$cli'" >&2; exit 2; }
cli=$(realpath "$cli")
work=${work:-$(mktemp -d)}
mkdir -p "$work" && cd "$work" || exit 2

# Four nights cut from one generated log (every rule fires), the third taken from the end
# (back-dated against the fourth), the fourth with two bad lines and a repeated id.
"$cli" generate --records 120000 --seed 12 --entities 400 --force-breaches --out gen >/dev/null || exit 2
header=$(head -1 gen/shipments.csv)
tail -n +2 gen/shipments.csv >body.csv
split -n l/4 -d body.csv night-
for n in 0 1 2 3; do { echo "$header"; cat "night-0$n"; } >"night$n.csv"; done
{ echo "$header"; tail -n +2 night3.csv; echo "bad,2025-13-01,E,AE,H100-SXM,1,,,,"; tail -1 night0.csv; } >night3b.csv
rm -f ledger.db
"$cli" ledger init ledger.db >/dev/null || exit 2
for night in night0.csv night1.csv night3b.csv night2.csv; do
  "$cli" ledger ingest ledger.db "$night" --entities gen/entities.csv --rejects "rej-$night" >/dev/null 2>&1
  rc=$?
  [ "$rc" -le 1 ] || { echo "ledger_backend_diff: ingest of $night exited $rc" >&2; exit 2; }
done

# Both backends must report at all (exit 0 or 1): two runs failing alike prove nothing.
for side in "$side_a" "$side_b"; do
  "$cli" ledger report ledger.db --replay --backend "$side" --format csv >/dev/null 2>preflight.err
  rc=$?
  [ "$rc" -le 1 ] || { echo "ledger_backend_diff: --backend $side cannot report (exit $rc): $(tail -1 preflight.err)" >&2; exit 2; }
done

normalise() { sed -E 's/("backend": ")[a-z]+(")/\1BACKEND\2/; 1s/backend [a-z]+$/backend BACKEND/' "$1"; }
differ=0 cases=0
for variant in out table json csv; do
  for label in A B; do
    side=$side_a
    [ $label = B ] && side=$side_b
    dir="run-$variant-$label"
    rm -rf "$dir" && mkdir "$dir"
    if [ "$variant" = out ]; then
      rm -rf out  # the same --out name on both sides: stderr names it
      "$cli" ledger report ledger.db --replay --backend "$side" --out out >"$dir/stdout" 2>"$dir/stderr"
      echo $? >"$dir/rc"
      mv out "$dir/out"
    else
      "$cli" ledger report ledger.db --replay --backend "$side" --format "$variant" >"$dir/stdout" 2>"$dir/stderr"
      echo $? >"$dir/rc"
    fi
    grep -v '^capledger: backend' "$dir/stderr" >"$dir/stderr.kept"
    rm "$dir/stderr"
  done
  [ "${DIFF_SELFTEST:-}" = 1 ] && [ "$variant" = csv ] && echo "x" >>"run-$variant-B/stdout"
  cases=$((cases + 1))
  same=1
  while IFS= read -r file; do
    if ! cmp -s <(normalise "run-$variant-A/$file") <(normalise "run-$variant-B/$file" 2>/dev/null); then
      echo "DIFF: ledger report --replay, $variant: $file"
      diff <(normalise "run-$variant-A/$file") <(normalise "run-$variant-B/$file") | head -6 | sed 's/^/    /'
      same=0
    fi
  done < <(cd "run-$variant-A" && find . -type f | sort)
  [ "$(cd "run-$variant-B" && find . -type f | sort)" = "$(cd "run-$variant-A" && find . -type f | sort)" ] ||
    { echo "DIFF: ledger report --replay, $variant: different files"; same=0; }
  if [ $same = 1 ]; then echo "same: ledger report --replay, $variant"; else differ=$((differ + 1)); fi
done
echo "ledger_backend_diff: $cases cases, $((cases - differ)) identical, $differ differ (exit codes $(cat run-out-*/rc | tr '\n' ' '))"
[ $differ = 0 ]
