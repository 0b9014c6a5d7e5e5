"""CIFAR-10 from a local folder of the official python batches; never downloaded.

The folder (`data_dir`, or its `cifar-10-batches-py/` subfolder) holds `data_batch_1` ..
`data_batch_5` and `test_batch`: pickled dicts with "data" (uint8, n x 3072, the red, green and
blue 32x32 planes of each image) and "labels" (ints 0..9). The batches are pickles, so they are
read with an unpickler that only builds plain containers and numpy arrays and refuses every
other global: a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from varbayes.data.dataset import Dataset
from varbayes.errors import VarbayesError
from varbayes.io import atomic_write_bytes

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
SUBFOLDER = "cifar-10-batches-py"
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The per-channel statistics commonly used for CIFAR-10 (of pixels scaled to [0, 1]).
CHANNEL_MEAN = (0.4914, 0.4822, 0.4465)
CHANNEL_STD = (0.2023, 0.1994, 0.2010)
IMAGE_SHAPE = (3, 32, 32)


def cifar10(*, seed: int, split: int, data_dir: str | None) -> Dataset:
    """CIFAR-10: 50000 train / 10000 test images (3, 32, 32), 10 classes, the official split.

    Pixels are scaled to [0, 1], then normalised per channel with CHANNEL_MEAN / CHANNEL_STD.
    `seed` does not change the data. Nothing is cached: the batches are already local.
    """
    folder = find_cifar10(data_dir)
    x_train, y_train = _read_batches(folder, TRAIN_FILES)
    x_test, y_test = _read_batches(folder, (TEST_FILE,))
    mean = np.array(CHANNEL_MEAN, dtype=np.float32).reshape(3, 1, 1)
    std = np.array(CHANNEL_STD, dtype=np.float32).reshape(3, 1, 1)
    return Dataset(
        name="cifar10",
        task="classification",
        x_train=_normalise(x_train, mean, std),
        y_train=y_train,
        x_test=_normalise(x_test, mean, std),
        y_test=y_test,
        n_classes=10,
        input_shape=IMAGE_SHAPE,
        split=None,
        meta={
            "source": f"local CIFAR-10 python batches in {folder}",
            "split_protocol": "fixed: the official 50000/10000 split",
            "classes": CLASSES,
            "pixel_max": 1.0,
            "ood": "inverted",
            "x_mean": mean.tolist(),
            "x_std": std.tolist(),
        },
    )


def find_cifar10(data_dir: str | Path | None) -> Path:
    """The folder holding the CIFAR-10 batches: `data_dir` itself or its cifar-10-batches-py/."""
    expected = f"{', '.join(TRAIN_FILES)} and {TEST_FILE}"
    if data_dir is None:
        raise VarbayesError(
            f"cifar10 needs data_dir, a local folder with the CIFAR-10 python batches "
            f"({expected}); varbayes never downloads data"
        )
    root = Path(data_dir).expanduser()
    for folder in (root, root / SUBFOLDER):
        if all((folder / f).is_file() for f in (*TRAIN_FILES, TEST_FILE)):
            return folder
    raise VarbayesError(
        f"no CIFAR-10 python batches in {root}: expected {expected} in it or in {root / SUBFOLDER}"
    )


def make_fake_cifar10(
    folder: str | Path, n_train_per_batch: int = 10, n_test: int = 10, seed: int = 0
) -> Path:
    """Write a tiny random dataset in the CIFAR-10 python layout into `folder` (for tests).

    Same file names and dict keys as the official batches (plus batches.meta); labels cycle
    through the 10 classes. Written with pickle protocol 4, which the reader accepts too.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = 0
    for fname, n in [(f, n_train_per_batch) for f in TRAIN_FILES] + [(TEST_FILE, n_test)]:
        labels = [(start + i) % len(CLASSES) for i in range(n)]
        batch = {
            "batch_label": f"fake {fname}",
            "labels": labels,
            "data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
            "filenames": [f"fake_{start + i}.png".encode() for i in range(n)],
        }
        atomic_write_bytes(folder / fname, pickle.dumps(batch, protocol=4))
        start += n
    meta = {"label_names": list(CLASSES), "num_cases_per_batch": n_train_per_batch}
    atomic_write_bytes(folder / "batches.meta", pickle.dumps(meta, protocol=4))
    return folder


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images (n, 3, 32, 32), int64 labels (n,)), checked."""
    path = Path(path)
    batch = _restricted_unpickle(path)
    if not isinstance(batch, dict):
        raise VarbayesError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise VarbayesError(f"{path} is not a CIFAR-10 batch: it lacks 'data' or 'labels'")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != n_pixels:
        raise VarbayesError(
            f"{path}: 'data' is {data.dtype} of shape {data.shape}; valid: uint8 (n, {n_pixels})"
        )
    if labels.ndim != 1 or len(labels) != len(data) or labels.dtype.kind not in "iu":
        raise VarbayesError(
            f"{path}: 'labels' must be {len(data)} integers, one per image, got "
            f"{labels.dtype} of shape {labels.shape}"
        )
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def _read_batches(folder: Path, files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(folder / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _normalise(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32)
    x /= 255.0
    x -= mean
    x /= std
    return x


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, bytes, numbers and numpy arrays; refuses any other global.

    The official batches were pickled by Python 2 with numpy arrays inside, so the only globals
    a valid batch needs are numpy's array reconstructors and the ndarray and dtype types.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise _DisallowedGlobal(f"{module}.{name}")
        return allowed


class _DisallowedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (its args: the dotted name)."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    # Take the reconstructors from numpy itself, so the names resolve on numpy 1 and 2 alike
    # (pickles name them under numpy.core or numpy._core depending on who wrote them).
    reconstruct = np.array(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = np.arange(1).__reduce_ex__(5)[0]
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        table[(f"{core}.multiarray", "scalar")] = scalar
        table[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return table


_ALLOWED_GLOBALS = _numpy_globals()


def _restricted_unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            # latin1 decodes Python 2 strings, including the raw bytes of numpy arrays.
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except _DisallowedGlobal as e:
        raise VarbayesError(
            f"refusing to load {path}: it asks for the global {e.args[0]}, but CIFAR-10 "
            "batches hold only dicts, lists, strings and numpy arrays"
        ) from None
    except pickle.UnpicklingError as e:
        raise VarbayesError(
            f"{path} is not a readable pickle ({' '.join(str(e).split())})"
        ) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise VarbayesError(
            f"{path} is not a readable CIFAR-10 batch ({type(e).__name__})"
        ) from None
