#!/usr/bin/env bash
# Compiles and links the CUDA extension scarlet_kernels._C on a machine with nvcc but no GPU, then imports it.
#
# The build needs a CUDA build of torch, which must never replace the CPU torch of the main environment, so it
# gets a venv of its own (created if missing, reused if present). The build runs in a temporary copy of the
# sources, leaving the checkout untouched. Environment knobs: SCARLET_CUDA_VENV (default
# /tmp/scarlet-cuda-venv), SCARLET_CUDA_TORCH (default 2.14.1), CUDA_HOME (default /usr/local/cuda),
# TORCH_CUDA_ARCH_LIST (default 9.0), MAX_JOBS (default 2), PYTHON (default python3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SCARLET_CUDA_VENV:-/tmp/scarlet-cuda-venv}
torch_version=${SCARLET_CUDA_TORCH:-2.14.1}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
start=$(date +%s)

if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "build_cuda: nvcc not found under CUDA_HOME=$CUDA_HOME" >&2
  exit 1
fi

if ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet "torch==$torch_version" setuptools wheel ninja pybind11 numpy
"$venv/bin/python" -c "import torch; assert torch.version.cuda, 'torch in $venv has no CUDA'; \
print('build_cuda: torch', torch.__version__, 'CUDA', torch.version.cuda)"

# The CUDA headers and libraries torch was built against come as nvidia-* wheels; nvcc and the host compiler
# find them through CPATH and LIBRARY_PATH.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
CPATH=${CPATH:-}
LIBRARY_PATH=${LIBRARY_PATH:-}
for dir in "$site"/nvidia/*/include; do
  if [ -d "$dir" ]; then CPATH="$dir${CPATH:+:$CPATH}"; fi
done
for dir in "$site"/nvidia/*/lib; do
  if [ -d "$dir" ]; then LIBRARY_PATH="$dir${LIBRARY_PATH:+:$LIBRARY_PATH}"; fi
done
export CPATH LIBRARY_PATH
export PATH="$venv/bin:$CUDA_HOME/bin:$PATH"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cp -r "$repo/setup.py" "$repo/pyproject.toml" "$repo/csrc" "$repo/scarlet_kernels" "$build/"
find "$build/scarlet_kernels" \( -name '_C*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +

cd "$build"
SCARLET_FORCE_CUDA_BUILD=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-2} \
  "$venv/bin/python" setup.py --quiet build_ext --inplace
so=$(ls scarlet_kernels/_C*.so)
echo "build_cuda: built $so ($(du -h "$so" | cut -f1))"
if [ -x "$CUDA_HOME/bin/cuobjdump" ]; then
  "$CUDA_HOME/bin/cuobjdump" --list-elf "$so" | sed 's/^/build_cuda: /'
fi

# Importing needs only the CUDA runtime libraries, not a GPU or a driver.
"$venv/bin/python" - <<'PY'
import torch

import scarlet_kernels
from scarlet_kernels import backend

assert backend.CUDA_EXTENSION_LOADED, backend.CUDA_EXTENSION_ERROR
import scarlet_kernels.cuda_kernels  # noqa: F401,E402

ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("scarlet_kernels::"))
for name in ops:
    print("build_cuda: op", name, "has CUDA kernel:", torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA"))
assert len(ops) == 6 and all(torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA") for n in ops), ops
PY
echo "build_cuda: ok in $(( $(date +%s) - start )) s"
