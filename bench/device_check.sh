#!/usr/bin/env bash
# One prepared run on a GPU machine (H100/H200). Every step with a baseline ran past 430 s in
# session 6 (racecheck on a slow test, an extra benchmark); pick STEPS to fit the device time
# (tests about 40 s, end to end about 60-80 s). Run bench/prepare_device_run.sh here first, then
# (device tool):
#   run command "bench/device_check.sh" carry [".device-bin", ".device-debs"]
# It runs the programs built here for sm_90 (or builds there when they do not start), the whole
# test suite in 8 parallel shards with compute-sanitizer memcheck and racecheck beside them, the
# PyTorch peer and the CPU-vs-GPU check of its totals, the GPU aggregation benchmarks, ncu
# on the fused dense pass, and an end-to-end `report` with each backend (E2E_LINES); with a
# .device-base/ (prepare_device_run.sh BASE_REF=<ref>), the earlier build's benchmarks and CPU
# report beside the new ones.
# Files back from $OUT (8 at most): summary.txt, tests.log, sanitizer.log, peer.log, bench.log,
# bench.json, ncu.log, diff.log, model.log, mutants.log, ingest.log, and bench-base.log (with a .device-base/)
# or build.log (after a fallback build): pick STEPS so that no more than 8 are written.
# BENCH_FILTER overrides the benchmark selection (BENCH_TIMEOUT its limit, 150 s); SANITIZE_FILTER the sanitizers' tests; STEPS
# the steps ("tests diff peer bench ncu e2e" by default; "diff" is step 6b, the command-line
# CPU-vs-GPU differentials (diff.log); "model" step 6c, `report --backend gpu` against
# tests/report_model.py (MODEL_SEEDS; model.log); "scale" adds step 7, the many-files and
# extreme-logs reports on this host's cores; "threads" adds to step 6 a CPU report timed thread by
# thread; "mutants" step 8, the GPU tests against each bug of bench/gpu_mutants/, built by
# prepare_device_run.sh MUTANTS=1; "ingest" step 4b, the GPU line reader's tests, memcheck on three
# of them and gpu_ingest_bench on INGEST_LINES lines (ingest.log; about 60-90 s)); E2E_LINES,
# E2E_RUNS and E2E_ALT the end-to-end step (step 6 says how).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="${OUT:-./device-logs}"
mkdir -p "$out"
summary="$out/summary.txt"
say() { echo "$*" | tee -a "$summary"; }
# STEPS picks the steps below (default: all of them).
want() { [[ " ${STEPS:-tests diff peer bench ncu e2e} " == *" $1 "* ]]; }
started=$SECONDS

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv >>"$summary" 2>&1
say "cpus $(nproc); $(date -u +%FT%TZ)"

# 1. Programs. The tests have their build folder's absolute path compiled in (CLI path, data).
bin=.device-bin
tests="$bin/capledger_tests"
bench="$bin/aggregate_bench"
ingest_bench=/tmp/gpu_ingest_bench  # shipped gzipped (prepare_device_run.sh)
[ -f "$bin/gpu_ingest_bench.gz" ] && gunzip -c "$bin/gpu_ingest_bench.gz" >"$ingest_bench" && chmod +x "$ingest_bench"
if [ -f "$bin/build-dir" ]; then
  build_dir=$(cat "$bin/build-dir")
  src_dir=$(dirname "$build_dir")
  [ -e "$src_dir" ] || { mkdir -p "$(dirname "$src_dir")" && ln -s "$root" "$src_dir"; }
  mkdir -p "$build_dir" && cp "$bin/capledger" "$build_dir/capledger"
  export LD_LIBRARY_PATH="$root/$bin/lib:${LD_LIBRARY_PATH:-}"
fi
if ! "$tests" --gtest_list_tests >/dev/null 2>&1; then
  say "prebuilt programs do not run here ($("$tests" --gtest_list_tests 2>&1 | head -2)); building"
  prefix=/tmp/capledger-deps
  for deb in .device-debs/*.deb; do dpkg -x "$deb" "$prefix"; done
  export CMAKE_PREFIX_PATH="$prefix/usr:${CMAKE_PREFIX_PATH:-}" CPATH="$prefix/usr/include:${CPATH:-}"
  export LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  { cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
      cmake --build build-device -j"$(nproc)"; } >"$out/build.log" 2>&1 ||
    { say "build failed"; tail -30 "$out/build.log"; exit 1; }
  tests=build-device/tests/capledger_tests
  bench=build-device/bench/aggregate_bench
  ingest_bench=build-device/bench/gpu_ingest_bench
fi
[ -f "$bin/commit" ] && say "prebuilt programs of commit $(cat "$bin/commit")"
say "programs ready after $((SECONDS - started)) s"

# 2. The whole suite in 8 shards, the sanitizers beside it (small GPU tests: under memcheck each
# of the ~70 launches of an aggregate call is slow).
if want tests; then
  # GpuMemoryShort.* hold nearly all GPU memory: they run alone, after the shards and sanitizers.
  for shard in 0 1 2 3 4 5 6 7; do
    GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$shard timeout 150 "$tests" --gtest_filter='-GpuMemoryShort.*' \
      >"/tmp/shard-$shard.log" 2>&1 &
  done
  for tool in memcheck racecheck; do
    filter=GpuEquivalence.SharedMemoryBudgetEdge:GpuEquivalence.PairTableSlicesOfOneRow
    [ "$tool" = memcheck ] &&
      filter="$filter:GpuEquivalence.WideDictionaries:GpuEquivalence.NameIsGpu:GpuEquivalence.EveryLppLineItsOwnOrder"
    filter="$filter:GpuEquivalence.PairCellsInOneWordOrTwo:GpuEquivalence.PairCellWrappedToZeroIsStillReported"
    (timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 "$tests" \
      --gtest_filter="${SANITIZE_FILTER:-$filter}" >"/tmp/sanitizer-$tool.log" 2>&1
      echo "compute-sanitizer $tool rc=$?" >>"/tmp/sanitizer-$tool.log") &
  done
  wait
  timeout 60 "$tests" --gtest_filter='GpuMemoryShort.*' >/tmp/shard-alone.log 2>&1
  for shard in 0 1 2 3 4 5 6 7 alone; do cat "/tmp/shard-$shard.log"; done >"$out/tests.log"
  cat /tmp/sanitizer-memcheck.log /tmp/sanitizer-racecheck.log >"$out/sanitizer.log"
  say "tests: $(grep -c '^\[       OK \]' "$out/tests.log") ok, $(grep -c '^\[  FAILED  \].*ms)$' "$out/tests.log") failed," \
    "$(grep -c '^\[  SKIPPED \].*ms)$' "$out/tests.log") skipped"
  grep '^\[  FAILED  \].*ms)$' "$out/tests.log" | head -20 | tee -a "$summary"
  grep -h "compute-sanitizer .* rc=\|ERROR SUMMARY\|RACECHECK SUMMARY" "$out/sanitizer.log" | tee -a "$summary"
  say "tests and sanitizers done after $((SECONDS - started)) s"
fi

# 3. The peer on the same card: PyTorch index_add_ on the issue's shape, the copy bandwidth, and
if want peer; then
  # capledger's CPU and GPU totals of the very columns torch made.
  {
    timeout 60 python3 bench/torch_peer.py --lines 16777216 --entities 100000 --dump /tmp/cols.bin
    echo "torch 2^24 rc=$?"
    timeout 60 "$bench" --verify /tmp/cols.bin 100000
    echo "verify rc=$?"; rm -f /tmp/cols.bin
    timeout 120 python3 bench/torch_peer.py --lines 400000000 --entities 100000 --three-sums
    echo "torch 4e8 rc=$?"
    timeout 90 python3 bench/torch_peer.py --lines 400000000 --entities 100000 --countries-per-entity 3
    echo "torch 4e8 sparse (3 countries per entity) rc=$?"
  } >"$out/peer.log" 2>&1
  grep -h '"device"\|_ms"\|_error"\|copy_gbs\|rc=\|^cpu:\|^gpu:' "$out/peer.log" | tee -a "$summary"
  say "peer done after $((SECONDS - started)) s"
fi

# 4. The aggregation on device-resident columns (CUDA events), per phase.
if want bench; then
  filter="${BENCH_FILTER:-bm_aggregate_gpu_resident(_unsliced|_two_word|_carries_after_order)?/lines:(16777216|268435456|400000000)/entities:|bm_aggregate_gpu/lines:16777216/}"
  timeout "${BENCH_TIMEOUT:-150}" "$bench" --benchmark_filter="$filter" --benchmark_min_time=0.2 \
    --benchmark_out="$out/bench.json" --benchmark_out_format=json >"$out/bench.log" 2>&1
  say "bench rc=$? after $((SECONDS - started)) s"
  grep "^bm_" "$out/bench.log" | tee -a "$summary"
  # The same benchmarks from an earlier build, in the same run (BASE_REF=<ref> for
  # prepare_device_run.sh stages one in .device-base/; carry it too): before/after on one card.
  if [ -x .device-base/aggregate_bench ]; then
    LD_LIBRARY_PATH="$root/.device-base/lib:${LD_LIBRARY_PATH:-}" timeout 150 .device-base/aggregate_bench \
      --benchmark_filter="${BASE_FILTER:-$filter}" --benchmark_min_time=0.2 >"$out/bench-base.log" 2>&1
    rc=$?
    say "baseline bench ($(cat .device-base/ref 2>/dev/null || echo 'an earlier build')) rc=$rc after $((SECONDS - started)) s"
    grep "^bm_" "$out/bench-base.log" | tee -a "$summary"
  fi

  # The dense pass's ceilings on this card (l2_atomics_bench.cu), appended to bench.log.
  if [ -x "$bin/l2_atomics_bench" ]; then
    echo "== l2_atomics_bench" >>"$out/bench.log"
    timeout 120 "$bin/l2_atomics_bench" --benchmark_min_time=0.2 >>"$out/bench.log" 2>&1
    say "l2_atomics_bench rc=$? after $((SECONDS - started)) s"
    sed -n '/^== l2_atomics_bench/,$p' "$out/bench.log" | grep "^bm_" | tee -a "$summary"
  fi
fi

# 4b. The GPU line reader (kernels/gpu_ingest.cu): its tests (also in step 2's whole suite; here
# alone, with memcheck on the seam, CRLF and empty-range cases, racecheck and synccheck on the seams), then gpu_ingest_bench: the reader
# against read_ahead_on_host on one core and on all, and the builder (report's ingest, streaming
# and columns) without lines read ahead, with the GPU reading them, and with this host reading
# them, on a generated log of INGEST_LINES lines (8,000,000 by default, about 0.6 GB). Everything
# in ingest.log. Only with "ingest" in STEPS.
if want ingest; then
  {
    timeout 120 "$tests" --gtest_filter='GpuIngest*'
    echo "gpu ingest tests rc=$?"
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 "$tests" \
      --gtest_filter='GpuIngest.LinesAtAndAcrossChunkSeams:GpuIngest.CrlfLines:GpuIngest.EmptyRanges'
    echo "gpu ingest memcheck rc=$?"
    # The kernel stages the tables in shared memory behind a __syncthreads (a card-less review's ask).
    for tool in racecheck synccheck; do
      timeout 90 compute-sanitizer --tool "$tool" --error-exitcode 9 "$tests" \
        --gtest_filter='GpuIngest.LinesAtAndAcrossChunkSeams'
      echo "gpu ingest $tool rc=$?"
    done
    timeout "${BENCH_TIMEOUT:-150}" "$ingest_bench" --lines="${INGEST_LINES:-8000000}" --benchmark_min_time=0.5
    echo "gpu_ingest_bench rc=$?"
  } >"$out/ingest.log" 2>&1
  grep -h '^\[  FAILED  \].*ms)$\|^\[  PASSED  \]\|SKIPPED \].*ms)$\|ERROR SUMMARY\|RACECHECK SUMMARY\| rc=\|^bm_\|^gpu_ingest_bench:' "$out/ingest.log" |
    tee -a "$summary"
  say "ingest done after $((SECONDS - started)) s"
fi

# 5. Hardware counters of the fused dense pass (Firecracker machines allow ncu): what limits it.
if want ncu; then
  for entities in 100000 1000; do
    echo "== dense pass, 2^24 lines, $entities entities" >>"$out/ncu.log"
    # The pass and, where the pair table is sliced (100,000 entities), its first slice's adds.
    timeout 60 ncu --clock-control none --kernel-name regex:'dense_totals|add_staged_slice' --launch-count 2 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      "$bench" --benchmark_filter="bm_aggregate_gpu_resident/lines:16777216/entities:$entities/" \
      --benchmark_min_time=0.01 >>"$out/ncu.log" 2>&1
    say "ncu ($entities entities) rc=$? after $((SECONDS - started)) s"
  done
  grep -E "^== |Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|L2 Hit" "$out/ncu.log" | head -24 | tee -a "$summary"
fi

# 6. End to end on this host (issue 5's goal: `report` of a CSV in the page cache at 10 GB/s):
# one generated log reported with each backend, the ingest on all this host's cores.
# E2E_LINES=0 skips it.
lines="${E2E_LINES:-20000000}"
if want e2e && [ "$lines" -gt 0 ]; then
  cli="$bin/capledger"
  [ -x "$cli" ] || cli=build-device/capledger
  log=/tmp/e2e-log
  rm -rf "$log" && timeout 60 "$cli" generate --records "$lines" --seed 1 --entities 20000 --out "$log" >/dev/null 2>&1
  bytes=$(stat -c %s "$log/shipments.csv")
  cat "$log/shipments.csv" >/dev/null  # in the page cache, as the goal says
  # E2E_RUNS: runs in order, each <build>-<backend>[@<cpus>]; build new (.device-bin), base
  # (.device-base/capledger: the earlier build's CPU report beside the new one, the ingest being
  # all host work) or alt (E2E_ALT=<path of another capledger>); @<cpus> pins the run to that
  # many cores (taskset): how the ingest scales; a backend written cpu+ingest or gpu+ingest runs
  # with CAPLEDGER_GPU_INGEST=1 (plain lines read ahead on the GPU). Default: each twice, interleaved.
  default_runs="new-gpu new-cpu"
  [ -x .device-base/capledger ] && default_runs="$default_runs base-cpu"
  [ -n "${E2E_ALT:-}" ] && default_runs="$default_runs alt-cpu"
  for run in ${E2E_RUNS:-$default_runs $default_runs}; do
    build=${run%%-*} rest=${run#*-}
    backend=${rest%@*} cpus=""
    [ "$rest" != "$backend" ] && cpus=${rest#*@}
    tag=$backend ingest_env=()
    if [[ $backend == *+ingest ]]; then
      backend=${backend%+ingest}
      ingest_env=(env CAPLEDGER_GPU_INGEST=1)
    fi
    case $build in
      base) run_cli=.device-base/capledger ;;
      alt) run_cli=${E2E_ALT:-missing} ;;
      *) run_cli=$cli ;;
    esac
    pin=()
    [ -n "$cpus" ] && pin=(taskset -c "0-$((cpus - 1))")
    rm -rf "/tmp/e2e-out-$build-$tag"
    TIMEFORMAT="%R %U %S"  # wall, user and system seconds: user + system over wall is the cores used
    { time LD_LIBRARY_PATH="$root/$(dirname "$run_cli")/lib:$root/$bin/lib:${LD_LIBRARY_PATH:-}" timeout 120 \
      ${pin[@]+"${pin[@]}"} ${ingest_env[@]+"${ingest_env[@]}"} "$run_cli" report "$log/shipments.csv" \
      --entities "$log/entities.csv" --backend "$backend" --out "/tmp/e2e-out-$build-$tag" >"/tmp/e2e-$run.log" 2>&1; } 2>/tmp/e2e-time
    rc=$?
    read -r wall user sys </tmp/e2e-time
    say "e2e report ($run): $(awk -v t="$wall" -v u="$user" -v y="$sys" -v b="$bytes" -v n="$lines" -v rc="$rc" \
      'BEGIN { printf "%d lines, %d bytes, rc=%d (1: violations found), %.2f s (user %.2f, sys %.2f), %.2f GB/s", n, b, rc, t, u, y, b / t / 1e9 }')"
    [ ${#ingest_env[@]} -gt 0 ] && grep -h "GPU ingest" "/tmp/e2e-$run.log" | tee -a "$summary"
  done
  # With "threads" in STEPS: one more CPU report of the new build under bench/thread_times.py,
  # the CPU time of each named thread (merge, parse, sha256, aggregate): which stage paces it.
  if [[ " ${STEPS:-} " == *" threads "* ]]; then
    rm -rf /tmp/e2e-out-threads
    LD_LIBRARY_PATH="$root/$bin/lib:${LD_LIBRARY_PATH:-}" timeout 120 python3 bench/thread_times.py -- \
      "$cli" report "$log/shipments.csv" --entities "$log/entities.csv" --backend cpu \
      --out /tmp/e2e-out-threads 2>&1 | grep '^threads:' | tee -a "$summary"
  fi
  same() { cmp -s "/tmp/e2e-out-$1/by_entity_country.csv" "/tmp/e2e-out-$2/by_entity_country.csv" &&
    cmp -s "/tmp/e2e-out-$1/findings.csv" "/tmp/e2e-out-$2/findings.csv"; }
  for other in new-gpu base-cpu alt-cpu new-cpu+ingest new-gpu+ingest; do
    [ -d "/tmp/e2e-out-$other" ] || continue
    same new-cpu "$other" && say "e2e: $other and new-cpu outputs identical (by_entity_country.csv, findings.csv)" ||
      say "e2e: $other and new-cpu outputs DIFFER"
  done
  say "e2e done after $((SECONDS - started)) s"
fi

# 6b. CPU and GPU `report` from the command line, byte for byte, on about 80 varied inputs (bad
# lines, rejects, several files, stdin, rule-set variants, --as-of, every --format):
# tests/backend_diff.sh; then `ledger report --replay` on a four-night ledger,
# tests/ledger_backend_diff.sh (about 70 s on an H200 host).
if want diff; then
  cli="$bin/capledger"
  [ -x "$cli" ] || cli=build-device/capledger
  rm -rf /tmp/backend-diff
  timeout 240 tests/backend_diff.sh -c "$root/$cli" -w /tmp/backend-diff -a cpu -b gpu >"$out/diff.log" 2>&1
  say "backend_diff rc=$? after $((SECONDS - started)) s: $(tail -1 "$out/diff.log")"
  grep '^DIFF' "$out/diff.log" | head -10 | tee -a "$summary"
  rm -rf /tmp/ledger-diff
  timeout 120 tests/ledger_backend_diff.sh -c "$root/$cli" -w /tmp/ledger-diff -a cpu -b gpu >>"$out/diff.log" 2>&1
  say "ledger_backend_diff rc=$? after $((SECONDS - started)) s: $(tail -1 "$out/diff.log")"
fi

# 6c. `report --backend gpu` against the independent model of SPEC (tests/report_model.py: every
# output byte, exit codes, first errors) on MODEL_SEEDS random adversarial logs (480 by default),
# in 8 parallel slices (model.log).
if want model; then
  cli="$bin/capledger"
  [ -x "$cli" ] || cli=build-device/capledger
  seeds="${MODEL_SEEDS:-480}"
  per=$(((seeds + 7) / 8))
  for k in 0 1 2 3 4 5 6 7; do
    first=$((1 + k * per)) end=$((1 + (k + 1) * per))
    [ "$end" -gt $((seeds + 1)) ] && end=$((seeds + 1))
    (timeout 150 python3 tests/report_model.py "$root/$cli" "$first" "$end" --backend gpu >"/tmp/model-$k.log" 2>&1
      echo "report_model seeds $first-$((end - 1)) rc=$?" >>"/tmp/model-$k.log") &
  done
  wait
  for k in 0 1 2 3 4 5 6 7; do cat "/tmp/model-$k.log"; done >"$out/model.log"
  say "report_model --backend gpu after $((SECONDS - started)) s: $(grep -h ' seeds, ' /tmp/model-*.log | tr '\n' ';')"
  grep -h 'rc=[1-9]' /tmp/model-*.log | tee -a "$summary"
fi

# 7. Reports at scale on this host's cores (`report --backend cpu`, new build then base when
# carried): a log in 100 files against the same log as one file (bench/many_files_bench.sh),
# a million findings and half a million rejected lines (bench/extreme_logs_bench.sh). Not run
# unless STEPS names it (about a minute with a base).
if [[ " ${STEPS:-} " == *" scale "* ]]; then
  cli="$bin/capledger"
  [ -x "$cli" ] || cli=build-device/capledger
  clis=("$root/$cli")
  [ -x .device-base/capledger ] && clis+=("$root/.device-base/capledger")
  export LD_LIBRARY_PATH="$root/$bin/lib:$root/.device-base/lib:${LD_LIBRARY_PATH:-}"
  timeout 240 bench/many_files_bench.sh -r 2 -w /tmp/scale-files "${clis[@]}" 2>&1 | tee -a "$summary"
  timeout 120 bench/extreme_logs_bench.sh -w /tmp/scale-extreme "${clis[@]}" 2>&1 | tee -a "$summary"
  say "scale done after $((SECONDS - started)) s"
fi

# 8. Can the GPU tests fail? Each mutant (.device-bin/mutants: capledger_tests with one bug of
# bench/gpu_mutants/ built into kernels/) runs every test that uses the GPU, stopping at the first
# failure; a mutant that no test fails is SURVIVED: a gap in the GPU tests. About 10-40 s.
if [[ " ${STEPS:-} " == *" mutants "* ]] && [ "$tests" != "$bin/capledger_tests" ]; then
  say "mutants: not run (built here for the prebuilt programs, which do not run on this image)"
elif [[ " ${STEPS:-} " == *" mutants "* ]]; then
  gpu_tests='GpuEquivalence.*:*/gpu:AggregateInParts.*:GpuIngest.*'
  rm -f /tmp/mutant-*
  for packed in .device-bin/mutants/*.gz; do
    name=$(basename "$packed" .gz)
    gunzip -c "$packed" >"/tmp/mutant-$name" && chmod +x "/tmp/mutant-$name"
    (timeout 150 "/tmp/mutant-$name" --gtest_fail_fast --gtest_filter="$gpu_tests" >"/tmp/mutant-$name.log" 2>&1
      echo "mutant $name rc=$?" >>"/tmp/mutant-$name.log") &
  done
  wait
  for log in /tmp/mutant-*.log; do
    name=$(basename "$log" .log)
    name=${name#mutant-}
    failed=$(grep -m1 '^\[  FAILED  \]' "$log" | sed 's/^\[  FAILED  \] //')
    rc=$(sed -n 's/^mutant .* rc=//p' "$log")
    if [ -n "$failed" ]; then
      say "mutant $name: caught by $failed"
    elif [ "$rc" != 0 ]; then
      say "mutant $name: caught? rc=$rc without a failed test (a crash or the timeout): $(tail -2 "$log" | head -1)"
    elif grep -q '^\[  SKIPPED \]' "$log"; then
      say "mutant $name: NOT RUN ($(grep -c '^\[  SKIPPED \].*ms)$' "$log") tests skipped: no usable GPU?)"
    else
      say "mutant $name: SURVIVED ($(grep -m1 '^\[  PASSED  \]' "$log"))"
    fi
    cat "$log" >>"$out/mutants.log"
  done
  say "mutants done after $((SECONDS - started)) s"
fi
