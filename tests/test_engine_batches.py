"""How the engine reads blocks: the batch rule by bytes, work buffers, float32 accumulation
with float64 accuracy, and the threads of a fit."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from peekwidgets.blocks import BATCH_BYTES, Block, Blocks
from peekwidgets.engine import CoupledCP
from peekwidgets.engine import batches as batches_module
from peekwidgets.engine.batches import (
    CACHE_BYTES,
    FLUSH_ROWS,
    LARGE_FIT_BYTES,
    MIN_ROWS_PER_COLUMN,
    Accumulator,
    BatchedData,
    fit_threads,
    sweep_rows,
)


def shaped(n, *mode_shapes):
    """Blocks of the given shapes that hold no memory (expanded zeros): for the batch rule."""
    return Blocks([Block(f"b{i}", torch.zeros(1).expand(n, *shape))
                   for i, shape in enumerate(mode_shapes)])


def test_narrow_blocks_get_cache_sized_batches():
    blocks = shaped(10_000, (64, 100), (300,))  # 26.8 kB a sample
    rows = sweep_rows(blocks, 8)
    row_bytes = (64 * 100 + 300) * 4
    assert rows == CACHE_BYTES // row_bytes
    assert sweep_rows(blocks, 8, dtype=torch.float64) == CACHE_BYTES // (2 * row_bytes)
    assert sweep_rows(blocks, 8, n_threads=2) == 2 * CACHE_BYTES // row_bytes


def test_wide_blocks_get_enough_rows_per_product_column():
    """resnet18 at 224 x 224 (2.1 MB a sample): at least 16 rows per column of the products,
    so the (width, features) accumulators are read and written once per many rows."""
    blocks = shaped(1000, (3, 224 * 224), (64, 56 * 56), (128, 28 * 28), (256, 14 * 14),
                    (512, 7 * 7), (1000,))
    assert sweep_rows(blocks, 10) == MIN_ROWS_PER_COLUMN * 10
    assert sweep_rows(blocks, 25) == MIN_ROWS_PER_COLUMN * 25  # rank_profile(15) + oversample
    assert sweep_rows(blocks, 100) == 1000  # never more than the samples


def test_given_batch_size_and_other_devices():
    blocks = shaped(100_000, (1000,))
    assert sweep_rows(blocks, 8, 77) == 77
    assert sweep_rows(blocks, 8, device="cuda") == BATCH_BYTES["cuda"] // 4000
    # blocks that live on the device in the compute dtype: all rows at once (views, no copies)
    resident = Blocks([Block("t", torch.empty(20_000, 64, 100, device="meta")),
                       Block("m", torch.empty(20_000, 300, device="meta"))])
    assert sweep_rows(resident, 8) == sweep_rows(resident, 8, device="meta") == 20_000
    assert sweep_rows(resident, 8, dtype=torch.float64) == BATCH_BYTES["cuda"] // (2 * 26800)
    assert sweep_rows(resident, 8, device="cpu") == CACHE_BYTES // 26800
    with pytest.raises(ValueError, match="batch_size=0"):
        sweep_rows(blocks, 8, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_named_without_index_reads_the_blocks_in_place():
    """``device="cuda"`` is the current GPU: blocks there are read as views, all rows at once
    (compared as named, ``cuda`` and ``cuda:0`` differ, and every batch would be copied)."""
    blocks = Blocks([Block("m", torch.rand(300, 20, device="cuda"))])
    data = BatchedData(blocks, [1.0], "cuda", torch.float32, None, 4)
    assert data.device == blocks[0].device and data.batch_size == 300
    (_, _, (rows,)), = data.chunks()
    assert rows.data_ptr() == blocks[0].data.data_ptr()


def test_accumulator_sums_float32_products_to_float64_accuracy():
    # Many parts of FLUSH_ROWS rows: the float32 rounding inside one part depends on the GEMM
    # kernel (on an AMD EPYC, MKL's beta=1 GEMM rounds a 1,024-row part about as coarsely as a
    # plain float32 sum of 3,000 rows), so the gain shows over a sum much longer than a part.
    n = 30 * FLUSH_ROWS
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, 6, generator=gen)
    x = torch.rand(n, 300, generator=gen)
    exact = a.double().T @ x.double()
    acc = Accumulator(6, 300, "cpu", torch.float32)
    part = acc.part.data_ptr()
    for start in range(0, n, 37):
        acc.add(a[start:start + 37], x[start:start + 37])
    assert acc.part.data_ptr() == part  # summed in place by the GEMM, no temporaries
    err = float((acc.result() - exact).abs().max() / exact.abs().max())
    plain = torch.zeros(6, 300)  # all rows summed in float32
    for start in range(0, n, 37):
        plain += a[start:start + 37].T @ x[start:start + 37]
    err32 = float((plain.double() - exact).abs().max() / exact.abs().max())
    assert err < 1e-6 and err < err32 / 2, (err, err32)
    acc.reset()
    assert float(acc.result().abs().max()) == 0.0
    acc64 = Accumulator(6, 300, "cpu", torch.float64)
    assert acc64.part is acc64.total
    acc64.add(a.double(), x.double())
    torch.testing.assert_close(acc64.result(), exact)


def test_batches_are_views_or_reuse_one_buffer():
    x = torch.rand(100, 3, 7)
    blocks = Blocks([Block("t", x), Block("m", torch.rand(100, 5))])
    same = BatchedData(blocks, [1.0, 1.0], "cpu", torch.float32, 16, 4)
    for start, stop, (t, m) in same.chunks():
        assert t.shape == (stop - start, 21) and m.shape == (stop - start, 5)
        assert t.data_ptr() == x[start].data_ptr()  # a view of the block
    cast = BatchedData(blocks, [1.0, 1.0], "cpu", torch.float64, 16, 4)
    pointers = set()
    for start, stop, (t, _) in cast.chunks():
        torch.testing.assert_close(t, x[start:stop].reshape(stop - start, -1).double())
        pointers.add(t.data_ptr())
    assert len(pointers) == 1  # every batch copied into the same work buffer


def test_wide_block_fit_does_not_depend_on_the_batches(monkeypatch):
    """A block whose rank x features accumulator exceeds the cache: batches of 16 x rank rows
    give the fit of one batch of all rows."""
    monkeypatch.setattr(batches_module, "LARGE_FIT_BYTES", 1 << 40)  # one thread's cache
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(150, 4, generator=gen), torch.rand(70_000, 4, generator=gen)
    x = a @ b.T + 0.01 * torch.rand(150, 70_000, generator=gen)
    blocks = Blocks([Block("wide", x), Block("small", a @ torch.rand(4, 9, generator=gen))])
    params = dict(rank=4, tol=-1, max_iter=6, random_state=0)  # 6 sweeps, no warning
    rows = CoupledCP(**params).fit(blocks)
    assert BatchedData(blocks, [1, 1], "cpu", torch.float32, None, 4).batch_size == 64
    whole = CoupledCP(**params, batch_size=150).fit(blocks)
    np.testing.assert_allclose(rows.A_, whole.A_, atol=1e-4)
    np.testing.assert_allclose(rows.loss_history_, whole.loss_history_, rtol=1e-5)


def test_threads_follow_the_size_of_the_fit(monkeypatch):
    small = shaped(1000, (100,))
    assert fit_threads(small, "cpu", torch.float32) == 1
    large = shaped(-(-LARGE_FIT_BYTES // 4000), (1000,))
    assert fit_threads(large, "cpu", torch.float32) == torch.get_num_threads()
    monkeypatch.setattr(batches_module, "LARGE_FIT_BYTES", 1)  # any fit is large now
    assert fit_threads(small, "cpu", torch.float32) == torch.get_num_threads()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed count
def test_a_small_fit_pins_torch_and_blas_to_one_thread():
    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    seen = []

    def callback(sweep, loss):
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        seen.append((torch.get_num_threads(), set(blas)))

    gen = torch.Generator().manual_seed(0)
    CoupledCP(2, max_iter=3, tol=-1, random_state=0).fit(
        {"x": torch.rand(50, 8, generator=gen)}, callback=callback)
    assert seen and all(t == 1 and blas <= {1} for t, blas in seen), seen
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] \
        == blas_before


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_non_contiguous_blocks_are_copied_batch_by_batch():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(100, 7, 3, generator=gen).transpose(1, 2)  # (100, 3, 7), not contiguous
    blocks = Blocks([Block("t", x), Block("m", torch.rand(100, 5, generator=gen))])
    data = BatchedData(blocks, [1.0, 1.0], "cpu", torch.float32, 16, 3)
    pointers = set()
    for start, stop, (t, m) in data.chunks():
        torch.testing.assert_close(t, x[start:stop].reshape(stop - start, -1))
        assert m.data_ptr() == blocks["m"].data[start].data_ptr()  # the contiguous one: views
        pointers.add(t.data_ptr())
    assert len(pointers) == 1
    params = dict(rank=3, tol=-1, max_iter=5, random_state=0, batch_size=16)
    strided = CoupledCP(**params).fit(blocks)
    dense = CoupledCP(**params).fit(Blocks([Block("t", x.contiguous()), blocks["m"]]))
    np.testing.assert_array_equal(strided.A_, dense.A_)


def test_column_buffers_are_contiguous_per_batch_views_of_one_buffer():
    """``columns``: a ``(width, rows)`` contiguous view per batch (the last one short), all in
    one buffer, the same list on the next call."""
    data = BatchedData(Blocks([Block("m", torch.rand(50, 5))]), [1.0], "cpu", torch.float32,
                       16, 3)
    views = data.columns("w", 3)
    assert [tuple(v.shape) for v in views] == [(3, 16), (3, 16), (3, 16), (3, 2)]
    assert all(v.is_contiguous() for v in views)
    assert len({v.untyped_storage().data_ptr() for v in views}) == 1
    assert data.columns("w", 3) is views
    assert data.columns("w", 4)[0].shape == (4, 16)  # another width: a new buffer
