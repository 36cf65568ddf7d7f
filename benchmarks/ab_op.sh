#!/usr/bin/env bash
# A/B of neural_memory_chunk between git revision OLD and the working tree, interleaved (old, new, old,
# new) on the same machine so that the ratios, not the absolute times, are compared.
#
#   benchmarks/ab_op.sh OLD [OUT_DIR] [bench_op.py options...]
#
# Defaults: B=4, T in {1K, 4K, 16K}, read=token, fwd and fwd+bwd, 3 timed iterations; results go to
# OUT_DIR (default benchmarks/results/ab_op) as {old,new}_{1,2}.md/json. Uses .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: benchmarks/ab_op.sh OLD_REVISION [OUT_DIR] [bench_op.py options]}"
out="${2:-benchmarks/results/ab_op}"
shift $(( $# >= 2 ? 2 : 1 ))
opts=("$@")
[ ${#opts[@]} -eq 0 ] && opts=(--batch 4 --lengths 1024 4096 16384 --reads token --iters 3)
tree="$(mktemp -d)/old"
git worktree add --quiet --detach "$tree" "$old"
trap 'git worktree remove --force "$tree"' EXIT
mkdir -p "$out"
for round in 1 2; do
    for side in old new; do
        root="$PWD"; [ "$side" = old ] && root="$tree"
        .venv/bin/python "$root/benchmarks/bench_op.py" "${opts[@]}" \
            --out-md "$out/${side}_${round}.md" --out-json "$out/${side}_${round}.json"
    done
done
