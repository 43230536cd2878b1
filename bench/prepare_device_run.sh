#!/usr/bin/env bash
# Run this HERE before a GPU-machine run (the device tool): the GPU machines reach no package
# registry and device time is short, so the work that needs no GPU happens here.
#  1. Builds build-cuda (Release, CUDA for sm_90, tests and benchmarks) and copies the five
#     programs (capledger, capledger_tests, aggregate_bench, l2_atomics_bench, and gpu_ingest_bench
#     gzipped: 2 MB, not 6, for the carry's sake), the shared
#     libraries they need beyond the C/C++ runtimes, and the build folder's absolute path into
#     .device-bin/ (the tests have that path compiled in).
#  2. Downloads the build dependencies as .deb files into .device-debs/, for the device run's
#     fallback: building there when the programs built here do not run on its image.
# Both folders are ignored by git; carry both: carry [".device-bin", ".device-debs"].
#  3. With MUTANTS=1, also builds capledger_tests once per patch of bench/gpu_mutants/ (a one-line
#     bug in kernels/ each, applied here and taken out again) into .device-bin/mutants/NAME.gz,
#     for device_check.sh's "mutants" step: can the GPU tests fail? (3.5 MB each. The 64 MiB a
#     device call takes holds the working tree (3.5 MiB) and what it carries: at 0b6f583 .device-bin
#     with the six mutants is 55.8 MiB and .device-debs 7.5, together too much: with mutants, carry
#     .device-bin alone; .device-debs is only for the fallback build.)
#  4. With BASE_REF=<git ref> (a commit, a branch: main when measuring an experiment branch), also
#     builds that ref's aggregate_bench and capledger in a worktree and stages them in
#     .device-base/, which device_check.sh runs beside the new ones (benchmarks, end-to-end
#     report), on the same card: carry ".device-base" too.
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in .device-bin .device-debs .device-base; do
  grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >>.git/info/exclude
done

cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCAPLEDGER_CUDA=ON -DCAPLEDGER_TESTS=ON \
  -DCAPLEDGER_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build build-cuda -j"$(nproc)"
rm -rf .device-bin && mkdir -p .device-bin/lib
cp build-cuda/capledger build-cuda/tests/capledger_tests build-cuda/bench/aggregate_bench .device-bin/
cp build-cuda/bench/l2_atomics_bench .device-bin/
gzip -9 -c build-cuda/bench/gpu_ingest_bench >.device-bin/gpu_ingest_bench.gz  # same libraries as aggregate_bench
realpath build-cuda >.device-bin/build-dir
# Which commit the programs are (device_check.sh says it in its summary): a stale .device-bin shows.
{ git rev-parse --short HEAD; git diff --quiet HEAD -- . ':!bench/device-runs' || echo "(with uncommitted changes)"; } |
  paste -sd ' ' >.device-bin/commit
# Every shared library the programs load beyond the C and C++ runtimes that any image has.
ldd .device-bin/capledger .device-bin/capledger_tests .device-bin/*_bench |
  awk '$2 == "=>" && $1 !~ /^(libc|libm|libstdc\+\+|libgcc_s)\.so/ { print $3 }' | sort -u |
  xargs -r cp -L -t .device-bin/lib/

if [ -n "${MUTANTS:-}" ]; then
  git diff --quiet HEAD -- kernels || { echo "kernels/ differs from HEAD: commit it first (mutants are built on it)"; exit 1; }
  rm -rf .device-bin/mutants && mkdir -p .device-bin/mutants
  trap 'git checkout HEAD -- kernels' EXIT  # the tree as it was, whatever happens
  for patch in bench/gpu_mutants/*.patch; do
    name=$(basename "$patch" .patch)
    git apply "$patch"
    cmake --build build-cuda -j"$(nproc)" --target capledger_tests >/dev/null
    strip -o ".device-bin/mutants/$name" build-cuda/tests/capledger_tests
    gzip -9 ".device-bin/mutants/$name"
    git checkout HEAD -- kernels  # newer than the mutant's objects: the next build compiles it again
  done
  trap - EXIT
fi

mkdir -p .device-debs
(cd .device-debs && apt-get download libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev \
  googletest libbenchmark-dev libbenchmark1debian libsqlite3-dev libsqlite3-0 libssl-dev libssl3 \
  libutf8proc-dev libutf8proc2)
du -sh .device-bin .device-debs

if [ -n "${BASE_REF:-}" ]; then
  base_tree=/tmp/capledger-base-tree
  git worktree remove --force "$base_tree" 2>/dev/null || rm -rf "$base_tree"
  git worktree add --detach "$base_tree" "$BASE_REF" >/dev/null
  cmake -S "$base_tree" -B "$base_tree/build-cuda" -DCMAKE_BUILD_TYPE=Release -DCAPLEDGER_CUDA=ON \
    -DCAPLEDGER_TESTS=OFF -DCAPLEDGER_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
  cmake --build "$base_tree/build-cuda" -j"$(nproc)" --target aggregate_bench capledger
  rm -rf .device-base && mkdir -p .device-base
  cp "$base_tree/build-cuda/bench/aggregate_bench" "$base_tree/build-cuda/capledger" .device-base/
  cp -r .device-bin/lib .device-base/
  git -C "$base_tree" rev-parse HEAD >.device-base/ref
  git worktree remove --force "$base_tree"
  du -sh .device-base
fi

