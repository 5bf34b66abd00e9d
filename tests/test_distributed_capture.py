"""Sharded capture on two gloo processes: the shards, in rank order, are one capture."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from dist_helpers import TinyNet, run_group, tiny_inputs, tiny_model
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from peekwidgets.capture import capture
from peekwidgets.capture.shard import shard_range

pytestmark = pytest.mark.slow  # each test starts two processes

LAYERS = ["relu", "fc"]
#: Too small for the relu map of a shard (pooled), and room for everything.
SMALL, LARGE = "20KB", "1GB"


class Pairs(Dataset):
    """A map-style Dataset that is not a TensorDataset."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _inputs(kind: str):
    x, y = tiny_inputs()
    return {
        "tensor": x,
        "tensor_dataset": TensorDataset(x, y),
        "dataset": Pairs(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=16),
    }[kind]


def _plain(blocks) -> dict:
    """What the tests compare of a capture: every block's values, layout and labels."""
    out = {b.name: (b.data.clone(), b.spatial_shape, b.meta.get("pooled_from"))
           for b in blocks}
    out["labels"] = blocks.labels
    out["thumbnails"] = None if blocks.thumbnails is None else blocks.thumbnails.data.clone()
    return out


def _capture(inputs, budget, **kwargs):
    if not isinstance(inputs, DataLoader):
        kwargs["batch_size"] = 16
    return capture(tiny_model(), inputs, LAYERS, memory_budget=budget, max_positions=16,
                   progress=False, **kwargs)


def _shards(budgets):
    """Each form of inputs captured on this process, with this rank's budget."""
    budget = budgets[dist.get_rank()]
    out = {kind: _plain(_capture(_inputs(kind), budget))
           for kind in ("tensor", "tensor_dataset", "dataset", "loader")}
    x, y = tiny_inputs()
    sampler = DistributedSampler(TensorDataset(x, y), shuffle=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = DataLoader(TensorDataset(x, y), batch_size=16, sampler=sampler)
        out["sampler"] = _plain(_capture(loader, budget))
    out["sampler_warnings"] = [str(w.message) for w in caught]
    mine = x[list(sampler)]
    out["sharded"] = _plain(_capture(mine, budget, sharded=True))
    return out


def _one(budget, kind="tensor_dataset"):
    return _plain(_capture(_inputs(kind), budget))


def _concat(parts, name):
    return torch.cat([p[name][0] for p in parts])


@pytest.mark.parametrize("budgets, reference", [((SMALL, LARGE), SMALL),
                                                ((LARGE, SMALL), LARGE)])
def test_shards_in_rank_order_are_one_capture(budgets, reference):
    ranks = run_group(_shards, budgets)
    one = _one(reference)
    assert [len(r["tensor"]["input"][0]) for r in ranks] == [51, 50]  # 101 split unevenly
    pooled = one["relu"][2]
    assert (pooled is not None) == (reference == SMALL)  # rank 0's budget decides
    for kind in ("tensor", "tensor_dataset", "dataset", "loader"):
        for name in ("input", "relu", "fc"):
            for r in ranks:  # the same layout on every process
                assert r[kind][name][1:] == one[name][1:], (kind, name)
            torch.testing.assert_close(_concat([r[kind] for r in ranks], name), one[name][0],
                                       rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.cat([r[kind]["thumbnails"] for r in ranks]),
                                   one["thumbnails"])
    for kind in ("tensor_dataset", "dataset", "loader"):
        np.testing.assert_array_equal(np.concatenate([r[kind]["labels"] for r in ranks]),
                                      one["labels"])
    assert ranks[0]["tensor"]["labels"] is None


def test_a_distributed_sampler_reads_contiguous_ranges_in_the_data_sets_order():
    ranks = run_group(_shards, (LARGE, LARGE))
    one = _one(LARGE)
    dealt = [list(range(r, 102, 2)) for r in (0, 1)]  # the sampler's: 101 padded with sample 0
    for r, (start, stop) in zip(ranks, [(0, 51), (51, 101)]):
        torch.testing.assert_close(r["sampler"]["fc"][0], one["fc"][0][start:stop])
        np.testing.assert_array_equal(r["sampler"]["labels"], one["labels"][start:stop])
        assert not r["sampler_warnings"]
    n = len(one["fc"][0])
    for r, idx in zip(ranks, dealt):  # sharded=True takes a process's own rows as they are
        torch.testing.assert_close(r["sharded"]["fc"][0], one["fc"][0][[i % n for i in idx]])


def _errors():
    """The errors each process gets for inputs that cannot be sharded."""
    rank = dist.get_rank()
    x, _ = tiny_inputs()
    out = {}
    cases = {
        "generator": lambda: (x[i:i + 8] for i in range(0, 101, 8)),
        "shuffled": lambda: DataLoader(x, batch_size=8, shuffle=True),
        "too_few": lambda: x[:1],
        "shapes": lambda: x if rank == 0 else x[:, :, :10, :10],
        "nan": lambda: torch.where(torch.arange(101)[:, None, None, None] == 60, float("nan"),
                                   x),  # in process 1's rows, 51 to 100
    }
    try:
        torch.manual_seed(rank)  # another model on each process
        capture(TinyNet(), x, LAYERS, progress=False)
        out["weights"] = None
    except ValueError as error:
        out["weights"] = str(error)
    for name, make in cases.items():
        try:
            _capture(make(), LARGE)
            out[name] = None
        except ValueError as error:
            out[name] = str(error)
    return out


def test_inputs_that_cannot_be_sharded_fail_on_every_process():
    ranks = run_group(_errors)
    for errors in ranks:
        assert "cannot split inputs of type generator" in errors["generator"]
        assert "DistributedSampler" in errors["generator"]  # the fix
        assert "shuffles" in errors["shuffled"]
        assert "1 samples cannot be shared by 2 processes" in errors["too_few"]
        assert "process 1 has inputs (3, 10, 10)" in errors["shapes"]
        assert "process 0 has inputs (3, 12, 12)" in errors["shapes"]
        assert "process 1 runs a model with other weights than process 0" in errors["weights"]
    nan = [errors["nan"] for errors in ranks]  # named by its index in the inputs
    assert nan[0] is None and "the input has NaN or Inf values (first at sample 60 (sample 9 " \
        "of process 1))" in nan[1]


def test_shard_range_is_array_split():
    for n in (1, 2, 7, 101, 1000):
        for world in (1, 2, 3, 8):
            if n < world:
                continue
            parts = np.array_split(np.arange(n), world)
            assert [shard_range(n, r, world) for r in range(world)] == [
                (int(p[0]), int(p[-1]) + 1) for p in parts]
