#!/usr/bin/env bash
# The GPU checks of peekwidgets in one call, for a machine with an NVIDIA GPU and no package
# registry (the device tool's machine: python3 with torch, torchvision, numpy, scipy,
# scikit-learn, pandas, tqdm, pillow, matplotlib and pytest, but no tensorly or tensorly-viz,
# and no widget libraries: nothing run here imports them).
#
# Prepare here, once (the wheels travel with the tree; .whl/ is git-ignored):
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl tensorly tensorly-viz
# then run there, from the repository root, with .whl carried along:
#   OUT=$OUT bash benchmarks/gpu_check.sh            (4 minutes on an H200; PYTHON=python3)
# Everything it prints goes to $OUT (default artifacts/gpu/): device.txt (the GPU and each
# step's exit status), cuda_tests.txt, nccl_probe.txt, real_models.txt, engine_scale.txt; the
# last line of each benchmark holds its figures.
# The package runs from the source tree (PYTHONPATH); nothing is installed from a registry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-artifacts/gpu}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{
    nvidia-smi
    "$PYTHON" -c "import torch; p = torch.cuda.get_device_properties(0); print('torch', torch.__version__, 'CUDA', torch.version.cuda, p.name, round(p.total_memory / 2**30), 'GiB', torch.cuda.device_count(), 'GPU(s)')"
} > "$OUT/device.txt" 2>&1

if [ -d .whl ]; then  # beside the image's packages, not over them
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl > "$OUT/install.txt" 2>&1
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.txt
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "$name: exit $?" >> "$OUT/device.txt"
}

# every CUDA test: engine, capture tiers, diagnostics, rank profile, the Analysis of a CUDA
# model, and two processes on GPUs (gloo; NCCL where there are two GPUs)
step cuda_tests 180 "$PYTHON" -m pytest -q -p no:cacheprovider -rs -k cuda \
    tests/test_engine.py tests/test_engine_batches.py tests/test_capture_safety.py \
    tests/test_diagnostics.py tests/test_rank.py tests/test_session.py \
    tests/test_distributed_engine.py
# can NCCL put two processes on one GPU (the distributed tests skip NCCL on one GPU)?
cat > /tmp/nccl_probe.py <<'PY'
import os, torch, torch.distributed as dist, torch.multiprocessing as mp
def run(rank):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    x = torch.full((4,), rank + 1.0, device="cuda")
    dist.all_reduce(x)
    print(f"rank {rank}: all_reduce on one GPU gave {x.tolist()}", flush=True)
    dist.destroy_process_group()
if __name__ == "__main__":
    mp.spawn(run, nprocs=2)
PY
step nccl_probe 45 "$PYTHON" /tmp/nccl_probe.py
step real_models 240 "$PYTHON" benchmarks/real_models.py --device cuda
step engine_scale 120 "$PYTHON" benchmarks/engine_scale.py --device cuda
tail -n 4 "$OUT"/*.txt
