#!/usr/bin/env bash
# Everything a GPU host runs, in one command and within a time budget (default 540 s):
# build the full-size random-weight models, run every pipeline on CUDA in float16 through
# `pico serve`, then the GPU benchmark (benchmarks/gpu.py). Each step writes its results to
# $OUT as it goes, so a step cut short by the budget keeps what it measured.
#
#   sh benchmarks/gpu_wheels.sh                       # here: wheels the lent machines lack
#   OUT=benchmarks/results bash benchmarks/gpu_session.sh             # SD 1.5, SDXL (float16)
#   OUT=benchmarks/results bash benchmarks/gpu_session.sh families    # SD 3.5 Medium, FLUX.1 (bfloat16)
#
# "families" builds full-size random-weight SD 3.5 Medium, FLUX.1 dev and schnell (about 41 GB, on
# tmpfs when it has room) and runs benchmarks/families.py at 1024x1024 in bfloat16: plain Diffusers
# against PICO served, then the opt-in speed-ups (--fuse-qkv, --compile of the transformer) and the
# peak memory of --offload model. FLUX first: its rows are the ones with goals (dev < 3 s, schnell < 0.5 s).
#
# On the device tool: carry [".whl"], command `bash benchmarks/gpu_session.sh [families]`.
set -u
cd "$(dirname "$0")/.."
started=$(date +%s)
deadline=$((started + ${GPU_BUDGET_S:-540}))
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
failed=0  # the exit status: 1 when any step failed or was cut short

left() { echo $((deadline - $(date +%s))); }
step() {  # step CAP_SECONDS COMMAND...: run with at most CAP seconds, never past the deadline
    local cap=$1; shift
    local budget; budget=$(left)
    [ "$budget" -lt "$cap" ] && cap=$budget
    if [ "$cap" -lt 30 ]; then echo "== skipped (budget spent): $*"; failed=1; return 1; fi
    echo "== $(date -u +%T) (${cap} s at most): $*"
    timeout --signal=INT --kill-after=15 "$cap" "$@"
    local rc=$?
    echo "== exit $rc after $(( $(date +%s) - started )) s in all"
    [ "$rc" -ne 0 ] && failed=1
    return $rc
}

MODE=${1:-sd}

families() {  # the flow-matching families: each step writes its own results folder
    local models=/tmp/pico-full
    if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 50000000 ] 2>/dev/null; then
        models=/dev/shm/pico-full
    fi
    step 240 python3 benchmarks/fullsize.py --root "$models" --families || return 1
    du -shL "$models"/*/* 2>/dev/null
    step 160 python3 benchmarks/families.py --work "$models" --model flux-dev --model flux-schnell \
        --skip fused --skip compile --skip offload --out "$OUT/families-plain-served"
    step 240 python3 benchmarks/families.py --work "$models" --model flux-dev --model flux-schnell \
        --skip plain --skip served --skip offload --out "$OUT/families-speedups"
    step 100 python3 benchmarks/families.py --work "$models" --model sd35-medium --skip fused --skip compile \
        --skip offload --out "$OUT/families-sd35"
    step 90 python3 benchmarks/families.py --work "$models" --model flux-dev --repeat 1 --skip plain --skip served \
        --skip fused --skip compile --out "$OUT/families-offload"
}

main() {
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
            || return 1
        export PYTHONPATH=/tmp/site:$PWD
    fi
    export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch, diffusers, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "diffusers", diffusers.__version__, "transformers", transformers.__version__)' || return 1

    if [ "$MODE" = families ]; then
        families
        echo "== done in $(( $(date +%s) - started )) s; exit $failed"
        return $failed
    fi
    # Models on tmpfs when it has room: loads then cost what a warm page cache costs.
    models=/tmp/pico-full
    if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 30000000 ] 2>/dev/null; then
        models=/dev/shm/pico-full
    fi
    step 200 python3 benchmarks/fullsize.py --root "$models" || return 1
    du -sh "$models"
    step 150 python3 benchmarks/cuda_pipelines.py --models "$models" --out "$OUT"
    step 60 python3 benchmarks/inpaint_copies.py --repeat 5 --out "$OUT"  # per-image inpainting noise, in fp16
    # Checkpoints and LoRAs at full size: a single-file SDXL checkpoint (about 7 GB, written once from the
    # random-weight SDXL) and rank-32 LoRAs; first request on the checkpoint, then LoRA-set switches against a
    # 25-step 1024² generation (goal: a switch under 10 % of it).
    step 240 python3 benchmarks/checkpoints_loras.py --models "$models" --family sdxl --device cuda --rank 32 \
        --steps 25 --size 1024 --repeat 3 --scratch "$models/bench-files" --out "$OUT"
    step 420 python3 benchmarks/gpu.py --work "$models" --repeat 2 --out "$OUT"
    # CUDA graphs (reduce-overhead), if the budget still has room: SD 1.5 only.
    step 150 python3 benchmarks/gpu.py --work "$models" --repeat 2 --model sd15 --compile-mode reduce-overhead \
        --skip original --skip plain --skip served --skip speedups --out "$OUT/graphs"
    for f in .cache/bench-serve-*.log; do
        [ -f "$f" ] && { echo "== tail of $f"; tail -n 25 "$f"; }
    done
    echo "== done in $(( $(date +%s) - started )) s; exit $failed"
    return $failed
}

main 2>&1 | tee -a "$OUT/log"
exit "${PIPESTATUS[0]}"
