"""The demo model behind ``peekwidgets demo``: training, checkpoints and the cache."""

import pytest
import torch

import peekwidgets.demo as demo
from peekwidgets.demo import DemoConfig, default_cache_dir, load_demo

#: A short recipe so the tests train in a second or two.
TINY = DemoConfig(epochs=1, n_test=200, checkpoint_epochs=(0.0, 0.5, 1.0))


def _same_states(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_trains_keeps_checkpoints_and_holds_out_a_test_split(tmp_path):
    run = load_demo(tmp_path, config=TINY, progress=False)
    assert [ck.epoch for ck in run.checkpoints] == pytest.approx([0.0, 0.5, 1.0], abs=0.05)
    assert list(run.accuracies) == [ck.name for ck in run.checkpoints] == [
        "epoch 0", "epoch 0.48", "epoch 1"]
    assert _same_states(run.model.state_dict(), run.checkpoints[-1].state_dict)
    assert not run.model.training
    assert run.accuracies["epoch 1"] > run.accuracies["epoch 0"] + 0.2
    assert len(run.test_set) == 200 and len(run.train_set) == 1797 - 200
    train_images = {tuple(x.flatten().tolist()) for x, _ in run.train_set}
    assert not any(tuple(x.flatten().tolist()) in train_images for x in run.inputs(50))
    assert run.inputs(7).shape == (7, 1, 8, 8) and run.labels(7).shape == (7,)


def test_second_call_loads_the_cache_without_training(tmp_path, monkeypatch):
    first = load_demo(tmp_path, config=TINY, progress=False)
    assert first.path.is_file() and first.path.parent == tmp_path and not first.loaded

    def no_training(*args, **kwargs):
        raise AssertionError("the cached run should have been loaded")

    monkeypatch.setattr(demo, "train_classifier", no_training)
    second = load_demo(tmp_path, config=TINY, progress=False)
    for a, b in zip(first.checkpoints, second.checkpoints):
        assert a.name == b.name and _same_states(a.state_dict, b.state_dict)
    assert second.accuracies == first.accuracies and second.loaded


def test_other_recipe_or_broken_file_trains_again(tmp_path):
    first = load_demo(tmp_path, config=TINY, progress=False)
    other = DemoConfig(epochs=1, n_test=200, checkpoint_epochs=(0.0, 1.0))
    assert len(load_demo(tmp_path, config=other, progress=False).checkpoints) == 2
    first.path.write_bytes(b"truncated")
    again = load_demo(tmp_path, config=TINY, progress=False)
    assert _same_states(again.model.state_dict(), first.model.state_dict()), "deterministic"


def test_no_cache_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PEEKWIDGETS_CACHE", str(tmp_path))
    run = load_demo(False, config=TINY, progress=False)
    assert run.path is None and not any(tmp_path.iterdir())


def test_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PEEKWIDGETS_CACHE", str(tmp_path / "pw"))
    assert default_cache_dir() == tmp_path / "pw"
    monkeypatch.delenv("PEEKWIDGETS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "peekwidgets"


def test_bad_cache_and_split_are_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file; pass a folder"):
        load_demo(a_file, config=TINY, progress=False)
    with pytest.raises(ValueError, match="n_test=0 must be between 1 and 1796"):
        load_demo(tmp_path, config=DemoConfig(n_test=0), progress=False)
