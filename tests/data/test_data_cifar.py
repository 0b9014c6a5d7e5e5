"""CIFAR-10 from a local folder: layout, normalisation, errors, and the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch

from varbayes.data import load, make_fake_cifar10
from varbayes.data.cifar import CHANNEL_MEAN, CHANNEL_STD, read_batch
from varbayes.errors import VarbayesError


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(VarbayesError) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_loads_the_fake_folder_with_standard_normalisation(tmp_path):
    folder = make_fake_cifar10(tmp_path, n_train_per_batch=3, n_test=4, seed=1)
    ds = load("cifar10", data_dir=str(folder))
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert ds.y_train.tolist() == [i % 10 for i in range(15)]
    images, labels = read_batch(folder / "data_batch_1")
    expected = (images / 255.0 - np.array(CHANNEL_MEAN).reshape(3, 1, 1)) / np.array(
        CHANNEL_STD
    ).reshape(3, 1, 1)
    assert torch.allclose(ds.x_train[:3], torch.tensor(expected, dtype=torch.float32), atol=1e-5)
    assert labels.tolist() == [0, 1, 2]


def test_finds_the_batches_in_the_usual_subfolder(tmp_path):
    make_fake_cifar10(tmp_path / "cifar-10-batches-py", n_train_per_batch=2, n_test=2)
    assert load("cifar10", data_dir=str(tmp_path)).n_train == 10


def test_missing_folder_or_files_name_the_path_and_the_files(tmp_path):
    assert "needs data_dir" in _error(load, "cifar10")
    message = _error(load, "cifar10", data_dir=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in message and "data_batch_1" in message
    assert "test_batch" in message
    folder = make_fake_cifar10(tmp_path / "partial", n_train_per_batch=2, n_test=2)
    (folder / "data_batch_3").unlink()
    assert "expected data_batch_1" in _error(load, "cifar10", data_dir=str(folder))


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_pickle_with_a_disallowed_global_is_refused(tmp_path):
    folder = make_fake_cifar10(tmp_path / "c", n_train_per_batch=2, n_test=2)
    target = tmp_path / "pwned"
    evil = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1], "x": _Evil(str(target))}
    (folder / "test_batch").write_bytes(pickle.dumps(evil, protocol=4))
    message = _error(load, "cifar10", data_dir=str(folder))
    assert "refusing to load" in message and "mkdir" in message
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\x80\x04garbage", "not a readable"),
        (pickle.dumps([1, 2, 3]), "holds a list"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}), "lacks 'data' or 'labels'"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), "valid: uint8"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "one per image"),
    ],
)
def test_malformed_batches_raise_one_line(tmp_path, content, words):
    path = tmp_path / "batch"
    path.write_bytes(content)
    assert words in _error(read_batch, path)


def test_labels_out_of_range_are_caught(tmp_path):
    folder = make_fake_cifar10(tmp_path, n_train_per_batch=2, n_test=2)
    bad = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad, protocol=4))
    assert "out of range [0, 10)" in _error(load, "cifar10", data_dir=str(folder))


# The official batches were written by Python 2's cPickle (protocol 2), whose strings are byte
# strings and whose numpy arrays name numpy.core.multiarray. This writes the same opcodes.
def _py2_str(s: bytes) -> bytes:
    return b"U" + bytes([len(s)]) + s if len(s) < 256 else b"T" + struct.pack("<I", len(s)) + s


def _py2_int(i: int) -> bytes:
    return b"K" + bytes([i]) if 0 <= i < 256 else b"M" + struct.pack("<H", i)


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
        + _py2_int(0) + b"tb"
    )  # fmt: skip
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + _py2_int(0) + b"\x85" + _py2_str(b"b") + b"\x87R"
        + b"(" + _py2_int(1) + b"(" + b"".join(_py2_int(s) for s in data.shape) + b"t"
        + dtype + b"\x89" + _py2_str(data.tobytes()) + b"tb"
    )  # fmt: skip
    label_list = b"](" + b"".join(_py2_int(v) for v in labels) + b"e"
    return (
        b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"py2 batch")
        + _py2_str(b"data") + array + _py2_str(b"labels") + label_list + b"u."
    )  # fmt: skip


def test_reads_python2_batches_like_the_official_ones(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    path = tmp_path / "py2_batch"
    path.write_bytes(_py2_batch(data, [4, 0, 9]))
    assert pickle.loads(path.read_bytes(), encoding="latin1")["labels"] == [4, 0, 9]  # sanity
    images, labels = read_batch(path)
    assert images.shape == (3, 3, 32, 32) and np.array_equal(images.reshape(3, -1), data)
    assert labels.tolist() == [4, 0, 9]
