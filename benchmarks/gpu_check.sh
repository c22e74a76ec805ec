#!/usr/bin/env bash
# One command on a machine with one NVIDIA GPU and no internet, done in under 8 minutes:
#     bash benchmarks/gpu_check.sh [gpu_check.py options, e.g. --dry-run, --only pytorch-cuda-wan,pytorch-cuda-wan-vae]
# Runs every GPU path that imports here (PyTorch CUDA, ONNX Runtime CUDA EP, TensorRT), most valuable first (Wan2.1-1.3B's
# transformer at its 480p clip, the ModelScope-shaped UNet, Wan's decoder over the whole clip, then the TensorRT builds
# and the builtin models), skipping the others with their reasons, and writes benchmarks/results/gpu_<gpu-slug>.json.
# The Wan TensorRT path (an export on the CPUs and three engine builds, ~4-6 min) rarely fits after the PyTorch paths:
# give it its own command,
#     GPU_CHECK_TIMEOUT_S=570 bash benchmarks/gpu_check.sh --only tensorrt-wan --budget-s 520   # gpu_<gpu-slug>_tensorrt-wan.json
# and `--tiny` (diffusers' Wan test sizes, seconds) checks the Wan wiring on the GPU before a full run.
# Nothing is installed: the checkout's own turbo_edge goes first on PYTHONPATH (an installed copy, or none, both work;
# its dependencies must be present). Written against the GPU APIs; unverified until a GPU session runs it.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root" || exit 1
py="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import turbo_edge" 2>/dev/null; then
    echo "gpu_check: turbo_edge does not import from $root with $py:" >&2
    "$py" -c "import turbo_edge" >&2
    echo "gpu_check: its dependencies (torch, diffusers, transformers, onnx, onnxruntime) must be installed" >&2
    exit 1
fi
export GPU_CHECK_LAUNCHER="bash benchmarks/gpu_check.sh"
# The Python side stops starting cases at --budget-s (420 s); the timeout is the backstop, and the JSON is
# rewritten after every path, so a cut run still leaves what it measured.
timeout -k 10 "${GPU_CHECK_TIMEOUT_S:-470}" "$py" "$here/gpu_check.py" --out-dir "$here/results" "$@"
rc=$?
[ "$rc" -eq 124 ] && echo "gpu_check: stopped by the ${GPU_CHECK_TIMEOUT_S:-470} s timeout; the JSON holds the paths finished before it" >&2
exit "$rc"
