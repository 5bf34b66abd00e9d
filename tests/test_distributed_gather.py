"""Gathering for display on two gloo processes: rank 0's view equals one process's."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings

import numpy as np
import pytest
import torch.distributed as dist
from dist_helpers import run_group, tiny_inputs, tiny_model
from torch.utils.data import TensorDataset

from peekwidgets import Analysis, distributed
from peekwidgets.capture import capture
from peekwidgets.engine import CoupledCP
from peekwidgets.gather import NOT_GATHERED, gather_shown
from peekwidgets.images import InputImages
from peekwidgets.viewmodel import ViewModel

pytestmark = pytest.mark.slow  # each test starts two processes

RANK, TOP_K, N_RANDOM = 3, 5, 20


def _blocks():
    x, y = tiny_inputs()
    return capture(tiny_model(), TensorDataset(x, y), ["relu", "fc"], max_positions=16,
                   batch_size=16, progress=False)


@pytest.fixture(scope="module")
def one():
    """One process: the blocks and a fit of them."""
    blocks = _blocks()
    return blocks, CoupledCP(RANK, random_state=0).fit(blocks)


def _plain(shown):
    if shown.blocks is None:
        return {"n_samples": shown.n_samples}
    view = ViewModel(shown.blocks, shown.estimator)
    images = InputImages.for_blocks(shown.blocks)
    return {"A": view.A, "order": view.order, "total_share": view.total_share,
            "predictions": view.predictions, "labels": shown.blocks.labels,
            "rows": view.input_rows(np.arange(view.n_samples)), "index": shown.index,
            "n_samples": shown.n_samples, "range": (images.vmin, images.vmax),
            "values": {b.name: b.meta.get("values") for b in shown.blocks},
            "mean_like": view.mean_like}


def _gathered(estimator):
    """This process's shard with its rows of the one-process fit, gathered three ways."""
    blocks = _blocks()
    offset, _ = distributed.row_offset(blocks.n_samples)
    local = copy.copy(estimator)
    local.A_ = estimator.A_[offset:offset + blocks.n_samples]
    return {"rank0": _plain(gather_shown(blocks, local)),
            "everywhere": _plain(gather_shown(blocks, local, everywhere=True)),
            "sampled": _plain(gather_shown(blocks, local, max_bytes=0, top_k=TOP_K,
                                           n_random=N_RANDOM)),
            "rank": dist.get_rank()}


def test_rank0_gathers_the_view_of_one_process(one):
    blocks, cp = one
    ranks = run_group(_gathered, cp)
    assert ranks[1]["rank0"] == ranks[1]["sampled"] == {"n_samples": 101}
    expected = _plain(gather_shown(blocks, cp))  # one process: the blocks as they are
    for got in (ranks[0]["rank0"], ranks[0]["everywhere"], ranks[1]["everywhere"]):
        assert got["index"] is None and got["n_samples"] == 101
        np.testing.assert_array_equal(got["A"], expected["A"])
        np.testing.assert_array_equal(got["order"], expected["order"])
        np.testing.assert_array_equal(got["predictions"], expected["predictions"])
        np.testing.assert_array_equal(got["labels"], expected["labels"])
        np.testing.assert_array_equal(got["rows"], expected["rows"])  # the thumbnails
        np.testing.assert_allclose(got["total_share"], expected["total_share"], rtol=1e-6)
        np.testing.assert_array_equal(got["mean_like"], expected["mean_like"])
        assert got["range"] == expected["range"]
        assert got["values"] == {"input": NOT_GATHERED, "relu": NOT_GATHERED, "fc": None}


def test_beyond_the_bound_rank0_gathers_top_inputs_and_a_sample(one):
    blocks, cp = one
    got = run_group(_gathered, cp)[0]["sampled"]
    expected = ViewModel(blocks, cp)
    index = got["index"]
    assert got["n_samples"] == 101 and np.all(np.diff(index) > 0)
    top = np.unique(expected.order[:, :TOP_K])
    assert set(top) <= set(index)
    assert len(top) <= len(index) <= len(top) + N_RANDOM
    for r in range(RANK):  # the gathered samples' own order starts with the global top inputs
        np.testing.assert_array_equal(index[got["order"][r, :TOP_K]],
                                      expected.order[r, :TOP_K])
    np.testing.assert_array_equal(got["A"], expected.A[index])
    np.testing.assert_array_equal(got["predictions"], expected.predictions[index])
    np.testing.assert_array_equal(got["rows"], expected.input_rows(index))
    np.testing.assert_array_equal(got["labels"], blocks.labels[index])


def _analyses(folder):
    """An Analysis on each process, gathered on rank 0 only and on every process."""
    x, y = tiny_inputs()
    kwargs = dict(rank=2, layers=["relu", "fc"], progress=False,
                  capture_kwargs={"max_positions": 16, "batch_size": 16})
    only0 = Analysis(tiny_model(), TensorDataset(x, y), **kwargs)
    every = Analysis(tiny_model(), TensorDataset(x, y), gather=True, **kwargs)
    out = {"n_samples": only0.n_samples, "view": only0.view is not None,
           "A": every.view.A, "labels": every.labels}
    from peekwidgets.widgets import Peek

    for name, call in (("save", lambda: only0.save(f"{folder}/factors.npz")),
                       ("fold_in", lambda: every.fold_in(x[:3])), ("peek", lambda: Peek(every))):
        try:
            call()
            out[name] = None
        except (ValueError, RuntimeError) as error:
            out[name] = str(error)
    return out


def test_analysis_under_a_group_gathers_where_asked(tmp_path):
    ranks = run_group(_analyses, tmp_path)
    assert [r["view"] for r in ranks] == [True, False]
    assert [r["n_samples"] for r in ranks] == [101, 101]
    np.testing.assert_array_equal(ranks[0]["A"], ranks[1]["A"])  # gather=True: everywhere
    np.testing.assert_array_equal(ranks[1]["labels"], tiny_inputs()[1].numpy())
    assert ranks[0]["save"] is None and (tmp_path / "factors.npz").is_file()
    assert "rank 1" in ranks[1]["save"] and "gather=True" in ranks[1]["save"]
    assert all("fold_in runs on one process" in r["fold_in"] for r in ranks)
    assert all("Peek is a dashboard of one process" in r["peek"] and
               "Peek(Analysis.load(folder))" in r["peek"] for r in ranks)


def _dumped(folder):
    """A sharded analysis beyond the gathering bound, dumped and reported on rank 0."""
    import functools

    from peekwidgets import session
    from peekwidgets.report import write_report

    session.gather_shown = functools.partial(gather_shown, max_bytes=0, top_k=TOP_K,
                                             n_random=N_RANDOM)
    x, y = tiny_inputs()
    analysis = Analysis(tiny_model(), TensorDataset(x, y), rank=2, layers=["relu", "fc"],
                        progress=False, capture_kwargs={"max_positions": 16, "batch_size": 16})
    analysis.rank_profile(3, progress=False)
    if analysis.view is not None:
        analysis.dump(f"{folder}/analysis")
        write_report(folder, analysis, max_rank=3, top_k=4, progress=False)


def test_a_sampled_view_is_saved_and_reported_with_global_indices(tmp_path):
    import json

    run_group(_dumped, tmp_path)
    x, y = tiny_inputs()
    one = Analysis(tiny_model(), TensorDataset(x, y), rank=2, layers=["relu", "fc"],
                   progress=False, capture_kwargs={"max_positions": 16, "batch_size": 16})
    loaded = Analysis.load(tmp_path / "analysis")
    index = loaded.sample_index
    assert loaded.n_samples == 101 and len(index) <= 2 * TOP_K + N_RANDOM
    np.testing.assert_array_equal(loaded.labels, y.numpy()[index])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_samples"] == 101 and summary["blocks"][0]["shape"][0] == 101
    for r in range(2):  # the report names the global top inputs
        assert summary["top_inputs"][f"c{r}"] == one.view.top(r, 4).tolist()


def _saved(path):
    cp = CoupledCP(RANK, max_iter=5, random_state=0).fit(_blocks())
    return cp, cp.save(path)


def test_a_model_fitted_under_a_group_is_saved_whole_by_process_0(tmp_path):
    (cp0, path0), (cp1, path1) = run_group(_saved, tmp_path / "model")
    assert path0 == path1 == tmp_path / "model.npz"
    loaded = CoupledCP.load(path0)
    np.testing.assert_array_equal(loaded.A_, np.concatenate([cp0.A_, cp1.A_]))
    assert loaded.n_samples_ == cp0.n_samples_ == len(loaded.A_)
    with pytest.raises(ValueError, match=r"holds rows 51 to 100 of 101 samples \(fitted under "
                       r"a process group\); save it on every process"):
        cp1.save(tmp_path / "shard")  # outside the group


def _said():
    """What one process prints and warns while it captures and fits (not converging)."""
    err = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        x, y = tiny_inputs()
        blocks = capture(tiny_model(), TensorDataset(x, y), ["relu", "fc"], max_positions=16,
                         batch_size=16, progress=True)
        CoupledCP(RANK, max_iter=2, random_state=0).fit(blocks)
    return [w.category.__name__ for w in caught], err.getvalue()


def test_a_group_says_what_it_says_once():
    (warned0, printed0), (warned1, printed1) = run_group(_said)
    assert "ConvergenceWarning" in warned0 and "ConvergenceWarning" not in warned1
    assert "capture" in printed0 and "capture" not in printed1  # one progress bar
