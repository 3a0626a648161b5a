#!/usr/bin/env bash
# Train the 7-style fast network (vidstyle.fast) on a lent GPU machine, time-limited.
#
# Needs .devcarry/ filled by `scripts/prep_device_data.py` (photos, video frames, held-out
# photos, style images, VGG19 features[:30] in fp16), because the device machine has no
# PyAV, no weights and no network. Writes into $OUT (default out/device): checkpoint.pt,
# model.pt (fp16), losses.jsonl, curves.png, samples.png, summary.json; prints a summary last.
#
# Extra arguments are TrainConfig field=value overrides for every variant. VARIANTS (default
# "main:") runs several trainings side by side on the one GPU, each "name:field=value;..."
# with its own overrides (';' separates several fields), in $OUT/<name>/. At the end each
# variant's small files are packed into $OUT/<name>.tar (the device returns at most 8 files)
# and its checkpoint stays in $OUT/<name>/checkpoint.pt.
# RESUME_FROM (optional; relative to the repository root) is a folder with
# <name>/checkpoint.pt per variant (e.g. weights/checkpoints): each variant that has one there continues from it (resume=true;
# the settings that shape the run must match, see vidstyle.fast.train.config._RESUME_KEYS), the
# others start fresh. A CPU dry run here:
#   OUT=/tmp/dry VARIANTS="a:style_weight=100 b:style_weight=400" \
#     bash scripts/train_on_device.sh steps=3 size=64 batch=2 eval_size=96 device=cpu
#   RESUME_FROM=/tmp/dry OUT=/tmp/dry2 VARIANTS="a:style_weight=100" \
#     bash scripts/train_on_device.sh steps=5 size=64 batch=2 eval_size=96 device=cpu
# Continuing the shipped model for 9 minutes beside a Johnson-size (32/64/128, 5 residual
# blocks) network of the same seven styles, on one GPU:
#   VARIANTS="fast7:style_weight=100 johnson:style_weight=100;channels=32,64,128;num_res_blocks=5" \
#     RESUME_FROM=weights/checkpoints bash scripts/train_on_device.sh max_minutes=9
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-out/device}"
export CARRY="${CARRY:-.devcarry}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
cat > "$OUT/.train.py" <<'EOF'
import json
import os
import sys
import time

import torch
import torchvision

from vidstyle.fast.train import TrainConfig, TrainProgress, config_from_pairs, train
from vidstyle.vgg import VGGFeatures

out, carry = sys.argv[1], os.environ["CARRY"]
t0 = time.time()
print(f"torch {torch.__version__} cuda={torch.cuda.is_available()} "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}", flush=True)

base = TrainConfig(
    styles=("starry", "scream", "wave", "composition_vii", "shipwreck", "udnie",
            "woman_with_hat"),
    style_dirs=(f"{carry}/styles",),
    content_dirs=(f"{carry}/train", f"{carry}/frames"),
    holdout_dirs=(f"{carry}/holdout",),
    num_samples=3,
    steps=60000,
    size=256,
    batch=16,
    lr=1e-3,
    style_weight=1e3,
    content_weight=1.0,
    tv_weight=0.0,
    style_size=512,
    eval_size=512,
    channels=(16, 32, 64),
    num_res_blocks=3,
    checkpoint_every=2000,
    log_every=100,
    max_minutes=7.0,
    out_dir=out,
    device="auto",
)
config = config_from_pairs(sys.argv[2:], base=base)

state = torch.load(f"{carry}/vgg19_relu5_1_fp16.pth", map_location="cpu", weights_only=True)
n = 2 + max(int(k.split(".")[0]) for k in state)  # through the ReLU of the last conv
features = torchvision.models.vgg19(weights=None).features[:n]
features.load_state_dict({k: v.float() for k, v in state.items()})
loss_net = VGGFeatures(name="vgg19", features=features, preprocessing="caffe_bgr")
device = torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
loss_net = loss_net.to(device, memory_format=torch.channels_last)


def progress(p: TrainProgress) -> None:
    text = " ".join(f"{k}={v:.4g}" for k, v in p.losses.items())
    line = f"step {p.step} {p.elapsed_s:.0f}s {p.step / max(p.elapsed_s, 1e-9):.1f} it/s {text}"
    with open(os.path.join(out, "train.log"), "a") as f:
        f.write(line + "\n")
    if p.step % 1000 == 0:
        print(f"[{os.path.basename(out)}] {line}", flush=True)


res = train(config, loss_net=loss_net, progress=progress)
summary = {
    "steps": res.steps,
    "stopped_early": res.stopped_early,
    "elapsed_s": round(res.elapsed_s, 1),
    "wall_s": round(time.time() - t0, 1),
    "model_sha256": res.model_sha256,
    "final_losses": res.final_losses,
    "eval_losses": res.eval_losses,
    "config": config.to_dict(),
    "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
    "torch": torch.__version__,
}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
name = os.path.basename(out)
print(f"[{name}]", json.dumps({k: summary[k] for k in ("steps", "elapsed_s", "wall_s",
                                                       "final_losses")}))
print(f"[{name}] eval", json.dumps({k: round(v["style"]) for k, v in res.eval_losses.items()}))
EOF
VARIANTS="${VARIANTS:-main:}"
pids=()
for v in $VARIANTS; do
  name="${v%%:*}"; extra="${v#*:}"
  mkdir -p "$OUT/$name"
  resume=()
  if [ -n "${RESUME_FROM:-}" ] && [ -f "$RESUME_FROM/$name/checkpoint.pt" ]; then
    for f in checkpoint.pt losses.jsonl; do
      src="$RESUME_FROM/$name/$f"
      if [ -f "$src" ] && ! [ "$src" -ef "$OUT/$name/$f" ]; then cp "$src" "$OUT/$name/$f"; fi
    done
    resume=(resume=true)
  fi
  # shellcheck disable=SC2086
  "$PY" "$OUT/.train.py" "$OUT/$name" "$@" ${extra//;/ } ${resume[@]+"${resume[@]}"} \
    >"$OUT/$name/stdout.log" 2>&1 &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
for v in $VARIANTS; do
  name="${v%%:*}"
  if [ $rc -ne 0 ]; then tail -n 40 "$OUT/$name/stdout.log"; else tail -n 3 "$OUT/$name/stdout.log"; fi
  (cd "$OUT/$name" && tar cf "../$name.tar" --exclude=checkpoint.pt -- *) \
    && find "$OUT/$name" -type f ! -name checkpoint.pt -delete
done
rm -f "$OUT/.train.py"
ls -la "$OUT" "$OUT"/*/
exit $rc
