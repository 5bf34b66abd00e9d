import numpy as np
import pytest
import torch

from peekwidgets.blocks import Block, Blocks


def test_kinds_shapes_and_streamed_norm():
    x = torch.randn(10, 3, 4)
    b = Block("conv", x, spatial_shape=(2, 2))
    assert (b.kind, b.n_samples, b.mode_shape, b.storage) == ("tensor", 10, (3, 4), "host")
    assert b.norm() == pytest.approx(float(x.double().norm()), rel=1e-6)
    parts = list(b.batches(4, dtype=torch.float64))
    assert [(s, e) for s, e, _ in parts] == [(0, 4), (4, 8), (8, 10)]
    assert torch.equal(torch.cat([p for *_, p in parts]), x.double())


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


def test_unknown_block_name_lists_the_names():
    blocks = Blocks.from_arrays({"input": torch.zeros(3, 2)})
    with pytest.raises(KeyError, match="input"):
        blocks["conv9"]
