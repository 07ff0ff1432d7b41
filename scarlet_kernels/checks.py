"""Argument checks shared by the ops (each raises TypeError or ValueError naming the argument, before any launch),
and the tensor layouts and accumulator type the backends share."""

from __future__ import annotations

import functools
import numbers
import weakref
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def tensor(name: str, t: object, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """``t`` is a floating tensor of one of the supported dtypes with ``ndim`` dimensions (or one of several)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16, float16 or float64, got {t.dtype}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if t.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimensions, got shape {tuple(t.shape)}")
    return t


def shape(name: str, t: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def same_device_and_dtype(reference_name: str, reference: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if t.device != reference.device:
            raise ValueError(f"{name} is on {t.device} but {reference_name} is on {reference.device}")
        if t.dtype != reference.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {reference_name} has {reference.dtype}")


def contiguous(name: str, t: torch.Tensor) -> None:
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first)")


def channels_last(name: str, x: torch.Tensor) -> bool:
    """Whether a stacked activation (..., C, H, W) is channels-last; it must be contiguous in one of the two layouts."""
    if x.is_contiguous():
        return False
    order = list(range(x.dim() - 3)) + [x.dim() - 2, x.dim() - 1, x.dim() - 3]
    if x.permute(order).is_contiguous():
        return True
    raise ValueError(f"{name} must be contiguous, either (..., C, H, W) or channels-last "
                     "(call .contiguous() first)")


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation for fp32/bf16/fp16 data, fp64 for fp64 data (used by gradcheck)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty_activation(shape_: Sequence[int], like: torch.Tensor, is_channels_last: bool,
                     dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised (..., C, H, W) tensor laid out as ``like`` is (standard or channels-last)."""
    dtype = like.dtype if dtype is None else dtype
    if not is_channels_last:
        return torch.empty(shape_, dtype=dtype, device=like.device)
    lead, (c, h, w) = list(shape_[:-3]), shape_[-3:]
    n = len(lead)
    return torch.empty(lead + [h, w, c], dtype=dtype, device=like.device).permute(
        *range(n), n + 2, n, n + 1)


def as_layout(t: torch.Tensor, is_channels_last: bool) -> torch.Tensor:
    """``t`` (a gradient arriving from autograd, of any strides) copied into the given layout if it is not in it."""
    if not is_channels_last:
        return t.contiguous()
    n = t.dim() - 3
    return t.permute(*range(n), n + 1, n + 2, n).contiguous().permute(*range(n), n + 2, n, n + 1)


# The fast 1x1 kernels put path x image on one launch-grid axis, which CUDA bounds by 65535 (csrc/bindings.cpp);
# every backend applies the same limit so that a call's validity does not depend on where it runs.
MAX_PATH_IMAGES = 65535


def path_images(paths: int, images: int) -> None:
    if paths * images > MAX_PATH_IMAGES:
        raise ValueError(f"at most {MAX_PATH_IMAGES} path-images (paths x images) per call, got {paths} x {images}; "
                         "split the batch")


def int_per_path(name: str, values: object, paths: int, device: torch.device, allowed: Sequence[int] | None = None,
                 low: int | None = None, high: int | None = None) -> tuple[torch.Tensor, list[int] | None]:
    """A list of ints or an integer tensor with one value per path: (int32 tensor on ``device``, host values).

    Values are checked on the host. Reading a GPU tensor synchronises, so one is read once and trusted after
    while it is unmodified, and trusted unread during CUDA graph capture (the host values are then None); the
    kernels clamp what they read to stay in bounds. A list becomes a device tensor once (cached).
    """
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got {values.dtype}")
        if values.dim() != 1 or values.numel() != paths:
            raise ValueError(f"{name} must have one value per path ({paths}), got shape {tuple(values.shape)}")
        if values.device != device:
            raise ValueError(f"{name} is on {values.device} but x is on {device}")
        result = values.to(torch.int32).contiguous()
        check = (name, values._version, allowed, low, high)
        trusted = values.is_cuda and (_already_checked(values, check) or torch.cuda.is_current_stream_capturing())
        host = None if trusted else values.tolist()
    else:
        if not isinstance(values, Sequence) or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                                       for v in values):
            raise TypeError(f"{name} must be a list of ints or an integer tensor, got {values!r}")
        if len(values) != paths:
            raise ValueError(f"{name} must have one value per path ({paths}), got {len(values)}")
        host = [int(v) for v in values]
        result = _device_ints(tuple(host), device)
    for v in host or ():
        if allowed is not None and v not in allowed:
            raise ValueError(f"{name} values must be in {tuple(allowed)}, got {v}")
        if (low is not None and v < low) or (high is not None and v > high):
            raise ValueError(f"{name} values must be in [{low}, {high}], got {v}")
    if isinstance(values, torch.Tensor) and values.is_cuda and host is not None:
        _remember_checked(values, check)
    return result, host


# GPU tensors of per-path values already checked, by identity: id -> (weak reference, what was checked at which
# in-place version). Not a WeakKeyDictionary: that compares keys with ==, which is elementwise for tensors.
_checked_on_device: dict[int, tuple[weakref.ref, tuple]] = {}


def _already_checked(t: torch.Tensor, check: tuple) -> bool:
    entry = _checked_on_device.get(id(t))
    return entry is not None and entry[0]() is t and entry[1] == check


def _remember_checked(t: torch.Tensor, check: tuple) -> None:
    key = id(t)

    def forget(ref: weakref.ref) -> None:  # t was freed; its id may be reused by another tensor
        if _checked_on_device.get(key, (None,))[0] is ref:
            del _checked_on_device[key]

    _checked_on_device[key] = (weakref.ref(t, forget), check)


@functools.lru_cache(maxsize=256)
def _device_ints(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32, device=device)


def bool_per_path(name: str, values: object, paths: int, device: torch.device) -> torch.Tensor:
    """A list of bools or a bool tensor with one value per path, as a bool tensor on ``device``."""
    if isinstance(values, torch.Tensor):
        if values.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool tensor, got {values.dtype}")
        if values.shape != (paths,):
            raise ValueError(f"{name} must have one value per path ({paths}), got shape {tuple(values.shape)}")
        if values.device != device:
            raise ValueError(f"{name} is on {values.device} but x is on {device}")
        return values
    if not isinstance(values, Sequence) or not all(isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a list of bools or a bool tensor, got {values!r}")
    if len(values) != paths:
        raise ValueError(f"{name} must have one value per path ({paths}), got {len(values)}")
    return torch.tensor(list(values), dtype=torch.bool, device=device)
