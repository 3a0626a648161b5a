#!/usr/bin/env bash
# Issue 22's GPU check, one command (a few minutes on an H100/H200): the CUDA/device tests,
# `vidstyle run --method fast` at 640x360, 1280x720 and 1920x1080 (end-to-end and steady fps,
# peak GPU memory, CPU ms per frame), `vidstyle run --method optim` at 640x360 with the
# default iterations, temporal none and short (s per frame), and 20 steps of
# `vidstyle train` (steps per second). The measuring code is benchmarks/gpu_check.py.
#
# Usage: bash scripts/gpu_check.sh [OUT_DIR] [gpu_check.py options: --dry-run, --only
#        tests,fast,optim,train, --device cpu|cuda, --clip VIDEO]
# Writes OUT_DIR/gpu_check.json, OUT_DIR/gpu_check.md and OUT_DIR/gpu_check.log
# (OUT_DIR default gpu_check_out/); prints the tables last. Exit status 1 if a section or
# a test failed (the other sections still run and are written).
#
# CPU dry run (tiny sizes, 2 frames, 2 iterations, 2 training steps; about 30 s here):
#   bash scripts/gpu_check.sh /tmp/gpu_check_dry --dry-run
# On a lent GPU machine ($OUT comes back):
#   bash scripts/gpu_check.sh "$OUT"
# The device image has no PyAV and no VGG weights: wheels in .whl/ (git-ignored; see
# /work/.library/device/README.md) are installed into /tmp/site first when present, and a
# carried VIDSTYLE_HOME (.gpucarry/home, holding weights/ and its manifest.json) is used
# when present. Without them the sections that need them record their error.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="gpu_check_out"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUT_DIR="$1"; shift; fi
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
if [ -d .gpucarry/home/weights ] && [ -z "${VIDSTYLE_HOME:-}" ]; then
  export VIDSTYLE_HOME="$PWD/.gpucarry/home"
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader || true
"$PY" -m benchmarks.gpu_check --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
