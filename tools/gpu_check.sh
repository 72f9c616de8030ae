#!/usr/bin/env bash
# One prepared script for a lent GPU (the device tool): exercises the CUDA, AMP and NCCL paths and
# writes what it measured under $OUT (or ./gpu_check). Budget: about 6 minutes on one H100/H200
# (about 4 more on a machine with 2+ GPUs: multi-rank apply and eval, benchmarks/scale_out.py).
#   bash tools/gpu_check.sh
#   bash tools/gpu_check.sh --dry-run   # no GPU: the throughput matrix in its tiny CPU mode (CI runs this)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1 HARMONIZE_HOME="$(mktemp -d)" HARMONIZE_OFFLINE=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
log="$out/gpu_check.log"
failed=0
step() { echo "== $*" | tee -a "$log"; }
check() { if [ "$1" -ne 0 ]; then echo "FAILED: $2" | tee -a "$log"; failed=1; fi; }
matrix() {  # eval images/s, train samples/s, apply photos/s at 2K and 4K: float32/bf16/fp16 x channels-last x compile
  timeout "$1" python3 benchmarks/gpu_matrix.py "${@:2}" --json "$out/matrix.json" 2>&1 | tee -a "$log"
  check "${PIPESTATUS[0]}" "throughput matrix (thresholds: apply >= 100 photos/s at 2K on an H100-class GPU)"
}
if [ "${1:-}" = "--dry-run" ]; then
  step "dry run on the CPU: the matrix in its tiny mode (iDIH, 2 small photos, 1 step)"
  matrix 600 --tiny --archs idih --budget-s 200
  step "done (dry run)"
  exit "$failed"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())" | tee -a "$log"

step "parity on CUDA (fp32): every fixture within 5e-4 (asserted)"
timeout 150 python3 - <<'PY' 2>&1 | tee -a "$log"
import sys, torch
sys.path.insert(0, "tests")
from parity_utils import fixture_names, generate_weights, load_fixture
from harmonize_cli import zoo
from harmonize_cli.inference_opt import optimize_for_inference
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
worst = 0.0
for name in fixture_names():
    f = load_fixture(name)
    weights, _ = generate_weights(f["manifest"], f["seed"])
    model = zoo.create_model(name, weights=weights, device="cuda")
    with torch.no_grad():
        out = model(f["image"].cuda(), f["mask"].cuda()).cpu()
        fast = optimize_for_inference(model, "cuda")(f["image"].cuda(), f["mask"].cuda()).cpu()
    diff = (out - f["expected"]).abs().max().item()
    fast_diff = (fast - f["expected"]).abs().max().item()
    worst = max(worst, diff, fast_diff)
    print(name, "max abs diff on CUDA", diff, "optimised (folded BN)", fast_diff)
assert worst <= 5e-4, f"CUDA parity {worst:.2e} > 5e-4"
PY
check "${PIPESTATUS[0]}" "CUDA parity"

step "AMP: bf16 and fp16 losses finite and within 5% of float32 on the same batch (asserted)"
timeout 120 python3 - <<'PY' 2>&1 | tee -a "$log"
import torch
from harmonize_cli import zoo
from harmonize_cli.training.losses import fn_mse
torch.manual_seed(0)
model = zoo.create_model("idih-hrnet-w18s", device="cuda").train()
image, target = torch.randn(4, 3, 256, 256, device="cuda"), torch.randn(4, 3, 256, 256, device="cuda")
mask = torch.zeros(4, 1, 256, 256, device="cuda"); mask[:, :, 64:192, 64:192] = 1
with torch.no_grad():
    reference = fn_mse(model(image, mask).float(), target, mask).item()
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cuda", dtype=dtype):
            loss = fn_mse(model(image, mask).float(), target, mask).item()
        print(dtype, loss, "float32", reference)
        assert torch.isfinite(torch.tensor(loss)) and abs(loss - reference) <= 0.05 * abs(reference), dtype
PY
check "${PIPESTATUS[0]}" "AMP losses"

step "throughput matrix: eval / train / apply at 2K and 4K, iDIH and HRNet18s-iDIH, float32 / bf16 / fp16, channels-last and torch.compile off/on (apply >= 100 photos/s at 2K asserted on H100-class)"
matrix 260 --device cuda --budget-s 200

step "a tiny real training run on CUDA through the CLI, then NCCL with torchrun (if 2+ GPUs)"
data="$(mktemp -d)"
python3 -c "import sys; sys.path.insert(0, 'tests'); from minidata import make_mini_iharmony; make_mini_iharmony('$data/iH', n_train=8, n_test=4, size=(256, 256))"
timeout 120 python3 -m harmonize_cli train --arch idih-hrnet-w18s --no-pretrained --data "$data/iH" --epochs 2 \
    --batch-size 4 --workers 2 --out "$data/run" --device cuda 2>&1 | tail -4 | tee -a "$log"
cp "$data/run/metrics.jsonl" "$out/" 2>/dev/null
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  timeout 120 torchrun --standalone --nproc_per_node=2 -m harmonize_cli train --arch idih --data "$data/iH" \
      --epochs 1 --batch-size 4 --workers 1 --out "$data/ddp" 2>&1 | tail -3 | tee -a "$log"
fi
step "apply and eval with torchrun: 1 rank vs every GPU, same outputs and tables (asserted), images/s"
gpus="$(nvidia-smi -L | wc -l)"
if [ "$gpus" -ge 2 ]; then
  ranks="1 2"; [ "$gpus" -gt 2 ] && ranks="1 2 $gpus"
  # one process per GPU (cuda:LOCAL_RANK); the script exits 1 when outputs or tables differ
  timeout 240 python3 benchmarks/scale_out.py --device cuda --ranks $ranks --images 64 --eval-test 50 \
      --model idih-hrnet-w18s --json "$out/scale_out.json" 2>&1 | tail -12 | tee -a "$log"
  check "${PIPESTATUS[0]}" "multi-rank apply/eval"
else
  echo "one GPU: multi-rank apply/eval skipped (needs 2+)" | tee -a "$log"
fi
step "done"
exit "$failed"
