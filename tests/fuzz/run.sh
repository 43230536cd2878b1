#!/usr/bin/env bash
# Builds capledger's libFuzzer targets with clang-14 (outside the CMake build) and runs each
# for a while. Usage:
#   tests/fuzz/run.sh [-t SECONDS] [-p] [-b] [TARGET ...]
#     -t SECONDS  fuzzing time per target (default 60)
#     -p          run the targets in parallel (default: one after another)
#     -b          build only, do not fuzz
#   TARGET: csv_reader_fuzz, csv_differential_fuzz, ingest_fuzz, stream_report_fuzz, reference_fuzz,
#           device_read_fuzz
#           (default: all)
# Environment: CXX (default clang++-14), FUZZ_BUILD (default build-fuzz in the repository root),
#   FUZZ_ARGS (extra libFuzzer flags, e.g. "-max_len=65536"), NICE (default "nice -n 10").
# Each target keeps its growing corpus in $FUZZ_BUILD/corpus/TARGET (seeded from
# tests/fuzz/corpus/TARGET, which is never written), crashes in $FUZZ_BUILD/artifacts/TARGET/,
# and its log in $FUZZ_BUILD/TARGET.log. Exit status: non-zero when a target crashed; 77 when
# $CXX is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
CXX="${CXX:-clang++-14}"
FUZZ_BUILD="${FUZZ_BUILD:-$root/build-fuzz}"
NICE="${NICE:-nice -n 10}"
seconds=60 parallel=0 build_only=0
while getopts "t:pb" opt; do
  case "$opt" in
    t) seconds="$OPTARG" ;;
    p) parallel=1 ;;
    b) build_only=1 ;;
    *) sed -n 2,17p "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(csv_reader_fuzz csv_differential_fuzz ingest_fuzz stream_report_fuzz reference_fuzz device_read_fuzz)

command -v "$CXX" >/dev/null || {  # 77: ctest's fuzz_targets is skipped, not failed (.ci/install-deps installs it)
  echo "run.sh: $CXX not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2; exit 77; }

# Sources of each target besides its own file. A fast CSV parser in host/ (fast_csv*.cpp), when
# there is one, is linked in too: the differential target compares it when its header exists.
fast_sources=() fast_flags=()
for f in "$root"/host/fast_csv*.cpp; do
  if [[ -e "$f" ]]; then fast_sources+=("$f"); fi
done
if [[ ${#fast_sources[@]} -gt 0 && -e "$root/host/fast_csv.hpp" ]]; then
  fast_flags=(-DCAPLEDGER_FUZZ_FAST_CSV=1)
  echo "run.sh: host/fast_csv found: csv_differential_fuzz compares fast_csv_reader too"
fi
csv_sources=("$root/host/csv.cpp" "$root/host/terminal_text.cpp" "${fast_sources[@]}")
# (The builder takes lines read ahead by the GPU ingest: host/device_read.cpp makes their layout.)
ingest_sources=("${csv_sources[@]}" "$root/host/shipments.cpp" "$root/host/file_io.cpp"
                "$root/host/reference.cpp" "$root/host/calendar.cpp" "$root/host/device_read.cpp"
                "$root/host/spreadsheet_hints.cpp" "$root/host/string_index.cpp")
# The GPU ingest's line reader (kernels/device_csv.cuh, on the host) against the builder.
device_read_sources=("${ingest_sources[@]}")
# The reference, rule-set and entities files' loaders.
reference_sources=("${csv_sources[@]}" "$root/host/reference.cpp" "$root/host/entities.cpp" "$root/host/calendar.cpp"
                   "$root/host/file_io.cpp" "$root/host/spreadsheet_hints.cpp")
# The streaming report against the column report: everything but the CLI, the ledger and CUDA.
report_sources=("${ingest_sources[@]}")
for f in entities entity_variants checks report cpu_backend streaming_report external_id_check gpu_unavailable; do
  report_sources+=("$root/host/$f.cpp")
done
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -fopenmp -I"$root/include" -I"$root/host"
       -DCAPLEDGER_DATASETS_DIR="\"$root/datasets\"" -DCAPLEDGER_VERSION="\"fuzz\"")

mkdir -p "$FUZZ_BUILD"
build() {
  local target="$1" sources=()
  case "$target" in
    csv_reader_fuzz|csv_differential_fuzz) sources=("${csv_sources[@]}") ;;
    ingest_fuzz) sources=("${ingest_sources[@]}") ;;
    stream_report_fuzz) sources=("${report_sources[@]}") ;;
    reference_fuzz) sources=("${reference_sources[@]}") ;;
    device_read_fuzz) sources=("${device_read_sources[@]}") ;;
    *) echo "run.sh: unknown target $target" >&2; exit 2 ;;
  esac
  echo "building $target"
  $NICE "$CXX" "${flags[@]}" "${fast_flags[@]}" "$here/$target.cpp" "${sources[@]}" -lcrypto -lutf8proc -o "$FUZZ_BUILD/$target"
}

run() {
  local target="$1"
  mkdir -p "$FUZZ_BUILD/corpus/$target" "$FUZZ_BUILD/artifacts/$target"
  echo "fuzzing $target for ${seconds}s (log: $FUZZ_BUILD/$target.log)"
  local dict="$here/csv.dict"  # a target's own dictionary, where it has one
  [[ -e "$here/$target.dict" ]] && dict="$here/$target.dict"
  # One process (-jobs=1 semantics), niced: the machine is shared.
  # shellcheck disable=SC2086
  $NICE "$FUZZ_BUILD/$target" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -dict="$dict" -print_final_stats=1 \
    -artifact_prefix="$FUZZ_BUILD/artifacts/$target/" ${FUZZ_ARGS:-} \
    "$FUZZ_BUILD/corpus/$target" "$here/corpus/$target" >"$FUZZ_BUILD/$target.log" 2>&1
}

for t in "${targets[@]}"; do build "$t"; done
[[ $build_only -eq 1 ]] && exit 0

status=0 pids=()
for t in "${targets[@]}"; do
  if [[ $parallel -eq 1 ]]; then run "$t" & pids+=($!); else run "$t" || status=1; fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
for t in "${targets[@]}"; do
  echo "== $t: $(grep -E '^stat::number_of_executed_units' "$FUZZ_BUILD/$t.log" | awk '{print $2}') execs," \
       "$(grep -E '(DONE|INITED|pulse|NEW|REDUCE) +cov' "$FUZZ_BUILD/$t.log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')"
  if grep -qE 'ERROR: |SUMMARY: |deadly signal' "$FUZZ_BUILD/$t.log"; then
    echo "   CRASH: see $FUZZ_BUILD/$t.log and $FUZZ_BUILD/artifacts/$t/"; status=1
  fi
done
exit $status
