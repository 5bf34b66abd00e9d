"""``peekwidgets analyze``: what --model and --data accept, its errors, and the same numbers on
one process and under ``torchrun --nproc-per-node 2``; a failing or interrupted process ends
the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from dist_helpers import tiny_inputs, tiny_model
from PIL import Image

from peekwidgets import Analysis
from peekwidgets.analyze import BadInput, _input_files, load_data, load_model
from peekwidgets.cli import main
from peekwidgets.report import writer

TESTS = Path(__file__).resolve().parent
ARGS = ["--model", "dist_helpers:tiny_model", "--rank", "2", "--max-rank", "4",
        "--layers", "relu,fc", "--seed", "0"]


def _env(**extra) -> dict:
    path = os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def _command(out: Path, data: Path, *args, processes: int = 1) -> list[str]:
    launch = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node",
               str(processes), "-m"] if processes > 1 else [sys.executable, "-m"])
    return [*launch, "peekwidgets", "analyze", "--data", str(data), "--out", str(out), *args]


def _run(out, data, *args, processes=1, timeout=300):
    return subprocess.run(_command(out, data, *args, processes=processes), env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    x, y = tiny_inputs()
    path = tmp_path_factory.mktemp("data") / "tiny.pt"
    torch.save({"inputs": x, "labels": y}, path)
    return path


def _images(folder: Path, n: int, size=(10, 14)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(n):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")


# -- what --data and --model accept ----------------------------------------------------------
def test_data_forms(tmp_path):
    _images(tmp_path / "classes" / "cat", 2)
    _images(tmp_path / "classes" / "dog", 3)
    folder = load_data(tmp_path / "classes", size=8)
    assert len(folder) == 5 and folder[0][0].shape == (3, 8, 8)
    assert [folder[i][1] for i in range(5)] == [0, 0, 1, 1, 1]  # the subfolders are labels
    _images(tmp_path / "flat", 3)
    flat = load_data(tmp_path / "flat", mean=[0.5] * 3, std=[0.5] * 3)
    raw = np.asarray(Image.open(tmp_path / "flat" / "img1.png"), dtype=np.float32) / 255
    torch.testing.assert_close(flat[1], torch.from_numpy(raw).permute(2, 0, 1) * 2 - 1)
    # a 16-bit grayscale PNG is scaled to 8 bits (PIL's own conversion makes it white), and
    # read so in class folders too
    deep = np.arange(0, 65536, 257, dtype=np.uint16)[:60].reshape(6, 10)
    for folder in (tmp_path / "deep", tmp_path / "deep_classes" / "a"):
        folder.mkdir(parents=True)
        Image.fromarray(deep).save(folder / "deep.png")
    expected = torch.from_numpy(deep / 65535).float().expand(3, 6, 10)
    torch.testing.assert_close(load_data(tmp_path / "deep")[0], expected, atol=1 / 255, rtol=0)
    torch.testing.assert_close(load_data(tmp_path / "deep_classes")[0][0], expected,
                               atol=1 / 255, rtol=0)
    x, y = tiny_inputs(7)
    np.save(tmp_path / "x.npy", x.numpy())
    np.testing.assert_array_equal(load_data(tmp_path / "x.npy"), x.numpy())
    for content in (x, (x, y), {"x": x, "targets": y}):
        torch.save(content, tmp_path / "x.pt")
        loaded = load_data(tmp_path / "x.pt")
        got = loaded if isinstance(loaded, torch.Tensor) else loaded.tensors[0]
        torch.testing.assert_close(got, x)
        if not isinstance(content, torch.Tensor):
            torch.testing.assert_close(loaded.tensors[1], y)


def test_bad_data_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("no data")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "d.pt")
    _images(tmp_path / "mixed", 3)
    _images(tmp_path / "mixed" / "extra", 1)
    for path, message in [(tmp_path / "none", "no such file or folder"),
                          (tmp_path / "empty", "holds no images"),
                          (tmp_path / "notes.txt", "expected a folder of images, a .npy"),
                          (tmp_path / "d.pt", "put the inputs under one of"),
                          (tmp_path / "mixed", r"holds 3 images and the subfolders \['extra'\]"
                           r".*move the images into a subfolder per class")]:
        with pytest.raises(BadInput, match=message):
            load_data(path)


def test_model_spec_and_weights(tmp_path):
    trained = tiny_model()
    with torch.no_grad():
        trained.fc.weight.add_(1.0)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    model = load_model("dist_helpers:tiny_model", tmp_path / "w.pt")
    torch.testing.assert_close(model.fc.weight, trained.fc.weight)
    assert not model.training
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "wrapped.pt")
    load_model("dist_helpers:tiny_model", tmp_path / "wrapped.pt")
    assert type(load_model("torchvision.models:resnet18")).__name__ == "ResNet"
    torch.save({"other": torch.zeros(1)}, tmp_path / "bad.pt")
    torch.save(trained, tmp_path / "pickled.pt")  # the whole model, not its state_dict
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    for spec, weights, message in [
        ("dist_helpers.tiny_model", None, "is not 'package.module:factory'"),
        ("no_such_module:f", None, "cannot import 'no_such_module'"),
        ("dist_helpers:no_factory", None, "has no 'no_factory'"),
        ("dist_helpers:TIMEOUT_S", None, "is a int, not a callable"),
        ("dist_helpers:free_port", None, "returned a int, not a torch.nn.Module"),
        ("dist_helpers:tiny_model", tmp_path / "missing.pt", "no such file"),
        ("dist_helpers:tiny_model", tmp_path / "bad.pt", "does not fit --model"),
        ("dist_helpers:tiny_model", tmp_path / "pickled.pt",
         r"is not a state_dict torch can read \(it holds pickled Python objects, not only "
         r"tensors\); save the weights with torch.save\(model.state_dict\(\), path\)"),
        ("dist_helpers:tiny_model", tmp_path / "garbage.pt", "is not a state_dict"),
    ]:
        with pytest.raises(BadInput, match=message) as info:
            load_model(spec, weights)
        assert "\x1b[" not in str(info.value)  # no terminal colours from torch's message


def test_weights_of_another_architecture_are_summed_up_and_dataparallel_keys_read(tmp_path):
    trained = tiny_model()
    with torch.no_grad():
        trained.fc.weight.add_(1.0)
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, tmp_path / "dp.pt")
    model = load_model("dist_helpers:tiny_model", tmp_path / "dp.pt")  # saved from DataParallel
    torch.testing.assert_close(model.fc.weight, trained.fc.weight)
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "other.pt")
    own = list(tiny_model().state_dict())
    with pytest.raises(BadInput) as info:
        load_model("dist_helpers:tiny_model", tmp_path / "other.pt")
    message = str(info.value)
    assert message.startswith(f"--weights {tmp_path / 'other.pt'} does not fit --model "
                              f"dist_helpers:tiny_model: {len(own)} of the model's tensors "
                              f"are not in the file (first {', '.join(own[:3])})")
    assert message.endswith("pass the weights of this architecture") and len(message) < 400
    wide = tiny_model()
    wide.fc = torch.nn.Linear(wide.fc.in_features, 7)  # same names, other shapes
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(BadInput, match=r"does not fit --model dist_helpers:tiny_model: .*size "
                                       r"mismatch for fc\.weight"):
        load_model("dist_helpers:tiny_model", tmp_path / "wide.pt")


def test_cli_errors_exit_2(capsys, tmp_path, data_file):
    cases = [
        (["--model", "nocolon", "--data", str(data_file)], "is not 'package.module:factory'"),
        (["--model", "dist_helpers:tiny_model", "--data", str(tmp_path)], "holds no images"),
        (["--model", "dist_helpers:tiny_model", "--weights", str(tmp_path / "w.pt"), "--data",
          str(data_file)], "no such file"),
        (["--model", "m:f", "--data", str(data_file), "--mean", "0.5"], "--mean and --std"),
        (["--model", "m:f", "--data", str(data_file), "--mean", "a,b", "--std", "1"],
         "--mean must be comma-separated numbers"),
        # caught before the model runs, in the flags' own words
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--rank", "200"],
         "--rank 200 is larger than the 101 inputs of --data allow; pass --rank 101 or less"),
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--max-rank", "102"],
         "--max-rank 102 is larger than the 101 inputs"),
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--mean", "0.5,0.5",
          "--std", "0.2,0.2"], "--mean and --std have 2 values, but the inputs (101, 3, 12, 12) "
                               "have 3 channels; give 3 values (or one for all)"),
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--mean", "0.5,0.5",
          "--std", "0.2"], "--mean has 2 values and --std 1"),
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--layers", "nope"],
         "nope"),  # the capture's message, without a traceback
        (["--model", "dist_helpers:tiny_model", "--data", str(data_file), "--max-iter", "0"],
         "--max-iter must be at least 1"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as info:
            main(["analyze", "--out", str(tmp_path / "out"), *argv])
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err, err


def test_a_bad_option_under_torchrun_is_said_by_process_0_alone(capsys, tmp_path, data_file,
                                                                 monkeypatch):
    argv = ["analyze", "--out", str(tmp_path / "out"), "--model", "m:f", "--data",
            str(data_file), "--mean", "0.5"]
    for rank, said in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and ("--mean and --std" in err) == said, err


def test_images_the_model_cannot_take_name_the_size(capsys, tmp_path, monkeypatch):
    _images(tmp_path / "sizes" / "a", 2, size=(12, 12))
    _images(tmp_path / "sizes" / "b", 2, size=(16, 20))
    cases = [([], "the images have different sizes"),  # no --size: they cannot be stacked
             (["--size", "16"], "failed on the images of --data")]  # it takes 12 x 12
    for extra, message in cases:
        with pytest.raises(SystemExit) as info:
            main(["analyze", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "sizes"),
                  "--model", "dist_helpers:flat_model", "--rank", "2", "--max-rank", "3",
                  *extra])
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and "--size" in err, err
    drawn, real = [], writer.plot_top_inputs
    monkeypatch.setattr(writer, "plot_top_inputs", lambda view, images, k, labels: (
        drawn.append(list(labels)) or real(view, images, k, labels)))
    assert main(["analyze", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "sizes"),
                 "--model", "dist_helpers:flat_model", "--rank", "2", "--max-rank", "3",
                 "--size", "12"]) == 0
    assert drawn == [["a", "a", "b", "b"]]  # the top inputs are annotated by class name
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    files = ["a/img0.png", "a/img1.png", "b/img0.png", "b/img1.png"]  # what top_inputs index
    assert summary["input_files"] == files and summary["classes"] == ["a", "b"]
    _images(tmp_path / "flat", 2)
    assert _input_files(load_data(tmp_path / "flat"), tmp_path / "flat") == [
        "img0.png", "img1.png"]
    assert _input_files(torch.zeros(3, 2), tmp_path) is None  # inputs from a tensor file


def test_a_corrupt_image_is_named_with_the_fix(capsys, tmp_path):
    _images(tmp_path / "flat", 4)
    good = (tmp_path / "flat" / "img1.png").read_bytes()
    (tmp_path / "flat" / "img2.png").write_bytes(good[: len(good) // 2])  # truncated
    for workers in ("0", "1"):  # read in the main process, and in a DataLoader worker
        with pytest.raises(SystemExit) as info:
            main(["analyze", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "flat"),
                  "--model", "dist_helpers:tiny_model", "--rank", "2", "--max-rank", "2",
                  "--workers", workers])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2, err
        last = err.splitlines()[-1]  # after argparse's usage lines
        assert last.startswith("peekwidgets analyze: error: --data: cannot read the image "), err
        assert last.endswith("img2.png (image file is truncated); remove or replace it"), err
        assert "Traceback" not in err, err


def test_max_iter_and_tol_reach_the_fit(capsys, tmp_path, data_file):
    assert main(["analyze", "--out", str(tmp_path / "out"), "--data", str(data_file), *ARGS,
                 "--max-iter", "3", "--tol", "-1"]) == 0
    fitted = Analysis.load(tmp_path / "out" / "analysis").estimator
    assert (fitted.max_iter, fitted.tol, fitted.n_iter_) == (3, -1.0, 3)


# -- one process and two ---------------------------------------------------------------------
@pytest.mark.slow
def test_torchrun_writes_the_numbers_of_one_process(tmp_path, data_file):
    one = _run(tmp_path / "one", data_file, *ARGS)
    assert one.returncode == 0, one.stderr
    two = _run(tmp_path / "two", data_file, *ARGS, processes=2)
    assert two.returncode == 0, two.stderr
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert b["processes"] == 2 and a["processes"] == 1 and b["n_samples"] == 101
    assert b["blocks"] == a["blocks"] and b["n_iter"] == a["n_iter"]
    assert b["top_inputs"] == a["top_inputs"]
    np.testing.assert_allclose(b["weights"], a["weights"], rtol=1e-3)
    for name in a["fit"]:
        np.testing.assert_allclose(b["fit"][name], a["fit"][name], rtol=1e-5)
    for key in ("fit", "gain"):
        np.testing.assert_allclose(b["rank_profile"][key], a["rank_profile"][key], rtol=1e-5)
    assert b["rank_profile"]["estimated_rank"] == a["rank_profile"]["estimated_rank"]
    za, zb = (np.load(tmp_path / d / "factors.npz") for d in ("one", "two"))
    for key in za.files:
        if key != "meta":
            scale = np.abs(za[key]).max()
            np.testing.assert_allclose(zb[key], za[key], atol=3e-3 * scale, err_msg=key)
    # the saved analysis opens without the model, with all the samples in order
    saved_one, saved_two = (Analysis.load(tmp_path / d / "analysis") for d in ("one", "two"))
    assert saved_two.n_samples == 101 and saved_two.sample_index is None
    np.testing.assert_array_equal(saved_two.labels, saved_one.labels)
    np.testing.assert_array_equal(saved_two.view.predictions, saved_one.view.predictions)
    np.testing.assert_array_equal(saved_two.view.input_rows(range(101)),
                                  saved_one.view.input_rows(range(101)))


@pytest.mark.slow
def test_a_process_that_fails_ends_the_run(tmp_path, data_file):
    args = [a if a != "dist_helpers:tiny_model" else "dist_helpers:failing_on_rank_1"
            for a in ARGS]
    run = _run(tmp_path / "out", data_file, *args, "--timeout", "30", processes=2,
               timeout=180)
    assert run.returncode != 0
    root = (run.stderr + run.stdout).split("Root Cause (first observed failure)")[1]
    assert "rank      : 1" in root and "the model factory failed on rank 1 on purpose" in root
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.slow
def test_processes_that_build_other_weights_are_refused(tmp_path, data_file):
    args = [a if a != "dist_helpers:tiny_model" else "dist_helpers:differing_by_rank"
            for a in ARGS]
    run = _run(tmp_path / "out", data_file, *args, processes=2, timeout=180)
    assert run.returncode != 0
    assert "process 1 runs a model with other weights than process 0" in run.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_every_process(tmp_path, data_file):
    pids = tmp_path / "pids"
    pids.mkdir()
    args = [a if a != "dist_helpers:tiny_model" else "dist_helpers:slow_model" for a in ARGS]
    run = subprocess.Popen(_command(tmp_path / "out", data_file, *args, "--batch-size", "4",
                                    processes=2),
                           env=_env(PEEK_TEST_PIDS=str(pids)), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in pids.glob("*.pid")]
        assert len(workers) == 2, run.communicate(timeout=60)[0]
        run.send_signal(signal.SIGINT)
        code = run.wait(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
    assert code != 0
    for pid in workers:  # no worker outlives the run
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.slow
def test_torchrun_reads_an_image_folder_as_one_process(tmp_path):
    for name, n in (("ants", 9), ("bees", 8)):
        _images(tmp_path / "images" / name, n, size=(14, 16))
    args = [*ARGS, "--size", "12", "--batch-size", "4"]
    one = _run(tmp_path / "one", tmp_path / "images", *args, "--workers", "0")
    assert one.returncode == 0, one.stderr
    two = _run(tmp_path / "two", tmp_path / "images", *args, "--workers", "1", processes=2)
    assert two.returncode == 0, two.stderr
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert a["classes"] == b["classes"] == ["ants", "bees"] and b["n_samples"] == 17
    np.testing.assert_allclose(b["rank_profile"]["fit"], a["rank_profile"]["fit"], rtol=1e-5)
    saved = Analysis.load(tmp_path / "two" / "analysis")
    np.testing.assert_array_equal(saved.labels, [0] * 9 + [1] * 8)
    # the same fit: loadings equal to float32 rounding (the block norms are summed over other
    # batches), so the top inputs are the same but for near-ties
    alone = Analysis.load(tmp_path / "one" / "analysis")
    np.testing.assert_allclose(saved.view.A, alone.view.A, rtol=1e-3, atol=1e-5)
    for key, top in a["top_inputs"].items():
        assert sorted(b["top_inputs"][key]) == sorted(top)
