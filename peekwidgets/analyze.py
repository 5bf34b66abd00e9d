"""``peekwidgets analyze``: a model and a data set through the whole analysis, on one process
or many (``torchrun``), into an output folder.

- :func:`load_model`: ``package.module:factory`` (any callable returning an ``nn.Module``, such
  as ``torchvision.models:resnet18``), with a ``state_dict`` file loaded into it.
- :func:`load_data`: what ``--data`` accepts: a folder of class subfolders of images
  (torchvision's ``ImageFolder``: the subfolders are the labels), a flat folder of images (no
  labels), a ``.npy`` array ``(N, ...)`` (memory-mapped, so each process reads its own rows),
  or a ``.pt`` file holding a tensor ``(N, ...)``, a tuple ``(inputs, labels)`` or a dict with
  the inputs under ``inputs``/``x``/``images`` and the labels under ``labels``/``y``/
  ``targets``. Images are read as RGB (16-bit ones scaled to 8 bits), resized and
  center-cropped to ``--size`` when given (else they must share one size), scaled to [0, 1]
  and normalized with ``--mean``/``--std`` when given; image files are decoded by
  ``--workers`` DataLoader workers per process. A folder that holds both images and
  subfolders is refused (which of them to read would be a guess).
- :func:`process_group`: under ``torchrun`` (``RANK`` and ``WORLD_SIZE`` set) the process
  group is initialized here (NCCL when CUDA is available, each process on the GPU of its
  ``LOCAL_RANK``; gloo on CPUs) with ``--timeout`` on its collectives, and destroyed at the
  end. Each process captures its shard of the data (:mod:`peekwidgets.capture.shard`); rank
  0 gathers the view (:mod:`peekwidgets.gather`) and alone writes files.

A process that fails ends the run: ``torchrun``'s agent stops the other processes and reports
the first failure (its traceback, recorded with ``torch.distributed.elastic``'s ``record``): a
process whose collective fails because another one went away waits :data:`PEER_GRACE_S`
before it raises, so that the failure reported is the one that came first; a process left
waiting in a collective gives up after ``--timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from peekwidgets import distributed
from peekwidgets.analysis.checkpoints import state_dict_of

__all__ = ["IMAGE_SUFFIXES", "load_data", "load_model", "process_group", "run"]

#: Files a flat image folder is read from (as torchvision's ImageFolder reads them).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

#: Seconds a process whose collective failed because another process went away waits before
#: it raises, so that torchrun's agent sees the other process's failure first and reports it
#: as the root cause (the agent ends this process meanwhile).
PEER_GRACE_S = 5.0

_INPUT_KEYS = ("inputs", "x", "images", "data")
_LABEL_KEYS = ("labels", "y", "targets")


class BadInput(ValueError):
    """A bad ``--model``, ``--weights`` or ``--data``: the command prints it without a
    traceback."""


def load_model(spec: str, weights=None) -> nn.Module:
    """The model that ``spec`` (``"package.module:factory"``) builds, with the ``state_dict``
    in the file ``weights`` loaded (or one under ``"state_dict"`` in it), in eval mode."""
    module_name, _, attr = spec.partition(":")
    example = "for example torchvision.models:resnet18 or mypackage.nets:build_model"
    if not module_name or not attr:
        raise BadInput(f"--model {spec!r} is not 'package.module:factory'; {example}")
    try:
        factory = importlib.import_module(module_name)
    except ImportError as error:
        raise BadInput(
            f"--model {spec!r}: cannot import {module_name!r} ({error}); check the name, and "
            "that its folder is on PYTHONPATH") from None
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise BadInput(f"--model {spec!r}: {module_name!r} has no {attr!r}; {example}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise BadInput(f"--model {spec!r}: {attr!r} is a {type(factory).__name__}, not a "
                       "callable that returns the model")
    model = factory() if not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise BadInput(f"--model {spec!r} returned a {type(model).__name__}, not a "
                       "torch.nn.Module")
    if weights is not None:
        try:
            state = state_dict_of(str(weights), f"--weights {weights}")
        except (ValueError, TypeError) as error:
            raise BadInput(str(error)) from None
        _check_names(model.state_dict(), state, f"--weights {weights} does not fit --model "
                                                 f"{spec}")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as error:  # tensors of other shapes
            lines = str(error).strip().splitlines()
            more = f" (and {len(lines) - 4} more lines)" if len(lines) > 4 else ""
            raise BadInput(f"--weights {weights} does not fit --model {spec}: "
                           + " ".join(line.strip() for line in lines[:4]) + more) from None
    return model.eval()


def _check_names(own, state, what: str) -> None:
    """BadInput when the tensor names of ``state`` are not those of the model (``own``),
    with a few of each side's extra names."""
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    if not (missing or unexpected):
        return
    parts = [f"{len(names)} {where} (first {', '.join(names[:3])})"
             for names, where in ((missing, "of the model's tensors are not in the file"),
                                  (unexpected, "of the file's tensors are not in the model"))
             if names]
    raise BadInput(f"{what}: {'; '.join(parts)}; pass the weights of this architecture")


class ImageFiles(Dataset):
    """The images of a flat folder, in name order, as tensors (no labels)."""

    def __init__(self, files, transform):
        self.files, self.transform = list(files), transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(load_rgb(self.files[i]))


def load_rgb(path):
    """The image file ``path`` as an RGB PIL image; 16-bit images scaled to 8 bits (PIL's
    own conversion clips them, to white)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # "I;16", "I;16B", "I": 16-bit values in 32 bits
                image = image.point(lambda v: v * (1 / 257)).convert("L")
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:  # truncated, corrupt, not an image
        raise BadInput(f"--data: cannot read the image {path} ({error}); remove or replace "
                       "it") from None


def _transform(size, mean, std):
    from torchvision import transforms as T

    steps = [T.Resize(size), T.CenterCrop(size)] if size else []
    steps.append(T.ToTensor())
    if mean is not None:
        steps.append(T.Normalize(mean, std))
    return T.Compose(steps)


def _from_file(path: Path):
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="c")  # copy-on-write pages: read lazily, writable
    content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(content, dict):
        x = next((content[k] for k in _INPUT_KEYS if k in content), None)
        y = next((content[k] for k in _LABEL_KEYS if k in content), None)
        if x is None:
            raise BadInput(f"--data {path} holds a dict with the keys {list(content)}; put the "
                           f"inputs under one of {list(_INPUT_KEYS)}")
        content = (x, y) if y is not None else x
    if isinstance(content, (tuple, list)) and len(content) == 2:
        return TensorDataset(*content)
    if isinstance(content, torch.Tensor):
        return content
    raise BadInput(f"--data {path} holds a {type(content).__name__}; save a tensor (N, ...), "
                   "a tuple (inputs, labels) or a dict {'inputs': ..., 'labels': ...}")


def load_data(path, size: int | None = None, mean=None, std=None):
    """The inputs ``--data`` names (see the module docstring): a tensor, an array, a
    ``TensorDataset`` or an image Dataset."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"--data {path}: no such file or folder")
    if path.is_file():
        if path.suffix not in (".npy", ".pt", ".pth"):
            raise BadInput(f"--data {path}: expected a folder of images, a .npy or a .pt file")
        return _from_file(path)
    transform = _transform(size, mean, std)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    folders = sorted(p.name for p in path.iterdir() if p.is_dir())
    if files and folders:
        raise BadInput(
            f"--data {path} holds {len(files)} images and the subfolders {folders[:5]}: a "
            "folder of class subfolders is read from its subfolders alone, a flat folder from "
            "its images alone; move the images into a subfolder per class, or the subfolders "
            "out of it")
    if folders:
        from torchvision.datasets import ImageFolder

        try:
            return ImageFolder(path, transform=transform, loader=load_rgb)
        except FileNotFoundError as error:
            raise BadInput(f"--data {path}: {error}") from None
    if not files:
        raise BadInput(f"--data {path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no "
                       "class subfolders; pass a folder of images, a .npy or a .pt file")
    return ImageFiles(files, transform)


@contextlib.contextmanager
def process_group(timeout_s: float):
    """Initialize the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ...) for the block, and destroy it after; nothing without ``torchrun``
    or when a group is already initialized."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or dist.is_initialized():
        yield
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    try:
        yield
    except Exception as error:
        if _peer_lost(error):  # let the agent report the process that failed first
            time.sleep(PEER_GRACE_S)  # (it ends this one meanwhile)
        raise
    finally:
        dist.destroy_process_group()


def _peer_lost(error: Exception) -> bool:
    """Whether ``error`` is a collective's failure because another process went away."""
    text = str(error)
    return isinstance(error, dist.DistError) or "closed by peer" in text \
        or "reset by peer" in text


def _workers(args) -> int:
    """``--workers``, or by default the CPU cores of this node shared by its processes (at
    most 8)."""
    if args.workers is not None:
        return args.workers
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return min(8, (os.cpu_count() or 1) // local)


def _check_sizes(args, inputs) -> None:
    """BadInput, before any work, when ``--rank`` or ``--max-rank`` exceed the inputs, or
    ``--mean``/``--std`` do not have one value per channel (of RGB images, or of ``(N, C,
    ...)`` tensors) or one for all."""
    n = len(inputs)
    for flag, value in (("--rank", args.rank), ("--max-rank", args.max_rank)):
        if value > n:
            raise BadInput(f"{flag} {value} is larger than the {n} inputs of --data allow; pass "
                           f"{flag} {n} or less, or more inputs")
    if args.mean is None:
        return
    if len(args.mean) != len(args.std):
        raise BadInput(f"--mean has {len(args.mean)} values and --std {len(args.std)}; give "
                       "both one value per channel")
    if isinstance(inputs, TensorDataset):
        shape = tuple(inputs.tensors[0].shape)
    elif isinstance(inputs, (torch.Tensor, np.ndarray)):
        shape = tuple(inputs.shape)
    else:  # image files, read as RGB
        shape = None
    channels = 3 if shape is None else (shape[1] if len(shape) >= 3 else None)
    if channels is not None and len(args.mean) not in (1, channels):
        what = "the images are RGB with" if shape is None else f"the inputs {shape} have"
        raise BadInput(f"--mean and --std have {len(args.mean)} values, but {what} "
                       f"{channels} channels; give {channels} values (or one for all)")


def _input_files(inputs, root) -> list | None:
    """The image files read, in sample order (``top_inputs`` index them), relative to
    ``root``; None for inputs from a tensor or array file."""
    source = getattr(inputs, "dataset", inputs)
    if hasattr(source, "samples"):  # ImageFolder: (path, class index) pairs
        files = [path for path, _ in source.samples]
    elif isinstance(source, ImageFiles):
        files = source.files
    else:
        return None
    return [Path(f).relative_to(root).as_posix() for f in files]


def run(args) -> dict | None:
    """The analysis of ``args`` (the ``analyze`` command's options) written to ``args.out``;
    returns ``summary.json`` on rank 0, None on the other processes."""
    from peekwidgets.report import write_report
    from peekwidgets.session import Analysis

    device = (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
              else torch.device("cpu"))
    torch.manual_seed(args.seed)  # a factory that draws random weights draws the same ones
    model = load_model(args.model, args.weights).to(device)
    inputs = load_data(args.data, args.size, args.mean, args.std)
    _check_sizes(args, inputs)
    lead = distributed.rank() == 0
    layers = args.layers if args.layers == "auto" else args.layers.split(",")
    capture_kwargs = {"memory_budget": args.memory_budget}
    if isinstance(inputs, Dataset) and not isinstance(inputs, TensorDataset):  # images
        inputs = DataLoader(inputs, batch_size=args.batch_size, num_workers=_workers(args),
                            pin_memory=device.type == "cuda")
    else:
        capture_kwargs["batch_size"] = args.batch_size
    engine_kwargs = {k: v for k, v in (("max_iter", args.max_iter), ("tol", args.tol))
                     if v is not None}
    try:
        analysis = Analysis(model, inputs, rank=args.rank, layers=layers,
                            nonnegative=args.nonnegative, random_state=args.seed,
                            progress=lead, capture_kwargs=capture_kwargs,
                            engine_kwargs=engine_kwargs, mean=args.mean, std=args.std)
    except BadInput as error:  # raised in a DataLoader worker: its message holds the trace
        raise BadInput(str(error).strip().splitlines()[-1].split("BadInput: ")[-1]) from None
    except ValueError as error:  # layers, memory budget: the message names the fix
        raise BadInput(str(error)) from None
    except RuntimeError as error:  # images of the wrong size make the model fail on shapes
        if not isinstance(inputs, DataLoader) or not any(
                word in str(error) for word in ("shape", "size", "channels", "dimension")):
            raise
        if "stack expects each tensor to be equal size" in str(error):
            raise BadInput(f"--data {args.data}: the images have different sizes ({error}); "
                           "pass --size N to resize and crop them all to N x N") from None
        raise BadInput(
            f"--model {args.model} failed on the images of --data {args.data}"
            f"{f' at --size {args.size}' if args.size else ' at their own size'} ({error}); "
            "pass the --size the model was built for") from None
    analysis.rank_profile(args.max_rank, random_state=args.seed, progress=lead)
    if not lead:
        return None
    out = Path(args.out)
    classes = getattr(getattr(inputs, "dataset", inputs), "classes", None)
    summary = write_report(
        out, analysis, max_rank=args.max_rank, progress=True, class_names=classes,
        extra={"model": args.model, "weights_file": None if args.weights is None else
               str(args.weights), "data": str(args.data),
               "classes": classes,
               "input_files": _input_files(inputs, args.data),
               "processes": distributed.world_size(), "analysis": "analysis",
               "gathered_samples": None if analysis.sample_index is None else
               len(analysis.sample_index)})
    analysis.dump(out / "analysis")
    return summary
