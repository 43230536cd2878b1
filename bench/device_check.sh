#!/usr/bin/env bash
# One prepared run for a GPU machine (H100/H200): build for sm_90, run the whole test suite
# (GPU tests included), compute-sanitizer memcheck and racecheck on the CPU-vs-GPU equivalence
# tests, and the aggregation benchmarks. Logs go to ${OUT:-./device-logs}.
# Usage (device tool): run with carry [".device-debs"] after bench/fetch_device_deps.sh here:
#   bench/device_check.sh [benchmark filter]
# Sized for a 600 s command: the sanitizers run a few small GPU tests (SANITIZE_FILTER overrides;
# under memcheck every one of the ~70 launches of an aggregate call is slow, and
# AroundWarpAndBlockSizes alone makes 660 calls), each step under its own timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-./device-logs}"
mkdir -p "$out"
# Default: the GPU benchmarks at 2^16, 2^20, 2^24 and 2^28 lines (the host builds each log
# single-threaded, so the full CPU grid would not fit the command's time).
filter="${1:-bm_aggregate_gpu}"
# The GPU machines reach no registry: dependencies come as .deb files carried in .device-debs/
# (made here by bench/fetch_device_deps.sh), unpacked into a private prefix.
prefix=/tmp/capledger-deps
if [ -d .device-debs ]; then
  for deb in .device-debs/*.deb; do dpkg -x "$deb" "$prefix"; done
  export CMAKE_PREFIX_PATH="$prefix/usr:${CMAKE_PREFIX_PATH:-}"
  export CPATH="$prefix/usr/include:${CPATH:-}"
  export LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LIBRARY_PATH:-}"
  export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
{
  nvidia-smi || true
  cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 &&
    cmake --build build-device -j"$(nproc)"
} >"$out/build.log" 2>&1 || { echo "build failed, see $out/build.log"; tail -40 "$out/build.log"; exit 1; }

ctest --test-dir build-device --output-on-failure --timeout 150 -j4 >"$out/tests.log" 2>&1
echo "ctest rc=$?" | tee -a "$out/tests.log"
grep -E "tests passed|Failed|Skipped" "$out/tests.log" | tail -5

sanitize=build-device/tests/capledger_tests
for tool in memcheck racecheck; do
  # racecheck looks at shared memory: the privatized dense tables are its target.
  default_filter=GpuEquivalence.SharedMemoryBudgetEdge
  [ "$tool" = memcheck ] && default_filter="$default_filter:GpuEquivalence.WideDictionaries"
  timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 9 "$sanitize" \
    --gtest_filter="${SANITIZE_FILTER:-$default_filter}" >"$out/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool rc=$?" | tee -a "$out/sanitizer-$tool.log"
  tail -3 "$out/sanitizer-$tool.log"
done

# The peer in the same run on the same card: PyTorch index_add_ and the copy bandwidth.
timeout 120 python3 bench/torch_peer.py --lines 400000000 --entities 100000 >"$out/torch_peer.json" 2>&1
echo "torch peer rc=$?"; cat "$out/torch_peer.json" | head -20

timeout 150 build-device/bench/aggregate_bench --benchmark_filter="$filter" \
  --benchmark_out="$out/aggregate_bench.json" --benchmark_out_format=json >"$out/bench.log" 2>&1
echo "bench rc=$?"
tail -30 "$out/bench.log"
