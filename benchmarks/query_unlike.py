"""Is a query that is wholly unlike the reference reported, and a real other-donor query not?

    .venv/bin/python benchmarks/query_unlike.py --datasets pbmc10k_protein_from_rna,pbmc10k_to_pbmc5k,pancancer

For each task, CMOT (defaults) is fitted on the training cells and predicts the
test cells as they are, with every shared feature raised by 100 (a query on
another scale), and with the shared features in a random order (genes
misordered).  Columns: share of flagged cells (``outliers_``), whether the query
as a whole was reported unlike the reference (``query_unlike_``), the median
mapping score (``mapping_score_``), and the mean cell-wise r of the predictions.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
from _common import add_run_args, emit, fmt, limit_threads, machine_note, markdown_table  # noqa: E402
from cmot._utils import to_dense  # noqa: E402
from cmot.metrics import cellwise_pearson  # noqa: E402


def _variants(test_y, seed):
    y = to_dense(test_y, np.float64)
    perm = np.random.default_rng(seed).permutation(y.shape[1])
    return {"as is": y, "every feature + 100": y + 100.0, "features misordered": y[:, perm]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="pbmc10k_protein_from_rna,pbmc10k_to_pbmc5k,pancancer")
    ap.add_argument("--seed", type=int, default=0)
    add_run_args(ap)
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    from cmot import CMOT

    header = ["dataset", "direction", "query", "flagged %", "query unlike", "median mapping score", "cell r"]
    rows = []
    for name in _data.resolve_names(args.datasets):
        task = _data.load(name, seed=args.seed)
        model = CMOT(random_state=args.seed).fit(task.train_x, task.train_y, labels=task.labels_for_ot)
        for qname, y in _variants(task.test_y, args.seed).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = np.asarray(model.predict(y))
            row = [task.dataset, task.direction, qname, fmt(100 * model.outliers_.mean(), 1),
                   "yes" if model.query_unlike_ else "no", fmt(float(np.median(model.mapping_score_)), 2),
                   fmt(float(np.nanmean(cellwise_pearson(task.test_x, pred))))]
            rows.append(row)
            print("  " + " | ".join(row), flush=True)
    text = f"Whole-query checks (seed {args.seed}; {machine_note()})\n\n" + markdown_table(header, rows) + "\n"
    emit(text, args.out)


if __name__ == "__main__":
    main()
