"""Input adaptation: whatever the user passes as inputs, as ``(x, labels)`` batches.

A tensor, numpy array or ``TensorDataset`` is sliced into batches of
``batch_size`` samples, in order; another Dataset goes through a
``DataLoader`` of that batch size; a DataLoader or any other iterable keeps
its own batches. A batch is a tensor, a tuple/list (the input is its first
tensor, the labels its second item) or a dict (the input under ``"input"``,
``"image"``, ``"x"``, ...; labels under ``"label"``, ``"target"``, ``"y"``,
...); ``input_fn`` and ``label_fn`` take over for any other layout.

The model input of a batch is one tensor, or, from ``input_fn``, a tuple (or list) of
positional arguments or a dict of keyword arguments, which may nest (:func:`run_model`). Its
first tensor (:func:`leading`, depth first) holds the samples: it is counted and becomes the
input block. Nothing the user passed is modified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sized

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

__all__ = ["Source", "DEFAULT_BATCH_SIZE", "tensors", "leading", "map_tensors", "run_model"]

#: Samples per batch when ``inputs`` is a tensor or a Dataset.
DEFAULT_BATCH_SIZE = 256

_INPUT_KEYS = ("input", "inputs", "image", "images", "x", "pixel_values", "data", "features")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y")


def tensors(inputs):
    """The tensors of a model input (a tensor, or tuples, lists and dicts of them), depth
    first."""
    if isinstance(inputs, torch.Tensor):
        yield inputs
    elif isinstance(inputs, (tuple, list)):
        for item in inputs:
            yield from tensors(item)
    elif isinstance(inputs, Mapping):
        for item in inputs.values():
            yield from tensors(item)


def leading(inputs) -> torch.Tensor | None:
    """The first tensor of a model input: the one that holds the samples (None when none)."""
    return next(tensors(inputs), None)


def map_tensors(fn, inputs):
    """``inputs`` with every tensor ``t`` replaced by ``fn(t)``; tuples, lists and dicts are
    rebuilt, anything else is kept."""
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(map_tensors(fn, item) for item in inputs)
    if isinstance(inputs, Mapping):
        return {key: map_tensors(fn, item) for key, item in inputs.items()}
    return inputs


def fields(output):
    """A dataclass instance (a model output record) as the dict of its fields; else
    ``output`` itself."""
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return {f.name: getattr(output, f.name) for f in dataclasses.fields(output)}
    return output


def run_model(net, inputs):
    """``net(inputs)`` for a tensor, ``net(*inputs)`` for a tuple or list (positional
    arguments), ``net(**inputs)`` for a dict (keyword arguments)."""
    if isinstance(inputs, (tuple, list)):
        return net(*inputs)
    if isinstance(inputs, Mapping):
        return net(**inputs)
    return net(inputs)


def _model_input(value):
    """What ``input_fn`` returned, numpy arrays wrapped as tensors; raises unless it holds a
    tensor."""
    if isinstance(value, (tuple, list)):
        value = type(value)(_as_tensor(v) if isinstance(v, np.ndarray) else v for v in value)
    elif isinstance(value, Mapping):
        value = {k: _as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in value.items()}
    else:
        value = _as_tensor(value) if isinstance(value, np.ndarray) else value
    if leading(value) is None:
        raise TypeError(
            f"input_fn returned {type(value).__name__}, which holds no tensor; it must return "
            "the model input: a tensor, a tuple of the model's positional arguments, or a dict "
            "of its keyword arguments"
        )
    return value


def _as_tensor(value):
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    return value if isinstance(value, torch.Tensor) else None


def _default_input(batch):
    tensor = _as_tensor(batch)
    if tensor is not None:
        return tensor, None
    if isinstance(batch, (tuple, list)):
        for i, item in enumerate(batch):
            tensor = _as_tensor(item)
            if tensor is not None:
                label = batch[i + 1] if i == 0 and len(batch) > 1 else None
                return tensor, label
        kinds = [type(item).__name__ for item in batch]
        raise TypeError(
            f"a batch of type {type(batch).__name__} holds no tensor (its items are {kinds}); "
            "pass input_fn=lambda batch: ... returning the model input tensor"
        )
    if isinstance(batch, Mapping):
        for key in _INPUT_KEYS:
            tensor = _as_tensor(batch.get(key))
            if tensor is not None:
                label = next((batch[k] for k in _LABEL_KEYS if k in batch), None)
                return tensor, label
        raise TypeError(
            f"a dict batch has no input under any of the keys {list(_INPUT_KEYS)}; its keys are "
            f"{list(batch)}; pass input_fn=lambda batch: batch['<key>']"
        )
    raise TypeError(
        f"a batch of type {type(batch).__name__} is not a tensor, tuple, list or dict; pass "
        "input_fn=lambda batch: ... returning the model input tensor"
    )


def _labels_array(value, n: int, strict: bool):
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 1 and len(array) == n:
        return array
    if strict:
        raise ValueError(
            f"label_fn returned labels of shape {array.shape} for a batch of {n} samples; "
            f"expected shape ({n},)"
        )
    return None


def _loader_rows(loader: DataLoader):
    if loader.batch_size is None:
        return None
    try:
        n = len(loader.sampler)
    except TypeError:
        return None
    return n - n % loader.batch_size if loader.drop_last else n


class Source:
    """Batches ``(x, labels)`` from a tensor, Dataset, DataLoader or iterable.

    Parameters
    ----------
    inputs : DataLoader, Dataset, tensor, numpy array, or iterable of batches
    batch_size : int, optional
        Samples per batch for tensor and Dataset inputs (default 256); a
        DataLoader or iterable keeps its own batches.
    input_fn : callable, optional
        ``input_fn(batch) -> tensor``: the model input of a batch.
    label_fn : callable, optional
        ``label_fn(batch) -> (n,) labels``.

    Attributes
    ----------
    n_rows : int or None
        Samples the inputs report (``len`` of a tensor or Dataset, a
        DataLoader's sampler), None when unknown (a generator).
    n_batches : int or None
        Batches, None when unknown.

    Iterating yields ``(x, labels)`` per batch: ``x`` the model input, a tensor ``(n, ...)``
    as the inputs hold it (a numpy batch is wrapped, not copied) or what ``input_fn``
    returned (whose :func:`leading` tensor is ``(n, ...)``), ``labels`` a ``(n,)`` numpy
    array or None. A tuple batch whose second item is a tensor ``(n, ...)`` of more than one
    dimension warns once: it is neither passed to the model nor kept as labels.
    """

    def __init__(self, inputs, batch_size=None, input_fn=None, label_fn=None):
        self.input_fn, self.label_fn = input_fn, label_fn
        self.n_rows = self.n_batches = None
        if batch_size is not None and (isinstance(batch_size, bool)
                                       or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(
                f"batch_size must be a positive integer, got {batch_size!r}; pass for example "
                f"batch_size=64, or leave it out for {DEFAULT_BATCH_SIZE}"
            )
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
        sliceable = isinstance(inputs, (torch.Tensor, TensorDataset))
        if batch_size is not None and not (sliceable or isinstance(inputs, Dataset)):
            raise ValueError(
                f"batch_size applies to tensors and Datasets; a {type(inputs).__name__} "
                "brings its own batches (set the DataLoader's batch_size instead)"
            )
        size = DEFAULT_BATCH_SIZE if batch_size is None else int(batch_size)
        if isinstance(inputs, torch.Tensor):
            if inputs.ndim == 0:
                raise ValueError("inputs is a 0-d tensor; pass samples stacked as (N, ...)")
            self.batches = (inputs[i:i + size] for i in range(0, len(inputs), size))
            self.n_rows = len(inputs)
        elif isinstance(inputs, TensorDataset):
            tensors = inputs.tensors
            self.batches = (
                tuple(t[i:i + size] for t in tensors) for i in range(0, len(inputs), size)
            )
            self.n_rows = len(inputs)
        elif isinstance(inputs, Dataset):
            if not isinstance(inputs, IterableDataset):
                self.n_rows = len(inputs)
            inputs = DataLoader(inputs, batch_size=size)
            self.batches = inputs
        elif isinstance(inputs, DataLoader):
            self.batches = inputs
            self.n_rows = _loader_rows(inputs)
        elif isinstance(inputs, Iterable) and not isinstance(inputs, (str, bytes, Mapping)):
            self.batches = inputs
        else:
            raise TypeError(
                f"inputs must be a DataLoader, Dataset, tensor or iterable of batches, got "
                f"{type(inputs).__name__}"
            )
        if self.n_rows is not None:
            self.n_batches = math.ceil(self.n_rows / size)
        if isinstance(self.batches, Sized):
            with contextlib.suppress(TypeError):
                self.n_batches = len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, np.ndarray | None]]:
        warned = False
        for batch in self.batches:
            if self.input_fn is not None:
                x, label = _model_input(self.input_fn(batch)), None
            else:
                x, label = _default_input(batch)
            if leading(x).ndim == 0:
                raise ValueError("a batch input is a 0-d tensor; batches must be (n, ...)")
            n = leading(x).shape[0]
            if self.label_fn is not None:
                yield x, _labels_array(self.label_fn(batch), n, strict=True)
                continue
            if not warned and isinstance(label, torch.Tensor) and label.ndim > 1 \
                    and label.shape[0] == n:
                warned = True
                warnings.warn(
                    f"each batch's second item, a tensor of shape {tuple(label.shape)}, is not "
                    "passed to the model (capture passes the first) nor kept as labels (they "
                    "are (n,)); to pass both to the model: input_fn=lambda batch: (batch[0], "
                    "batch[1])", stacklevel=3)
            yield x, _labels_array(label, n, strict=False)
