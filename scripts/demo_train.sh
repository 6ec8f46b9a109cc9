#!/usr/bin/env bash
# `make demo-train`: the three training stages on a synthetic scene with a small CPU budget
# (a few minutes), then segmentation of the held-out sample with the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
OUT="${1:-demo_output/train}"
rm -rf "$OUT"
mkdir -p "$OUT"
t0=$SECONDS
$PY -m engine synth --size 1024 --seed 102 --out "$OUT/scene" --json | tail -1 >/dev/null
DATA=(--optical "$OUT/scene/optical.tif" --sar "$OUT/scene/sar.tif" --labels "$OUT/scene/label.tif"
      --patch-size 128 --batch-size 8 --max-batches 8 --json)
step() { echo "== $1 ($(( SECONDS - t0 )) s so far)"; }
step "teacher (SAR-only water expert)"
$PY -m engine train-teacher "${DATA[@]}" --widths 8,16,32,64 --epochs 4 --out "$OUT/teacher" | tail -1
step "stage 1 student"
$PY -m engine train-student "${DATA[@]}" --widths 16,32,64,128 --epochs 6 --out "$OUT/student" | tail -1
step "stage 2: SGCAD gated distillation"
$PY -m engine distill "${DATA[@]}" --student "$OUT/student/best.safetensors" \
    --teacher "$OUT/teacher/best.safetensors" --epochs 4 --warmup-epochs 1 --out "$OUT/distill" | tail -1
step "segment the held-out sample"
$PY -m engine segment --optical resources/sample/synthetic/optical.tif --sar resources/sample/synthetic/sar.tif \
    --model "$OUT/distill/best.safetensors" --teacher "$OUT/teacher/best.safetensors" --out "$OUT/segment" --json | tail -1
$PY -m engine evaluate --prediction "$OUT/segment/classes.tif" --reference resources/sample/synthetic/label.tif \
    --json | tail -1
echo "== done in $(( SECONDS - t0 )) s; reports: $OUT/{teacher,student,distill}/report.html"
