"""Does a query cell's prediction depend on who else is in the query?

    .venv/bin/python benchmarks/composition.py --datasets pbmc10k_protein_from_rna --threads 1
    .venv/bin/python benchmarks/composition.py --datasets pancancer --min-cells 5 --threads 1

For each task (with test labels) and split seed, CMOT is fitted once on the
training cells (defaults, and the task's paper parameters in paper mode) and
then predicts the held-out cells

- all at once (the full, mixed query);
- one cell type per query, for every type with at least ``--min-cells`` test cells;
- one cell per query, for ``--singles`` random test cells.

Each row gives the mean cell-wise Pearson r of those cells predicted *alone*
and of the same cells *in the full query*, for cmot's defaults and paper mode,
next to the naive kNN (which no query composition can move).  The requirement
(issue 14): alone >= naive kNN - 0.01 and |alone - full| <= 0.01.

With ``--seurat`` (default on when Rscript with Seurat is available), Seurat's
TransferData runs on the same queries (``seurat/transfer_labels.R``: one
reference, FindTransferAnchors pcaproject + TransferData of X for each query
separately, with the settings of ``compare_seurat.SEURAT_SETTINGS``: the loader's
normalized values, all non-constant Y features, 30 dims for pbmc, 10 for
pancancer).  Where Seurat fails on a query (a single cell: FindTransferAnchors
needs more query cells than ``k.anchor`` = 5), the cell reads "fails (Seurat's
reason)".
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
from cmot.metrics import cellwise_pearson  # noqa: E402


def _fit(task, params, seed):
    from cmot import CMOT

    return CMOT(**params, random_state=seed).fit(task.train_x, task.train_y, labels=task.labels_for_ot)


def _predict(model, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(model.predict(y)), np.asarray(model.outliers_, bool)


def _queries(labels, min_cells, n_singles, seed):
    """(name, indices, one_per_query) of every query: full, each type, singles."""
    out = [("full query", np.arange(len(labels)), False)]
    types, counts = np.unique(labels, return_counts=True)
    for t, c in zip(types, counts):
        if c >= min_cells:
            out.append((f"{t} alone", np.flatnonzero(labels == t), False))
    rng = np.random.default_rng(seed)
    singles = np.sort(rng.choice(len(labels), min(n_singles, len(labels)), replace=False))
    out.append((f"{len(singles)} single cells, one per query", singles, True))
    return out


#: Seurat's error messages, numbered in the notes under the table.
FAIL_NOTES: list = []


def _note(reason: str) -> str:
    if reason not in FAIL_NOTES:
        FAIL_NOTES.append(reason)
    return f"note {FAIL_NOTES.index(reason) + 1}"


def _transferdata(task, queries, timeout=None):
    """TransferData of X for every query of ``queries`` (one R run, one reference);
    returns {query name: per-cell r array, or the failure reason}."""
    from labels import SEURAT_DIMS, seurat_map

    rows, groups = [], []
    for qname, idx, singles in queries:
        rows.append(idx)
        groups += [f"{qname}#{i}" for i in idx] if singles else [qname] * len(idx)
    rows = np.concatenate(rows)
    red, dims = SEURAT_DIMS[task.name]
    out = seurat_map(task.train_y, task.test_y[rows], train_x=task.train_x, groups=groups, reduction=red, dims=dims,
                     timeout=timeout)
    fails = {g["group"]: g["error"] for g in out["groups"] if g["status"] != "ok"}
    ok = np.isfinite(out["pred"]).all(axis=1)  # rows of failed queries are NaN
    r = np.full(len(rows), np.nan)
    if ok.any():
        r[ok] = cellwise_pearson(task.test_x[rows[ok]], out["pred"][ok])
    res, pos = {}, 0
    for qname, idx, singles in queries:
        names = [f"{qname}#{i}" for i in idx] if singles else [qname]
        failed = [fails[n] for n in names if n in fails]
        if failed:
            reason = ", ".join(_note(f) for f in sorted(set(failed)))
            res[qname] = f"fails {len(failed)}/{len(names)} ({reason})" if singles else f"fails ({reason})"
        else:
            res[qname] = r[pos:pos + len(idx)]
        pos += len(idx)
    return res


def run_task(task, seed, args):
    labels = np.asarray(task.test_labels)
    naive = cellwise_pearson(task.test_x, _data.naive_knn(task.train_x, task.train_y, task.test_y))
    methods = {"cmot": {}, "paper": task.paper_params}
    full, models = {}, {}
    for m, params in methods.items():
        models[m] = _fit(task, params, seed)
        pred, _ = _predict(models[m], task.test_y)
        full[m] = cellwise_pearson(task.test_x, pred)
    rows = []
    queries = _queries(labels, args.min_cells, args.singles, seed)
    td = _transferdata(task, queries, args.timeout) if args.seurat else None
    for qname, idx, singles in queries:
        row = [task.dataset, task.direction, seed, qname, len(idx)]
        for m in methods:
            if qname == "full query":
                alone, flagged = full[m], None
            else:
                parts = [[i] for i in idx] if singles else [idx]
                r, fl = np.empty(len(idx)), np.empty(len(idx))
                pos = 0
                for part in parts:
                    pred, outl = _predict(models[m], task.test_y[part])
                    r[pos:pos + len(part)] = cellwise_pearson(task.test_x[part], pred)
                    fl[pos:pos + len(part)] = outl
                    pos += len(part)
                alone, flagged = r, fl
            a, f = float(np.nanmean(alone)), float(np.nanmean(full[m][idx]))
            row += [fmt(a), fmt(f)]
            if m == "cmot":
                ok = a >= float(np.nanmean(naive[idx])) - 0.01 and abs(a - f) <= 0.01
                row.append(("yes" if ok else "**no**") + ("" if flagged is None else f" ({100 * np.mean(flagged):.0f}% flagged)"))
        row.append(fmt(float(np.nanmean(naive[idx]))))
        if td is not None:
            row += _td_cells(td, qname, idx, float(np.nanmean(naive[idx])))
        rows.append(row)
        print("  " + " | ".join(str(c) for c in row[3:]), flush=True)
    return rows


def _td_cells(td, qname, idx, knn):
    """TransferData alone, in the full query, and issue 14's check, for one query."""
    full = td["full query"]
    f = float(np.nanmean(full[idx])) if not isinstance(full, str) else float("nan")
    alone = td[qname]
    if isinstance(alone, str):
        return [alone, fmt(f), "-"]
    a = float(np.nanmean(alone))
    ok = a >= knn - 0.01 and abs(a - f) <= 0.01
    return [fmt(a), fmt(f), "yes" if ok else "**no**"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="pbmc10k_protein_from_rna",
                    help="comma-separated task names or prefixes with test labels")
    ap.add_argument("--seeds", default="0", help="comma-separated split seeds (default 0)")
    ap.add_argument("--min-cells", type=int, default=20, help="query each type with at least this many test cells")
    ap.add_argument("--singles", type=int, default=30, help="random test cells predicted one per query")
    ap.add_argument("--seurat", action=argparse.BooleanOptionalAction, default=None,
                    help="also run Seurat's TransferData on every query (default: when Rscript with Seurat is found)")
    add_run_args(ap)
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    if args.seurat is not False:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "seurat"))
        from driver import rscript_available

        reason = rscript_available()
        if reason and args.seurat:
            sys.exit(f"composition: --seurat: {reason}")
        args.seurat = reason is None
    header = ["dataset", "direction", "seed", "query", "cells", "cmot alone", "cmot in full query",
              "cmot: >= kNN - 0.01 and within 0.01 of full", "paper alone", "paper in full query", "naive kNN"]
    if args.seurat:
        header += ["TransferData alone", "TransferData in full query", "TD: >= kNN - 0.01 and within 0.01 of full"]
    import cmot

    stamp = machine_note()  # the core as imported now (the working tree may change during the runs)
    rows = []
    for name in _data.resolve_names(args.datasets):
        for seed in [int(s) for s in args.seeds.split(",")]:
            task = _data.load(name, seed=seed)
            if task.test_labels is None:
                print(f"# {name}: no test labels, skipped")
                continue
            print(f"# {task} seed {seed}", flush=True)
            rows += run_task(task, seed, args)
    # paper columns after cmot's check column
    td_note = ("TransferData: FindTransferAnchors (pcaproject) + TransferData of X, each query mapped on its own "
               "(benchmarks/seurat/transfer_labels.R)." if args.seurat else "TransferData: not run (--no-seurat).")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.abspath(cmot.__file__).startswith(repo + os.sep):
        td_note += (" The cmot core was imported from an export of the committed HEAD (PYTHONPATH), not from the "
                    "working tree: its uncommitted changes, if the stamp names any, were not measured.")
    text = (f"Composition robustness: mean cell-wise r of cells predicted alone vs in the full query "
            f"({stamp}). {td_note}\n\nCommand: `.venv/bin/python benchmarks/composition.py "
            + " ".join(argv if argv is not None else sys.argv[1:]) + "`\n\n" + markdown_table(header, rows) + "\n")
    if FAIL_NOTES:
        text += "\nTransferData's failures (Seurat's error message):\n\n" + "".join(
            f"{i + 1}. {r}\n" for i, r in enumerate(FAIL_NOTES))
    emit(text, args.out)


if __name__ == "__main__":
    main()
