#!/usr/bin/env bash
# The default pipeline's own wall clock, the previous code against this checkout, back to back,
# the same targets for both (all three), REPEATS times: a shared machine's speed drifts, so each
# new run is compared with the base run just before it. Prints each pair's times and ratio.
#
#   BASE=5ec66be REPEATS=2 bash benchmarks/pipeline_time.sh
#
# BASE is checked out once into a worktree (DIR/base-src) and run from it with PYTHONPATH; so is
# NEW (default: this checkout's HEAD), so editing the checkout meanwhile changes nothing. Run on
# an otherwise idle machine, in the project's environment (`. .venv/bin/activate`).
set -eu
BASE=${BASE:-5ec66be}
NEW=${NEW:-$(git rev-parse --short HEAD)}
REPEATS=${REPEATS:-2}
DIR=${DIR:-runs/pipeline-time}
TARGETS=${TARGETS:-"left middle right"}
ROOT=$(git rev-parse --show-toplevel)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
for side in base new; do
    [ "$side" = base ] && commit=$BASE || commit=$NEW
    [ -d "$DIR/$side-src" ] || git -C "$ROOT" worktree add --detach "$DIR/$side-src" "$commit" \
        >/dev/null
done

wall() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['wall_seconds'])" "$1"; }

for r in $(seq 1 "$REPEATS"); do
    rm -rf "$DIR/base-$r" "$DIR/new-$r"
    # shellcheck disable=SC2086
    PYTHONPATH="$DIR/base-src/python" python -m agentalign pipeline --out "$DIR/base-$r" \
        --targets $TARGETS --no-progress > "$DIR/base-$r.log" 2>&1
    # shellcheck disable=SC2086
    PYTHONPATH="$DIR/new-src/python" python -m agentalign pipeline --out "$DIR/new-$r" \
        --targets $TARGETS --no-progress > "$DIR/new-$r.log" 2>&1
    b=$(wall "$DIR/base-$r/pipeline.json")
    n=$(wall "$DIR/new-$r/pipeline.json")
    python -c "import sys; b, n = map(float, sys.argv[1:]); print(f'repeat $r: base ($BASE) \
{b:.1f} s, new ($NEW) {n:.1f} s, ratio {n / b:.3f}')" "$b" "$n"
done
