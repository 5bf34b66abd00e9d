"""``CoupledCP.fit(blocks, callback=...)``: live progress, and a stop that keeps the best fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP


def planted(n=200, rank=3, seed=0):
    """A rank-3 nonnegative matrix plus 5% noise (tol=-1 below forces fixed sweep counts)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(n, rank, generator=g)
    x = A @ torch.rand(rank, 30, generator=g) + 0.05 * torch.rand(n, 30, generator=g)
    return Blocks([Block("x", x)])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_callback_sees_every_sweep_and_a_falling_loss():
    seen = []
    cp = CoupledCP(3, tol=-1, max_iter=15, random_state=0).fit(
        planted(), callback=lambda sweep, loss: seen.append((sweep, loss)))
    assert [s for s, _ in seen] == list(range(1, cp.n_iter_ + 1)) and cp.n_iter_ == 15
    losses = np.array([loss for _, loss in seen if loss is not None])
    assert len(losses) >= 10 and np.all(np.diff(losses) <= 1e-7)
    assert 0 < losses[-1] < 0.05  # relative to the energy: the planted rank-3 part is found


def test_keyboard_interrupt_in_the_callback_stops_and_keeps_the_fit():
    def stop_at_five(sweep, loss):
        if sweep == 5:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted after 5 sweeps"):
        cp = CoupledCP(3, tol=-1, max_iter=100, random_state=0).fit(planted(),
                                                                    callback=stop_at_five)
    assert cp.interrupted_ and not cp.converged_ and cp.n_iter_ == 5
    assert cp.fit_["x"] > 0.9


def test_progress_bar_of_an_early_stop_ends_full_in_a_notebook():
    from tqdm.notebook import tqdm

    from peekwidgets.progress import complete

    bar = tqdm(total=1000)
    bar.update(557)
    complete(bar)
    widget = bar.container.children[1]
    assert (bar.n, bar.total, widget.value, widget.max) == (557, 557, 557, 557)
    bar.close()
    assert widget.bar_style != "danger"  # tqdm paints an unfinished bar red on close
