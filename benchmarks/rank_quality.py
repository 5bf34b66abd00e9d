"""Is the rank of the joint factorization a label-free training-quality indicator, out of sample?

The protocol of issue 14, on the three checkpoint zoos of ``rank_zoos.py`` (LeNet-5 on MNIST,
DigitsCNN on the bundled digits, a BatchNorm CNN on MNIST; each trained on one part of its
dataset and captured on a held-out part):

1. Measure. Every checkpoint goes through :func:`peekwidgets.analysis.compare_checkpoints`
   with the package's defaults (``max_rank=30``), which gives the paper's indicator ``score``
   and the label-free baselines (components holding 95% of the logits' uncentered energy,
   RankMe of the penultimate block, the first component's share). The same held-out capture
   gives the candidates below. Held-out accuracy only validates; no criterion sees a label.
2. Choose. Each candidate family has free settings (a threshold, a rank, centering, how the
   blocks are summarized across depth, and the sign). They are chosen on the LeNet-5 zoo only,
   by the mean of two Spearman correlations with held-out accuracy there: all clean checkpoints
   pooled over seeds, and the trained ones (clean, at least one epoch) pooled.
3. Score. The chosen settings, unchanged, on the digits and BatchNorm zoos, which played no
   part in the choice. A candidate would replace the package's default only if it beats the
   logits baseline there, on both the clean and the trained checkpoints.

Candidates: the score at other thresholds; the integer rank; the score of centered blocks;
each block's effective rank (RankMe of the block) summarized across depth, by its mean (log)
or its trend (least-squares slope against depth); and each layer's own structure, the share
of its best rank-R fit that the components it shares with the input do not explain,
``1 - fit of the layer in the joint (input, layer) model / fit of the layer alone``, mean or
trend across depth. Spearman figures are reported pooled and per seed, for the clean
checkpoints, the trained ones and the whole zoo (degraded nets included).

Measurements are cached next to the trained zoos (``.cache/rank_quality/<zoo>/``), so a rerun
only prints; delete that folder to recompute. ``--quick`` runs smaller zoos (two seeds, up to
3 epochs, fewer images) through the same protocol. The last four lines are
``insample_clean_spearman=``, ``outofsample_clean_spearman=``,
``outofsample_trained_spearman=`` (the default score) and ``outofsample_baseline_best=``
(the best baseline against the default score, on the same checkpoints).

Usage: python benchmarks/rank_quality.py [--data ../shared/data/mnist] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rank_zoos import CACHE, DATA, FITTED, build, zoos
from scipy.stats import spearmanr

from peekwidgets.analysis import (
    DEFAULT_THRESHOLD,
    ENERGY_SHARE,
    compare_checkpoints,
    estimate_rank,
    rank_profile,
    rankme,
)
from peekwidgets.capture import capture

#: Largest rank of the profiles (thresholds down to 0.5% need about 20).
MAX_RANK = 30
#: Largest rank of the (input, layer) and layer-alone fits of the own-structure candidate.
PAIR_RANK = 20
#: Bump when the measurements change, so cached ones are recomputed.
MEASURES_VERSION = 1
THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.08)
PAIR_RANKS = (2, 5, 10, 20)
SUBSETS = ("clean", "trained", "zoo")


# --- measurements ------------------------------------------------------------------------------

def measure(zoo, checkpoints, x, y, progress=True) -> list[dict]:
    """One row per checkpoint: its metadata, held-out accuracy, the default criteria of
    ``compare_checkpoints``, and (zoo members only) what the candidates are computed from."""
    hx, hy = zoo.held_out(x, y)
    comparison = compare_checkpoints(
        zoo.model, [c["state_dict"] for c in checkpoints], hx, labels=hy,
        names=[c["name"] for c in checkpoints], max_rank=MAX_RANK, progress=progress)
    model = zoo.model()
    layers = [n for n in comparison.layers if n != "input"]
    rows = []
    for c, record in zip(checkpoints, comparison.records()):
        row = {k: v for k, v in c.items() if k != "state_dict"}
        row.update({k: record[k] for k in ("accuracy", "score", "estimated_rank", "gain",
                                           "logits_energy_rank", "rankme", "first_share")})
        rows.append(row)
        if not c["member"]:
            continue  # a snapshot that traces a run: the default criteria are enough
        model.load_state_dict(c["state_dict"])
        model.eval()
        blocks = capture(model, hx, layers, progress=False)
        row["centered_gain"] = rank_profile(blocks, MAX_RANK, center=True, progress=False).gain
        row["effective_rank"] = np.array([rankme(blocks[n]) for n in layers])
        for center in (False, True):
            own = [rank_profile(blocks.select([n]), PAIR_RANK, center=center,
                                progress=False).fit for n in layers]
            shared = [rank_profile(blocks.select(["input", n]), PAIR_RANK, center=center,
                                   progress=False).block(n) for n in layers]
            row[f"own {center}"], row[f"shared {center}"] = np.stack(own), np.stack(shared)
        row["layers"] = layers
    return rows


def measured(zoo, data_root, cache: Path, progress=True, log=print) -> list[dict]:
    """The rows of ``zoo``, measured or read from the cache."""
    key = json.dumps([dataclasses.asdict(zoo), MAX_RANK, PAIR_RANK, MEASURES_VERSION],
                     sort_keys=True, default=lambda v: getattr(v, "__name__", str(v)))
    path = cache / zoo.name / f"measures-{hashlib.sha1(key.encode()).hexdigest()[:10]}.pt"
    t0 = time.perf_counter()
    checkpoints = build(zoo, data_root, cache, log=log)
    if path.exists():
        return torch.load(path, weights_only=False)
    x, y = zoo.load(data_root)
    t1 = time.perf_counter()
    rows = measure(zoo, checkpoints, x, y, progress)
    log(f"{zoo.name}: training/cache {t1 - t0:.0f} s, measured {len(rows)} checkpoints in "
        f"{time.perf_counter() - t1:.0f} s")
    torch.save(rows, path)
    return rows


# --- criteria ----------------------------------------------------------------------------------

def across_depth(values: np.ndarray, how: str) -> float:
    """``values`` of the layer blocks (in forward order) summarized: mean, or trend (slope)."""
    if how == "mean":
        return float(np.mean(values))
    return float(np.polyfit(np.arange(len(values)), values, 1)[0])


def score_at(row, threshold, center=False) -> float:
    return estimate_rank(row["centered_gain" if center else "gain"], threshold)[1]


def integer_rank(row, threshold) -> float:
    return float(estimate_rank(row["gain"], threshold)[0])


def effective_rank(row, how) -> float:
    return across_depth(np.log(row["effective_rank"]), how)


def own_structure(row, rank, center, how) -> float:
    own, shared = row[f"own {center}"][:, rank - 1], row[f"shared {center}"][:, rank - 1]
    return across_depth(1.0 - shared / own, how)


#: Candidate families: (label, function of (row, *setting), settings, setting names).
FAMILIES = [
    ("score", score_at, [(t,) for t in THRESHOLDS], ("threshold",)),
    ("integer rank", integer_rank, [(t,) for t in THRESHOLDS], ("threshold",)),
    ("centered score", lambda r, t: score_at(r, t, True), [(t,) for t in THRESHOLDS],
     ("threshold",)),
    ("effective rank per block", effective_rank, [("mean",), ("trend",)], ("across depth",)),
    ("own structure per layer", own_structure,
     list(itertools.product(PAIR_RANKS, (False, True), ("mean", "trend"))),
     ("R", "centered", "across depth")),
]
DEFAULT = f"score (package default, {DEFAULT_THRESHOLD:.0%})"
BASELINES = {
    f"logits: comps for {ENERGY_SHARE:.0%} energy": lambda r: r["logits_energy_rank"],
    "RankMe of the penultimate block": lambda r: r["rankme"],
    "minus first component's share": lambda r: -r["first_share"],
}
LOGITS, _, SHARE = BASELINES
STEPS = "reference: training steps"


def spearman(values, accuracy) -> float:
    values, accuracy = np.asarray(values, float), np.asarray(accuracy, float)
    if len(values) < 2 or np.isnan(values).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant column: NaN, as it should be
        return float(spearmanr(values, accuracy).statistic)


class Zoo:
    """A zoo's member rows (the trajectory snapshots left out) and their subsets."""

    def __init__(self, zoo, rows):
        self.zoo, self.all_rows = zoo, rows
        self.rows = [r for r in rows if r["member"]]
        self.accuracy = np.array([r["accuracy"] for r in self.rows])
        clean = np.array([r["kind"] == "clean" for r in self.rows])
        trained = clean & np.array([r["epoch"] >= 1 for r in self.rows])
        seed = np.array([r["seed"] for r in self.rows])
        self.seeds = sorted(set(seed[clean]))
        self.masks = {"clean": clean, "trained": trained, "zoo": np.ones(len(clean), bool)}
        for s in self.seeds:
            self.masks[f"clean s{s}"] = clean & (seed == s)
            self.masks[f"trained s{s}"] = trained & (seed == s)

    def values(self, criterion) -> np.ndarray:
        return np.array([criterion(r) for r in self.rows], dtype=float)

    def figures(self, criterion) -> dict[str, float]:
        """Spearman with held-out accuracy of every subset (``masks``)."""
        v = self.values(criterion)
        return {k: spearman(v[m], self.accuracy[m]) for k, m in self.masks.items()}


def objective(figures) -> float:
    """What the settings are chosen by: mean of the clean and the trained Spearman (a
    criterion that is constant on a subset orders none of it: 0)."""
    return float(np.nan_to_num(figures["clean"]) + np.nan_to_num(figures["trained"])) / 2


def _mean(values) -> float:
    """Mean over zoos, a constant criterion's NaN counted as 0; NaN where all are NaN."""
    values = np.asarray(values, float)
    return float("nan") if np.isnan(values).all() else float(np.mean(np.nan_to_num(values)))


def choose(family, insample: Zoo):
    """The setting and sign of ``family`` with the best in-sample objective (first on ties).
    Returns ``(label, criterion)``."""
    label, fn, settings, names = family
    best = None
    for setting, sign in itertools.product(settings, (1, -1)):
        def criterion(r, setting=setting, sign=sign):
            return sign * fn(r, *setting)
        score = objective(insample.figures(criterion))
        if best is None or score > best[0] + 1e-12:
            text = ", ".join(f"{n} {v:g}" if isinstance(v, float) else f"{n} {v}"
                             for n, v in zip(names, setting))
            best = (score, f"{label} [{text}{', negated' if sign < 0 else ''}]", criterion)
    return best[1], best[2]


# --- report ------------------------------------------------------------------------------------

def _f(v) -> str:
    return "   nan" if np.isnan(v) else f"{v:+6.2f}"


def table(criteria: dict, zoo_sets: list[Zoo]):
    """Pooled Spearman per zoo; in-sample (the first zoo) and out-of-sample columns apart,
    and the mean of the out-of-sample zoos. Returns ``{criterion: {zoo or "oos": figures}}``."""
    results = {}
    for name, criterion in criteria.items():
        res = {z.zoo.name: z.figures(criterion) for z in zoo_sets}
        if name == STEPS:
            for figs in res.values():
                figs["zoo"] = float("nan")  # steps of different recipes do not compare
        res["oos"] = {k: _mean([res[z.zoo.name][k] for z in zoo_sets[1:]]) for k in SUBSETS}
        results[name] = res
    width = max(map(len, criteria)) + 1
    groups = [f"IN-SAMPLE: {zoo_sets[0].zoo.name}"] + [f"OUT: {z.zoo.name}"
                                                        for z in zoo_sets[1:]]
    print(f"{'':<{width}}" + "".join(f"| {g[:20]:<20}" for g in groups) + "| out-of-sample mean")
    print(f"{'criterion':<{width}}" + "| clean  train    zoo " * (len(zoo_sets) + 1))
    for name, res in results.items():
        cells = ["".join(_f(res[z][k]) + " " for k in SUBSETS)
                 for z in [z.zoo.name for z in zoo_sets] + ["oos"]]
        print(f"{name:<{width}}" + "".join(f"|{c}" for c in cells))
    return results


def per_seed(criteria: dict, results: dict, zoo_sets: list[Zoo]):
    width = max(map(len, criteria)) + 1
    print(f"{'criterion':<{width}}" + "".join(
        f"| {z.zoo.name + ': clean / trained, per seed':<44}" for z in zoo_sets))
    for name in criteria:
        cells = []
        for z in zoo_sets:
            figs = results[name][z.zoo.name]
            clean = " ".join(_f(figs[f"clean s{s}"]) for s in z.seeds)
            trained = " ".join(_f(figs[f"trained s{s}"]) for s in z.seeds)
            cells.append(f"{clean} / {trained}")
        print(f"{name:<{width}}" + "".join(f"| {c:<44}" for c in cells))


def checkpoint_table(z: Zoo, extra: tuple):
    """Per checkpoint: accuracy, train accuracy (degraded nets), the default criteria and the
    chosen candidate ``extra = (label, criterion)``."""
    print(f"\n{z.zoo.title}: trained on samples 0..{z.zoo.n_train - 1}, captured and scored on "
          f"samples {z.zoo.n_train}..{z.zoo.n_train + z.zoo.n_held - 1}; blocks "
          f"{z.rows[0]['layers']} and the input")
    print(f"{'checkpoint':<16} {'kind':<13} {'acc':>5} {'train':>5} {'rank':>4} {'score':>5} "
          f"{'log95':>5} {'RankMe':>6} {'share1':>6} {'c-score':>7} {'chosen':>7}")
    for r in z.rows:
        train = "" if r["train_accuracy"] is None else f"{r['train_accuracy']:.2f}"
        print(f"{r['name']:<16} {r['kind']:<13} {r['accuracy']:5.3f} {train:>5} "
              f"{r['estimated_rank']:>4} {r['score']:5.2f} {r['logits_energy_rank']:>5.0f} "
              f"{r['rankme']:6.2f} {r['first_share']:6.3f} "
              f"{score_at(r, DEFAULT_THRESHOLD, True):7.2f} {extra[1](r):7.3f}")
    print(f"(c-score: score of centered blocks at {DEFAULT_THRESHOLD:.0%}; chosen: {extra[0]})")


def memorization(z: Zoo):
    """The random-label run along its training, and where its fitted net stands."""
    trace = [r for r in z.all_rows if r["kind"] == "random labels"]
    clean = [r for r in z.rows if r["kind"] == "clean"]
    print(f"\n{z.zoo.title}, random labels ({trace[0]['run']}; the zoo member is the first "
          f"state with train accuracy >= {FITTED:.0%}, marked *):")
    print(f"{'epoch':>6} {'train':>5} {'acc':>5} {'score':>5} {'log95':>5} {'RankMe':>6}")
    for r in trace:
        print(f"{r['epoch']:6.0f} {r['train_accuracy']:5.2f} {r['accuracy']:5.3f} "
              f"{r['score']:5.2f} {r['logits_energy_rank']:5.0f} {r['rankme']:6.2f}"
              f"{' *' if r['member'] else ''}")
    fitted = next(r for r in trace if r["member"])
    for key, what in (("score", "score"), ("logits_energy_rank", "log95"), ("rankme", "RankMe")):
        higher = sum(c[key] > fitted[key] for c in clean)
        print(f"  {what}: {higher} of {len(clean)} clean checkpoints above the fitted "
              f"random-label net (clean max {max(c[key] for c in clean):.2f})")


def identifiable(zoo, checkpoints, x, y, n_samples, max_rank=4):
    """CP diagnostics (tensor blocks kept as CP) of the first and last clean checkpoint of the
    first seed, on the first ``n_samples`` held-out images."""
    inputs = zoo.held_out(x, y)[0][:n_samples]
    first = [c for c in checkpoints if c["run"] == zoo.runs[0].name]
    model = zoo.model()
    for c in (first[0], first[-1]):
        model.load_state_dict(c["state_dict"])
        model.eval()
        p = rank_profile(capture(model, inputs, progress=False), max_rank, model="cp",
                         n_restarts=2, max_iter=300, tol=1e-6, progress=False)
        print(f"\nCP diagnostics, {zoo.title} {c['name']}, {n_samples} samples (2 restarts per R)")
        print(f"{'R':>3} {'cp fit':>7} {'stability':>9} {'split-half':>10} {'converged':>9} "
              + " ".join(f"{'CC ' + n:>12}" for n in p.core_consistency))
        for i in range(max_rank):
            print(f"{i + 1:>3} {p.model_fit[i]:7.3f} {p.stability[i]:9.3f} "
                  f"{p.split_half[i]:10.3f} {p.converged[i]:9.2f} "
                  + " ".join(f"{v[i]:12.1f}" for v in p.core_consistency.values()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA), help="folder of the MNIST IDX files")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--quick", action="store_true",
                   help="smaller zoos (two seeds, up to 3 epochs, fewer images)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--identifiable", type=int, default=0, metavar="N",
                   help="also run the CP diagnostics (restarts, split-half, core consistency) "
                        "up to R=4 on N held-out images of the first and last clean checkpoint "
                        "of the first LeNet-5 seed (about a minute each for N=500)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    zoo_sets = [Zoo(zoo, measured(zoo, args.data, Path(args.cache), not args.no_progress))
                for zoo in zoos(args.quick)]
    insample = zoo_sets[0]

    chosen = {}
    for family in FAMILIES:
        label, criterion = choose(family, insample)
        chosen[label] = criterion
    criteria = {DEFAULT: lambda r: r["score"], **chosen, **BASELINES,
                STEPS: lambda r: r["step"]}
    print("\nZoos: " + "; ".join(f"{z.zoo.name} = {z.zoo.title}, {len(z.rows)} checkpoints "
                                 f"({z.masks['clean'].sum()} clean, {z.masks['trained'].sum()} "
                                 f"trained)" for z in zoo_sets))
    print(f"Spearman with held-out accuracy (positive: the criterion ranks like accuracy). "
          f"Settings in [ ] were chosen on {insample.zoo.name} only, by the mean of its clean "
          f"and trained figures; the other zoos played no part. clean: every clean "
          f"checkpoint, seeds pooled; train: clean checkpoints of >= 1 epoch; zoo: all, "
          f"degraded nets included. nan: the criterion is constant there (it orders none of "
          f"them; 0 in the means).")
    results = table(criteria, zoo_sets)
    print("\nPer seed:")
    per_seed(criteria, results, zoo_sets)

    print("\nThe score's threshold (not chosen; every threshold, for the record):")
    table({f"score, threshold {t:g}": lambda r, t=t: score_at(r, t) for t in THRESHOLDS},
          zoo_sets)

    best = max(chosen, key=lambda n: objective(results[n][insample.zoo.name]))
    oos = results[best]["oos"]
    beats = all(oos[k] > results[LOGITS]["oos"][k] for k in ("clean", "trained"))
    print(f"\nBest candidate in sample: {best}: out of sample clean {_f(oos['clean'])}, "
          f"trained {_f(oos['trained'])}, against the logits baseline "
          f"{_f(results[LOGITS]['oos']['clean'])}, {_f(results[LOGITS]['oos']['trained'])}: "
          + ("it beats the baseline." if beats else "it does not beat the baseline."))

    for z in zoo_sets:
        checkpoint_table(z, (best, chosen[best]))
    for z in zoo_sets:
        memorization(z)
    if args.identifiable:
        zoo = insample.zoo
        identifiable(zoo, build(zoo, args.data, Path(args.cache)), *zoo.load(args.data),
                     args.identifiable)
    mean_effect = [spearman(z.values(BASELINES[SHARE]), z.values(criteria[DEFAULT]))
                   for z in zoo_sets]
    print("\nMean effect: Spearman(score, minus first share) over each zoo: " + ", ".join(
        f"{z.zoo.name} {rho:+.3f}" for z, rho in zip(zoo_sets, mean_effect)))
    print(f"total {time.perf_counter() - t0:.0f} s")

    default = results[DEFAULT]
    best_baseline = max(BASELINES, key=lambda n: objective(results[n]["oos"]))
    bb = results[best_baseline]["oos"]
    names = ", ".join(f"{z.zoo.name} {_f(default[z.zoo.name]['clean']).strip()}"
                      for z in zoo_sets[1:])
    print(f"insample_clean_spearman={default[insample.zoo.name]['clean']:+.3f} "
          f"({DEFAULT}, {insample.zoo.title}, {insample.masks['clean'].sum()} checkpoints)")
    print(f"outofsample_clean_spearman={default['oos']['clean']:+.3f} (mean of {names})")
    print(f"outofsample_trained_spearman={default['oos']['trained']:+.3f} (mean of " + ", ".join(
        f"{z.zoo.name} {_f(default[z.zoo.name]['trained']).strip()}" for z in zoo_sets[1:])
        + ")")
    print(f"outofsample_baseline_best=clean {bb['clean']:+.3f} trained {bb['trained']:+.3f} "
          f"({best_baseline}; the default score on the same checkpoints: clean "
          f"{default['oos']['clean']:+.3f} trained {default['oos']['trained']:+.3f})")


if __name__ == "__main__":
    main()
