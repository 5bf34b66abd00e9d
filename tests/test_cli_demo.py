"""The demo model behind ``peekwidgets demo``: training, checkpoints and the cache."""

import shutil

import pytest
import torch

import peekwidgets.demo.run as demo
from peekwidgets.demo import DemoConfig, default_cache_dir, load_demo

#: A short recipe so the module trains once, in a second or two.
TINY = DemoConfig(epochs=1, n_test=200, checkpoint_epochs=(0.0, 0.5, 1.0))


def _same_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real training run of ``TINY``, cached: ``(cache folder, DemoRun)``."""
    folder = tmp_path_factory.mktemp("demo-cache")
    return folder, load_demo(folder, config=TINY, progress=False)


@pytest.fixture
def counted_training(monkeypatch, trained):
    """Replace training by a stub that counts its calls and returns the trained checkpoints."""
    calls = []

    def fake_train(config, train_set, progress):
        calls.append(config)
        return trained[1].checkpoints

    monkeypatch.setattr(demo, "_train", fake_train)
    return calls


def _copy_cache(trained, folder):
    shutil.copy(trained[1].path, folder / trained[1].path.name)
    return folder / trained[1].path.name


def test_trains_keeps_checkpoints_and_holds_out_a_test_split(trained):
    folder, run = trained
    assert run.path.parent == folder and run.path.is_file() and not run.loaded
    assert [ck.epoch for ck in run.checkpoints] == pytest.approx([0.0, 0.5, 1.0], abs=0.05)
    assert list(run.accuracies) == [ck.name for ck in run.checkpoints]
    assert run.checkpoints[0].name == "epoch 0" and run.checkpoints[-1].name == "epoch 1"
    assert _same_states(run.model.state_dict(), run.checkpoints[-1].state_dict)
    assert not run.model.training
    assert run.accuracies["epoch 1"] > run.accuracies["epoch 0"] + 0.2
    assert len(run.test_set) == 200 and len(run.train_set) == 1797 - 200
    train_images = {tuple(x.flatten().tolist()) for x, _ in run.train_set}
    assert not any(tuple(x.flatten().tolist()) in train_images for x in run.inputs(50))
    assert run.inputs(7).shape == (7, 1, 8, 8) and run.labels(7).shape == (7,)
    assert len(run.dataset(7)) == 7


def test_second_call_loads_the_cache_without_training(trained, counted_training):
    folder, first = trained
    second = load_demo(folder, config=TINY, progress=False)
    assert counted_training == [] and second.loaded
    for a, b in zip(first.checkpoints, second.checkpoints):
        assert a.name == b.name and _same_states(a.state_dict, b.state_dict)
    assert second.accuracies == first.accuracies


def test_other_recipe_broken_file_or_retrain_trains_again(trained, counted_training, tmp_path):
    path = _copy_cache(trained, tmp_path)
    other = DemoConfig(epochs=2, n_test=200, checkpoint_epochs=(0.0, 1.0))
    assert not load_demo(tmp_path, config=other, progress=False).loaded
    assert counted_training == [other]
    path.write_bytes(b"truncated")
    assert not load_demo(tmp_path, config=TINY, progress=False).loaded
    assert load_demo(tmp_path, config=TINY, progress=False).loaded, "rewritten by the retrain"
    assert not load_demo(tmp_path, config=TINY, retrain=True, progress=False).loaded
    assert counted_training == [other, TINY, TINY]


def test_no_cache_writes_nothing(monkeypatch, counted_training, tmp_path):
    monkeypatch.setenv("PEEKWIDGETS_CACHE", str(tmp_path))
    run = load_demo(False, config=TINY, progress=False)
    assert run.path is None and not run.loaded and not any(tmp_path.iterdir())


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
