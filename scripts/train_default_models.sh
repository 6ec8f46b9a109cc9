#!/usr/bin/env bash
# Reproduce the bundled default models with the project's own commands (CPU, ~30 min on 2 cores).
# Training data: a seeded synthetic scene (seed 102, 1024 x 1024 px at 2 m) that no sample
# or test uses. Architectures: configs/default_student.json, configs/default_teacher.json.
# Usage: scripts/train_default_models.sh [WORK_DIR]   (default build/default-models)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WORK="${1:-build/default-models}"
EPOCHS_TEACHER="${EPOCHS_TEACHER:-10}"
EPOCHS_STUDENT="${EPOCHS_STUDENT:-12}"
EPOCHS_DISTILL="${EPOCHS_DISTILL:-6}"
MAX_BATCHES="${MAX_BATCHES:-10}"  # student and distill batches per epoch (CPU budget)
done_() { [ -f "$WORK/$1/metrics.json" ]; }  # a finished stage is not run again
mkdir -p "$WORK"
[ -f "$WORK/scene/label.tif" ] || $PY -m engine synth --size 1024 --seed 102 --out "$WORK/scene" --json | tail -1
DATA=(--optical "$WORK/scene/optical.tif" --sar "$WORK/scene/sar.tif" --labels "$WORK/scene/label.tif"
      --patch-size 128 --batch-size 8 --seed 42 --overwrite --json)
done_ teacher || $PY -m engine train-teacher "${DATA[@]}" --model-config configs/default_teacher.json \
    --epochs "$EPOCHS_TEACHER" --out "$WORK/teacher" | tail -1
done_ student || $PY -m engine train-student "${DATA[@]}" --model-config configs/default_student.json \
    --epochs "$EPOCHS_STUDENT" --max-batches "$MAX_BATCHES" --out "$WORK/student" | tail -1
done_ distill || $PY -m engine distill "${DATA[@]}" --student "$WORK/student/best.safetensors" \
    --teacher "$WORK/teacher/best.safetensors" --epochs "$EPOCHS_DISTILL" --warmup-epochs 2 \
    --max-batches "$MAX_BATCHES" --out "$WORK/distill" | tail -1
$PY scripts/publish_models.py --teacher "$WORK/teacher" --student "$WORK/distill" --out resources/models
