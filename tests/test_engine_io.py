"""The factors file: what save writes, load finds; every other file gets a clear answer."""

import json

import numpy as np
import pytest
import torch

from peekwidgets.blocks import Blocks
from peekwidgets.engine import CoupledCP, clone
from peekwidgets.engine import io as engine_io

NOT_OURS = "is not a peekwidgets factors file ("


@pytest.fixture(scope="module")
def blocks():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 3, generator=gen)
    x = {"input": a @ torch.randn(3, 10, generator=gen),
         "conv": torch.einsum("nr,cr,sr->ncs", a, torch.randn(4, 3, generator=gen),
                              torch.randn(6, 3, generator=gen))}
    return Blocks.from_arrays({k: v + 0.05 * torch.randn(v.shape, generator=gen)
                               for k, v in x.items()})


@pytest.fixture(scope="module")
def init():
    rng = np.random.default_rng(2)
    return {"input": [rng.random((10, 3))], "conv": [rng.random((4, 3)), rng.random((6, 3))]}


@pytest.fixture(scope="module")
def custom(blocks, init):
    return CoupledCP(3, init=init, max_iter=300).fit(blocks)


@pytest.fixture
def saved(tmp_path, custom):
    return custom.save(tmp_path / "model.npz")


def rewrite(path, target, edit):
    """Copy the archive at ``path`` to ``target`` with ``edit(meta, arrays)`` applied."""
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(arrays["meta"].tobytes())
    edit(meta, arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(target, **arrays)
    return target


def test_read_gives_every_fitted_attribute(saved, custom):
    path, params, fitted = engine_io.read(saved)
    assert path == saved and set(fitted) == set(engine_io.FITTED)
    assert params.keys() == custom.get_params().keys() and params["dtype"] is torch.float32


def test_save_x_writes_x_npz_and_load_x_finds_it(tmp_path, custom):
    written = custom.save(tmp_path / "x")
    assert written == tmp_path / "x.npz" and written.is_file()
    assert not (tmp_path / "x").exists()
    back = CoupledCP.load(tmp_path / "x")
    assert np.array_equal(back.A_, custom.A_)
    assert (back.n_samples_, back.row_offset_) == (custom.n_samples_, 0)  # every attribute
    assert back.comm_bytes_per_sweep_ == 0.0
    assert np.array_equal(CoupledCP.load(str(tmp_path / "x.npz")).A_, custom.A_)
    with pytest.raises(FileNotFoundError, match=r"no peekwidgets factors file .*nothere "
                                                r"\(nor .*nothere\.npz\); check the path"):
        CoupledCP.load(tmp_path / "nothere")


def test_model_fitted_from_initial_factors_reloads_and_fits_again(tmp_path, blocks, init,
                                                                  custom, saved):
    before = [b.data.clone() for b in blocks]
    back = CoupledCP.load(saved)
    for name in init:  # the initial factors travel with the file
        assert all(np.array_equal(f, g) for f, g in zip(back.init[name], init[name]))
    again = back.fit(blocks)
    np.testing.assert_allclose(again.A_, custom.A_, atol=1e-6)  # the same fit, from the same init
    assert clone(CoupledCP.load(saved)).set_params(tol=1e-4).fit(blocks).converged_
    assert all(torch.equal(b.data, x) for b, x in zip(blocks, before))


def test_version_1_file_with_custom_init_reloads_with_a_warm_start(tmp_path, blocks, custom,
                                                                   saved):
    def as_version_1(meta, arrays):
        meta.update(version=1, params=dict(meta["params"], init="custom"))
        for key in [k for k in arrays if k.startswith("init/")]:
            del arrays[key]

    old = rewrite(saved, tmp_path / "v1.npz", as_version_1)
    back = CoupledCP.load(old)
    assert np.array_equal(back.A_, custom.A_)
    assert sorted(back.init) == sorted(blocks.names)  # the fitted factors, as the start
    again = back.fit(blocks)
    assert again.loss_ <= custom.loss_ * (1 + 1e-4) and again.n_iter_ < custom.n_iter_


@pytest.mark.parametrize("state", [np.random.RandomState(0), np.random.default_rng(0)])
def test_a_numpy_random_state_is_saved_as_none(tmp_path, blocks, state):
    model = CoupledCP(3, random_state=state, max_iter=20, tol=-1).fit(blocks)
    back = CoupledCP.load(model.save(tmp_path / "seeded.npz"))
    assert back.random_state is None and np.array_equal(back.A_, model.A_)
    assert model.random_state is state  # the user's object is kept in the estimator


def test_file_from_before_negative_share_reads_as_unmeasured(tmp_path, saved, custom):
    old = rewrite(saved, tmp_path / "old.npz", lambda meta, arrays: meta.pop("negative_share"))
    back = CoupledCP.load(old)
    assert back.negative_share_ == {} and np.array_equal(back.A_, custom.A_)


def _truncated(path, saved):
    path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])


def _foreign_npz(path, saved):
    np.savez(path, x=np.zeros(3), y=np.ones(2))


def _objects_npz(path, saved):
    np.savez(path, meta=np.array([{"format": 1}], dtype=object))


def _torch_file(path, saved):
    torch.save({"weight": torch.zeros(3)}, path)


def _old_torch_file(path, saved):
    torch.save({"weight": torch.zeros(3)}, path, _use_new_zipfile_serialization=False)


def _edit(edit):
    return lambda path, saved: rewrite(saved, path, edit)


CASES = {
    "truncated": ("model.npz", _truncated, "a truncated or damaged zip archive"),
    "random bytes": ("model.npz", lambda p, s: p.write_bytes(
        bytes(np.random.default_rng(0).integers(1, 255, 300, dtype=np.uint8))),
        "found 300 bytes of unrecognized data"),
    "text": ("model.npz", lambda p, s: p.write_text("sample,value\n1,2\n"),
             "found text starting 'sample,value\\n1,2\\n'"),
    "empty": ("model.npz", lambda p, s: p.write_bytes(b""), "the file is empty"),
    "foreign npz": ("other.npz", _foreign_npz,
                    "found a zip archive with entries ['x', 'y'] and no 'meta'"),
    "object arrays": ("objects.npz", _objects_npz, "array 'meta' holds Python objects"),
    "torch file": ("weights.pt", _torch_file, "found a PyTorch file (torch.save)"),
    "old torch file": ("weights.pt", _old_torch_file, "found pickled Python data"),
    "npy": ("array.npy", lambda p, s: np.save(p, np.zeros(3)),
            "found a single NumPy array (.npy), not an .npz archive"),
    "version 2.0": ("model.npz", _edit(lambda m, a: m.update(version="2.0")),
                    "version '2.0', expected an integer from 1 to 2"),
    "no version": ("model.npz", _edit(lambda m, a: m.pop("version")),
                   "its 'meta' has no 'version'"),
    "other format": ("model.npz", _edit(lambda m, a: m.update(format="other")),
                     "format 'other', expected 'peekwidgets.CoupledCP'"),
    "missing loss": ("model.npz", _edit(lambda m, a: m.pop("loss")), "its 'meta' has no 'loss'"),
    "missing A": ("model.npz", _edit(lambda m, a: a.pop("A")), "no array 'A'"),
    "wrong shape": ("model.npz", _edit(lambda m, a: a.update(A=a["A"][:5])),
                    "array 'A' has shape (5, 3), expected (50, 3)"),
    "bad dtype": ("model.npz", _edit(lambda m, a: m["params"].update(dtype="float99")),
                  "dtype 'float99', expected 'float32' or 'float64'"),
}


@pytest.mark.parametrize("case", CASES)
def test_load_says_what_it_found_instead_of_a_factors_file(tmp_path, saved, case):
    name, make, found = CASES[case]
    path = tmp_path / "bad" / name
    path.parent.mkdir()
    make(path, saved)
    content = path.read_bytes()
    with pytest.raises(ValueError) as e:
        CoupledCP.load(path)
    message = str(e.value)
    assert message.startswith(f"{path} {NOT_OURS}{found}"), message
    assert message.endswith("CoupledCP.load reads the .npz files that CoupledCP.save writes")
    assert "allow_pickle" not in message and "pickle=" not in message
    assert path.read_bytes() == content  # the file is left as it was


def test_load_of_a_newer_version_says_to_upgrade(tmp_path, saved):
    newer = rewrite(saved, tmp_path / "newer.npz", lambda m, a: m.update(version=99))
    with pytest.raises(ValueError, match=r"newer\.npz is a peekwidgets factors file of version "
                                         r"99, newer than this peekwidgets reads \(2\); upgrade"):
        CoupledCP.load(newer)


def test_load_of_an_unknown_parameter_names_it(tmp_path, saved):
    odd = rewrite(saved, tmp_path / "odd.npz", lambda m, a: m["params"].update(spin=1))
    with pytest.raises(ValueError, match=r"odd\.npz: 'spin' is not a parameter of CoupledCP"):
        CoupledCP.load(odd)
