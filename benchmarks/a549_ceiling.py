"""How much RNA can the a549 (sci-CAR) ATAC predict at all?  An upper bound for a549.

    .venv/bin/python benchmarks/a549_ceiling.py --seeds 0,1,2 --out benchmarks/results/a549_ceiling.md

For each a549 task (both readings of the cell filter) and split seed, mean
cell-wise Pearson r of the test cells' RNA against:

- training mean: the training cells' mean profile for every test cell;
- time-group mean (oracle): the training mean of the test cell's own treatment
  time (0, 1 or 3 h of dexamethasone), which a method could only match if the
  ATAC told the treatment time perfectly;
- time from ATAC: the time-group means weighted by a logistic regression's
  probabilities of each time, fitted on the training cells' ATAC (the 1,183
  peaks of the task, or all 52,761 peaks binarized), with its accuracy.

If the oracle barely beats the training mean and the ATAC cannot tell the
time, no method can get far above the training mean on this protocol.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
from _common import emit, limit_threads, machine_note, markdown_table  # noqa: E402
from cmot._utils import to_dense  # noqa: E402
from cmot.datasets import binarize_counts  # noqa: E402
from cmot.metrics import cellwise_pearson  # noqa: E402

TASKS = ("a549_rna_from_atac", "a549_top_total_rna")


def _time_from_atac(train_y, train_t, test_y, test_t, group_means):
    """Time-group means weighted by a logistic regression's probabilities; its accuracy."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=0.01, max_iter=3000).fit(train_y, train_t)
    return clf.predict_proba(test_y) @ group_means, float(clf.score(test_y, test_t))


def ceiling(name: str, seed: int, all_peaks) -> dict:
    task = _data.load(name, seed)
    truth = to_dense(task.test_x, np.float64)
    train_x = to_dense(task.train_x, np.float64)
    times = np.unique(task.train_labels)
    group_means = np.vstack([train_x[task.train_labels == t].mean(axis=0) for t in times])
    mean = np.tile(train_x.mean(axis=0), (truth.shape[0], 1))
    oracle = group_means[np.searchsorted(times, task.test_labels)]
    row = {
        "task": name, "seed": seed,
        "training mean": float(np.mean(cellwise_pearson(truth, mean))),
        "time-group mean (oracle)": float(np.mean(cellwise_pearson(truth, oracle))),
    }
    atac, names = all_peaks
    pos = {c: i for i, c in enumerate(names)}
    full_train = atac[[pos[c] for c in task.train_cells]]
    full_test = atac[[pos[c] for c in task.test_cells]]
    for label, tr, te in (("1,183 peaks", sp.csr_matrix(task.train_y), sp.csr_matrix(task.test_y)),
                          ("all peaks", full_train, full_test)):
        pred, acc = _time_from_atac(tr, task.train_labels, te, task.test_labels, group_means)
        row[f"time from ATAC ({label}): r"] = float(np.mean(cellwise_pearson(truth, pred)))
        row[f"time from ATAC ({label}): accuracy"] = acc
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds (default 0,1,2)")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    atac, cells, _ = _data._read("a549", "atac")
    atac = binarize_counts(atac)
    all_peaks = (atac, cells.index.to_numpy())
    rows = [ceiling(name, seed, all_peaks) for name in TASKS for seed in seeds]
    cols = list(rows[0])
    table = markdown_table(cols, [[r[c] if isinstance(r[c], (str, int)) else f"{r[c]:.3f}" for c in cols]
                                  for r in rows])
    emit(f"a549: what the ATAC can predict (seeds {args.seeds}; {machine_note()})\n\n{table}\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
