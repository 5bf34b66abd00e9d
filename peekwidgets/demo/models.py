"""Small reference networks and a deterministic trainer.

``DigitsCNN`` trains on the bundled 8 x 8 digits in seconds on a CPU;
``LeNet5`` is the classic network for 28 x 28 MNIST. Each nonlinearity is its
own module, so every stage can be captured by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = ["DigitsCNN", "LeNet5", "Checkpoint", "train_classifier", "accuracy"]


class DigitsCNN(nn.Module):
    """LeNet-style CNN for ``(N, 1, 8, 8)`` digits.

    conv1 (8 x 8 x 8) -> relu1 -> pool1 -> conv2 (16 x 4 x 4) -> relu2 ->
    fc1 (64) -> relu3 -> fc2 (10 logits).
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, n_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LeNet5(nn.Module):
    """LeNet-5 for ``(N, 1, 28, 28)`` MNIST.

    conv1 (6 x 24 x 24) -> relu1 -> pool1 -> conv2 (16 x 8 x 8) -> relu2 ->
    pool2 -> fc1 (120) -> relu3 -> fc2 (84) -> relu4 -> fc3 (10 logits).
    """

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, n_classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


@dataclass
class Checkpoint:
    """A snapshot of a training run: ``state_dict`` after ``step`` optimizer steps."""

    name: str
    step: int
    epoch: float
    state_dict: dict


def train_classifier(
    model: nn.Module,
    dataset: Dataset,
    *,
    epochs: float = 1.0,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    checkpoint_steps=(),
    device=None,
    progress: bool = False,
) -> list[Checkpoint]:
    """Train ``model`` in place with Adam and cross-entropy, deterministically.

    Parameters
    ----------
    model : nn.Module
        Trained in place; left in eval mode.
    dataset : Dataset
        Yields ``(input, label)`` pairs.
    epochs : float
        Passes over the data; a fraction stops part-way through an epoch.
    checkpoint_steps : iterable of int
        Optimizer steps after which a snapshot is kept (0 is the initial model).
    device : torch.device, optional
        Where to train; the model's device by default.

    Returns
    -------
    list of Checkpoint, one per requested step that was reached, in step order.
    """
    from tqdm.auto import tqdm

    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    total_steps = int(round(epochs * len(loader)))
    wanted = sorted(set(int(s) for s in checkpoint_steps))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    checkpoints = []

    def snapshot(step):
        if step in wanted:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            checkpoints.append(Checkpoint(f"step {step}", step, step / len(loader), state))

    snapshot(0)
    step = 0
    model.train()
    with tqdm(total=total_steps, disable=not progress, desc="training") as bar:
        while step < total_steps:
            for x, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x.to(device)), y.to(device))
                loss.backward()
                optimizer.step()
                step += 1
                bar.update()
                snapshot(step)
                if step >= total_steps:
                    break
    model.eval()
    return checkpoints


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 512) -> float:
    """Fraction of ``dataset`` that ``model`` classifies correctly (the model's mode is kept)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size):
            correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
    finally:
        model.train(was_training)
    return correct / len(dataset)
