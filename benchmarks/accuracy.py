"""Inference accuracy of CMOT on the paper's real-data tasks, against two baselines.

    .venv/bin/python benchmarks/accuracy.py                       # all tasks
    .venv/bin/python benchmarks/accuracy.py --datasets pancancer,a549 --out benchmarks/results/accuracy.md

For each task (see ``_data.py``) and method it prints one row:

- method: ``cmot default`` (``CMOT(random_state=seed)``), ``cmot paper`` (the
  paper's parameters for the task), ``naive kNN`` (mean X of the 30 nearest
  training cells in a 30-component TruncatedSVD of Y), ``training mean``.
  Both CMOT runs get the task's OT labels (a549: treatment time) or none
  (Ward clusters).
- cell r mean / median: Pearson r of each test cell across the X features.
- feat r mean: Pearson r of each X feature across test cells, mean over the
  features where it is defined (nan for the training mean: constant prediction).
- AUROC (ATAC from RNA only): per peak, inferred values min-max normalized per
  peak against the measured binary peak, mean over peaks with both classes in
  the test cells; ``AUROC@0.5`` cuts the normalized values at 0.5 first (paper).
- outl %: share of test cells CMOT flags as poorly mapped (``outliers_``).
- OT iters: Sinkhorn iterations CMOT ran (``n_iter_``; 2000 = the limit of
  10 majorization x 200 inner steps, i.e. not converged to ``tol``).
- s: wall seconds of fit + predict (in a forked child).
- with ``--seeds 0,1,2`` every number is the mean over the splits.
- MB: the child's peak resident memory during the call minus its resident
  memory when the call began (extra memory needed on top of the loaded data).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
from _common import (  # noqa: E402
    add_run_args,
    emit,
    limit_threads,
    fmt, machine_note, markdown_table, measured, nanmean, nanmedian,
    peakwise_auroc,
)
from cmot.metrics import cellwise_pearson, featurewise_pearson  # noqa: E402

METHODS = ("cmot default", "cmot paper", "naive kNN", "training mean")

#: numbers the paper reports for each task (for orientation; not the same preprocessing everywhere).
PAPER = {
    "pancancer_rna_from_atac": "paper: mean cell-wise r 0.67 (CMOT), 0.63 (Seurat), 0.47 (MOFA+)",
    "pancancer_atac_from_rna": "paper: peak-wise AUROC of binarized inferred peaks, CMOT > Seurat, MOFA+ (Fig. 5E)",
    "a549_rna_from_atac": "paper: mean cell-wise r 0.52 (CMOT), median 0.50 (Seurat)",
    "a549_top_total_rna": "issue, split seed 0: reference code 0.541, training mean 0.542",
    "pbmc10k_protein_from_rna": "paper: median cell-wise r 0.86 (CMOT), 0.79 (MOFA+), 0.61 (totalVI)",
    "pbmc10k_to_pbmc5k": "paper: median cell-wise r 0.86 (CMOT), 0.79 (MOFA+), 0.61 (totalVI)",
}


def _cmot(task, params, seed):
    from cmot import CMOT

    warnings.simplefilter("ignore")
    model = CMOT(**params, random_state=seed)
    pred = model.fit(task.train_x, task.train_y, labels=task.labels_for_ot).predict(task.test_y)
    return np.asarray(pred), np.asarray(model.outliers_, dtype=bool), {"OT iters": int(model.n_iter_)}


def _knn(task):
    return _data.naive_knn(task.train_x, task.train_y, task.test_y), None, {}


def _mean(task):
    return _data.training_mean(task.train_x, task.test_x.shape[0]), None, {}


def run_method(task, method, seed, timeout):
    if method == "cmot default":
        return measured(_cmot, task, {}, seed, timeout=timeout)
    if method == "cmot paper":
        return measured(_cmot, task, task.paper_params, seed, timeout=timeout)
    if method == "naive kNN":
        return measured(_knn, task, timeout=timeout)
    if method == "training mean":
        return measured(_mean, task, timeout=timeout)
    raise ValueError(method)


def score(task, pred, outliers):
    cell = cellwise_pearson(task.test_x, pred)
    feat = featurewise_pearson(task.test_x, pred)
    row = {
        "cell r mean": nanmean(cell),
        "cell r median": nanmedian(cell),
        "feat r mean": nanmean(feat),
        "outl %": None if outliers is None else 100.0 * float(np.mean(outliers)),
    }
    if task.x_binary:
        row["AUROC"] = nanmean(peakwise_auroc(pred, task.test_x))
        row["AUROC@0.5"] = nanmean(peakwise_auroc(pred, task.test_x, binarize_at=0.5))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="all", help="comma-separated task names or prefixes "
                    f"({', '.join(_data.TASKS)}); default all")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--seeds", default="0", help="comma-separated split/CMOT seeds (default 0); with several, "
                    "each cell is the mean over seeds and cell r mean shows +- the sd across seeds")
    add_run_args(ap, timeout_help="seconds allowed per method run (default 1800)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    names = _data.resolve_names(args.datasets)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; expected some of {', '.join(METHODS)}")

    keys = ["cell r mean", "cell r median", "feat r mean", "AUROC", "AUROC@0.5", "outl %", "OT iters", "s", "MB"]
    header = ["dataset", "direction", "method"] + keys
    rows, notes = [], []
    for name in names:
        results = {m: [] for m in methods}
        failures = {}
        for seed in seeds:
            task = _data.load(name, seed=seed)
            print(f"# {task} seed {seed}  [{task.description}]", flush=True)
            for method in methods:
                res = run_method(task, method, seed, args.timeout)
                if res["error"]:
                    print(f"  {method}: FAILED: {res['error']}", flush=True)
                    if res.get("traceback"):
                        print(res["traceback"], file=sys.stderr)
                    failures[method] = res["error"]
                    continue
                pred, outl, info = res["result"]
                sc = score(task, pred, outl)
                sc.update(info)
                sc["s"], sc["MB"] = res["seconds"], res["peak_mb"]
                results[method].append(sc)
                print("  " + method + " | " + " | ".join(f"{k} {fmt(sc.get(k))}" for k in keys if sc.get(k) is not None),
                      flush=True)
        notes.append(f"- {name}: train {task.train_x.shape[0]} / test {task.test_x.shape[0]} cells, "
                     f"X {task.train_x.shape[1]} / Y {task.train_y.shape[1]} features; paper params "
                     f"{task.paper_params}; {PAPER[name]}")
        for method in methods:
            runs = results[method]
            if method in failures or not runs:
                rows.append([task.dataset, task.direction, method, "FAILED: " + failures.get(method, "?")[:60]]
                            + ["-"] * (len(keys) - 1))
                continue
            row = [task.dataset, task.direction, method]
            for k in keys:
                vals = [r.get(k) for r in runs]
                if any(v is None for v in vals):
                    row.append("-")
                    continue
                v = float(np.mean(vals))
                cell = fmt(v, {"outl %": 1, "s": 2, "MB": 0, "OT iters": 0}.get(k, 3))
                if k == "cell r mean" and len(vals) > 1:
                    cell += f" ± {np.std(vals, ddof=1):.3f}"
                row.append(cell)
            rows.append(row)
    table = markdown_table(header, rows)
    seed_txt = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean over seeds {','.join(map(str, seeds))}"
    text = (f"Accuracy ({seed_txt}; {machine_note()})\n\n{table}\n\n" + "\n".join(notes) + "\n")
    emit(text, args.out)


if __name__ == "__main__":
    main()
