#!/usr/bin/env bash
# The GPU checks of peekwidgets in one call, for a machine with an NVIDIA GPU and no package
# registry (the device tool's machine: python3 with torch, torchvision, numpy, scipy,
# scikit-learn, tqdm, pillow, matplotlib and pytest, but no tensorly, tensorly-viz or pandas).
#
# Prepare here, once (the wheels travel with the tree; .whl/ is git-ignored):
#   .venv/bin/pip download --no-deps -d .whl tensorly tensorly-viz pandas python-dateutil \
#       pytz tzdata six
# then run there, from the repository root, with the wheels carried along:
#   OUT=$OUT bash benchmarks/gpu_check.sh            (about 5-8 minutes; PYTHON=python3)
# Everything it prints goes to $OUT (default artifacts/gpu/): device.txt, cuda_tests.txt,
# engine_scale.txt, real_models.txt; the last line of each benchmark holds its figures.
# The package runs from the source tree (PYTHONPATH); nothing is installed from a registry.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-artifacts/gpu}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    nvidia-smi
    "$PYTHON" -c "import torch; p = torch.cuda.get_device_properties(0); print('torch', torch.__version__, 'CUDA', torch.version.cuda, p.name, round(p.total_memory / 2**30), 'GiB')"
} > "$OUT/device.txt" 2>&1

if [ -d .whl ]; then
    "$PYTHON" -m pip install -q --no-index --find-links .whl --no-deps \
        tensorly tensorly-viz pandas python-dateutil pytz tzdata six > "$OUT/install.txt" 2>&1
fi

# every CUDA variant of the engine, capture and diagnostics tests (they skip without a GPU)
timeout 300 "$PYTHON" -m pytest -q -p no:cacheprovider -rs -k "cuda" \
    tests/test_engine.py tests/test_capture_safety.py tests/test_diagnostics.py \
    > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/device.txt"

timeout 240 "$PYTHON" benchmarks/engine_scale.py --device cuda > "$OUT/engine_scale.txt" 2>&1
echo "engine_scale: exit $?" >> "$OUT/device.txt"
if [ -f benchmarks/real_models.py ]; then
    timeout 240 "$PYTHON" benchmarks/real_models.py --device cuda > "$OUT/real_models.txt" 2>&1
    echo "real_models: exit $?" >> "$OUT/device.txt"
fi
tail -n 3 "$OUT"/*.txt
