"""Label transfer: cmot's ``transfer_labels`` vs Seurat's TransferData vs a naive kNN vote.

    .venv/bin/python benchmarks/labels.py --threads 1 --out benchmarks/results/labels.md
    .venv/bin/python benchmarks/labels.py --datasets pancancer --seeds 0 --methods knn,TransferData

Tasks (``benchmarks/_data.py``, split seeds ``--seeds``, default 0,1,2; the same
stratified 80/20 splits every other benchmark uses):

- ``pbmc10k_protein_from_rna``: cell types of pbmc10k (``cells.tsv`` column
  ``cell_type``), mapped on RNA; the ``unlabelled`` cells are dropped from both the
  reference and the query (the split itself is the loader's, stratified by cell type
  with ``unlabelled`` as one stratum, so the labelled cells stay stratified);
- ``pancancer_rna_from_atac``: cell lines, mapped on binarized ATAC;
- ``pancancer_atac_from_rna``: cell lines, mapped on RNA.

Methods, each given the reference's X, Y and labels and the query's Y:

- ``cmot``: ``CMOT(random_state=seed).fit(train_x, train_y, labels=task.labels_for_ot,
  transfer_labels={"cell_type": train_labels})``, then ``predict(test_y)``; the
  prediction is ``predicted_labels_["cell_type"]`` and its score
  ``predicted_label_score_["cell_type"]`` (the highest class score, 0-1);
- ``TransferData``: Seurat's standard label transfer (``seurat/transfer_labels.R``):
  ``FindTransferAnchors(reduction = "pcaproject")`` on the shared modality (the
  loader's normalized values, all non-constant features; 30 dims for pbmc, 10 for
  pancancer, as ``compare_seurat.SEURAT_SETTINGS``) and ``TransferData(refdata =
  list(cell_type = labels))``; score = ``predicted.cell_type.score``;
- ``kNN vote``: the 30 nearest reference cells in a 30-component TruncatedSVD of Y
  fitted on the reference (the naive kNN of ``_data.naive_knn``), majority vote;
  score = the share of the 30 votes the winner got.

With ``--cross-donor``, the reference is every labelled pbmc10k cell and the query
every pbmc5k cell (another donor, ``pbmc10k_to_pbmc5k``): pbmc5k has no cell types,
so the table gives each method's predicted composition and how often two methods
agree (no accuracy).

Columns: accuracy, balanced accuracy (``sklearn.metrics.balanced_accuracy_score``:
mean recall over the true classes) and the mean prediction score, per seed and
mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "seurat"))

import _data  # noqa: E402
from _common import add_run_args, emit, fmt, limit_threads, machine_note, markdown_table, measured  # noqa: E402

TRANSFER_LABELS_R = HERE / "seurat" / "transfer_labels.R"
TASKS = ("pbmc10k_protein_from_rna", "pancancer_rna_from_atac", "pancancer_atac_from_rna")
#: TransferData's reduction and dimensions per task (compare_seurat.SEURAT_SETTINGS;
#: pancancer ATAC from RNA, not swept there, takes the other direction's setting).
SEURAT_DIMS = {"pbmc10k_protein_from_rna": ("pcaproject", 30), "pbmc10k_to_pbmc5k": ("pcaproject", 30),
               "pancancer_rna_from_atac": ("pcaproject", 10), "pancancer_atac_from_rna": ("pcaproject", 10)}
METHODS = ("cmot", "TransferData", "kNN vote")
EXCLUDE = "unlabelled"


# ----------------------------------------------------------------- Seurat
def seurat_map(train_y, test_y, *, train_labels=None, train_x=None, groups=None, reduction="pcaproject",
               dims=30, k_weight=50, timeout=None):
    """Run ``seurat/transfer_labels.R``: one reference (train cells), the query cells split
    into ``groups`` (one FindTransferAnchors + TransferData per group; default one group).

    Returns a dict: ``labels`` (predicted label per query cell, None where its group
    failed), ``score`` (predicted.cell_type.score), ``scores`` (query cells x classes),
    ``classes``, ``pred`` (query cells x X features, only with ``train_x``), ``groups``
    (per group: status "ok"/"fails", Seurat's error, anchors, seconds) and ``info``.
    """
    from driver import _run_child, _write_csc

    n_ref, n_q = train_y.shape[0], test_y.shape[0]
    y_names = [f"y{i}" for i in range(train_y.shape[1])]
    with tempfile.TemporaryDirectory(prefix="cmot-seurat-labels-") as tmp:
        folder = Path(tmp)
        _write_csc(folder, "ref_y", train_y, [f"r{i}" for i in range(n_ref)], y_names)
        _write_csc(folder, "query_y", test_y, [f"q{i}" for i in range(n_q)], y_names)
        if train_x is not None:
            _write_csc(folder, "ref_x", train_x, [f"r{i}" for i in range(n_ref)],
                       [f"x{i}" for i in range(train_x.shape[1])])
        if train_labels is not None:
            (folder / "ref_labels.txt").write_text("\n".join(map(str, train_labels)) + "\n", encoding="utf-8")
        if groups is not None:
            (folder / "query_groups.txt").write_text("\n".join(map(str, groups)) + "\n")
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        cmd = ["Rscript", "--vanilla", str(TRANSFER_LABELS_R), str(folder), reduction, str(int(dims)),
               str(int(k_weight))]
        rc, _, err, wall, peak = _run_child(cmd, timeout=timeout, env=env)
        if rc != 0:
            raise RuntimeError(f"transfer_labels.R failed (exit {rc}):\n{err[-3000:]}")
        info = json.loads((folder / "groups.json").read_text())
        classes = (folder / "classes.txt").read_text(encoding="utf-8").splitlines()
        labels = [None if s == "NA" else s for s in
                  (folder / "labels_pred.txt").read_text(encoding="utf-8").splitlines()]
        out = {"labels": np.array(labels, dtype=object) if train_labels is not None else None,
               "score": np.fromfile(folder / "label_score.bin", dtype="<f8"),
               "scores": np.fromfile(folder / "label_scores.bin", dtype="<f8").reshape(n_q, len(classes)),
               "classes": classes, "groups": info["groups"], "info": info, "wall": wall, "peak_mib": peak}
        if train_x is not None:
            out["pred"] = np.fromfile(folder / "pred.bin", dtype="<f8").reshape(n_q, train_x.shape[1])
        return out


# ----------------------------------------------------------------- methods
def knn_vote(train_y, train_labels, test_y, k: int = 30, n_components: int = 30, random_state: int = 0):
    """Majority label of each query cell's ``k`` nearest reference cells in a
    ``n_components`` TruncatedSVD of Y fitted on the reference; returns (labels, winner's vote share)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neighbors import NearestNeighbors

    svd = TruncatedSVD(n_components=min(n_components, train_y.shape[1] - 1), random_state=random_state)
    ref = svd.fit_transform(train_y)
    qry = svd.transform(test_y)
    idx = NearestNeighbors(n_neighbors=k).fit(ref).kneighbors(qry, return_distance=False)
    classes, codes = np.unique(np.asarray(train_labels), return_inverse=True)
    counts = np.zeros((len(qry), len(classes)))
    np.add.at(counts, (np.repeat(np.arange(len(qry)), k), codes[idx].ravel()), 1.0)
    return classes[counts.argmax(axis=1)], counts.max(axis=1) / k


def _cmot_labels(train_x, train_y, train_labels, test_y, labels_for_ot, seed):
    from cmot import CMOT

    warnings.simplefilter("ignore")
    model = CMOT(random_state=seed).fit(train_x, train_y, labels=labels_for_ot,
                                        transfer_labels={"cell_type": np.asarray(train_labels)})
    model.predict(test_y)
    return (np.asarray(model.predicted_labels_["cell_type"], dtype=object),
            np.asarray(model.predicted_label_score_["cell_type"], dtype=float))


def labelled_task(name, seed):
    """The task with the ``unlabelled`` cells removed from reference and query."""
    task = _data.load(name, seed=seed)
    tr = np.asarray(task.train_labels) != EXCLUDE
    te = np.asarray(task.test_labels) != EXCLUDE
    for a in ("train_x", "train_y", "train_cells"):
        setattr(task, a, getattr(task, a)[tr])
    for a in ("test_x", "test_y", "test_cells"):
        setattr(task, a, getattr(task, a)[te])
    task.train_labels, task.test_labels = np.asarray(task.train_labels)[tr], np.asarray(task.test_labels)[te]
    if task.labels_for_ot is not None:
        task.labels_for_ot = np.asarray(task.labels_for_ot)[tr]
    return task


def run_method(method, task, seed, timeout=None):
    """(predicted labels, scores, seconds) of one method on one task."""
    if method == "cmot":
        res = measured(_cmot_labels, task.train_x, task.train_y, task.train_labels, task.test_y,
                       task.labels_for_ot, seed, timeout=timeout)
        if res["error"]:
            raise RuntimeError(f"cmot failed on {task.name}: {res['error']}\n{res.get('traceback', '')}")
        pred, score = res["result"]
        return pred, score, res["seconds"]
    if method == "TransferData":
        red, dims = SEURAT_DIMS[task.name]
        out = seurat_map(task.train_y, task.test_y, train_labels=task.train_labels, reduction=red, dims=dims,
                         timeout=timeout)
        g = out["groups"][0]
        if g["status"] != "ok":
            raise RuntimeError(f"TransferData failed on {task.name}: {g['error']}")
        return out["labels"], out["score"], out["info"]["reference_seconds"] + g["seconds"]
    if method == "kNN vote":
        res = measured(knn_vote, task.train_y, task.train_labels, task.test_y, 30, 30, seed, timeout=timeout)
        pred, score = res["result"]
        return pred, score, res["seconds"]
    raise ValueError(f"method: expected one of {METHODS}, found {method!r}")


def scores(truth, pred, score):
    from sklearn.metrics import balanced_accuracy_score

    truth = np.asarray(truth).astype(str)
    pred = np.asarray(pred).astype(str)
    return {"acc": float(np.mean(truth == pred)), "bal": float(balanced_accuracy_score(truth, pred)),
            "score": float(np.nanmean(score))}


def _mean_sd(v, digits=3):
    v = np.asarray(v, dtype=float)
    return fmt(float(v.mean()), digits) + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")


def cross_donor(methods, timeout=None) -> str:
    """pbmc10k (labelled cells) -> pbmc5k: predicted composition and pairwise agreement."""
    task = _data.load("pbmc10k_to_pbmc5k", seed=0)
    keep = np.asarray(task.train_labels) != EXCLUDE
    task.train_x, task.train_y = task.train_x[keep], task.train_y[keep]
    task.train_labels = np.asarray(task.train_labels)[keep]
    print(f"# {task} (labelled reference cells only)", flush=True)
    preds, mean_score = {}, {}
    for m in methods:
        pred, score, _ = run_method(m, task, 0, timeout)
        preds[m], mean_score[m] = np.asarray(pred).astype(str), float(np.nanmean(score))
    classes = sorted(set(np.asarray(task.train_labels).astype(str)))
    comp = [[c, f"{100 * np.mean(task.train_labels.astype(str) == c):.1f}"]
            + [f"{100 * np.mean(preds[m] == c):.1f}" for m in methods] for c in classes]
    comp.append(["mean prediction score", "-"] + [fmt(mean_score[m]) for m in methods])
    agree = [[a, b, fmt(float(np.mean(preds[a] == preds[b])))] for i, a in enumerate(methods)
             for b in methods[i + 1:]]
    return (f"\n## Across donors: pbmc10k (labelled cells, {task.train_x.shape[0]}) -> pbmc5k ({task.test_y.shape[0]} "
            "cells, no cell types)\n\nPredicted composition (% of query cells; reference column: % of the "
            "reference):\n\n" + markdown_table(["cell type", "reference %", *methods], comp)
            + "\n\nAgreement (share of pbmc5k cells given the same label):\n\n"
            + markdown_table(["method", "method", "agreement"], agree) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(TASKS), help=f"comma-separated among {', '.join(TASKS)}")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds (default 0,1,2)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated among {', '.join(METHODS)}")
    ap.add_argument("--cross-donor", action="store_true",
                    help="also pbmc10k -> pbmc5k: predicted composition and agreement between methods")
    ap.add_argument("--only-cross-donor", action="store_true", help="run only the cross-donor part")
    add_run_args(ap)
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    import cmot  # noqa: F401  (imported once, before the forked runs)

    stamp = machine_note()  # the core as imported now (the tree may change during the runs)
    if args.only_cross_donor:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        emit(f"# Label transfer across donors\n\n{stamp}; threads {args.threads}.\n\nCommand: "
             "`.venv/bin/python benchmarks/labels.py " + " ".join(argv if argv is not None else sys.argv[1:])
             + "`\n" + cross_donor(methods, args.timeout), args.out)
        return
    names = [n for n in _data.resolve_names(args.datasets) if n in TASKS]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    per_seed, summary = [], []
    for name in names:
        res = {m: [] for m in methods}
        for seed in seeds:
            task = labelled_task(name, seed)
            print(f"# {task} seed {seed}", flush=True)
            for m in methods:
                try:
                    pred, score, secs = run_method(m, task, seed, args.timeout)
                except Exception as exc:  # reported in the table
                    print(f"  {m}: FAILED {exc}", flush=True)
                    per_seed.append([name, seed, m, "fails", "", "", ""])
                    continue
                s = scores(task.test_labels, pred, score)
                res[m].append(s)
                per_seed.append([name, seed, m, fmt(s["acc"]), fmt(s["bal"]), fmt(s["score"]), fmt(secs, 1)])
                print("  " + " | ".join(map(str, per_seed[-1][2:])), flush=True)
        for m in methods:
            if res[m]:
                summary.append([name, f"{task.train_x.shape[0]} / {task.test_x.shape[0]}", m, len(res[m]),
                                _mean_sd([s["acc"] for s in res[m]]), _mean_sd([s["bal"] for s in res[m]]),
                                _mean_sd([s["score"] for s in res[m]])])
    text = (f"# Label transfer: cmot vs TransferData vs kNN vote\n\n{stamp}; threads {args.threads}.\n\n"
            "Command: `.venv/bin/python benchmarks/labels.py " + " ".join(argv if argv is not None else sys.argv[1:])
            + "`\n\n## Mean ± sd over split seeds\n\n"
            + markdown_table(["task", "ref / query cells", "method", "seeds", "accuracy", "balanced accuracy",
                              "mean prediction score"], summary)
            + "\n\n## Per seed\n\n"
            + markdown_table(["task", "seed", "method", "accuracy", "balanced accuracy", "mean prediction score",
                              "s"], per_seed) + "\n")
    if args.cross_donor:
        text += cross_donor(methods, args.timeout)
    emit(text, args.out)


if __name__ == "__main__":
    main()
