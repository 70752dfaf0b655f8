#!/usr/bin/env bash
# GPU check for the DVK engine, for a machine with an NVIDIA GPU and no network.
# Usage (from the repository root):  bash benchmarks/gpu_check/run.sh [WHEEL_DIR]
# WHEEL_DIR (default benchmarks/gpu_check/wheels) holds the CuPy wheel(s) for the machine's
# CUDA (e.g. cupy_cuda12x-*.whl and its dependency fastrlock-*.whl); they are installed with
# pip --no-index.  Prints one JSON document (also written to benchmarks/results/dvk_gpu.json).
# Without a GPU or CuPy it still runs the CPU part and reports why the GPU part was skipped.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WHEELS="${1:-$HERE/wheels}"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import cupy" >/dev/null 2>&1; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install --no-index --find-links "$WHEELS" "$WHEELS"/*.whl >&2 || echo "pip install of the CuPy wheels failed" >&2
  else
    echo "no CuPy installed and no wheels in $WHEELS: GPU part will be skipped" >&2
  fi
fi
cd "$REPO"
export PYTHONPATH="$REPO/TAREDosimetry${PYTHONPATH:+:$PYTHONPATH}"
# GPU equivalence tests (they skip with a reason when no GPU is usable), ~10 s.
timeout 150 "$PY" -m pytest -q -rs Testing/test_dvk.py -k "gpu" -p no:cacheprovider >&2
TEST_RC=$?
timeout 240 "$PY" "$HERE/gpu_check.py" --tests-rc "$TEST_RC"
