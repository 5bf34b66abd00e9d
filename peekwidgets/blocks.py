"""Blocks: arrays that share the sample mode.

A :class:`Block` is one array whose first mode is the sample mode: a *matrix*
block ``(n_samples, n_features)`` or a *tensor* block
``(n_samples, n_channels, n_positions)``. :class:`Blocks` is the ordered set of
blocks that capture produces and the engine fits (input first, then layers in
forward order).

Block data is a :class:`torch.Tensor` wherever it lives: on a device, in host
memory, or backed by a memory-mapped file (``torch.from_numpy`` of a
``numpy.memmap``). Consumers never copy a whole block; they read it in sample
batches with :meth:`Block.batches` or :meth:`Blocks.batches`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["BATCH_BYTES", "Block", "Blocks", "MATRIX", "TENSOR", "as_blocks", "batch_rows",
           "check_finite", "full_device", "resolve_block_weights", "squared_norm"]

MATRIX = "matrix"
TENSOR = "tensor"

#: Elements of a block converted to float64 at once for its norm, by device type (other
#: accelerators as CUDA): in cache on CPU (float64 copies of 4,096 wide rows at once took
#: 0.7 s a GB there, mostly page faults), 128 MiB on a GPU.
NORM_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 24}

#: Bytes of one sample batch (all blocks read together) by compute device type, when no batch
#: size is given. On CPU, batches near the last-level cache size: larger ones gain nothing,
#: smaller ones pay per-batch overhead.
BATCH_BYTES = {"cpu": 16 << 20, "cuda": 256 << 20}


@dataclass(eq=False)
class Block:
    """One array that shares the sample mode.

    Parameters
    ----------
    name : str
        ``"input"`` for the raw inputs, else the module name of the layer.
    data : torch.Tensor
        ``(n_samples, n_features)`` for a matrix block, or
        ``(n_samples, n_channels, n_positions)`` for a tensor block.
    spatial_shape : tuple of int, optional
        ``(H, W)`` with ``H * W == n_positions`` when the positions of a
        tensor block (or the features of the input block) form an image.
    meta : dict
        Free metadata: ``module_type``, ``storage`` (``"device"``, ``"host"``
        or ``"memmap"``), ``memmap_path``, ``pooled_from`` (the ``(H, W)`` of a
        map that was reduced to fit the memory budget, or of an input image larger than
        capture's ``max_positions``), ``flattened_from``,
        ``raw_shape`` (the per-sample output shape before pooling or flattening).
    sq_norm : float, optional
        Squared Frobenius norm, when the producer computed it while streaming;
        computed on first use otherwise, and kept.
    negative_sq_norm : float, optional
        ``sum(min(x, 0) ** 2)``, computed on first use (:meth:`negative_squares`) and kept.

    A numpy array or tensor given as ``data`` is used as it is, not copied (except a reversed
    view): the block and the array share their memory. Change the array in place and the
    kept norm no longer holds it; make a new Block for the next fit.
    """

    name: str
    data: torch.Tensor
    spatial_shape: tuple[int, ...] | None = None
    meta: dict = field(default_factory=dict)
    sq_norm: float | None = None
    negative_sq_norm: float | None = field(default=None, repr=False)

    def __post_init__(self):
        if isinstance(self.data, np.ndarray):
            if not np.issubdtype(self.data.dtype, np.floating):
                raise TypeError(
                    f"block {self.name!r}: data must be floating point, got a numpy array of "
                    f"dtype {self.data.dtype}; convert it with .astype(np.float32)"
                )
            if any(stride < 0 for stride in self.data.strides):  # a reversed view: torch
                self.data = np.ascontiguousarray(self.data)  # takes no negative strides
            with warnings.catch_warnings():  # a read-only array (np.load(mmap_mode="r")):
                warnings.simplefilter("ignore", UserWarning)  # blocks are only read
                self.data = torch.from_numpy(self.data)
        if not isinstance(self.data, torch.Tensor):
            raise TypeError(
                f"block {self.name!r}: data must be a torch.Tensor or numpy array, "
                f"got {type(self.data).__name__}"
            )
        if self.data.ndim not in (2, 3):
            raise ValueError(
                f"block {self.name!r}: expected a matrix (n_samples, n_features) or a tensor "
                f"(n_samples, n_channels, n_positions), got shape {tuple(self.data.shape)}; "
                "flatten or reshape the array first"
            )
        if not (self.data.is_floating_point()):
            raise TypeError(
                f"block {self.name!r}: data must be floating point, got {self.data.dtype}; "
                "convert it with .float()"
            )
        if min(self.data.shape) < 1:
            raise ValueError(f"block {self.name!r}: empty dimension in shape {self.shape}")
        if self.spatial_shape is not None:
            self.spatial_shape = tuple(int(s) for s in self.spatial_shape)
            if int(np.prod(self.spatial_shape)) != self.data.shape[-1]:
                raise ValueError(
                    f"block {self.name!r}: spatial_shape {self.spatial_shape} does not match "
                    f"the {self.data.shape[-1]} positions of its last mode"
                )

    @property
    def kind(self) -> str:
        """``"matrix"`` for 2-D data, ``"tensor"`` for 3-D data."""
        return MATRIX if self.data.ndim == 2 else TENSOR

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def mode_shape(self) -> tuple[int, ...]:
        """Shape of the non-sample modes: ``(D,)`` or ``(C, S)``."""
        return tuple(self.data.shape[1:])

    @property
    def size(self) -> int:
        return int(np.prod(self.data.shape))

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def storage(self) -> str:
        """Where the data lives: ``"device"``, ``"host"`` or ``"memmap"``."""
        if "storage" in self.meta:
            return self.meta["storage"]
        return "host" if self.data.device.type == "cpu" else "device"

    def batches(
        self,
        batch_size: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(start, stop, rows)`` over the samples.

        ``rows : (stop - start, *mode_shape)`` on ``device`` (the block's own
        device when None) in ``dtype``. A batch is a view when no move or cast
        is needed.
        """
        step = batch_size or self.n_samples
        for start in range(0, self.n_samples, step):
            stop = min(start + step, self.n_samples)
            yield start, stop, self.rows(slice(start, stop), device, dtype)

    def rows(self, index, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows ``data[index]`` moved to ``device`` and cast to ``dtype``.

        ``index`` is a slice (a view, no copy) or integer indices (gathered with
        ``index_select``, much faster than fancy indexing on large rows).
        """
        device = self.data.device if device is None else torch.device(device)
        index = index if isinstance(index, slice) else torch.as_tensor(index)
        if isinstance(index, slice) or index.ndim == 0:
            part = self.data[index]
        else:
            if index.dtype == torch.bool:
                index = index.nonzero().reshape(-1)
            part = self.data.index_select(0, index.to(self.data.device, torch.long))
        non_blocking = part.device.type == "cpu" and device.type == "cuda" and part.is_pinned()
        return part.to(device=device, dtype=dtype, non_blocking=non_blocking)

    def norm(self) -> float:
        """Frobenius norm (squares summed in float64, see :func:`squared_norm`); cached."""
        if self.sq_norm is None:
            self.sq_norm = squared_norm(self.data)
        return float(np.sqrt(self.sq_norm))

    def negative_squares(self) -> float:
        """``sum(min(x, 0) ** 2)`` in float64 (:func:`squared_norm` of the negative parts of
        batches of ``BATCH_BYTES``, one read of the block); kept, like the norm, for the next
        fit."""
        if self.negative_sq_norm is None:
            step = batch_rows(self, dtype=self.data.dtype)
            self.negative_sq_norm = sum(squared_norm(rows.clamp(max=0)) for _, _, rows
                                        in self.batches(step, dtype=self.data.dtype))
        return self.negative_sq_norm

    def numpy(self, index=slice(None)) -> np.ndarray:
        """Rows as a float32 numpy array on the host (for views)."""
        return self.rows(index, "cpu").numpy()

    def __repr__(self) -> str:
        extra = f", spatial_shape={self.spatial_shape}" if self.spatial_shape else ""
        return f"Block({self.name!r}, {self.kind}, shape={self.shape}{extra}, {self.storage})"


class Blocks(Sequence):
    """The ordered blocks of one analysis: input first, then layers in forward order.

    Parameters
    ----------
    blocks : iterable of Block
        Blocks with the same number of samples and distinct names.
    labels : array-like of shape (n_samples,), optional
        Metadata only (for colouring plots); never used by a computation.
    sample_shape : tuple of int, optional
        Shape of one raw model input, for example ``(1, 28, 28)``; views use
        it to draw the ``input`` block as images.
    thumbnails : Block, optional
        The inputs as the views draw them, when the ``input`` block was pooled
        for the fit (capture keeps them for input images larger than its
        ``max_positions``): ``(n_samples, C, h*w)``, or ``(n_samples, h*w)``
        for one channel, with ``spatial_shape=(h, w)``; at most 64 x 64,
        float16. Never fitted (it is not one of the blocks).
    """

    def __init__(self, blocks: Iterable[Block], labels=None, sample_shape=None,
                 thumbnails: Block | None = None):
        self._blocks = list(blocks)
        if not self._blocks:
            raise ValueError("no blocks: pass at least one Block")
        for b in self._blocks:
            if not isinstance(b, Block):
                raise TypeError(f"expected Block objects, got {type(b).__name__}; pass "
                                "Block(name, array) objects, or a {name: array} dict")
        names = [b.name for b in self._blocks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"block names must be distinct; repeated: {dupes}")
        counts = {b.name: b.n_samples for b in self._blocks}
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"all blocks must have the same number of samples, got {counts}; "
                "capture every block from the same inputs"
            )
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.ndim != 1:
            raise ValueError(
                f"labels must hold one label per sample, shape ({self.n_samples},), got shape "
                f"{self.labels.shape}; for one-hot labels pass labels.argmax(1)")
        if self.labels is not None and len(self.labels) != self.n_samples:
            raise ValueError(
                f"labels has {len(self.labels)} entries for {self.n_samples} samples"
            )
        self.sample_shape = None if sample_shape is None else tuple(sample_shape)
        if thumbnails is not None and not isinstance(thumbnails, Block):
            raise TypeError(f"thumbnails must be a Block, got {type(thumbnails).__name__}")
        if thumbnails is not None and thumbnails.n_samples != self.n_samples:
            raise ValueError(
                f"thumbnails has {thumbnails.n_samples} samples, the blocks {self.n_samples}; "
                "pass the thumbnails of the same inputs"
            )
        self.thumbnails = thumbnails

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, object], spatial_shapes: Mapping[str, tuple] | None = None,
        **kwargs,
    ) -> Blocks:
        """Blocks from a ``{name: array}`` mapping (tensors or numpy arrays)."""
        spatial_shapes = spatial_shapes or {}
        return cls(
            [Block(name, data, spatial_shapes.get(name)) for name, data in arrays.items()],
            **kwargs,
        )

    def __len__(self) -> int:
        return len(self._blocks)

    def __getitem__(self, key):
        if isinstance(key, str):
            for b in self._blocks:
                if b.name == key:
                    return b
            raise KeyError(f"no block named {key!r}; blocks are {self.names}")
        return self._blocks[key]

    def __iter__(self) -> Iterator[Block]:
        return iter(self._blocks)

    @property
    def names(self) -> list[str]:
        return [b.name for b in self._blocks]

    @property
    def n_samples(self) -> int:
        return self._blocks[0].n_samples

    def select(self, names: Sequence[str]) -> Blocks:
        """The named blocks, in the given order, with the same labels, sample shape and
        thumbnails."""
        return Blocks([self[n] for n in names], self.labels, self.sample_shape, self.thumbnails)

    def batches(
        self, batch_size: int | None = None, device=None, dtype: torch.dtype = torch.float32
    ) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
        """Yield ``(start, stop, [rows of each block])`` over the samples."""
        step = batch_size or self.n_samples
        for start in range(0, self.n_samples, step):
            stop = min(start + step, self.n_samples)
            yield start, stop, [b.rows(slice(start, stop), device, dtype) for b in self]

    def summary(self) -> str:
        """A text table: one line per block with kind, shape, storage and notes."""
        lines = [f"{self.n_samples} samples, {len(self)} blocks"]
        width = max(len(n) for n in self.names)
        for b in self:
            notes = []
            if b.spatial_shape:
                notes.append("map " + "x".join(map(str, b.spatial_shape)))
            if "pooled_from" in b.meta:
                notes.append("pooled from " + "x".join(map(str, b.meta["pooled_from"])))
            if "module_type" in b.meta:
                notes.append(b.meta["module_type"])
            if "output_key" in b.meta:
                notes.append(f"output[{b.meta['output_key']!r}]")
            shape = " x ".join(map(str, b.shape))
            lines.append(
                f"  {b.name:<{width}}  {b.kind:<6}  {shape:<20}  {b.storage:<6}  "
                f"|X|={b.norm():.4g}  {', '.join(notes)}"
            )
        if self.thumbnails is not None:
            t = self.thumbnails
            channels = t.shape[1] if t.kind == "tensor" else 1
            lines.append(
                f"  drawn from {channels}x{'x'.join(map(str, t.spatial_shape))} thumbnails of "
                f"the inputs ({t.storage}, not fitted)"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def as_blocks(blocks) -> Blocks:
    """``blocks`` as :class:`Blocks`: a Blocks (returned as is), a Block, a list of Block, or a
    ``{name: array}`` mapping."""
    if isinstance(blocks, Blocks):
        return blocks
    if isinstance(blocks, Block):
        return Blocks([blocks])
    if isinstance(blocks, Mapping):
        if not blocks:
            raise ValueError("no blocks: pass at least one block (got an empty mapping)")
        return Blocks.from_arrays(blocks)
    if isinstance(blocks, Iterable) and not isinstance(blocks, (str, bytes, torch.Tensor,
                                                                 np.ndarray)):
        blocks = list(blocks)
        if not blocks:
            raise ValueError("no blocks: pass at least one Block (got an empty list)")
        return Blocks(blocks)
    raise TypeError(
        f"blocks must be a Blocks (from peekwidgets.capture), a Block, a list of Block or a "
        f"{{name: array}} mapping, got {type(blocks).__name__}"
    )


def full_device(device) -> torch.device:
    """``torch.device(device)`` with its index filled in as tensors report it (``cuda`` is the
    current GPU, ``cuda:0`` say), so that it compares equal to their ``.device``."""
    device = torch.device(device)
    if device.index is None and device.type != "cpu":
        return torch.empty(0, device=device).device
    return device


def batch_rows(
    blocks: Block | Iterable[Block], batch_size: int | None = None, *, device=None,
    dtype: torch.dtype = torch.float32, bytes_per_batch: int | None = None, min_rows: int = 1,
) -> int:
    """Sample rows read at once from ``blocks`` (one Block, or several read together).

    ``batch_size`` when given (checked to be a positive integer); otherwise as many rows as fit
    ``bytes_per_batch`` in ``dtype`` (default ``BATCH_BYTES`` of the device type, the blocks'
    device when ``device`` is None), at least ``min_rows``, at most the number of samples.
    """
    blocks = [blocks] if isinstance(blocks, Block) else list(blocks)
    n_samples = blocks[0].n_samples
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(
                f"batch_size={batch_size!r}: expected None or a positive number of samples"
            )
        return int(min(batch_size, n_samples))
    if bytes_per_batch is None:
        kind = torch.device(device).type if device is not None else blocks[0].device.type
        bytes_per_batch = BATCH_BYTES.get(kind, BATCH_BYTES["cuda"])
    per_row = sum(int(np.prod(b.mode_shape)) for b in blocks) * dtype.itemsize
    return int(min(max(min_rows, bytes_per_batch // per_row), n_samples))


def squared_norm(x: torch.Tensor) -> float:
    """``sum(x ** 2)`` in float64, reading ``x`` once: chunks of ``NORM_ELEMENTS`` values are
    copied into one float64 buffer and squared there (a float32 sum of millions of squares
    runs about 2e-5 low). NaN or Inf anywhere gives a non-finite result."""
    if x.numel() == 0:
        return 0.0
    rows = x.reshape(x.shape[0] if x.ndim > 1 else 1, -1)  # a view when contiguous
    step = NORM_ELEMENTS.get(x.device.type, NORM_ELEMENTS["cuda"])
    parts = rows.view(-1).split(step) if rows.is_contiguous() else (
        part for row in rows for part in row.reshape(-1).split(step))
    buf = None if x.dtype == torch.float64 else torch.empty(
        min(step, rows.numel()), dtype=torch.float64, device=x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for part in parts:
        if buf is not None:
            part = buf[: part.numel()].copy_(part)
        total += torch.dot(part, part)
    return float(total)


def check_finite(blocks, offset: int = 0, where: str = "") -> None:
    """Raise ``ValueError`` when a block holds NaN or Inf values (or is too large to square).

    A block whose squared norm (cached, or accumulated in float64 in one pass) is finite holds
    only finite values, so clean blocks cost no further pass; the others are read in batches
    to name the first bad sample.

    Parameters
    ----------
    blocks : Blocks, Block, list of Block, or dict name -> array
    offset, where : int, str
        The index of the blocks' first row among all samples, and where these rows are (a
        process of a group: ``" of process 1"``), for the error.
    """
    for b in as_blocks(blocks):
        if np.isfinite(b.norm()):
            continue
        first, count, found, largest = None, 0, "", 0.0
        step = batch_rows(b, dtype=b.data.dtype)
        for start, stop, rows in b.batches(step, dtype=b.data.dtype):
            bad = ~torch.isfinite(rows.reshape(stop - start, -1)).all(1)
            count += int(bad.sum())
            largest = max(largest, float(rows.abs().max()))
            if first is None and count:
                i = int(bad.nonzero()[0, 0])
                values = rows[i][~torch.isfinite(rows[i])]
                first = start + i
                found = " and ".join(kind for kind, has in (
                    ("NaN", bool(values.isnan().any())), ("Inf", bool(values.isinf().any())))
                    if has)
        if first is None:
            raise ValueError(
                f"block {b.name!r} is too large: its squared norm overflows float64 (largest "
                f"|value| {largest:.3g}); divide the block by a constant first"
            )
        raise ValueError(
            f"block {b.name!r} contains NaN or Inf values in {count} of {b.n_samples} samples"
            f"{where}, first in sample {offset + first}"
            + (f" (sample {first}{where})" if where else "")
            + f" ({found}); drop those samples, or replace the values "
            "(for example with torch.nan_to_num), and pass the cleaned blocks"
        )


def resolve_block_weights(weights, names: Sequence[str], *,
                          unknown_error: type[Exception] = ValueError) -> np.ndarray:
    """``(n_blocks,)`` positive weights from ``weights``: None (all 1), a sequence with one
    weight per block, or a ``{name: weight}`` mapping (missing names weigh 1).

    A mapping naming no block raises ``unknown_error`` (each caller keeps its documented type).
    """
    names = list(names)
    if weights is None:
        return np.ones(len(names))
    if isinstance(weights, Mapping):
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise unknown_error(f"block_weights names unknown blocks {unknown}; blocks are {names}")
        w = np.array([float(weights.get(n, 1.0)) for n in names])
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if len(w) != len(names):
            raise ValueError(f"block_weights has {len(w)} entries for {len(names)} blocks "
                             f"{names}; pass one weight per block or a {{name: weight}} mapping")
    if np.any(w <= 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"block_weights must be positive and finite, got {w.tolist()}")
    return w
