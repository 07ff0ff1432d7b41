"""Build of scarlet and scarlet_kernels; the optional CUDA extension scarlet_kernels._C is built from csrc/.

Metadata lives in pyproject.toml. The extension is built only where torch with CUDA is importable at build time
and nvcc is found, and a GPU is present or SCARLET_FORCE_CUDA_BUILD=1 (CI machines without a GPU);
SCARLET_SKIP_CUDA_BUILD=1 never builds it. Without it the package still installs and falls back to Triton or
PyTorch. Install with ``pip install --no-build-isolation -e .`` so that the build sees the installed torch
(an isolated build has no torch and skips the extension). This file is the authoritative build; CMakeLists.txt
only serves C++ development.
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0"


def flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cuda_build():
    """(ext_modules, cmdclass) for the CUDA extension, or ([], {}) with the reason printed."""
    if flag("SCARLET_SKIP_CUDA_BUILD"):
        return [], {}, "SCARLET_SKIP_CUDA_BUILD is set"
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError as e:
        return [], {}, f"torch is not importable at build time ({e}); use pip install --no-build-isolation"
    if torch.version.cuda is None:
        return [], {}, f"torch {torch.__version__} is built without CUDA"
    if CUDA_HOME is None or not (Path(CUDA_HOME) / "bin" / "nvcc").exists():
        return [], {}, "nvcc was not found (set CUDA_HOME)"
    if not (torch.cuda.is_available() or flag("SCARLET_FORCE_CUDA_BUILD")):
        return [], {}, "no GPU is visible (set SCARLET_FORCE_CUDA_BUILD=1 to build anyway)"
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    sources = sorted(str(p.relative_to(ROOT)) for pattern in ("*.cpp", "*.cu") for p in (ROOT / "csrc").glob(pattern))
    extension = CUDAExtension(
        name="scarlet_kernels._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc")],
        extra_compile_args={"cxx": ["-O3"],
                            "nvcc": ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]},
    )
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}, None


ext_modules, cmdclass, skipped = cuda_build()
if skipped:
    print(f"scarlet: not building the CUDA extension scarlet_kernels._C: {skipped}")

setup(
    packages=find_packages(include=["scarlet", "scarlet.*", "scarlet_kernels", "scarlet_kernels.*"]),
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
