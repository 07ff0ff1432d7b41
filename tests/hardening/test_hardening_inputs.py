"""Architectures and data sets as a careless or hostile user gives them: precise one-line errors, nothing
accepted that has no meaning."""

import pickle

import numpy as np
import pytest
from hardening_cases import STANDALONE, error_line

from scarlet import ScarletError, parse_arch
from scarlet.data import load_dataset
from scarlet.train import main as train_main

ZEROS = ",".join(["0"] * 19)
BAD_ARCHS = {
    "full-width digits": ("１" + ZEROS[1:], "character '１'"),
    "arabic-indic digits": ("٣" + ZEROS[1:], "character '٣'"),
    "superscript digit": ("²" + ZEROS[1:], "character '²'"),
    "full-width in a token": ("e３k3 " * 19, "character '３'"),
    "booleans in a JSON list": ("[true" + ", 0" * 18 + "]", "layer 1: True is a boolean"),
    "booleans in a sequence": ([False] * 19, "layer 1: False is a boolean"),
    "NUL byte": ("0\x00" + ZEROS[1:], "character '\\x00'"),
    "newline inside": ("0\n" + ZEROS[2:], "character '\\n'"),
    "thousands of nested brackets": ("[" * 2000 + "]" * 2000, "nested brackets"),
    "nested brackets, too long": ("[" * 3000 + "]" * 3000, "6000 characters long"),
    "a few nested brackets": ("[[0]]", "nested brackets"),
    "very long": ("0," * 100000, "characters long"),
    "long sequence": ([0] * 100000, "100000 layers"),
    "nested sequence": ([[0]] * 19, "layer 1: choice must be an integer, got a list"),
    "float entries": ([0.0] * 19, "layer 1: choice must be an integer, got a float"),
    "not a sequence": (19, "not a int"),
}


@pytest.mark.parametrize("name", BAD_ARCHS)
def test_bad_architectures(name):
    arch, message = BAD_ARCHS[name]
    with pytest.raises(ScarletError) as e:
        parse_arch(arch, "fairnas")
    assert message in str(e.value) and "\n" not in str(e.value) and len(str(e.value)) < 300, str(e.value)


def test_ascii_architectures_still_parse():
    assert parse_arch(" [1, 0, 2" + ", 0" * 16 + "] ", "fairnas").genes[:3] == (1, 0, 2)
    assert parse_arch(ZEROS, "fairnas").genes == (0,) * 19


@pytest.mark.parametrize("arch,message", [("１" + ZEROS[1:], "character"), ("0," * 5000, "characters long")])
def test_bad_architecture_through_the_cli(arch, message, tmp_path, capsys):
    argv = [*STANDALONE[2:], "--arch", arch, "--space", "fairnas", "--out", str(tmp_path / "r")]
    assert message in error_line(capsys, train_main, argv)


def cifar_dir(tmp_path, train_labels, test_images=4, test_labels=None):
    """A tiny CIFAR-10 python-batch folder (the real format, 4 images per training batch)."""
    def batch(n, labels):
        return {b"data": np.zeros((n, 3072), dtype=np.uint8), b"labels": labels}

    for i in range(1, 6):
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(batch(4, train_labels)))
    labels = [0] * test_images if test_labels is None else test_labels
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch(test_images, labels)))
    return f"cifar10:{tmp_path}"


@pytest.mark.parametrize("kwargs,message", [
    (dict(train_labels=[0, 1, 2, 10]), "training labels must lie in 0..9, found 0..10"),
    (dict(train_labels=[0, 1, -1, 2]), "training labels must lie in 0..9, found -1..2"),
    (dict(train_labels=[0, 1, 2]), "3 labels for 4 images"),
    (dict(train_labels=[0, 1, 2, 3], test_images=0), "the validation split is empty"),
    (dict(train_labels=[0, 1, 2, 3], test_labels=[0, 0, 0, 99]), "validation labels must lie in 0..9"),
])
def test_cifar_labels_and_splits(kwargs, message, tmp_path):
    with pytest.raises(ScarletError, match=message):
        load_dataset(cifar_dir(tmp_path, **kwargs), 32)


def test_cifar_binary_label_out_of_range(tmp_path):
    record = np.zeros(3073, dtype=np.uint8)
    record[0] = 12
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (tmp_path / name).write_bytes(record.tobytes())
    with pytest.raises(ScarletError, match="labels must lie in 0..9, found 12..12"):
        load_dataset(f"cifar10:{tmp_path}", 32)


def test_good_tiny_cifar_loads(tmp_path):
    data = load_dataset(cifar_dir(tmp_path, train_labels=[0, 1, 2, 9]), 16)
    assert len(data.train) == 20 and len(data.val) == 4 and data.train.labels.max() == 9
