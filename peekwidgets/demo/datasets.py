"""Small image datasets as torch ``TensorDataset`` objects.

``load_digits`` is the embedded default: scikit-learn's bundled 8 x 8 digits,
available offline. ``load_mnist`` reads the MNIST IDX files from a local folder
and falls back on torchvision (``download=True`` fetches them where there is
internet). ``load_photo_crops`` cuts real photographs (scikit-learn's two
bundled ones, offline) into random crops at the size torchvision models take.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_digits", "load_mnist", "load_photo_crops"]

#: Per-channel mean and standard deviation of ImageNet: the normalization that torchvision's
#: pretrained weights expect.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

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


def load_photo_crops(n: int = 256, size: int = 224, *, seed: int = 0,
                     normalize: bool = True) -> TensorDataset:
    """Random square crops of scikit-learn's two bundled photographs, resized to ``size``.

    Each crop takes one of the two photographs (``china.jpg`` and ``flower.jpg``, 427 x 640
    pixels, shipped with scikit-learn, so no download), a random side between ``size`` and
    the photograph's height and a random position, and is resized to ``size x size``
    (bilinear, antialiased): real-image inputs at the scale of torchvision's models.

    Parameters
    ----------
    n : int
        Number of crops.
    size : int
        Side of a crop in pixels, at most 427.
    seed : int
        Seed of the crop positions and sides.
    normalize : bool
        Normalize with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD` (what pretrained
        torchvision weights expect); else pixels in [0, 1].

    Returns
    -------
    TensorDataset of ``images : (n, 3, size, size)`` float32 and ``labels : (n,)`` int64, the
    photograph each crop comes from (0: china, 1: flower).
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    height = min(p.shape[0] for p in photos)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: expected a whole number of crops >= 1, for example n=256")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not 1 <= size <= height:
        raise ValueError(
            f"size={size!r}: expected a whole number of pixels from 1 to {height} (the height "
            "of the photographs), for example size=224"
        )
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, len(photos), n)
    for i, label in enumerate(labels):
        photo = photos[label]
        side = int(rng.integers(size, height + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        images[i] = np.asarray(crop.resize((size, size), Image.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(images / 255.0).permute(0, 3, 1, 2).contiguous()
    if normalize:
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        x = (x - mean) / std
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))
