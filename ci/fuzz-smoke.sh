#!/usr/bin/env bash
# Fuzz smoke: build every fuzz target and run each for a short time over its
# committed seed corpus. Exits non-zero on a build failure or a crash (the
# crashing input is left under fuzz/artifacts/<target>/).
#
# Works on the stable toolchain: cargo-fuzz's default AddressSanitizer build
# needs `-Z sanitizer`, which stable accepts only with RUSTC_BOOTSTRAP=1, so
# this script sets it for the cargo-fuzz calls only. SANITIZER=none skips
# ASan and needs no bootstrap flag (faster to build, catches fewer bugs).
#
#   ci/fuzz-smoke.sh                      # all targets, 20 s each, ASan
#   FUZZ_SECONDS=60 ci/fuzz-smoke.sh engine_frames
#   SANITIZER=none ci/fuzz-smoke.sh
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`, about 30 s here).
set -euo pipefail

cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${SANITIZER:-address}"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is not installed; run: cargo install cargo-fuzz" >&2
    exit 2
fi

fuzz() {
    if [ "$sanitizer" = none ]; then
        cargo fuzz "$1" --sanitizer none "${@:2}"
    else
        RUSTC_BOOTSTRAP=1 cargo fuzz "$1" --sanitizer "$sanitizer" "${@:2}"
    fi
}

status=0
for t in "${targets[@]}"; do
    echo "== fuzz-smoke: build $t ($sanitizer)"
    if ! fuzz build "$t"; then
        echo "fuzz-smoke: $t does not build" >&2
        status=1
        continue
    fi
done
[ "$status" -eq 0 ] || exit "$status"

for t in "${targets[@]}"; do
    # New inputs go to a scratch directory, so the committed seeds stay as
    # they are.
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    echo "== fuzz-smoke: run $t for ${seconds}s"
    if ! fuzz run "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        echo "fuzz-smoke: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        status=1
    fi
    rm -rf "$scratch"
    trap - EXIT
done
exit "$status"
