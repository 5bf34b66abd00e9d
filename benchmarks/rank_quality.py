"""Reproduction: is the rank of the joint factorization a label-free training-quality indicator?

Builds a zoo of LeNet-5 checkpoints on MNIST (the official test split of
``--data``: the first 8,000 images train, the last 2,000 are the held-out set
that is captured, factorized and scored): clean runs for each ``--seeds`` seed
(init, a few steps, 1/4, 1, 3 and 10 epochs) and degraded runs (50% label noise,
random labels, tiny training subsets). For every checkpoint it computes the rank
profile (package defaults) and prints the per-checkpoint table, the Spearman
correlation of the indicator score with held-out accuracy (clean runs; whole
zoo; each clean seed) and, in the same run, the same for the baselines (RankMe of
the penultimate layer; components for 95% of the energy of the logits) and for
the centering/scaling variants of the profile. Writes a PNG of the profiles.
``--dataset digits`` runs the same protocol on a second, small zoo (DigitsCNN on
scikit-learn's bundled digits).

Trained checkpoints are cached (``--cache``, default ``.cache/rank_quality`` in
the repository root), so a rerun only recomputes the analysis. Accuracy is
computed for validation only; nothing in the indicator sees a label.

Usage: python benchmarks/rank_quality.py --data ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from peekwidgets.analysis import DEFAULT_THRESHOLD, estimate_rank, rank_profile
from peekwidgets.capture import capture
from peekwidgets.demo.datasets import load_digits, load_mnist
from peekwidgets.demo.models import DigitsCNN, LeNet5, train_classifier

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64


@dataclass
class Setup:
    """One zoo: a dataset split, an architecture and the layers the baselines read."""

    name: str
    model: type
    n_train: int
    n_held: int
    penultimate: str
    logits: str
    few_steps: int
    degraded: list  # (run name, kind, seed, options)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // BATCH)

    @property
    def clean_steps(self) -> dict:
        """Clean trajectory checkpoints: init, a few steps, 1/4, 1, 3 and 10 epochs."""
        e = self.steps_per_epoch
        return {"init": 0, f"{self.few_steps} steps": self.few_steps, "1/4 ep": e // 4,
                "1 ep": e, "3 ep": 3 * e, "10 ep": 10 * e}

    def load(self, data):
        """``(x, y)`` in the fixed order whose first ``n_train`` samples train."""
        if self.name == "mnist":
            return load_mnist(data).tensors
        x, y = load_digits().tensors
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
        return x[perm], y[perm]


SETUPS = {
    # MNIST test split: images 0..7999 train, 8000..9999 are captured and scored.
    "mnist": Setup("mnist", LeNet5, 8000, 2000, "relu4", "fc3", 10, [
        ("noise50 s0", "label noise", 0, {"noise": 0.5, "epochs": 10}),
        ("noise50 s1", "label noise", 1, {"noise": 0.5, "epochs": 10}),
        ("random s0", "random labels", 0, {"noise": 1.0, "epochs": 20}),
        ("subset100 s0", "tiny subset", 0, {"subset": 100, "epochs": 100}),
        ("subset500 s0", "tiny subset", 0, {"subset": 500, "epochs": 30}),
    ]),
    # sklearn's 8x8 digits, shuffled once (seed 0): 1,400 train, 397 are captured and scored.
    "digits": Setup("digits", DigitsCNN, 1400, 397, "relu3", "fc2", 3, [
        ("noise50 s0", "label noise", 0, {"noise": 0.5, "epochs": 30}),
        ("noise50 s1", "label noise", 1, {"noise": 0.5, "epochs": 30}),
        ("random s0", "random labels", 0, {"noise": 1.0, "epochs": 60}),
        ("subset100 s0", "tiny subset", 0, {"subset": 100, "epochs": 100}),
    ]),
}


def _train_run(setup: Setup, kind, seed, opts, x, y):
    """Train one run; returns ``[(checkpoint name, state_dict)]``."""
    torch.manual_seed(seed)
    model = setup.model()
    gen = np.random.default_rng(1000 + seed)
    xs, ys = x[: setup.n_train], y[: setup.n_train].clone()
    if "subset" in opts:
        idx = torch.from_numpy(gen.choice(setup.n_train, opts["subset"], replace=False))
        xs, ys = xs[idx], ys[idx]
    if "noise" in opts:
        flip = torch.from_numpy(gen.random(len(ys)) < opts["noise"])
        ys[flip] = torch.from_numpy(gen.integers(0, 10, int(flip.sum())))
    data = TensorDataset(xs, ys)
    if kind == "clean":
        steps = setup.clean_steps
        cps = train_classifier(model, data, epochs=10, seed=seed,
                               checkpoint_steps=steps.values(), batch_size=BATCH)
        by_step = {c.step: c.state_dict for c in cps}
        return [(label, by_step[s]) for label, s in steps.items()]
    train_classifier(model, data, epochs=opts["epochs"], seed=seed, batch_size=BATCH)
    return [("end", {k: v.clone() for k, v in model.state_dict().items()})]


def build_zoo(setup: Setup, seeds, x, y, cache: Path):
    """The zoo as ``[dict(name, kind, seed, state_dict)]``, trained or read from the cache."""
    cache = cache / setup.name
    cache.mkdir(parents=True, exist_ok=True)
    zoo = []
    runs = [(f"clean s{s}", "clean", s, {}) for s in seeds] + setup.degraded
    for run, kind, seed, opts in runs:
        key = hashlib.sha1(json.dumps([kind, seed, opts, setup.clean_steps, setup.n_train])
                           .encode())
        path = cache / f"{run.replace(' ', '_')}-{key.hexdigest()[:10]}.pt"
        if path.exists():
            states = torch.load(path)
        else:
            t0 = time.perf_counter()
            states = _train_run(setup, kind, seed, opts, x, y)
            torch.save(states, path)
            print(f"trained {run} in {time.perf_counter() - t0:.1f}s -> {path.name}", flush=True)
        for label, state in states:
            name = f"{run.split()[0]} {label} {run.split()[1]}" if kind == "clean" else run
            zoo.append({"name": name, "kind": kind, "seed": seed, "state_dict": state})
    return zoo


def rankme(x: torch.Tensor) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of the normalized singular values."""
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum() + 1e-12
    return float(torch.exp(-(p * torch.log(p)).sum()))


def energy_components(x: torch.Tensor, share=0.95, center=False) -> int:
    """Number of principal components holding ``share`` of the energy of ``x``."""
    x = x.double()
    x = x - x.mean(0) if center else x
    e = torch.linalg.svdvals(x) ** 2
    return int((torch.cumsum(e, 0) / e.sum() < share).sum()) + 1


#: The indicator (package defaults) and the variants that show the effect of centering/scaling.
VARIANTS = {
    "indicator (uncentered, unit-norm blocks)": dict(center=False, normalize=True),
    "centered, unit-norm blocks": dict(center=True, normalize=True),
    "uncentered, raw blocks": dict(center=False, normalize=False),
    "centered, raw blocks": dict(center=True, normalize=False),
}
BASELINES = {
    "RankMe of the penultimate layer": lambda b, s: rankme(b[s.penultimate].data),
    "95%-energy comps of logits": lambda b, s: energy_components(b[s.logits].data),
    "95%-variance comps of logits (centered)": lambda b, s: energy_components(
        b[s.logits].data, center=True),
}


def analyse(setup: Setup, zoo, hx, hy, max_rank, progress=True):
    """Capture every checkpoint on the held-out images; profiles, baselines and accuracy."""
    from tqdm.auto import tqdm

    rows = []
    model = setup.model()
    for c in tqdm(zoo, desc="checkpoints", disable=not progress):
        model.load_state_dict(c["state_dict"])
        model.eval()
        blocks = capture(model, hx, progress=False)
        row = {k: c[k] for k in ("name", "kind", "seed")}
        row["accuracy"] = float(np.mean(blocks[setup.logits].data.argmax(1).numpy() == hy))
        row["profiles"] = {v: rank_profile(blocks, max_rank, progress=False, random_state=0, **kw)
                           for v, kw in VARIANTS.items()}
        row["baselines"] = {name: fn(blocks, setup) for name, fn in BASELINES.items()}
        rows.append(row)
    return rows


def identifiable(setup: Setup, zoo, inputs, max_rank=4):
    """CP diagnostics (tensor blocks kept as CP) of the first and last clean checkpoint."""
    first = [c for c in zoo if c["kind"] == "clean" and c["seed"] == zoo[0]["seed"]]
    model = setup.model()
    for c in (first[0], first[-1]):
        model.load_state_dict(c["state_dict"])
        model.eval()
        blocks = capture(model, inputs, progress=False)
        p = rank_profile(blocks, max_rank, model="cp", n_restarts=2, max_iter=300, tol=1e-6,
                         progress=False)
        print(f"\nCP diagnostics, {c['name']}, {len(inputs)} samples (2 restarts per R)")
        print(f"{'R':>3} {'cp fit':>7} {'stability':>9} {'split-half':>10} {'converged':>9} "
              + " ".join(f"{'CC ' + n:>12}" for n in p.core_consistency))
        for i in range(max_rank):
            print(f"{i + 1:>3} {p.model_fit[i]:7.3f} {p.stability[i]:9.3f} "
                  f"{p.split_half[i]:10.3f} {p.converged[i]:9.2f} "
                  + " ".join(f"{v[i]:12.1f}" for v in p.core_consistency.values()))


def spearman(values, accuracy) -> float:
    from scipy.stats import spearmanr

    values, accuracy = np.asarray(values, float), np.asarray(accuracy, float)
    if np.ptp(values) == 0 or np.ptp(accuracy) == 0:
        return float("nan")
    return float(spearmanr(values, accuracy)[0])


def correlations(rows, values):
    """Spearman with accuracy: clean runs pooled, whole zoo, and each clean seed alone."""
    acc = np.array([r["accuracy"] for r in rows])
    values = np.asarray(values, float)
    clean = np.array([r["kind"] == "clean" for r in rows])
    seeds = sorted({r["seed"] for r in rows if r["kind"] == "clean"})
    per_seed = [spearman(values[clean & (np.array([r["seed"] for r in rows]) == s)],
                         acc[clean & (np.array([r["seed"] for r in rows]) == s)]) for s in seeds]
    return spearman(values[clean], acc[clean]), spearman(values, acc), per_seed


def draw_png(rows, path: Path, max_rank: int, clean_steps: list):
    """Two panels drawn with Pillow: marginal-gain profiles (log scale) by checkpoint, and the
    indicator score against held-out accuracy."""
    from PIL import Image, ImageDraw

    key = next(iter(VARIANTS))
    w, h, pad = 1400, 620, 70
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    panel_w = (w - 3 * pad) // 2
    lo, hi = -3.0, 0.0  # log10 gain range

    def gx(r):
        return pad + (r - 1) / (max_rank - 1) * panel_w

    def gy(g):
        return pad + (hi - np.clip(np.log10(max(g, 1e-9)), lo, hi)) / (hi - lo) * (h - 2 * pad)

    ramp = ["#440154", "#3b528b", "#21918c", "#5ec962", "#a8c520", "#fde725"]
    degraded = {"label noise": "#d62728", "random labels": "#000000", "tiny subset": "#ff7f0e"}

    def colour(r):
        if r["kind"] == "clean":
            return ramp[clean_steps.index(r["name"].split(" ", 1)[1].rsplit(" ", 1)[0])]
        return degraded[r["kind"]]

    d.rectangle([pad, pad, pad + panel_w, h - pad], outline="black")
    for e in range(int(lo), int(hi) + 1):
        y = gy(10.0**e)
        d.line([pad - 5, y, pad, y], fill="black")
        d.text((pad - 45, y - 6), f"1e{e}", fill="black")
    for r in range(1, max_rank + 1, max(1, max_rank // 10)):
        d.text((gx(r) - 4, h - pad + 6), str(r), fill="black")
    yt = gy(DEFAULT_THRESHOLD)
    d.line([pad, yt, pad + panel_w, yt], fill="#999999")
    d.text((pad + panel_w - 120, yt - 14), f"threshold {DEFAULT_THRESHOLD:g}", fill="#666666")
    for r in rows:
        gain = r["profiles"][key].gain
        pts = [(gx(i + 1), gy(g)) for i, g in enumerate(gain)]
        d.line(pts, fill=colour(r), width=2 if r["kind"] == "clean" else 3)
    d.text((pad, pad - 40), "marginal gain in joint fit vs component R (log scale)", fill="black")
    d.text((pad, h - pad + 24), "component R", fill="black")
    legend = [(f"clean: {s}", c) for s, c in zip(clean_steps, ramp)] + list(degraded.items())
    for i, (label, c) in enumerate(legend):
        y = pad + 10 + 16 * i
        d.line([pad + panel_w - 170, y + 6, pad + panel_w - 150, y + 6], fill=c, width=3)
        d.text((pad + panel_w - 145, y), label, fill="black")

    x0 = 2 * pad + panel_w
    d.rectangle([x0, pad, x0 + panel_w, h - pad], outline="black")
    scores = np.array([r["profiles"][key].score for r in rows])
    s_lo, s_hi = float(scores.min()) - 0.5, float(scores.max()) + 0.5
    for r, s in zip(rows, scores):
        x = x0 + r["accuracy"] * panel_w
        y = pad + (s_hi - s) / (s_hi - s_lo) * (h - 2 * pad)
        d.ellipse([x - 5, y - 5, x + 5, y + 5], fill=colour(r), outline="black")
    for a in np.linspace(0, 1, 6):
        d.text((x0 + a * panel_w - 8, h - pad + 6), f"{a:.1f}", fill="black")
    for s in np.arange(np.ceil(s_lo), s_hi, max(1, round((s_hi - s_lo) / 8))):
        y = pad + (s_hi - s) / (s_hi - s_lo) * (h - 2 * pad)
        d.text((x0 - 30, y - 6), f"{s:.0f}", fill="black")
    d.text((x0, pad - 40), "rank score (label-free) vs held-out accuracy", fill="black")
    d.text((x0, h - pad + 24), "held-out accuracy (validation only)", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mnist"),
                   help="folder of the MNIST IDX files")
    p.add_argument("--dataset", choices=list(SETUPS), default="mnist",
                   help="mnist (the reproduction) or digits (a second, small zoo)")
    p.add_argument("--cache", default=str(ROOT / ".cache" / "rank_quality"))
    p.add_argument("--png", help="output PNG (default artifacts/rank_quality_<dataset>.png)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-rank", type=int, default=30)
    p.add_argument("--identifiable", type=int, default=0, metavar="N",
                   help="also run the CP diagnostics (restarts, split-half, core consistency) "
                        "up to R=4 on N held-out samples of the first and last clean checkpoint "
                        "of the first seed (about a minute each for N=500)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    args = p.parse_args(argv)
    if len(args.seeds) < 2:
        p.error("pass at least two --seeds: a single trajectory cannot show seed robustness")
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    setup = SETUPS[args.dataset]
    png = Path(args.png or ROOT / "artifacts" / f"rank_quality_{setup.name}.png")
    x, y = setup.load(args.data)
    zoo = build_zoo(setup, args.seeds, x, y, Path(args.cache))
    t_train = time.perf_counter() - t0
    held = slice(setup.n_train, setup.n_train + setup.n_held)
    rows = analyse(setup, zoo, x[held], y[held].numpy(), args.max_rank)
    key = next(iter(VARIANTS))
    print(f"\n{setup.model.__name__} zoo on {setup.name}: trained on samples "
          f"0..{setup.n_train - 1}, captured and scored on samples {held.start}..{held.stop - 1}; "
          f"blocks = input + auto layers; max_rank={args.max_rank}")
    names = list(BASELINES)
    head = (f"{'checkpoint':<22} {'kind':<14} {'acc':>6} {'rank':>5} {'score':>6} "
            f"{'RankMe':>7} {'E95':>4} {'V95':>4} {'fit@1':>6}")
    print(head)
    for r in rows:
        pr = r["profiles"][key]
        b = [r["baselines"][n] for n in names]
        print(f"{r['name']:<22} {r['kind']:<14} {r['accuracy']:6.3f} "
              f"{pr.estimated_rank:>4}{'+' if pr.saturated else ' '} {pr.score:6.2f} "
              f"{b[0]:7.2f} {b[1]:4d} {b[2]:4d} {pr.fit[0]:6.3f}")

    print("\nSpearman with held-out accuracy (positive = the paper's direction)")
    print(f"{'criterion':<44} {'clean':>7} {'zoo':>7}  per clean seed")
    results = {}
    for v in VARIANTS:
        results[v] = correlations(rows, [r["profiles"][v].score for r in rows])
    results["fit at R=1, negated (mean share)"] = correlations(
        rows, [-r["profiles"][key].fit[0] for r in rows])
    results["estimated rank (integer)"] = correlations(
        rows, [r["profiles"][key].estimated_rank for r in rows])
    for n in names:
        results[n] = correlations(rows, [r["baselines"][n] for r in rows])
    for t in (0.01, 0.02, 0.05):  # sensitivity of the indicator to its threshold
        results[f"indicator with threshold {t:g}"] = correlations(
            rows, [estimate_rank(r["profiles"][key].gain, t)[1] for r in rows])
    for n, (c, z, ps) in results.items():
        print(f"{n:<44} {c:+7.3f} {z:+7.3f}  {' '.join(f'{v:+.2f}' for v in ps)}")

    scores = [r["profiles"][key].score for r in rows]
    mean_share = [-r["profiles"][key].fit[0] for r in rows]
    print(f"\nmean effect: Spearman(score, -fit at R=1) over the zoo = "
          f"{spearman(scores, mean_share):+.3f}")
    clean_rows = [r for r in rows if r["kind"] == "clean"]
    for r in (r for r in rows if r["kind"] == "random labels"):
        for t in (DEFAULT_THRESHOLD, 0.01):
            score = estimate_rank(r["profiles"][key].gain, t)[1]
            clean = [estimate_rank(c["profiles"][key].gain, t)[1] for c in clean_rows]
            print(f"memorization (threshold {t:g}): {r['name']} (accuracy {r['accuracy']:.3f}) "
                  f"scores {score:.2f}; {sum(c > score for c in clean)} of {len(clean)} clean "
                  f"checkpoints score higher (clean max {max(clean):.2f})")
    if args.identifiable:
        identifiable(setup, zoo, x[held][: args.identifiable])
    draw_png(rows, png, args.max_rank, list(setup.clean_steps))
    print(f"\nwrote {png}; training/cache {t_train:.0f}s, total "
          f"{time.perf_counter() - t0:.0f}s")
    clean, zoo_rho, _ = results[key]
    best = max(results[n][0] for n in names)
    print(f"clean_spearman={clean:.3f} zoo_spearman={zoo_rho:.3f} baseline_best_clean={best:.3f}")


if __name__ == "__main__":
    main()
