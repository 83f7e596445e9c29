"""Leave-one-cell-type-out check of CMOT's poorly-mapped-cell report (``outliers_``).

    .venv/bin/python benchmarks/outliers.py                          # pancancer RNA from ATAC
    .venv/bin/python benchmarks/outliers.py --datasets pancancer --params default,paper

For each task, each held-out cell type T (and "none"): remove the training
cells of type T from the source, fit, predict the whole test set, and report

- flagged % held-out: share of the test cells of type T that CMOT flags;
- flagged % seen: share of the other test cells of a known type that it flags
  (the false flags), pooled over the split seeds (``--seeds``), and per seed;
- flagged % unlabelled: share of the test cells without a type (pbmc10k's
  "unlabelled", not in the annotation) that it flags, apart: they are of no
  known type, and some are of the held-out one (with CD14+ monocytes held
  out, 51 of the 172 unlabelled test cells have mostly CD14+ monocytes among
  their 15 nearest labelled reference cells), so their flags are neither
  hits nor false flags;
- score AUROC: how well ``outlier_scores_`` rank the held-out cells above the
  seen ones of a known type (1 = perfect, 0.5 = chance);
- mapping score: median ``mapping_score_`` (in [0, 1], higher = better mapped)
  of the held-out and of the seen test cells (of a known type);
- query unlike: whether the query as a whole was reported unlike the
  reference (``query_unlike_``; it should not be);
- cell r held-out / seen: mean cell-wise Pearson of the inferred X (how bad
  the inference of an unseen type is; seen: of a known type).

A useful report flags many held-out cells and few seen ones; with nothing held
out it should flag (almost) nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
from _common import add_run_args, limit_threads, emit, fmt, machine_note, markdown_table, measured, nanmean  # noqa: E402
from cmot.metrics import cellwise_pearson  # noqa: E402


#: The label of test cells of no known type (pbmc10k).
UNLABELLED = "unlabelled"


def _run(task, params, keep, seed):
    from cmot import CMOT

    warnings.simplefilter("ignore")
    labels = None if task.labels_for_ot is None else np.asarray(task.labels_for_ot)[keep]
    model = CMOT(**params, random_state=seed)
    pred = model.fit(task.train_x[keep], task.train_y[keep], labels=labels).predict(task.test_y)
    return (np.asarray(pred), np.asarray(model.outliers_, bool), np.asarray(model.outlier_scores_, float),
            np.asarray(model.mapping_score_, float), bool(model.query_unlike_))


def _auroc(scores, positive):
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def _pooled(counts):
    """``"pct (k/n)"`` of pooled flag counts, or "-" without cells."""
    k, n = counts
    return "-" if n == 0 else f"{fmt(100 * k / n, 1)} ({k}/{n})"


def _per_seed(values):
    return "-" if not values else ", ".join(fmt(v, 1) for v in values)


def _one_seed(task, pname, held, res, acc):
    """Add one seed's run of (task, params, held) to the pooled ``acc``."""
    pred, flags, scores, mscore, unlike = res["result"]
    test_labels = np.asarray(task.test_labels)
    pos = test_labels == held
    unl = (test_labels == UNLABELLED) & ~pos
    seen = ~pos & ~unl
    r = cellwise_pearson(task.test_x, pred)
    for key, mask in (("pos", pos), ("seen", seen), ("unl", unl)):
        k, n = acc.setdefault(key, (0, 0))
        acc[key] = (k + int(flags[mask].sum()), n + int(mask.sum()))
    if seen.any():
        acc.setdefault("seen_pct", []).append(100 * flags[seen].mean())
    acc.setdefault("auroc", []).append(_auroc(scores[pos | seen], pos[pos | seen]))
    acc.setdefault("ms_pos", []).extend(mscore[pos].tolist())
    acc.setdefault("ms_seen", []).extend(mscore[seen].tolist())
    acc.setdefault("unlike", []).append(unlike)
    acc.setdefault("r_pos", []).extend(r[pos].tolist())
    acc.setdefault("r_seen", []).extend(r[seen].tolist())
    acc.setdefault("s", []).append(res["seconds"])


def _row(task, pname, held, acc):
    ms_pos, ms_seen = acc["ms_pos"], acc["ms_seen"]
    return [task.dataset, task.direction, pname, held, acc["pos"][1],
            _pooled(acc["pos"]) if acc["pos"][1] else "-", _pooled(acc["seen"]), _per_seed(acc.get("seen_pct", [])),
            _pooled(acc["unl"]) if acc["unl"][1] else "-", fmt(nanmean(acc["auroc"])),
            (fmt(float(np.median(ms_pos)), 2) if ms_pos else "-") + " / " + fmt(float(np.median(ms_seen)), 2),
            f"{sum(acc['unlike'])} of {len(acc['unlike'])}", fmt(nanmean(acc["r_pos"])) if acc["r_pos"] else "-",
            fmt(nanmean(acc["r_seen"])), fmt(nanmean(acc["s"]), 2)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="pancancer_rna_from_atac",
                    help="comma-separated task names or prefixes with test labels (default pancancer_rna_from_atac)")
    ap.add_argument("--params", default="default,paper", help="comma-separated: default, paper (default both)")
    ap.add_argument("--holdout", default=None, help="comma-separated cell types to hold out (default: each type)")
    ap.add_argument("--seeds", default="0", help="comma-separated split seeds, pooled (default 0)")
    add_run_args(ap)
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    header = ["dataset", "direction", "params", "held out", "n held-out test", "flagged % held-out (k/n)",
              "flagged % seen (k/n)", "flagged % seen per seed", "flagged % unlabelled (k/n)", "score AUROC",
              "mapping score held-out / seen (median)", "query unlike", "cell r held-out", "cell r seen", "s"]
    rows = []
    for name in _data.resolve_names(args.datasets):
        tasks = [_data.load(name, seed=seed) for seed in seeds]
        if tasks[0].test_labels is None:
            print(f"# {name}: no test labels, skipped")
            continue
        types = sorted(set(tasks[0].train_labels)) if args.holdout is None else args.holdout.split(",")
        print(f"# {tasks[0]}", flush=True)
        for pname in args.params.split(","):
            for held in ["none"] + types:
                acc, failed = {}, None
                for seed, task in zip(seeds, tasks):
                    params = {} if pname == "default" else task.paper_params
                    keep = np.asarray(task.train_labels) != held
                    res = measured(_run, task, params, np.flatnonzero(keep), seed, timeout=args.timeout)
                    if res["error"]:
                        failed = f"seed {seed}: {res['error']}"
                        break
                    _one_seed(task, pname, held, res, acc)
                if failed:
                    print(f"  {pname} {held}: FAILED {failed}", flush=True)
                    rows.append([tasks[0].dataset, tasks[0].direction, pname, held, "FAILED: " + failed[:60]]
                                + ["-"] * (len(header) - 5))
                    continue
                rows.append(_row(tasks[0], pname, held, acc))
                print("  " + " | ".join(str(c) for c in rows[-1][2:]), flush=True)
    text = (f"Leave-one-type-out outlier check (split seeds {args.seeds}, counts pooled over the seeds; "
            f"{machine_note()})\n\n" + markdown_table(header, rows) + "\n")
    emit(text, args.out)


if __name__ == "__main__":
    main()
