"""The checkpoint zoos of the rank benchmark: architectures, data splits, training runs, cache.

Three zoos, each trained on one part of a dataset and scored on a held-out part that no run
trains on:

* ``lenet``: LeNet-5 on MNIST, the only zoo on which ``rank_quality.py`` chooses settings;
* ``digits``: DigitsCNN on scikit-learn's bundled 8 x 8 digits;
* ``bncnn``: :class:`BatchNormCNN` (3 x 3 convolutions, BatchNorm after every layer but the
  logits) on MNIST.

Only the official MNIST test split is on disk, so the MNIST zoos train on its images
0..7,999 and are scored on images 8,000..9,999; the digits are shuffled once (seed 0), the
first 1,400 train and the last 397 are scored. Every zoo has clean runs, one per seed, with
checkpoints at init, a few steps, 1/4, 1, 2, 3, 5 and 10 epochs, and degraded nets: 50% label
noise (two seeds), random labels on a 1,000-image subset (500 for digits) trained until it
fits them (train accuracy >= 90%) and on past that point, and nets trained on 100 and 500
images. Adam (lr 1e-3), batch 64, :func:`peekwidgets.demo.models.train_classifier`, one torch
thread.

Trained runs are cached, one file per run, under ``.cache/rank_quality/<zoo>/`` (ignored by
git); the file name holds a hash of everything the run depends on. Run alone, this module
trains (or finds) every zoo: ``python benchmarks/rank_zoos.py [--quick]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from peekwidgets.demo.datasets import load_digits, load_mnist
from peekwidgets.demo.models import DigitsCNN, LeNet5, accuracy, train_classifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mnist"
CACHE = ROOT / ".cache" / "rank_quality"
BATCH = 64
#: Train accuracy (on its own labels) at which a random-label net counts as fitted.
FITTED = 0.9


class BatchNormCNN(nn.Module):
    """A BatchNorm CNN for ``(N, 1, 28, 28)`` MNIST.

    conv1 (8 x 28 x 28) -> bn1 -> relu1 -> pool1 -> conv2 (16 x 14 x 14) -> bn2 -> relu2 ->
    pool2 -> fc1 (64) -> bn3 -> relu3 -> fc2 (10 logits).
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 7 * 7, 64)
        self.bn3 = nn.BatchNorm1d(64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, n_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.fc1(x.flatten(1))))
        return self.fc2(x)


@dataclass(frozen=True)
class Run:
    """One training run. ``kind`` is "clean", "label noise", "random labels" or "small data"."""

    name: str
    kind: str
    seed: int
    epochs: float
    noise: float = 0.0  # share of the training labels replaced by uniform random ones
    subset: int | None = None  # train on this many images of the training part
    snapshots: int = 0  # also keep this many evenly spaced states along the run


@dataclass(frozen=True)
class Zoo:
    """A dataset split, an architecture and its runs."""

    name: str
    title: str
    model: type
    dataset: str  # "mnist" or "digits"
    n_train: int
    n_held: int
    few_steps: int
    runs: tuple
    epochs: tuple = (0.25, 1, 2, 3, 5, 10)  # clean checkpoints after init and a few steps

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // BATCH)

    def clean_steps(self) -> dict:
        """``{checkpoint label: optimizer step}`` of a clean run."""
        e = self.steps_per_epoch
        steps = {"init": 0, f"{self.few_steps} steps": self.few_steps}
        steps.update({("1/4" if x == 0.25 else f"{x:g}") + " ep": round(x * e)
                      for x in self.epochs})
        return steps

    def load(self, root) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` in the fixed order: the first ``n_train`` train, the next ``n_held``
        are held out."""
        if self.dataset == "mnist":
            return load_mnist(root).tensors
        x, y = load_digits().tensors
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
        return x[perm], y[perm]

    def held_out(self, x, y):
        held = slice(self.n_train, self.n_train + self.n_held)
        return x[held], y[held].numpy()


def _runs(seeds, epochs, noise_epochs, random_subset, random_epochs, small):
    """The runs of one zoo: clean per seed, two label-noise seeds, random labels, small data."""
    runs = [Run(f"clean s{s}", "clean", s, epochs) for s in seeds]
    runs += [Run(f"noise50 s{s}", "label noise", s, noise_epochs, noise=0.5) for s in (0, 1)]
    runs.append(Run("random labels", "random labels", 0, random_epochs, noise=1.0,
                    subset=random_subset, snapshots=8))
    runs += [Run(f"{n} images", "small data", 0, e, subset=n) for n, e in small]
    return tuple(runs)


def zoos(quick: bool = False) -> list[Zoo]:
    """The zoos, LeNet-5 (where settings are chosen) first. ``quick``: a smaller version of
    each (two seeds, up to 3 epochs, fewer images) for a short check of the whole protocol."""
    if quick:
        epochs = (0.25, 1, 2, 3)
        mnist = dict(dataset="mnist", n_train=2000, n_held=500, few_steps=5, epochs=epochs,
                     runs=_runs((0, 1), 3, 3, 300, 100, [(100, 30)]))
        return [
            Zoo("lenet", "LeNet-5 / MNIST", LeNet5, **mnist),
            Zoo("digits", "DigitsCNN / digits", DigitsCNN, "digits", 1400, 397, 3,
                _runs((0, 1), 3, 3, 300, 300, [(100, 30)]), epochs),
            Zoo("bncnn", "BatchNorm CNN / MNIST", BatchNormCNN, **mnist),
        ]
    mnist = dict(dataset="mnist", n_train=8000, n_held=2000, few_steps=10)
    return [
        Zoo("lenet", "LeNet-5 / MNIST", LeNet5,
            runs=_runs((0, 1, 2), 10, 10, 1000, 100, [(100, 100), (500, 30)]), **mnist),
        Zoo("digits", "DigitsCNN / digits", DigitsCNN, "digits", 1400, 397, 3,
            _runs((0, 1, 2), 10, 30, 500, 400, [(100, 100), (500, 40)])),
        Zoo("bncnn", "BatchNorm CNN / MNIST", BatchNormCNN,
            runs=_runs((0, 1, 2), 10, 10, 1000, 40, [(100, 100), (500, 30)]), **mnist),
    ]


def _training_data(zoo: Zoo, run: Run, x, y) -> TensorDataset:
    gen = np.random.default_rng(1000 + run.seed)
    xs, ys = x[: zoo.n_train], y[: zoo.n_train].clone()
    if run.subset is not None:
        idx = torch.from_numpy(gen.choice(zoo.n_train, run.subset, replace=False))
        xs, ys = xs[idx], ys[idx]
    if run.noise:
        flip = torch.from_numpy(gen.random(len(ys)) < run.noise)
        ys[flip] = torch.from_numpy(gen.integers(0, 10, int(flip.sum())))
    return TensorDataset(xs, ys)


def _train(zoo: Zoo, run: Run, x, y) -> list[dict]:
    """Train one run; its checkpoints as dicts (name, step, epoch, train_accuracy, state_dict).

    A clean run gives the checkpoints of ``zoo.clean_steps()``; any other run its final state
    and, with ``run.snapshots``, that many evenly spaced states before it. ``train_accuracy``
    is on the run's own (possibly noisy) labels, for degraded runs only.
    """
    data = _training_data(zoo, run, x, y)
    steps_per_epoch = -(-len(data) // BATCH)
    total = round(run.epochs * steps_per_epoch)
    if run.kind == "clean":
        labels = {s: label for label, s in zoo.clean_steps().items()}
    else:
        labels = {round(total * (i + 1) / (run.snapshots + 1)): "" for i in range(run.snapshots)}
        labels[total] = ""
    torch.manual_seed(run.seed)
    model = zoo.model()
    states = train_classifier(model, data, epochs=run.epochs, seed=run.seed, batch_size=BATCH,
                              checkpoint_steps=labels)
    out = []
    for c in states:
        entry = {"name": f"{labels[c.step]} s{run.seed}" if run.kind == "clean" else run.name,
                 "step": c.step, "epoch": c.step / steps_per_epoch, "train_accuracy": None,
                 "state_dict": c.state_dict}
        if run.kind != "clean":
            model.load_state_dict(c.state_dict)
            entry["train_accuracy"] = accuracy(model, data)
        out.append(entry)
    return out


def build(zoo: Zoo, data_root=DATA, cache: Path = CACHE, log=print) -> list[dict]:
    """Every checkpoint of ``zoo``, trained or read from the cache, as dicts with the run's
    ``run``, ``kind`` and ``seed`` added. ``member`` is False for the snapshots that only
    trace a degraded run: a degraded run's member is its end, except on random labels, where
    it is the first state that fits them (train accuracy >= ``FITTED``)."""
    x, y = zoo.load(data_root)
    folder = cache / zoo.name
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = []
    for run in zoo.runs:
        key = json.dumps([zoo.name, zoo.model.__name__, zoo.dataset, zoo.n_train, BATCH,
                          dataclasses.asdict(run), zoo.clean_steps()], sort_keys=True)
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        path = folder / f"{run.name.replace(' ', '_')}-{digest}.pt"
        if path.exists():
            states = torch.load(path)
        else:
            t0 = time.perf_counter()
            states = _train(zoo, run, x, y)
            torch.save(states, path)
            log(f"trained {zoo.name} {run.name} in {time.perf_counter() - t0:.0f} s")
        member = len(states) - 1  # a degraded run's zoo member: its end ...
        if run.kind == "random labels":  # ... or, on random labels, its first fitted state
            member = next((i for i, s in enumerate(states) if s["train_accuracy"] >= FITTED),
                          member)
        for i, state in enumerate(states):
            checkpoints.append({**state, "run": run.name, "kind": run.kind, "seed": run.seed,
                                "member": run.kind == "clean" or i == member})
    return checkpoints


def main(argv=None):
    p = argparse.ArgumentParser(description="Train (or find in the cache) the rank zoos.")
    p.add_argument("--data", default=str(DATA), help="folder of the MNIST IDX files")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--quick", action="store_true", help="the smaller zoos of --quick")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for zoo in zoos(args.quick):
        t0 = time.perf_counter()
        n = len(build(zoo, args.data, Path(args.cache)))
        print(f"{zoo.name}: {n} checkpoints in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
