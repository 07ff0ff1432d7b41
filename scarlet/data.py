"""Data sets and a resumable batch iterator.

- ``digits``: scikit-learn's 8x8 handwritten digits (1797 real images, 10 classes, shipped with the package, no
  network), upsampled to the training resolution; split 80/20 into train and validation with a fixed seed.
- ``cifar10:PATH``: the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) or binary batches
  (``*.bin``) in PATH. The python batches are pickles: they are read with an unpickler that admits only the
  numpy array types the format uses, never arbitrary objects.
- ``imagefolder:PATH``: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/...`` (or one folder of class folders,
  split 90/10 with a fixed seed), decoded with Pillow and resized to the resolution.

Every data set yields float32 images normalised per channel and int64 labels.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scarlet.errors import ScarletError

SPLIT_SEED = 0  # the train/validation split never depends on the run's seed


@dataclass
class Split:
    """An in-memory split, or a lazy one (``loader`` maps an index tensor to images)."""

    labels: torch.Tensor
    images: torch.Tensor | None = None
    loader: object = None

    def __len__(self):
        return len(self.labels)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[idx] if self.images is not None else self.loader(idx)
        return images, self.labels[idx]


@dataclass
class Dataset:
    name: str
    train: Split
    val: Split
    num_classes: int
    in_channels: int
    resolution: int


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = images.mean((0, 2, 3), keepdim=True)
    std = images.std((0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ((images - mean) / std).contiguous()


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)


def _split_indices(n: int, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = int(round(n * val_fraction))
    return perm[n_val:], perm[:n_val]


def load_digits(resolution: int) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = _normalise(_resize(images, resolution))
    labels = torch.tensor(d.target, dtype=torch.int64)
    tr, va = _split_indices(len(labels), 0.2)
    return Dataset("digits", Split(labels[tr], images[tr]), Split(labels[va], images[va]), 10, 1, resolution)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR's python batches contain: dicts, lists, bytes, str and numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
        data, labels = d[b"data"], d[b"labels"]
    except Exception as e:
        raise ScarletError(f"{path} is not a CIFAR-10 python batch ({e})") from None
    try:
        images, labels = np.asarray(data, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
        images = images.reshape(-1, 3, 32, 32)
    except (TypeError, ValueError, OverflowError) as e:
        raise ScarletError(f"{path} is not a CIFAR-10 python batch ({str(e)[:100]})") from None
    if labels.ndim != 1 or len(labels) != len(images):
        raise ScarletError(f"{path}: {labels.size} labels for {len(images)} images")
    return images, labels


def _read_cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 3073:
        raise ScarletError(f"{path} is not a CIFAR-10 binary batch (size {raw.size} is not a multiple of 3073)")
    raw = raw.reshape(-1, 3073)
    return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)


def load_cifar10(path: str, resolution: int) -> Dataset:
    root = Path(path)
    if not root.is_dir():
        raise ScarletError(f"CIFAR-10 folder {root} does not exist")
    for sub in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin"):
        if (sub / "data_batch_1").exists():
            train = [_read_cifar_python(sub / f"data_batch_{i}") for i in range(1, 6)]
            test = _read_cifar_python(sub / "test_batch")
            break
        if (sub / "data_batch_1.bin").exists():
            train = [_read_cifar_binary(sub / f"data_batch_{i}.bin") for i in range(1, 6)]
            test = _read_cifar_binary(sub / "test_batch.bin")
            break
    else:
        raise ScarletError(f"no CIFAR-10 batches (data_batch_1 or data_batch_1.bin) in {root}")

    def tensors(parts):
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float() / 255.0
        return x, torch.from_numpy(np.concatenate([p[1] for p in parts]))

    x_tr, y_tr = tensors(train)
    x_va, y_va = tensors([test])
    mean, std = x_tr.mean((0, 2, 3), keepdim=True), x_tr.std((0, 2, 3), keepdim=True)
    x_tr, x_va = (_resize((x - mean) / std, resolution).contiguous() for x in (x_tr, x_va))
    return Dataset("cifar10", Split(y_tr, x_tr), Split(y_va, x_va), 10, 3, resolution)


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _scan(root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(i)
    return files, labels


def load_imagefolder(path: str, resolution: int) -> Dataset:
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ScarletError(f"image folder {root} does not exist")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(p.name for p in train_root.iterdir() if p.is_dir())
    if not classes:
        raise ScarletError(f"no class folders in {train_root}")
    files, labels = _scan(train_root, classes)
    if not files:
        raise ScarletError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {train_root}")
    if (root / "val").is_dir():
        val_files, val_labels = _scan(root / "val", classes)
    else:
        tr, va = _split_indices(len(files), 0.1)
        val_files, val_labels = [files[i] for i in va], [labels[i] for i in va]
        files, labels = [files[i] for i in tr], [labels[i] for i in tr]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def loader_for(paths):
        def load(idx: torch.Tensor) -> torch.Tensor:
            out = []
            for i in idx.tolist():
                try:
                    with Image.open(paths[i]) as im:
                        im = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
                        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                except OSError as e:
                    raise ScarletError(f"cannot read image {paths[i]}: {e}") from None
                out.append((arr - mean) / std)
            return torch.stack(out)
        return load

    return Dataset("imagefolder", Split(torch.tensor(labels), loader=loader_for(files)),
                   Split(torch.tensor(val_labels), loader=loader_for(val_files)), len(classes), 3, resolution)


def load_dataset(spec: str, resolution: int) -> Dataset:
    """``digits``, ``cifar10:PATH`` or ``imagefolder:PATH``; both splits non-empty, labels in the class range."""
    kind, _, path = spec.partition(":")
    if kind == "digits" and not path:
        data = load_digits(resolution)
    elif kind == "cifar10" and path:
        data = load_cifar10(path, resolution)
    elif kind == "imagefolder" and path:
        data = load_imagefolder(path, resolution)
    else:
        raise ScarletError(f"unknown data set {spec[:80]!r}; use digits, cifar10:PATH or imagefolder:PATH")
    for name, split in (("training", data.train), ("validation", data.val)):
        if len(split) == 0:
            raise ScarletError(f"data set {spec}: the {name} split is empty")
        if split.labels.min() < 0 or split.labels.max() >= data.num_classes:
            raise ScarletError(f"data set {spec}: {name} labels must lie in 0..{data.num_classes - 1}, found "
                               f"{int(split.labels.min())}..{int(split.labels.max())}")
    return data


class BatchStream:
    """Shuffled mini-batches, epoch after epoch, whose position and RNG state can be saved and restored exactly.

    Incomplete last batches are dropped so that every step sees the same batch size.
    """

    def __init__(self, split: Split, batch_size: int, seed: int):
        if batch_size > len(split):
            raise ScarletError(f"batch size {batch_size} is larger than the training split ({len(split)} images)")
        self.split, self.batch_size = split, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.steps_per_epoch = len(split) // batch_size
        self.epoch, self.position = 0, 0
        self.order = torch.randperm(len(split), generator=self.generator)

    def next(self, shard: slice | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch; with ``shard``, only that part of it is loaded (a rank's share, see
        :meth:`scarlet.distributed.Distributed.shard`): the global order stays a pure function of seed and step."""
        if self.position == self.steps_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
            self.order = torch.randperm(len(self.split), generator=self.generator)
        idx = self.order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
        self.position += 1
        return self.split.batch(idx if shard is None else idx[shard])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch, "position": self.position,
                "order": self.order.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved position; a state that cannot belong to this split is a ScarletError."""
        epoch, position, order = state["epoch"], state["position"], state["order"]
        n = len(self.split)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (epoch, position)) or epoch < 0 \
                or not 0 <= position <= self.steps_per_epoch:
            from scarlet.config import describe

            raise ScarletError(f"saved data position (epoch {describe(epoch)}, step {describe(position)}) is "
                               f"invalid for {self.steps_per_epoch} steps per epoch")
        if not (isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.shape == (n,)
                and torch.equal(order.sort().values, torch.arange(n))):
            raise ScarletError(f"saved data order is not a permutation of the {n} training images")
        self.generator.set_state(state["generator"])
        self.epoch, self.position, self.order = epoch, position, order


def batches(split: Split, batch_size: int, limit: int | None = None):
    """Sequential (unshuffled) batches of a split, for evaluation and BN recalibration."""
    n = len(split)
    count = 0
    for start in range(0, n, batch_size):
        if limit is not None and count >= limit:
            return
        yield split.batch(torch.arange(start, min(start + batch_size, n)))
        count += 1
