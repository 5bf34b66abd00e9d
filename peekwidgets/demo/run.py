"""The embedded demo: a small CNN trained on scikit-learn's bundled digits, with checkpoints.

:func:`load_demo` trains :class:`~peekwidgets.demo.models.DigitsCNN` on a fixed split of the 1,797
bundled 8 x 8 digits (about ten seconds on a CPU), keeps snapshots of the run for the rank
comparison, and caches them, so that the CLI, the notebooks and the tests share one trained
model. A later call loads the cache in well under a second.

The cache lives in ``$PEEKWIDGETS_CACHE`` when it is set, else in ``$XDG_CACHE_HOME/peekwidgets``
or ``~/.cache/peekwidgets``; pass ``cache_dir`` to choose another folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from peekwidgets.demo.datasets import load_digits
from peekwidgets.demo.models import Checkpoint, DigitsCNN, accuracy, train_classifier

__all__ = ["DemoConfig", "DemoRun", "default_cache_dir", "load_demo"]

#: Bumped when the cached file's layout or the training recipe changes.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class DemoConfig:
    """The training recipe of the demo model; a cached run is reused only for the same recipe.

    ``checkpoint_epochs`` are the points of the run that are kept (0 is the initial network);
    ``n_test`` digits are held out of training and used for every analysis.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    n_test: int = 500
    checkpoint_epochs: tuple = (0.0, 0.1, 0.25, 1.0, 3.0, 10.0)


@dataclass
class DemoRun:
    """A trained demo model, its checkpoints and the data split.

    Attributes
    ----------
    model : DigitsCNN
        The network at the end of training, in eval mode.
    checkpoints : list of Checkpoint
        Snapshots of the run in step order; the last one equals ``model``.
    train_set, test_set : TensorDataset
        ``images : (n, 1, 8, 8)`` in [0, 1] and ``labels : (n,)``.
    accuracies : dict
        Held-out accuracy of each checkpoint, by checkpoint name.
    path : Path or None
        The cache file, when the run was cached.
    loaded : bool
        True when the checkpoints came from the cache, False when they were trained now.
    """

    model: DigitsCNN
    checkpoints: list
    train_set: TensorDataset
    test_set: TensorDataset
    config: DemoConfig = field(default_factory=DemoConfig)
    accuracies: dict = field(default_factory=dict)
    path: Path | None = None
    loaded: bool = False

    def inputs(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` held-out images, ``(n, 1, 8, 8)`` (all of them when None)."""
        return self.test_set.tensors[0][:n]

    def labels(self, n: int | None = None) -> torch.Tensor:
        """Labels of :meth:`inputs`, ``(n,)``; for colouring plots and accuracy only."""
        return self.test_set.tensors[1][:n]

    def dataset(self, n: int | None = None) -> TensorDataset:
        """:meth:`inputs` with :meth:`labels` (capture keeps the labels for colouring only)."""
        return TensorDataset(self.inputs(n), self.labels(n))

    def checkpoint_models(self) -> dict:
        """``{checkpoint name: DigitsCNN in eval mode}`` in step order."""
        models = {}
        for ck in self.checkpoints:
            net = DigitsCNN()
            net.load_state_dict(ck.state_dict)
            models[ck.name] = net.eval()
        return models


def default_cache_dir() -> Path:
    """The cache folder: ``$PEEKWIDGETS_CACHE``, ``$XDG_CACHE_HOME/peekwidgets`` or
    ``~/.cache/peekwidgets``, the first that applies."""
    if os.environ.get("PEEKWIDGETS_CACHE"):
        return Path(os.environ["PEEKWIDGETS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "peekwidgets"


def _split(config: DemoConfig) -> tuple[TensorDataset, TensorDataset]:
    """A fixed random train/test split of the bundled digits."""
    images, labels = load_digits().tensors
    if not 0 < config.n_test < len(images):
        raise ValueError(
            f"n_test={config.n_test} must be between 1 and {len(images) - 1} "
            f"(the bundled digits hold {len(images)} images)"
        )
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.seed))
    test, train = order[: config.n_test], order[config.n_test:]
    return TensorDataset(images[train], labels[train]), TensorDataset(images[test], labels[test])


def _train(config: DemoConfig, train_set: TensorDataset, progress: bool) -> list[Checkpoint]:
    steps_per_epoch = -(-len(train_set) // config.batch_size)
    steps = sorted({round(e * steps_per_epoch) for e in config.checkpoint_epochs})
    torch.manual_seed(config.seed)
    model = DigitsCNN()
    checkpoints = train_classifier(
        model, train_set, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
        seed=config.seed, checkpoint_steps=steps, device="cpu", progress=progress,
    )
    for ck in checkpoints:
        ck.name = f"epoch {ck.epoch:.2g}"
    return checkpoints


def load_demo(
    cache_dir=None, *, config: DemoConfig | None = None, retrain: bool = False,
    progress: bool = True,
) -> DemoRun:
    """The trained demo model and its checkpoints, from the cache or trained now (seconds).

    Parameters
    ----------
    cache_dir : path, optional
        Folder of the cache file; :func:`default_cache_dir` when None. It is created when
        missing. Pass ``False`` to train without reading or writing a cache.
    config : DemoConfig, optional
        The training recipe; the default one when None.
    retrain : bool
        Train again even when a cached run with the same recipe exists.
    progress : bool
        Show a progress bar while training.

    Returns
    -------
    DemoRun
    """
    config = config or DemoConfig()
    train_set, test_set = _split(config)
    path = None
    if cache_dir is not False:
        folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(
                f"cache folder {folder} is a file; pass a folder (or remove the file)"
            )
        path = folder / f"digits_cnn_v{_CACHE_VERSION}.pt"
    cached = _read_cache(path, config) if path is not None and not retrain else None
    if cached is None:
        checkpoints = _train(config, train_set, progress)
    else:
        checkpoints = cached
    run = DemoRun(None, checkpoints, train_set, test_set, config, path=path,
                  loaded=cached is not None)
    models = run.checkpoint_models()
    run.model = models[checkpoints[-1].name]
    run.accuracies = {name: accuracy(net, test_set) for name, net in models.items()}
    if cached is None and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {"config": asdict(config), "checkpoints": [asdict(ck) for ck in checkpoints]}, tmp
        )
        tmp.replace(path)
    return run


def _read_cache(path: Path, config: DemoConfig) -> list[Checkpoint] | None:
    """The cached checkpoints when ``path`` holds a run of ``config``; None otherwise."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: train again and overwrite it
        return None
    if saved.get("config") != asdict(config):
        return None
    return [Checkpoint(**ck) for ck in saved["checkpoints"]]
