"""The engine and the rank profile over two processes (torch.distributed, gloo on 127.0.0.1).

Each test spawns two processes that fit their own rows of the same data (37 + 63 samples)
and write what they found to a temporary folder; the parent compares it with one process
fitting all rows. One spawn runs every fit whose results are compared (module fixture).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from peekwidgets import distributed
from peekwidgets.blocks import Block, Blocks
from peekwidgets.engine import CoupledCP, svd

SPLIT = (37, 63)  # rows of process 0 and process 1
RANK = 3
CASES = {  # name -> CoupledCP parameters (all with the default extrapolation)
    "ls64": dict(init="svd", n_init=2, dtype=torch.float64, tol=1e-9, max_iter=300),
    "nn64": dict(nonnegative=True, init="svd", n_init=2, dtype=torch.float64, tol=1e-9,
                 max_iter=300),
    # float32 at fixed sweep counts: the rounding of the products differs with the rows of a
    # batch, and may move the sweep where the relative change falls below tol by one
    "ls32": dict(init="svd", dtype=torch.float32, tol=-1.0, max_iter=60),
    "nn32": dict(nonnegative=True, init="random", n_init=2, dtype=torch.float32, tol=-1.0,
                 max_iter=60),
}
CUDA_CASES = ("ls64", "nn32")  # the fits also compared on GPUs
PLAIN = dict(init="random", dtype=torch.float64, tol=-1.0, max_iter=8, extrapolate=False)
WAIT = 120  # seconds a spawned run may take before the test fails (no hang)


def data(n: int = 100, seed: int = 0) -> dict[str, torch.Tensor]:
    """A nonnegative rank-3 matrix block (n, 12) and tensor block (n, 5, 6), 5% noise."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, RANK, generator=g, dtype=torch.float64)
    b, u, v = (torch.rand(d, RANK, generator=g, dtype=torch.float64) for d in (12, 5, 6))
    x = a @ b.T + 0.05 * torch.rand(n, 12, generator=g, dtype=torch.float64)
    t = torch.einsum("nr,cr,sr->ncs", a, u, v) + 0.05 * torch.rand(n, 5, 6, generator=g,
                                                                  dtype=torch.float64)
    return {"x": x, "t": t}


def rows(rank: int | None) -> slice:
    """Process ``rank``'s rows (all rows for None)."""
    if rank is None:
        return slice(None)
    start = sum(SPLIT[:rank])
    return slice(start, start + SPLIT[rank])


def blocks(rank: int | None = None, **changes) -> Blocks:
    arrays = {**data(), **changes}
    return Blocks([Block(name, x[rows(rank)]) for name, x in arrays.items()])


def fitted(model: CoupledCP) -> dict:
    keys = ("weights_", "A_", "factors_", "fit_", "loss_", "loss_history_", "n_iter_",
            "converged_", "interrupted_", "explained_variance_", "block_shapes_", "n_samples_",
            "row_offset_", "comm_bytes_per_sweep_")
    return {k: getattr(model, k) for k in keys}


# ------------------------------------------------------------------------------ jobs (spawned)
def job_fits(rank: int) -> dict:
    """Every compared fit, transform and profile on this process's rows."""
    import warnings

    from peekwidgets.analysis import rank_profile  # (scipy: imported where needed)

    warnings.simplefilter("ignore")  # fixed counts do not converge
    out, models = {}, {}
    for name, params in CASES.items():
        model = models[name] = CoupledCP(RANK, random_state=0, **params).fit(blocks(rank))
        out[name] = fitted(model)
        out[name]["transform"] = model.transform(blocks(rank))
        out[name]["gathered"] = distributed.gather_rows(model.A_)
    out["seedless"] = fitted(CoupledCP(RANK, random_state=None, **PLAIN).fit(blocks(rank)))
    out["diagnostics"] = diagnostics(models["ls64"], models["nn64"], blocks(rank))
    failed = []  # Cholesky QR that fell back (a rank-2 block, 8 columns in float64)
    qr2 = svd._cholesky_qr2
    svd._cholesky_qr2 = lambda h, reduce: failed.append(q := qr2(h, reduce)) or q
    out["lowrank"] = vars(rank_profile(lowrank(rank), 4, oversample=4, dtype=torch.float64,
                                       progress=False))
    out["lowrank"]["fallbacks"] = sum(q is None for q in failed)
    for n in (40, 80):  # bytes per sweep at two sizes
        local = Blocks([Block(k, x[:n // 2]) for k, x in data(n).items()])
        out[f"plain{n}"] = fitted(CoupledCP(RANK, random_state=0, **PLAIN).fit(local))
    for center in (False, True):
        out[f"profile{center}"] = vars(rank_profile(blocks(rank), 5, center=center,
                                                    progress=False))
    errors = {}
    for what, call in (
        ("rank", lambda: CoupledCP(RANK + rank, **PLAIN).fit(blocks(rank))),
        ("nan", lambda: CoupledCP(RANK, **PLAIN).fit(
            blocks(rank, x=data()["x"].clone().index_fill_(0, torch.tensor([40]), np.nan)))),
        ("model", lambda: rank_profile(blocks(rank), 3, model="nonnegative", progress=False)),
        ("profile", lambda: rank_profile(blocks(rank), 3 + rank, progress=False)),
    ):
        try:
            call()
        except ValueError as e:
            errors[what] = str(e)
    out["errors"] = errors
    return out


def lowrank(rank: int | None = None) -> Blocks:
    """An exactly rank-2 matrix block (100, 12) in float64."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(100, 2, generator=g, dtype=torch.float64) @ torch.rand(
        2, 12, generator=g, dtype=torch.float64)
    return Blocks([Block("x", x[rows(rank)])])


def diagnostics(model: CoupledCP, other: CoupledCP, data: Blocks) -> dict:
    """Core consistency, fit and shares of the scaled blocks, and the match of two models."""
    from peekwidgets.engine.diagnostics import (
        component_explained_variance,
        core_consistency,
        coupled_factor_match_score,
        explained_variance,
    )

    scaled = {b.name: b.data * model.block_scales_[b.name] for b in data}
    cp = {n: (model.weights_, [model.A_, *model.factors_[n]]) for n in scaled}
    match = coupled_factor_match_score(model, other)
    return {"core_consistency": core_consistency(scaled["t"], cp["t"]),
            "fit": explained_variance(scaled["x"], cp["x"]),
            "shares": component_explained_variance(scaled["t"], cp["t"]),
            "match": (match.score, match.per_block, match.permutation)}


def stop_at_three(rank: int, error: type[BaseException]):
    def callback(sweep, loss):
        if rank == 1 and sweep == 3:
            raise error("stop at sweep 3")
    return callback


def ctrl_c_at_three(rank: int):
    def callback(sweep, loss):
        if rank == 1 and sweep == 3:
            os.kill(os.getpid(), signal.SIGINT)
    return callback


def job_interrupt(rank: int) -> dict:
    """A KeyboardInterrupt in the callback, Ctrl-C (SIGINT), and a stop after the last sweep,
    each on process 1 at sweep 3."""
    out = {}
    for name, max_iter, callback in (("callback", 50, stop_at_three(rank, KeyboardInterrupt)),
                                     ("sigint", 50, ctrl_c_at_three(rank)),
                                     ("last", 3, stop_at_three(rank, KeyboardInterrupt))):
        model = CoupledCP(RANK, random_state=0, tol=-1.0, max_iter=max_iter)
        with pytest.warns(RuntimeWarning, match="interrupted"):
            model.fit(blocks(rank), callback=callback)
        out[name] = fitted(model)
    return out


def job_error(rank: int) -> dict:
    model = CoupledCP(RANK, random_state=0, tol=-1.0, max_iter=50)
    return fitted(model.fit(blocks(rank), callback=stop_at_three(rank, ValueError)))


def job_cuda(rank: int) -> dict:
    """Two of the compared fits on blocks on this process's GPU (NCCL: one GPU a process;
    gloo: both may share one)."""
    import warnings

    warnings.simplefilter("ignore")  # fixed counts do not converge
    device = f"cuda:{rank % torch.cuda.device_count()}"
    on_gpu = Blocks([Block(b.name, b.data.to(device)) for b in blocks(rank)])
    out = {}
    for name in CUDA_CASES:
        model = CoupledCP(RANK, random_state=0, **CASES[name]).fit(on_gpu)
        out[name] = fitted(model)
        out[name]["transform"] = model.transform(on_gpu)
        out[name]["gathered"] = distributed.gather_rows(model.A_)
    return out


def _process(rank: int, port: int, folder: str, job: str, backend: str) -> None:
    torch.set_num_threads(1)
    folder = Path(folder)
    try:
        if backend == "nccl":  # one GPU a process, chosen before NCCL starts
            torch.cuda.set_device(rank)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=len(SPLIT), timeout=timedelta(seconds=30))
        result = globals()[f"job_{job}"](rank)
        (folder / f"{rank}.pkl").write_bytes(pickle.dumps(result))
        dist.destroy_process_group()
    except BaseException as e:  # noqa: BLE001 (reported to the parent)
        (folder / f"{rank}.err").write_text(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise SystemExit(1) from None


def spawn(job: str, folder: Path, backend: str = "gloo") -> tuple[list, list, list[int]]:
    """Run ``job`` on two processes; ``(results, errors, exit codes)`` by rank, within WAIT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process, args=(r, port, str(folder), job, backend))
             for r in range(len(SPLIT))]
    for p in procs:
        p.start()
    deadline = time.monotonic() + WAIT
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    assert not hung, f"job {job!r}: processes still running after {WAIT} s"

    def read(r, suffix):
        path = folder / f"{r}.{suffix}"
        return path.read_bytes() if path.exists() else None

    results = [read(r, "pkl") for r in range(len(SPLIT))]
    errors = [read(r, "err") for r in range(len(SPLIT))]
    return ([pickle.loads(b) if b else None for b in results],
            [e.decode() if e else None for e in errors], [p.exitcode for p in procs])


# ------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def two(tmp_path_factory):
    results, errors, codes = spawn("fits", tmp_path_factory.mktemp("fits"))
    assert codes == [0, 0], errors
    return results


def close(a, b, rtol):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_two_processes_fit_as_one(two, name):
    assert_fit_as_one(two[0][name], two[1][name], name)


@pytest.mark.parametrize("backend", [
    pytest.param("gloo", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device")),
    pytest.param("nccl", marks=pytest.mark.skipif(torch.cuda.device_count() < 2,
                                                  reason="NCCL needs a GPU a process")),
])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_two_cuda_processes_fit_as_one_cpu_process(tmp_path, backend):
    results, errors, codes = spawn("cuda", tmp_path, backend)
    assert codes == [0, 0], errors
    for name in CUDA_CASES:
        assert_fit_as_one(results[0][name], results[1][name], name)


def assert_fit_as_one(first: dict, second: dict, name: str) -> None:
    """Two processes' results of fit ``name`` agree with each other, to the bit, and with
    one process fitting all rows on the CPU."""
    params = CASES[name]
    one = CoupledCP(RANK, random_state=0, **params).fit(blocks())
    rtol = 1e-5 if params["dtype"] == torch.float64 else 1e-3
    for key in ("weights_", "factors_", "fit_", "loss_", "n_iter_", "converged_",
                "interrupted_", "loss_history_", "explained_variance_", "block_shapes_",
                "n_samples_"):
        np.testing.assert_equal(first[key], second[key])  # the same on both, to the bit
    for block in one.factors_:
        for f, f1 in zip(first["factors_"][block], one.factors_[block]):
            close(f, f1, rtol)
    close(first["weights_"], one.weights_, rtol)
    assert first["n_iter_"] == one.n_iter_ and first["converged_"] == one.converged_
    assert first["loss_"] == pytest.approx(one.loss_, rel=rtol)
    assert first["fit_"] == pytest.approx(one.fit_, rel=rtol)
    close(first["explained_variance_"], one.explained_variance_, rtol)
    assert first["block_shapes_"] == one.block_shapes_ == {"x": (100, 12), "t": (100, 5, 6)}
    assert (first["row_offset_"], second["row_offset_"]) == (0, SPLIT[0])
    assert first["n_samples_"] == second["n_samples_"] == one.n_samples_ == 100
    a = np.concatenate([first["A_"], second["A_"]])
    close(a, one.A_, rtol)
    np.testing.assert_equal(first["gathered"], a)
    np.testing.assert_equal(second["gathered"], a)
    transform = np.concatenate([first["transform"], second["transform"]])
    close(transform, one.transform(blocks()), rtol)
    close(transform, one.A_, 10 * rtol)  # the training rows give back their rows of A


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # fixed counts
def test_bytes_per_sweep_are_the_reduction_and_do_not_grow_with_the_samples(two):
    sizes = 12 + 5 * 6
    expected = 8 * (RANK * sizes + RANK**2 + 5)  # Y_b of every block, A^T A, five scalars
    for r in range(len(SPLIT)):
        assert two[r]["plain40"]["comm_bytes_per_sweep_"] == expected
        assert two[r]["plain80"]["comm_bytes_per_sweep_"] == expected
    assert CoupledCP(RANK, **PLAIN).fit(blocks()).comm_bytes_per_sweep_ == 0


def test_an_unseeded_fit_starts_alike_on_every_process(two):
    first, second = two[0]["seedless"], two[1]["seedless"]
    np.testing.assert_equal(first["factors_"], second["factors_"])
    assert first["loss_"] == second["loss_"] and first["fit_"]["x"] > 0.9


@pytest.mark.parametrize("center", [False, True])
def test_rank_profile_on_two_processes_equals_one(two, center):
    from peekwidgets.analysis import rank_profile

    one = rank_profile(blocks(), 5, center=center, progress=False)
    for r in range(len(SPLIT)):
        got = two[r][f"profile{center}"]
        assert got["n_samples"] == 100 and got["estimated_rank"] == one.estimated_rank
        for key in ("fit", "gain", "block_fit", "singular_values"):
            close(got[key], getattr(one, key), 1e-4)  # float32 products, summed otherwise
            assert np.array_equal(got[key], two[0][f"profile{center}"][key])


def test_mismatched_processes_raise_clear_errors_everywhere(two):
    first, second = two[0]["errors"], two[1]["errors"]
    assert "process 1 passes other ['rank'] than process 0 ({'rank': '4'} against {'rank': " \
        "'3'})" in first["rank"]
    assert "process 0 passes other ['rank']" in second["rank"]
    assert "process 1 passes other ['max_rank']" in first["profile"]
    assert "NaN or Inf values in 1 of 63 samples of process 1, first in sample 40 (sample 3 " \
        "of process 1)" in second["nan"]
    assert "in the rows of another process" in first["nan"]
    assert "model='nonnegative' is not available under a torch.distributed" in first["model"]


@pytest.mark.slow  # a spawn: about 10 s on the loaded 2-core machine
def test_interrupt_on_one_process_stops_both_at_the_same_sweep(tmp_path):
    results, errors, codes = spawn("interrupt", tmp_path)
    assert codes == [0, 0], errors
    with pytest.warns(RuntimeWarning, match="interrupted after 3 sweeps"):
        one = CoupledCP(RANK, random_state=0, tol=-1.0, max_iter=50).fit(
            blocks(), callback=stop_at_three(1, KeyboardInterrupt))
    for how in ("callback", "sigint", "last"):
        first, second = results[0][how], results[1][how]
        assert first["interrupted_"] and second["interrupted_"], how
        assert not first["converged_"] and first["n_iter_"] == second["n_iter_"] == 3, how
        np.testing.assert_equal(first["factors_"], second["factors_"])
        close(np.concatenate([first["A_"], second["A_"]]), one.A_, 1e-3)
        assert first["loss_"] == pytest.approx(one.loss_, rel=1e-3)


@pytest.mark.slow  # a spawn: about 10 s on the loaded 2-core machine
def test_an_error_on_one_process_ends_the_run_without_a_hang(tmp_path):
    results, errors, codes = spawn("error", tmp_path)  # fails on a hang (WAIT)
    assert codes == [1, 1] and results == [None, None]
    assert errors[1].startswith("ValueError: stop at sweep 3")
    assert errors[0] is not None  # its collective broke when process 1 left


def test_diagnostics_of_two_processes_equal_one(two):
    models = [CoupledCP(RANK, random_state=0, **CASES[n]).fit(blocks()) for n in ("ls64", "nn64")]
    one = diagnostics(*models, blocks())
    for r in range(len(SPLIT)):
        got = two[r]["diagnostics"]
        assert got["core_consistency"] == pytest.approx(one["core_consistency"], rel=1e-6)
        assert got["fit"] == pytest.approx(one["fit"], rel=1e-9)
        close(got["shares"], one["shares"], 1e-6)
        assert got["match"][0] == pytest.approx(one["match"][0], rel=1e-6)
        assert got["match"][1] == pytest.approx(one["match"][1], rel=1e-6)
        np.testing.assert_equal(got["match"][2], one["match"][2])
    assert 0.9 < one["match"][0] < 1  # a real comparison: LS and nonnegative differ a little


def test_rank_deficient_profile_orthonormalizes_by_shifted_cholesky_qr(two):
    from peekwidgets.analysis import rank_profile

    one = rank_profile(lowrank(), 4, oversample=4, dtype=torch.float64, progress=False)
    for r in range(len(SPLIT)):
        got = two[r]["lowrank"]
        assert got["fallbacks"] >= 1  # the Gram matrix of 8 columns of rank 2 has no Cholesky
        close(got["fit"], one.fit, 1e-9)
        np.testing.assert_allclose(got["fit"][1:], 1.0, atol=1e-12)
        close(got["singular_values"][:2], one.singular_values[:2], 1e-9)


def test_without_a_group_the_collectives_are_the_identity():
    x, t = np.arange(6.0).reshape(3, 2), torch.arange(4.0)
    assert not distributed.is_active() and distributed.world_size() == 1
    assert distributed.all_reduce_(t) is t and distributed.gather_rows(x) is x
    assert distributed.row_offset(7) == (0, 7) and distributed.comm_bytes() == 0
    with distributed.deferred_interrupts() as request:
        assert request is None  # Ctrl-C raises as usual
    norms = distributed.block_norms(blocks())
    assert norms == [b.norm() for b in blocks()]
    with pytest.raises(ValueError, match="NaN or Inf values in 1 of 100 samples, first in "
                       "sample 40"):
        distributed.block_norms(blocks(x=data()["x"].index_fill(0, torch.tensor([40]), np.nan)))
