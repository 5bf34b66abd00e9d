"""The dashboard's rank-profile panel: the offered rank is a rank the engine can fit."""

import numpy as np
import pytest

from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.widgets import Peek


def dashboard(arrays: dict) -> Peek:
    blocks = Blocks.from_arrays(arrays)
    return Peek.from_fitted(blocks, CoupledCP(2, max_iter=20, random_state=0).fit(blocks))


def test_estimated_rank_zero_is_offered_as_rank_one_with_a_note():
    rng = np.random.default_rng(0)
    peek = dashboard({f"b{i}": rng.standard_normal((200, 100)).astype(np.float32)
                      for i in range(2)})
    with pytest.warns(RuntimeWarning, match="estimated rank is 0"):
        profile = peek.compute_rank_profile(3, center=True, progress=False)
    assert profile.estimated_rank == 0
    panel = peek.controls
    assert panel.use_rank_button.description == "use rank 1"
    notes = [c for c in panel.profile_box.children if "peek-rank-note" in c._dom_classes]
    assert len(notes) == 1 and "estimated rank 0" in notes[0].value
    panel.use_rank_button.click()  # refits in the background
    assert peek.wait(60) and peek.errors.exceptions == []
    assert peek.rank == 1 and peek.fitted.rank == 1 and panel.rank_slider.value == 1


def test_estimated_rank_is_offered_as_is_without_a_note():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((120, 3)) * [3.0, 2.0, 1.0]
    peek = dashboard({"x": (a @ rng.standard_normal((3, 30))).astype(np.float32),
                      "y": (a @ rng.standard_normal((3, 20))).astype(np.float32)})
    profile = peek.compute_rank_profile(6, progress=False)
    assert profile.estimated_rank >= 1
    panel = peek.controls
    assert panel.use_rank_button.description == f"use rank {profile.estimated_rank}"
    assert not any("peek-rank-note" in c._dom_classes for c in panel.profile_box.children)
    panel.use_rank_button.click()
    assert peek.wait(60) and peek.errors.exceptions == []
    assert peek.fitted.rank == profile.estimated_rank
