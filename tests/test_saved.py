"""Analysis.dump / Analysis.load: the saved folder shows the same view without the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dist_helpers import tiny_inputs, tiny_model
from torch.utils.data import TensorDataset

from peekwidgets import Analysis
from peekwidgets.report import write_report


@pytest.fixture(scope="module", params=[16, None], ids=["thumbnails", "raw-inputs"])
def analysis(request):
    x, y = tiny_inputs(60)
    a = Analysis(tiny_model(), TensorDataset(x, y), rank=3, layers=["relu", "fc"],
                 progress=False, capture_kwargs={"max_positions": request.param},
                 mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    a.rank_profile(4)
    return a


def test_round_trip_shows_the_same_view(analysis, tmp_path):
    loaded = Analysis.load(analysis.dump(tmp_path / "saved"))
    a, b = analysis.view, loaded.view
    assert b.names == a.names and loaded.n_samples == 60 and loaded.sample_index is None
    for name in ("A", "weights", "shares", "block_fit", "order", "total_share", "mean_like"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name), err_msg=name)
    np.testing.assert_array_equal(b.predictions, a.predictions)
    np.testing.assert_array_equal(b.input_rows(np.arange(60)), a.input_rows(np.arange(60)))
    np.testing.assert_array_equal(loaded.labels, analysis.labels)
    for key, value in analysis.images.params().items():
        np.testing.assert_array_equal(loaded.images.params()[key], value)
    for name in ("fit", "gain", "block_fit", "ranks"):
        np.testing.assert_array_equal(getattr(loaded.profile, name),
                                      getattr(analysis.profile, name))
    assert loaded.profile.estimated_rank == analysis.profile.estimated_rank
    assert [b.spatial_shape for b in loaded.blocks] == [b.spatial_shape for b in analysis.blocks]


def test_loaded_analysis_writes_the_same_report(analysis, tmp_path):
    loaded = Analysis.load(analysis.dump(tmp_path / "saved"))
    ours = write_report(tmp_path / "a", analysis, max_rank=4, progress=False)
    theirs = write_report(tmp_path / "b", loaded, max_rank=4, progress=False)
    for key in ours:
        if key != "timings_s":
            assert json.dumps(theirs[key]) == json.dumps(ours[key]), key


def test_loaded_analysis_drives_the_dashboard_and_refuses_a_refit(analysis, tmp_path):
    from peekwidgets import Peek

    loaded = Analysis.load(analysis.dump(tmp_path / "saved"))
    peek = Peek(loaded)
    peek.component = 2
    np.testing.assert_array_equal(peek.views["gallery"].shown, analysis.view.top(2, 12))
    with pytest.raises(ValueError, match="loaded with Analysis.load.*run the analysis again"):
        loaded.refit(rank=2)
    with pytest.raises(ValueError, match="to compute a rank profile"):
        loaded.rank_profile(3)
    peek.close()


def test_load_names_a_folder_that_holds_no_analysis(tmp_path):
    with pytest.raises(FileNotFoundError, match="no analysis.json.*Analysis.dump"):
        Analysis.load(tmp_path)
    (tmp_path / "analysis.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError, match="not a saved analysis"):
        Analysis.load(tmp_path)
