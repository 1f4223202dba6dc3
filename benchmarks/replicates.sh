#!/usr/bin/env bash
# Seed replicates of the default recipe, every target, run in parallel on a many-core machine:
# per seed, the pipeline's own commands (collect, demos, pretrain, sft, sft --from-scratch,
# label, reward, align, evaluate) with the default configs and `--set seed=S` (as
# `agentalign pipeline --set seed=S` passes), but the three targets' reward+align+evaluate side by
# side and 1,000 evaluation episodes (500 off-lane). About 12-15 busy processes for 3 seeds.
#
#   SEEDS="0 1 2" DIR=runs/replicates bash benchmarks/replicates.sh
#   python benchmarks/replicates_table.py runs/replicates    # the tables for docs/results.md
#
# AA overrides the command (default `python -m agentalign`, so a source checkout on PYTHONPATH
# works). Each seed logs to DIR/sS.log; a finished stage is skipped when rerun (as the stages
# themselves resume).
set -u
SEEDS=${SEEDS:-"0 1 2"}
DIR=${DIR:-runs/replicates}
EPISODES=${EPISODES:-1000}
OFFLANE_EPISODES=${OFFLANE_EPISODES:-500}
TARGETS=${TARGETS:-"left middle right"}
AA=${AA:-"python -m agentalign"}
# TRAIN_THREADS=N: --set num_threads=N for the trainers (several share the machine)
TT=()
[ -n "${TRAIN_THREADS:-}" ] && TT=(--set num_threads="$TRAIN_THREADS")
# PRETRAIN_SET="key=value ...": extra --set overrides for pretrain (e.g. future_weight=1.0)
PT=()
for kv in ${PRETRAIN_SET:-}; do PT+=(--set "$kv"); done

# A target's own align overrides, "key=value ...": ALIGN_SET_<target> (e.g.
# ALIGN_SET_middle="rl.iterations=100"), else what the pipeline passes by default
# (configs/pipeline.yaml's stages.align-<target>).
target_align() {
    local own="ALIGN_SET_$1"
    if [ -n "${!own:-}" ]; then
        echo "${!own}"
    else
        python -c "import sys; from agentalign.config import packaged_data; \
print(' '.join(packaged_data('pipeline')['stages'].get('align-' + sys.argv[1], [])))" "$1"
    fi
}

# A trainer that fails on the GPU (device auto) is rerun on the CPU, where it resumes.
train() { $AA "$@" || { echo "retrying on the CPU: $1"; $AA "$@" --set device=cpu; }; }

seed_run() {
    local S=$1 D=$DIR/s$1 t
    local q=(--no-progress)
    $AA collect --out "$D/corpus" --seed "$S" "${q[@]}" || return 1
    $AA collect --population direct --episodes 200 --seed $((S + 1000)) --out "$D/demos" \
        "${q[@]}" || return 1
    train pretrain --corpus "$D/corpus" --out "$D/pretrain" --set seed="$S" "${TT[@]}" "${PT[@]}" \
        "${q[@]}" || return 1
    train sft --init "$D/pretrain" --demos "$D/demos" --out "$D/sft" --set seed="$S" "${TT[@]}" "${q[@]}" \
        || return 1
    ( train sft --from-scratch --demos "$D/demos" --out "$D/sft-scratch" --set seed="$S" "${TT[@]}" "${q[@]}" \
      && $AA evaluate "$D/sft-scratch" --episodes "$EPISODES" --seed "$S" --out "$D/eval/sft-scratch" "${q[@]}" \
      && $AA evaluate "$D/sft-scratch" --offlane --episodes "$OFFLANE_EPISODES" --seed "$S" \
             --out "$D/eval/sft-scratch-offlane" "${q[@]}" ) &
    local targets=()
    for t in $TARGETS; do targets+=(--target "$t"); done
    $AA label --policy "$D/sft" --out "$D/label" --seed "$S" --train-episodes 400 \
        --heldout-episodes 400 --pairs 3200 --heldout-pairs 1000 \
        --anywhere-heldout-episodes 400 "${targets[@]}" "${q[@]}" \
        || return 1
    for t in $TARGETS; do
        local own=() kv
        for kv in $(target_align "$t"); do own+=(--set "$kv"); done
        ( train reward --labels "$D/label" --target "$t" --init "$D/pretrain" --labels-used 1000 \
              --out "$D/reward-$t" --set seed="$S" "${TT[@]}" "${q[@]}" \
          && $AA align --policy "$D/sft" --reward "$D/reward-$t" --target "$t" \
              --out "$D/align-$t" --set prefft.seed="$S" --set rl.seed="$S" "${own[@]}" "${q[@]}" \
          && $AA evaluate "$D/align-$t" --episodes "$EPISODES" --seed "$S" \
              --out "$D/eval/$t-aligned" "${q[@]}" \
          && $AA evaluate "$D/align-$t" --offlane --episodes "$OFFLANE_EPISODES" --seed "$S" \
              --out "$D/eval/$t-aligned-offlane" "${q[@]}" ) &
    done
    $AA evaluate "$D/pretrain" --episodes "$EPISODES" --seed "$S" --out "$D/eval/base" "${q[@]}"
    $AA evaluate "$D/sft" --episodes "$EPISODES" --seed "$S" --out "$D/eval/sft" "${q[@]}"
    $AA evaluate "$D/sft" --offlane --episodes "$OFFLANE_EPISODES" --seed "$S" \
        --out "$D/eval/sft-offlane" "${q[@]}"
    wait
}

mkdir -p "$DIR"
start=$SECONDS
for S in $SEEDS; do
    ( seed_run "$S" > "$DIR/s$S.log" 2>&1; echo "seed $S exit $? after $((SECONDS - start)) s" ) &
done
wait
echo "replicates: seeds $SEEDS in $((SECONDS - start)) s"
