import numpy as np
import pytest
import torch

from peekwidgets import blocks as blocks_module
from peekwidgets.blocks import (
    BATCH_BYTES,
    Block,
    Blocks,
    as_blocks,
    batch_rows,
    check_finite,
    resolve_block_weights,
    squared_norm,
)


def test_kinds_shapes_and_streamed_norm():
    x = torch.randn(10, 3, 4)
    b = Block("conv", x, spatial_shape=(2, 2))
    assert (b.kind, b.n_samples, b.mode_shape, b.storage) == ("tensor", 10, (3, 4), "host")
    assert b.norm() == pytest.approx(float(x.double().norm()), rel=1e-6)
    parts = list(b.batches(4, dtype=torch.float64))
    assert [(s, e) for s, e, _ in parts] == [(0, 4), (4, 8), (8, 10)]
    assert torch.equal(torch.cat([p for *_, p in parts]), x.double())


def test_squared_norm_reads_chunks_in_float64_for_any_layout(monkeypatch, tmp_path):
    monkeypatch.setitem(blocks_module.NORM_ELEMENTS, "cpu", 7)  # many chunks, a partial last
    x = torch.randn(5, 3, 4) * 1e3 + 1e4  # float32 squares of ~1e8 summed exactly in float64
    exact = float(x.double().square().sum())
    assert squared_norm(x) == pytest.approx(exact, rel=1e-12)
    assert squared_norm(x[:, 1:]) == pytest.approx(float(x[:, 1:].double().square().sum()),
                                                   rel=1e-12)  # not contiguous
    assert squared_norm(x.double()) == pytest.approx(exact, rel=1e-12)
    on_disk = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", np.float32, (5, 3, 4))
    on_disk[:] = x.numpy()
    assert Block("m", on_disk).norm() ** 2 == pytest.approx(exact, rel=1e-12)
    x[3, 2, 1] = float("nan")
    assert not np.isfinite(squared_norm(x))
    assert squared_norm(torch.zeros(0, 4)) == 0.0


def test_rows_accepts_slices_indices_and_masks():
    b = Block("m", np.arange(20, dtype=np.float32).reshape(10, 2))
    assert b.kind == "matrix"
    assert b.rows([3, 1]).tolist() == [[6, 7], [2, 3]]
    mask = np.zeros(10, bool)
    mask[[0, 9]] = True
    assert b.numpy(mask).tolist() == [[0, 1], [18, 19]]
    assert b.rows(slice(1, 2), dtype=torch.float64).dtype == torch.float64


def test_blocks_lookup_select_and_batches():
    blocks = Blocks.from_arrays(
        {"input": torch.rand(6, 4), "conv": torch.rand(6, 2, 4)},
        spatial_shapes={"conv": (2, 2)}, labels=np.arange(6),
    )
    assert blocks.names == ["input", "conv"] and blocks.n_samples == 6
    assert blocks["conv"].spatial_shape == (2, 2)
    assert blocks.select(["conv"]).names == ["conv"]
    assert [len(rows) for *_, rows in blocks.batches(4)] == [2, 2]
    assert "conv" in blocks.summary()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Block("x", torch.zeros(3)), "expected a matrix"),
        (lambda: Block("x", torch.zeros(3, 2, dtype=torch.long)), "floating point"),
        (lambda: Blocks.from_arrays({"a": np.ones((3, 2)), "b": np.ones((3, 2), dtype=object)}),
         r"block 'b': data must be floating point, got a numpy array of dtype object.*astype"),
        (lambda: Block("i", np.ones((3, 2), dtype=np.int64)),
         r"block 'i': .* numpy array of dtype int64; convert it with \.astype\(np\.float32\)"),
        (lambda: Blocks([np.ones((3, 2))]), r"got ndarray; pass Block\(name, array\) objects, "
                                            r"or a \{name: array\} dict"),
        (lambda: Block("s", np.array([["a", "b"]] * 3)), r"block 's'.*dtype <U1"),
        (lambda: Block("x", torch.zeros(3, 2, 5), spatial_shape=(2, 2)), "spatial_shape"),
        (lambda: Blocks([]), "no blocks"),
        (lambda: Blocks.from_arrays({"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)}),
         "same number of samples"),
        (lambda: Blocks.from_arrays({"a": torch.zeros(3, 2)}, labels=[1, 2]), "labels"),
    ],
)
def test_bad_blocks_raise_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_reversed_and_read_only_arrays_are_taken_as_they_are(recwarn):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    flipped = Block("f", x[::-1])  # negative strides: torch.from_numpy takes none
    np.testing.assert_array_equal(flipped.numpy(), x[::-1])
    x.flags.writeable = False  # as np.load(mmap_mode="r") gives it
    read_only = Block("r", x)
    assert not recwarn.list  # no torch warning about writing to it: blocks are only read
    assert read_only.norm() == pytest.approx(np.linalg.norm(x))
    np.testing.assert_array_equal(read_only.numpy(), x)


def test_unknown_block_name_lists_the_names():
    blocks = Blocks.from_arrays({"input": torch.zeros(3, 2)})
    with pytest.raises(KeyError, match="input"):
        blocks["conv9"]


def test_as_blocks_accepts_every_form_and_refuses_empty_input():
    x, y = torch.rand(5, 3), torch.rand(5, 2, 4)
    blocks = Blocks.from_arrays({"x": x, "y": y})
    assert as_blocks(blocks) is blocks
    assert as_blocks(blocks["x"]).names == ["x"]
    assert as_blocks(list(blocks)).names == ["x", "y"]
    from_dict = as_blocks({"x": x.numpy(), "y": y})
    assert from_dict.names == ["x", "y"] and torch.equal(from_dict["x"].data, x)
    with pytest.raises(ValueError, match="empty mapping"):
        as_blocks({})
    with pytest.raises(ValueError, match="empty list"):
        as_blocks([])
    with pytest.raises(TypeError, match="got Tensor"):
        as_blocks(x)


def test_batch_rows_fits_the_device_budget():
    n = 10_000  # broadcast views: no memory behind the rows
    blocks = Blocks.from_arrays({"x": torch.zeros(1, 1000).expand(n, 1000),
                                 "y": torch.zeros(1, 2, 500).expand(n, 2, 500)})
    per_row = 2000 * 4  # float32 bytes of one row of both blocks
    assert batch_rows(blocks) == BATCH_BYTES["cpu"] // per_row
    assert batch_rows(blocks, device="cuda") == n  # the larger budget holds all rows
    assert batch_rows(blocks["x"], dtype=torch.float64) == BATCH_BYTES["cpu"] // (1000 * 8)
    assert batch_rows(blocks, bytes_per_batch=1, min_rows=16) == 16
    assert batch_rows(blocks, 7) == 7
    assert batch_rows(blocks, 10**9) == n
    with pytest.raises(ValueError, match="batch_size=0: expected None or a positive"):
        batch_rows(blocks, 0)


def test_resolve_block_weights():
    names = ["a", "b", "c"]
    np.testing.assert_array_equal(resolve_block_weights(None, names), [1, 1, 1])
    np.testing.assert_array_equal(resolve_block_weights({"b": 2}, names), [1, 2, 1])
    np.testing.assert_array_equal(resolve_block_weights([1, 2, 3], names), [1, 2, 3])
    with pytest.raises(ValueError, match=r"unknown blocks \['z'\]"):
        resolve_block_weights({"z": 2}, names)
    with pytest.raises(KeyError, match="unknown blocks"):
        resolve_block_weights({"z": 2}, names, unknown_error=KeyError)
    with pytest.raises(ValueError, match="2 entries for 3 blocks"):
        resolve_block_weights([1, 2], names)
    with pytest.raises(ValueError, match="positive and finite"):
        resolve_block_weights([1, 0, 1], names)


@pytest.mark.parametrize("bad, found", [(float("nan"), "NaN"), (float("inf"), "Inf"),
                                        (-float("inf"), "Inf")])
def test_check_finite_names_the_block_the_first_bad_sample_and_the_fix(bad, found):
    x = torch.rand(300, 2, 5, dtype=torch.float64)
    x[[7, 250], 1, 3] = bad
    clean = torch.rand(300, 4)
    before = (x.clone(), clean.clone())
    blocks = Blocks.from_arrays({"input": clean, "conv": x})
    with pytest.raises(ValueError, match=rf"block 'conv' contains NaN or Inf values in 2 of 300 "
                                         rf"samples, first in sample 7 \({found}\); drop those "
                                         r"samples, or replace .*torch\.nan_to_num"):
        check_finite(blocks)
    assert torch.equal(x.view(torch.int64), before[0].view(torch.int64))  # bit for bit
    assert torch.equal(clean, before[1])
    check_finite(blocks.select(["input"]))  # a clean block passes
    check_finite({"m": torch.full((4, 3), 1e30)})  # large but finite: fine


def test_check_finite_reports_values_too_large_to_square():
    with pytest.raises(ValueError, match=r"block 'big' is too large: its squared norm overflows "
                                         r"float64 \(largest \|value\| 1e\+200\); divide"):
        check_finite({"big": torch.full((3, 2), 1e200, dtype=torch.float64)})
