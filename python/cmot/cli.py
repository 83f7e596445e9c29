"""The ``cmot`` command line: ``cmot run`` infers a modality from files, ``cmot demo``
runs the whole method on the pan-cancer data (found under ``--data`` or
``$CMOT_DATA``; else on synthetic data) and compares it with a naive kNN baseline.

Examples (shell)::

    cmot run --source-x data/pancancer --source-x-modality rna \\
             --source-y data/pancancer --source-y-modality atac \\
             --split 0.2 --labels-column cell_line --seed 0 --out inferred.csv
    cmot run --source-x x.csv --source-y y.csv --target-y target_y.csv --out x_hat.h5ad
    cmot demo --out demo_results

Progress (each step and its time) is logged to stderr; ``--quiet`` silences it.
Scores are printed to stdout.  Output paths are checked before any input is read;
a bad input or output ends in one line ``cmot run: error: --ARG: ...`` and exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from . import __version__
from ._utils import duplicated, match_names, timed_step, to_dense
from .baselines import knn_baseline

logger = logging.getLogger("cmot")

__all__ = ["main", "build_parser"]

#: The environment variable that names the shared data folder (``cmot demo``).
DATA_ENV = "CMOT_DATA"
_PANCANCER_FILES = ("rna.mtx.gz", "atac.mtx.gz", "cells.tsv")


# --------------------------------------------------------------------------- helpers
class CLIError(Exception):
    """A user error reported as ``cmot: error: ...`` with exit status 1."""


@contextmanager
def _logging(quiet: bool):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    old_level, old_prop = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_prop


@contextmanager
def _warnings_to_log():
    """Report warnings of the method (poorly mapped cells, Sinkhorn) as log lines, not Python tracebacks."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        msg = f"{w.category.__name__}: {w.message}"
        if msg not in seen:
            seen.add(msg)
            logger.warning("%s", msg)


def _unique(names, arg: str, what: str) -> None:
    """A CLI error when ``names`` (cells or features of ``arg``) repeat."""
    dup = duplicated([str(v) for v in names])
    if dup:
        shown = ", ".join(dup[:5]) + (" ..." if len(dup) > 5 else "")
        raise CLIError(f"{arg}: expected unique {what} names, found {len(dup)} duplicated: {shown}.")


def _read(path, modality, transpose, what):
    from .io import matrix_format, read_matrix

    if path is None:
        raise CLIError(f"--{what}: expected a path, found none.")
    with timed_step(f"reading {what} from {path}" + (f" ({modality})" if modality else ""), log=logger):
        try:
            transpose = transpose and os.path.exists(path) and matrix_format(path) in ("csv", "tsv")
            m, cells, feats = read_matrix(path, modality, transpose=transpose)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise CLIError(f"--{what}: {exc}") from exc
    _unique(cells, f"--{what}", "cell")
    _unique(feats, f"--{what}", "feature")
    logger.info("%s: %d cells x %d features%s", what, m.shape[0], m.shape[1], " (sparse)" if sp.issparse(m) else "")
    return m, cells, feats


def _writable(path, arg: str, *, folder: bool = False) -> None:
    """Check, before any work, that ``path`` can be written: no folder in the way (unless
    ``folder``), and the nearest existing folder above it is writable."""
    p = os.path.abspath(os.fspath(path))
    if os.path.isdir(p) and not folder:
        raise CLIError(f"{arg}: expected a file path, found a folder: {path}")
    parent = os.path.dirname(p.rstrip(os.sep)) or os.sep
    if not folder and not os.path.isdir(parent):
        raise CLIError(f"{arg}: expected an existing folder to write {os.path.basename(p)!r} in, found none: {parent}")
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    target = p if os.path.exists(p) else parent
    if not os.path.isdir(parent) or not os.access(target, os.W_OK):
        raise CLIError(f"{arg}: expected a writable location, found {target} not writable.")


def _check_outputs(args) -> str:
    """Check every output path before reading or fitting; return the format of ``--out``."""
    from .io import matrix_format

    try:
        out_fmt = matrix_format(args.out, for_write=True)
    except ValueError as exc:
        raise CLIError(f"--out: {exc}") from exc
    _writable(args.out, "--out", folder=out_fmt == "mtx")
    if args.outliers:
        try:
            fmt = matrix_format(args.outliers)
        except ValueError:
            fmt = None
        if fmt not in ("csv", "tsv"):
            raise CLIError(f"--outliers: expected a .csv or .tsv path (a table of cells), found {args.outliers!r}.")
        _writable(args.outliers, "--outliers")
    if args.scores:
        if not str(args.scores).lower().endswith(".json"):
            raise CLIError(f"--scores: expected a .json path, found {args.scores!r}.")
        _writable(args.scores, "--scores")
    if args.model:
        _writable(args.model, "--model")
    return out_fmt


def _default_modality(path, given, source_modality):
    """A target's modality: as given, else the source's when the target is a Matrix Market folder."""
    if given is not None:
        return given
    return source_modality if path is not None and os.path.isdir(path) else None


def _transform(m, how: str, what: str):
    from .datasets import binarize_counts

    if how == "none":
        return m
    if how == "log1p":
        if (m.min() if not sp.issparse(m) else min(m.data.min(initial=0), 0)) < 0:
            raise CLIError(f"--transform-{what}: log1p needs non-negative values, found negative ones.")
        if sp.issparse(m):
            m = m.copy()
            m.data = np.log1p(m.data)
            return m
        return np.log1p(m)
    if how == "binarize":
        return binarize_counts(m)
    raise CLIError(f"--transform-{what}: unknown transform {how!r}.")  # pragma: no cover - argparse guards


def _align_features(target, t_feats, s_feats, arg="--target-y"):
    """Reorder the target's columns to the source features (by name, :func:`cmot._utils.match_names`)."""
    try:
        pos = match_names(s_feats, t_feats, arg, "feature")
    except ValueError as exc:
        raise CLIError(str(exc).replace("seen in fit", "of the source")) from exc
    if pos is None:
        return target
    logger.info("%s: reordered %d features to the source order", arg.lstrip("-"), len(s_feats))
    return target[:, pos]


def _align_cells(x, x_cells, y_cells, args=("--source-x", "--source-y")):
    """Reorder X rows to the Y cells (fully paired: the same cells on both sides)."""
    if len(x_cells) != len(y_cells):
        raise CLIError(f"{args[0]} and {args[1]}: expected the same cells (fully paired), found {len(x_cells)} "
                       f"and {len(y_cells)} cells.")
    try:
        pos = match_names(y_cells, x_cells, args[0], "cell")
    except ValueError as exc:
        raise CLIError(str(exc).replace("seen in fit", f"of {args[1]}")) from exc
    if pos is None:
        return x
    logger.info("%s: reordered cells to the %s order", args[0].lstrip("-"), args[1].lstrip("-"))
    return x[pos]


def _labels(args, cells):
    if not args.labels_column:
        if args.labels_file:
            raise CLIError("--labels-file: expected --labels-column to name the column to use.")
        return None
    from .io import read_obs

    src = args.labels_file or args.source_y
    try:
        obs = read_obs(src)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(f"--labels-column: cannot read cell metadata from {src}: {exc}") from exc
    if args.labels_column not in obs.columns:
        raise CLIError(
            f"--labels-column: expected a column of {src}'s cell metadata, found {args.labels_column!r} "
            f"not among: {', '.join(map(str, obs.columns[:10])) or '(no columns; pass --labels-file)'}"
            + (" ..." if len(obs.columns) > 10 else ".")
        )
    _unique(obs.index, "--labels-file" if args.labels_file else "--source-y", "cell")
    missing = [c for c in cells if c not in obs.index]
    if missing:
        raise CLIError(f"--labels-column: {len(missing)} source cells have no label in {src} (first: {missing[0]}).")
    lab = obs.loc[list(cells), args.labels_column].to_numpy()
    bad = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in lab])
    if bad.any():
        raise CLIError(f"--labels-column: {int(bad.sum())} source cells have an empty {args.labels_column!r}.")
    return lab.astype(str)


def _print_scores(title, scores, out=None):
    out = out or sys.stdout
    print(title, file=out)
    for k, v in scores.items():
        print(f"  {k:36s} {v:.4f}" if isinstance(v, float) else f"  {k:36s} {v}", file=out)


def _split(n, frac, labels, seed):
    from sklearn.model_selection import train_test_split

    if not 0 < frac < 1:
        raise CLIError(f"--split: expected a fraction strictly between 0 and 1, found {frac}.")
    idx = np.arange(n)
    try:
        train, test = train_test_split(idx, test_size=frac, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise CLIError(f"--split: cannot hold out {frac:g} of {n} cells: {exc}") from exc
    return np.sort(train), np.sort(test)


def _model(args):
    from .estimator import CMOT, PAPER_MODE

    params = {
        "reg_e": args.reg_e,
        "reg_cl": args.reg_cl,
        "n_neighbors": args.n_neighbors,
        "n_features": args.n_features,
        "n_pcs": args.n_pcs,
        "n_clusters": args.n_clusters,
        "shrinkage": args.shrinkage,
        "random_state": args.seed,
        "verbose": True,
    }
    if args.paper:
        params.update(PAPER_MODE)
    return CMOT(**params)


def _shrinkage(text):
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', found {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'auto', found {text!r}")
    return value


def _k(text):
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'auto', found {text!r}") from None


def _pcs(text):
    if text.lower() == "none":
        return None
    if text.lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, 'auto' or 'none', found {text!r}") from None


def _reg_e(text):
    if text.lower() in ("auto", "none"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', found {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', found {text!r}")
    return v


# ------------------------------------------------------------------------------ run
def _split_inputs(args, sx, sy, sy_cells, labels):
    """``--split``: hold out source cells as the target (their measured X is scored)."""
    t_mod = args.target_y_modality or args.source_y_modality
    if args.target_y is not None and (
        os.path.realpath(args.target_y) != os.path.realpath(args.source_y) or t_mod != args.source_y_modality
    ):
        raise CLIError("--split: expected --target-y to be omitted or the same as --source-y (the held-out "
                       f"cells are the target), found {args.target_y!r}.")
    if args.target_x is not None:
        raise CLIError("--target-x: not used with --split (the held-out cells' measured X is scored); drop it.")
    train, test = _split(sy.shape[0], args.split, labels, args.seed)
    logger.info("split: %d training and %d held-out cells%s (seed %s)", len(train), len(test),
                f", stratified by {args.labels_column}" if labels is not None else "", args.seed)
    lab = None if labels is None else labels[train]
    return sx[train], sy[train], sy[test], sy_cells[test], sx[test], lab


def _target_inputs(args, sx_feats, sy_feats):
    """The target's Y (columns in the source Y order) and, when given, its measured X."""
    if args.target_y is None:
        raise CLIError("--target-y: expected the target cells' Y (or --split to hold out source cells), found none.")
    mod = _default_modality(args.target_y, args.target_y_modality, args.source_y_modality)
    ty, t_cells, t_feats = _read(args.target_y, mod, args.transpose, "target-y")
    ty = _transform(_align_features(ty, t_feats, sy_feats), args.transform_y, "y")
    tx = None
    if args.target_x is not None:
        mod = _default_modality(args.target_x, args.target_x_modality, args.source_x_modality)
        tx, tx_cells, tx_feats = _read(args.target_x, mod, args.transpose, "target-x")
        tx = _align_cells(tx, tx_cells, t_cells, ("--target-x", "--target-y"))
        tx = _transform(_align_features(tx, tx_feats, sx_feats, "--target-x"), args.transform_x, "x")
    return ty, t_cells, tx


def _inputs(args):
    """Read, check and transform every input: (sx, sy, labels, ty, t_cells, tx, x_features)."""
    sx, sx_cells, sx_feats = _read(args.source_x, args.source_x_modality, args.transpose, "source-x")
    sy, sy_cells, sy_feats = _read(args.source_y, args.source_y_modality, args.transpose, "source-y")
    sx = _transform(_align_cells(sx, sx_cells, sy_cells), args.transform_x, "x")
    sy = _transform(sy, args.transform_y, "y")
    labels = _labels(args, sy_cells)
    if args.split is not None:
        sx, sy, ty, t_cells, tx, labels = _split_inputs(args, sx, sy, sy_cells, labels)
    else:
        ty, t_cells, tx = _target_inputs(args, sx_feats, sy_feats)
    return sx, sy, labels, ty, t_cells, tx, sx_feats


def _write_outputs(args, out_fmt, model, x_hat, t_cells, x_feats):
    from .io import write_matrix

    out_mod = args.out_modality or args.source_x_modality or "x"
    with timed_step(f"writing {x_hat.shape[0]} x {x_hat.shape[1]} inferred matrix to {args.out}", log=logger):
        try:
            write_matrix(args.out, x_hat, t_cells, x_feats, modality=out_mod if out_fmt == "mtx" else None)
        except (ValueError, OSError) as exc:
            raise CLIError(f"--out: {exc}") from exc
    if args.outliers:
        import pandas as pd
        from .io import matrix_format

        table = pd.DataFrame({"poorly_mapped": model.outliers_, "score": model.outlier_scores_,
                              "mapping_score": model.mapping_score_}, index=pd.Index(t_cells, name="cell"))
        table.to_csv(args.outliers, sep="," if matrix_format(args.outliers) == "csv" else "\t")
        logger.info("wrote poorly mapped cells to %s", args.outliers)
    if args.model:
        model.save(args.model)
        logger.info("saved the fitted model to %s", args.model)


def _score(args, tx, x_hat, sx, sy, ty, n_out):
    from .metrics import summary

    truth = to_dense(tx)
    scores = summary(truth, x_hat)
    scores["knn_baseline_mean_cellwise_pearson"] = summary(truth, knn_baseline(sx, sy, ty))["mean_cellwise_pearson"]
    scores["poorly_mapped_cells"] = n_out
    _print_scores(f"CMOT scores on {ty.shape[0]} held-out cells (inferred vs measured X):", scores)
    if args.scores:
        with open(args.scores, "w") as fh:
            json.dump(scores, fh, indent=2)


def cmd_run(args) -> int:
    t_start = time.perf_counter()
    out_fmt = _check_outputs(args)
    sx, sy, labels, ty, t_cells, tx, x_feats = _inputs(args)
    model = _model(args)
    try:
        with _warnings_to_log():
            with timed_step("fitting CMOT on %d source cells" % sy.shape[0], log=logger):
                model.fit(sx, sy, labels=labels)
            with timed_step("inferring X of %d target cells" % ty.shape[0], log=logger):
                x_hat = model.predict(ty)
    except (ValueError, TypeError) as exc:
        raise CLIError(str(exc)) from exc
    n_out = int(model.outliers_.sum())
    logger.info("poorly mapped target cells: %d of %d", n_out, len(model.outliers_))
    _write_outputs(args, out_fmt, model, x_hat, t_cells, x_feats)
    if tx is not None:
        _score(args, tx, x_hat, sx, sy, ty, n_out)
    logger.info("total %.2f s", time.perf_counter() - t_start)
    return 0


# ----------------------------------------------------------------------------- demo
def _find_data(explicit):
    """The pan-cancer folder: under ``--data``, else under ``$CMOT_DATA``; None when neither holds it."""
    base = explicit or os.environ.get(DATA_ENV)
    if not base:
        return None
    for d in (os.path.join(base, "pancancer"), base):
        if all(os.path.exists(os.path.join(d, f)) for f in _PANCANCER_FILES):
            return d
    where = "--data" if explicit else f"${DATA_ENV}"
    if explicit:
        raise CLIError(f"--data: expected a folder with pancancer/ ({', '.join(_PANCANCER_FILES)}), found none at "
                       f"{explicit}.")
    logger.warning("%s: no pancancer/ (%s) in %s; using synthetic data", where, ", ".join(_PANCANCER_FILES), base)
    return None


def _demo_data(args):
    """(source_x, source_y, target_x, target_y, source_labels, x_features, target_cells, description, params)."""
    from .datasets import load_pancancer, make_multimodal

    path = None if args.synthetic else _find_data(args.data)
    if path is None:
        n = args.n_cells
        with timed_step(f"simulating {n} paired cells (cmot.datasets.make_multimodal)", log=logger):
            d = make_multimodal(int(n * 0.8), n - int(n * 0.8), target_shift=1.0, random_state=args.seed)
        x_feats = np.array([f"x{j}" for j in range(d.source_x.shape[1])], dtype=object)
        cells = np.array([f"target{i}" for i in range(d.target_y.shape[0])], dtype=object)
        params = {"random_state": args.seed}
        desc = "synthetic data (make_multimodal, target shifted in Y)"
        return d.source_x, d.source_y, d.target_x, d.target_y, None, x_feats, cells, desc, params
    # The paper's protocol (as the benchmarks): the 10,000 most variable genes and peaks, ATAC binarized.
    with timed_step(f"reading pan-cancer RNA and ATAC from {path}", log=logger):
        pc = load_pancancer(path)
    rna, atac = pc.rna, pc.atac
    genes = np.asarray(pc.genes, dtype=object)
    labels = pc.cells["cell_line"].to_numpy().astype(str)
    train, test = _split(rna.shape[0], 0.2, labels, args.seed)
    params = {"random_state": args.seed}  # cmot's defaults (the paper's values belong to paper mode)
    desc = f"pan-cancer scCAT-seq ({path}): RNA inferred from binarized ATAC, stratified 80/20 split"
    return (rna[train], atac[train], rna[test], atac[test], None, genes,
            pc.cells.index.to_numpy()[test].astype(object), desc, params)


def cmd_demo(args) -> int:
    from .estimator import CMOT
    from .io import write_matrix
    from .metrics import cellwise_pearson, summary, wilcoxon_greater

    t0 = time.perf_counter()
    if args.out:
        _writable(args.out, "--out", folder=True)
    sx, sy, tx, ty, labels, x_feats, cells, desc, params = _demo_data(args)
    logger.info("demo on %s", desc)
    logger.info("source: %d cells (X: %d, Y: %d features); target: %d cells", sx.shape[0], sx.shape[1],
                sy.shape[1], ty.shape[0])
    model = CMOT(verbose=True, **params)
    with _warnings_to_log(), timed_step("CMOT fit + predict", log=logger):
        x_hat = model.fit(sx, sy, labels=labels).predict(ty)
    with timed_step("naive kNN baseline", log=logger):
        base = knn_baseline(sx, sy, ty)
    s_cmot, s_base = summary(tx, x_hat), summary(tx, base)
    test = wilcoxon_greater(cellwise_pearson(tx, x_hat), cellwise_pearson(tx, base))
    scores = {
        "data": desc,
        "params": {k: v for k, v in params.items()},
        "cmot": s_cmot,
        "knn_baseline": s_base,
        "wilcoxon_cmot_greater_pvalue": test.pvalue,
        "cells_cmot_better": test.n_greater,
        "cells_baseline_better": test.n_less,
        "poorly_mapped_cells": int(model.outliers_.sum()),
    }
    print(f"CMOT demo on {desc}")
    print(f"  target cells: {tx.shape[0]}, inferred features: {tx.shape[1]}")
    print(f"  mean cell-wise Pearson r   CMOT {s_cmot['mean_cellwise_pearson']:.4f}   "
          f"naive kNN {s_base['mean_cellwise_pearson']:.4f}")
    print(f"  median cell-wise Pearson r CMOT {s_cmot['median_cellwise_pearson']:.4f}   "
          f"naive kNN {s_base['median_cellwise_pearson']:.4f}")
    print(f"  mean feature-wise Pearson  CMOT {s_cmot['mean_featurewise_pearson']:.4f}   "
          f"naive kNN {s_base['mean_featurewise_pearson']:.4f}")
    print(f"  CMOT better for {test.n_greater} cells, kNN for {test.n_less} "
          f"(one-sided Wilcoxon signed-rank p = {test.pvalue:.3g})")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_matrix(os.path.join(args.out, "inferred.csv"), x_hat, cells, x_feats)
        with open(os.path.join(args.out, "scores.json"), "w") as fh:
            json.dump(scores, fh, indent=2, default=str)
        logger.info("wrote inferred.csv and scores.json to %s", args.out)
    logger.info("total %.2f s", time.perf_counter() - t0)
    return 0


# ---------------------------------------------------------------------------- parser
def _run_io_arguments(io_g) -> None:
    """The inputs and outputs of ``cmot run``."""
    io_g.add_argument("--source-x", required=True, metavar="PATH", help="source cells in the modality to infer")
    io_g.add_argument("--source-y", required=True, metavar="PATH", help="the same source cells in the shared modality")
    io_g.add_argument("--target-y", metavar="PATH", help="target cells in the shared modality")
    io_g.add_argument("--target-x", metavar="PATH", help="measured X of the target cells, to print scores (optional)")
    io_g.add_argument("--out", required=True, metavar="PATH", help="where to write the inferred target X")
    for what in ("source-x", "source-y", "target-y", "target-x"):
        io_g.add_argument(f"--{what}-modality", metavar="NAME",
                          help=f"modality of --{what} in a Matrix Market folder (e.g. rna, atac, adt)"
                          + ("; default: --source-y-modality" if what == "target-y" else "")
                          + ("; default: --source-x-modality" if what == "target-x" else ""))
    io_g.add_argument("--out-modality", metavar="NAME", help="modality name when --out is a folder (default: "
                      "--source-x-modality or x)")
    io_g.add_argument("--transpose", action="store_true",
                      help="CSV/TSV inputs are features x cells (other formats are unaffected)")
    io_g.add_argument("--transform-x", choices=("none", "log1p"), default="none", help="transform X first")
    io_g.add_argument("--transform-y", choices=("none", "log1p", "binarize"), default="none",
                      help="transform Y first (binarize: >0 -> 1, as for ATAC peaks)")
    io_g.add_argument("--labels-column", metavar="COL", help="column of cell metadata (cells.tsv of --source-y, "
                      "or --labels-file) giving source labels, e.g. cell_line")
    io_g.add_argument("--labels-file", metavar="PATH", help="CSV/TSV with cell names in the first column")
    io_g.add_argument("--split", type=float, metavar="FRAC", help="hold out this fraction of the source cells "
                      "(stratified by --labels-column) as the target and print scores against their measured X")
    io_g.add_argument("--outliers", metavar="PATH",
                      help="write poorly mapped target cells (CSV: poorly_mapped, score = robust z, "
                           "mapping_score in [0, 1], higher = better mapped)")
    io_g.add_argument("--scores", metavar="PATH", help="write the scores (JSON) when measured target X is known")
    io_g.add_argument("--model", metavar="PATH", help="save the fitted model (a cmot model file, read with "
                      "cmot.CMOT.load; it holds no code)")


def _run_model_arguments(p_g) -> None:
    """The CMOT parameters of ``cmot run``."""
    p_g.add_argument("--reg-e", type=_reg_e, default=None, metavar="FLOAT",
                     help="entropic weight of the OT (default: automatic, from the local cost scale)")
    p_g.add_argument("--reg-cl", type=float, default=1.0, metavar="FLOAT", help="label regularization (default 1)")
    p_g.add_argument("--n-neighbors", type=_k, default="auto", metavar="K",
                     help="neighbours averaged (default auto: leave-one-out on the source)")
    p_g.add_argument("--n-features", type=int, default=4000, metavar="N",
                     help="most variable Y features used (default 4000)")
    p_g.add_argument("--n-pcs", type=_pcs, default="auto", metavar="N",
                     help="principal components of those features (default auto: chosen by leave-one-out on the "
                     "source; 'none' = the paper's raw features)")
    p_g.add_argument("--shrinkage", type=_shrinkage, default="auto", metavar="S",
                     help="weight of the source mean in each prediction, 0 to 1 (default auto: leave-one-out on "
                     "the source; 0 unless Y predicts X little better than the mean)")
    p_g.add_argument("--paper", action="store_true",
                     help="follow the paper exactly: raw features (--n-pcs none, no scaling), balanced OT, "
                     "barycentric map, exp(-distance) weights, nearest aligned cell, no shrinkage, every source cell "
                     "transported (composition-sensitive)")
    p_g.add_argument("--n-clusters", type=int, default=2, metavar="N",
                     help="Ward clusters used as labels without --labels-column (default 2)")


def build_parser() -> argparse.ArgumentParser:
    """The ``cmot`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="cmot",
        description="Cross-Modality Optimal Transport: infer a missing single-cell modality (X) of target "
        "cells measured in a shared modality (Y) from source cells measured in both.",
    )
    parser.add_argument("--version", action="version", version=f"cmot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress messages on stderr")
    common.add_argument("--seed", type=int, default=0, help="random seed (split, clustering, models); default 0")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="infer X of target cells from files",
        description="Fit CMOT on paired source cells (X and Y) and infer X of the target cells from their Y. "
        "Inputs: Matrix Market folders (give --*-modality), CSV/TSV tables (cells as rows, first column cell "
        "names) or .h5ad files. The output format follows the --out extension (.csv, .tsv, .h5ad, or a "
        "folder).",
    )
    _run_io_arguments(run.add_argument_group("inputs and outputs"))
    _run_model_arguments(run.add_argument_group("CMOT parameters"))
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run CMOT on example data and compare with a naive kNN baseline",
        description="Infer RNA from ATAC on the pan-cancer data (paper protocol) when a shared data folder "
        f"is found (--data, or ${DATA_ENV}), else on synthetic data; print the "
        "mean cell-wise Pearson r of CMOT and of a naive kNN baseline.",
    )
    demo.add_argument("--out", metavar="DIR", help="write inferred.csv and scores.json here")
    demo.add_argument("--data", metavar="DIR", help="folder holding pancancer/ (or the pancancer folder)")
    demo.add_argument("--synthetic", action="store_true", help="use synthetic data even when real data is found")
    demo.add_argument("--n-cells", type=int, default=400, metavar="N", help="synthetic cells (default 400)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``cmot`` command; returns the exit status.

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    cmot 0.1.0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    with _logging(args.quiet):
        try:
            return args.func(args)
        except CLIError as exc:
            print(f"cmot {args.command}: error: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
