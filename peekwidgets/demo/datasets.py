"""Small image datasets as torch ``TensorDataset`` objects.

``load_digits`` is the embedded default: scikit-learn's bundled 8 x 8 digits,
available offline. ``load_mnist`` reads the MNIST IDX files from a local folder
and falls back on torchvision (``download=True`` fetches them where there is
internet).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = ["load_digits", "load_mnist"]

_MNIST_FILES = {
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}


def load_digits() -> TensorDataset:
    """scikit-learn's bundled handwritten digits.

    Returns
    -------
    TensorDataset of ``images : (1797, 1, 8, 8)`` float32 in [0, 1] and
    ``labels : (1797,)`` int64.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    return TensorDataset(images, torch.from_numpy(digits.target.astype(np.int64)))


def _read_idx(path: Path) -> np.ndarray:
    """An IDX array (uint8 data) from a ``.gz`` or plain file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} values")
    return data.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for name in (stem + ".gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist(root, train: bool = False, download: bool = False) -> TensorDataset:
    """MNIST from a local folder.

    Parameters
    ----------
    root : path
        A folder holding the IDX files (``t10k-images-idx3-ubyte.gz`` ...),
        directly or in torchvision's ``MNIST/raw`` layout.
    train : bool
        The training split (60,000 images) instead of the test split (10,000).
    download : bool
        When the files are missing, let ``torchvision.datasets.MNIST`` fetch
        them into ``root`` (needs internet).

    Returns
    -------
    TensorDataset of ``images : (N, 1, 28, 28)`` float32 in [0, 1] and
    ``labels : (N,)`` int64.
    """
    root = Path(root)
    stems = _MNIST_FILES[bool(train)]
    paths = [_find_idx(root, s) for s in stems]
    if None in paths:
        if not download:
            raise FileNotFoundError(
                f"no MNIST files {stems} in {root} or {root / 'MNIST' / 'raw'}; "
                "pass download=True to fetch them with torchvision"
            )
        from torchvision.datasets import MNIST

        MNIST(str(root), train=train, download=True)
        paths = [_find_idx(root, s) for s in stems]
    images, labels = (_read_idx(p) for p in paths)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels in {root}")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))
