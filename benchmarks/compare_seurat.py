"""cmot against Seurat's FindTransferAnchors + TransferData on the same train/test splits.

Run (from the repository root, with the project's venv; R with Seurat on PATH)::

    python benchmarks/compare_seurat.py                     # all four tasks, seed 0
    python benchmarks/compare_seurat.py --datasets pancancer,a549 --seeds 0,1,2
    python benchmarks/compare_seurat.py --sweep             # re-tune Seurat's reduction/dims first
    python benchmarks/compare_seurat.py --sweep pancancer,a549   # ... for these tasks only

For each task of ``benchmarks/_data.py`` with a Seurat counterpart
(pancancer and a549: RNA from ATAC; pbmc10k: protein from RNA; pbmc10k ->
pbmc5k), it runs, on exactly the same cells (``_data.load(name, seed)``):

- ``cmot paper``: ``CMOT(**task.paper_params)`` (the paper's parameters);
- ``cmot default``: ``CMOT()`` (the package defaults);
- ``cmot tuned``: ``cmot.search.CMOTSearchCV`` (5-fold cross-validation of
  ``reg_e``, ``n_neighbors`` and ``n_features`` over the default grid, on the
  training cells only, from the recommended setting), refitted on all training
  cells; its time includes the search (by default on pancancer and a549 only,
  see ``--tune``; ``--methods`` can leave it out);
- ``TransferData``: ``benchmarks/seurat/transfer.R``: reference = training cells,
  the shared modality (Y) for the anchors and the other modality (X) as
  ``refdata``; query = test cells in Y.  The loader's normalized values go to the
  ``data`` slot; Seurat scales and reduces them.  The reduction and the number of
  dimensions are those of :data:`SEURAT_SETTINGS` (the best mean cell-wise r of a
  sweep on split seed 0, chosen on the test cells, which favours Seurat), or,
  with ``--sweep``, the best of :data:`SEURAT_GRID` found anew.

``cmot recommended`` (:data:`RECOMMENDED`) names, per task, the cmot setting
that benchmarks/results/accuracy*.md (mean over seeds 0-4) found better; the
per-feature scatter and the CI test (tests/r/test_seurat_baseline.py) use it.

Printed and written to ``benchmarks/results/compare_seurat.md``: mean and median
cell-wise Pearson r (each test cell across features), mean feature-wise r (each
feature across test cells), the one-sided paired Wilcoxon signed-rank p-value of
"cmot's cell-wise r > TransferData's" (``scipy.stats.wilcoxon(..., alternative=
"greater")`` over the test cells; cells of all seeds pooled), seconds and peak
memory.  Time: cmot's ``fit`` + ``predict`` in a forked child; Seurat's own work
as timed inside R (object set-up, ScaleData, reduction, FindTransferAnchors,
TransferData; not R's start-up, library loading or file I/O).  Memory: "peak MB"
is the peak resident set of the process that ran the method (cmot: the forked
Python child holding the loaded data; Seurat: the Rscript child, in which R with
Seurat loaded alone takes the "R+Seurat floor" noted under the table); "call MB"
is what the method added on top (cmot: peak minus the child's RSS at the start;
Seurat: peak minus that floor).  BLAS/OpenMP use one thread in both (``--threads``).

Figures (``benchmarks/results/``): ``seurat_cellwise_boxplot.png`` (per-cell r of
every method, one panel per task, as the paper's Fig. 2A) and
``seurat_featurewise_scatter.png`` (per-feature r, cmot recommended vs
TransferData, one panel per task).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "seurat"))

import _data  # noqa: E402
from _common import (  # noqa: E402
    fmt,
    limit_threads,
    machine_note,
    markdown_table,
    measured,
    nanmean,
    nanmedian,
)
from cmot.metrics import cellwise_pearson, featurewise_pearson  # noqa: E402
from driver import r_baseline_mib, rscript_available, seurat_transfer  # noqa: E402

RESULTS = HERE / "results"

TASKS = ("pancancer_rna_from_atac", "a549_rna_from_atac", "pbmc10k_protein_from_rna", "pbmc10k_to_pbmc5k")

#: Best (reduction, dims) of TransferData per task: sweep of SEURAT_GRID on split
#: seed 0 (benchmarks/results/compare_seurat.md has the sweep table).
SEURAT_SETTINGS = {
    "pancancer_rna_from_atac": ("pcaproject", 10),
    "a549_rna_from_atac": ("pcaproject", 10),
    "pbmc10k_protein_from_rna": ("pcaproject", 30),
    "pbmc10k_to_pbmc5k": ("pcaproject", 30),
}

#: Grid searched by --sweep: reductions x numbers of dimensions.  "lsiproject" is a
#: hand-made LSI (TF-IDF + irlba SVD; Signac is not installed), for ATAC only.
SEURAT_GRID = {
    "pancancer_rna_from_atac": (("pcaproject", "cca", "lsiproject"), (5, 10, 20, 30, 50)),
    "a549_rna_from_atac": (("pcaproject", "cca", "lsiproject"), (5, 10, 20, 30)),
    "pbmc10k_protein_from_rna": (("pcaproject", "cca"), (10, 30, 50)),
    "pbmc10k_to_pbmc5k": (("pcaproject", "cca"), (10, 30, 50)),
}

#: cmot's recommended setting per task, from benchmarks/results/accuracy*.md
#: (mean cell-wise r over split seeds 0-4): "paper" or "default".
RECOMMENDED = {  # benchmarks/results/accuracy_*_final.md (cmot 0.2.0, core 8a4096e)
    "pancancer_rna_from_atac": "default",  # 0.682 (default) vs 0.676 (paper), 3 seeds
    "a549_rna_from_atac": "default",  # 0.529 vs 0.530 cell-wise, feature-wise 0.021 vs 0.020
    "pbmc10k_protein_from_rna": "default",  # 0.954 vs 0.941
    "pbmc10k_to_pbmc5k": "default",  # 0.919 vs 0.865
}

CMOT_METHODS = ("cmot paper", "cmot default", "cmot tuned")


# ----------------------------------------------------------------- runs
def _cmot(task, params, seed):
    from cmot import CMOT

    warnings.simplefilter("ignore")
    model = CMOT(**params, random_state=seed)
    return np.asarray(model.fit(task.train_x, task.train_y, labels=task.labels_for_ot).predict(task.test_y))


def _cmot_tuned(task, base, seed):
    from cmot.search import CMOTSearchCV

    warnings.simplefilter("ignore")
    search = CMOTSearchCV(n_splits=5, base_params=base, random_state=seed)
    search.fit(task.train_x, task.train_y, labels=task.labels_for_ot)
    return np.asarray(search.predict(task.test_y)), search.best_params_


def run_cmot(task, which: str, seed: int, timeout=None) -> dict:
    if which == "tuned":
        base = dict(task.paper_params) if RECOMMENDED[task.name] == "paper" else {}
        base = {k: v for k, v in base.items() if k not in ("reg_e", "n_neighbors", "n_features")}
        res = measured(_cmot_tuned, task, base, seed, timeout=timeout)
    else:
        params = dict(task.paper_params) if which == "paper" else {}
        res = measured(_cmot, task, params, seed, timeout=timeout)
    if res["error"]:
        raise RuntimeError(f"cmot {which} failed on {task.name}: {res['error']}\n{res.get('traceback', '')}")
    if which == "tuned":
        pred, best = res["result"]
        setting = "CV on train: " + ", ".join(f"{k}={v}" for k, v in best.items())
    else:
        pred, setting = res["result"], "paper params" if which == "paper" else "defaults"
    return {"pred": pred, "seconds": res["seconds"], "peak_mb": res["peak_total_mb"], "call_mb": res["peak_mb"],
            "setting": setting}


def run_seurat(task, reduction: str, dims: int, floor_mb: float | None = None, timeout=None) -> dict:
    pred, info = seurat_transfer(task.train_y, task.train_x, task.test_y, reduction=reduction, dims=dims,
                                 y_names=task.y_features, x_names=task.x_features,
                                 train_cells=task.train_cells, test_cells=task.test_cells, timeout=timeout)
    return {"pred": pred, "seconds": info["seconds"], "wall": info["wall_seconds"], "peak_mb": info["peak_mib"],
            "call_mb": None if floor_mb is None else info["peak_mib"] - floor_mb,
            "setting": f"{reduction}, {info['dims']} dims ({info['n_anchors']} anchors, k.weight {info['k_weight']})",
            "info": info}


def sweep(task, timeout=None, log=print) -> tuple:
    """Run SEURAT_GRID on ``task``; returns (best (reduction, dims), rows)."""
    reductions, dims_list = SEURAT_GRID[task.name]
    rows, best, best_r = [], None, -np.inf
    for red in reductions:
        for dims in dims_list:
            try:
                res = run_seurat(task, red, dims, timeout=timeout)
            except Exception as exc:  # a failed setting is reported, not fatal
                log(f"  sweep {red} {dims}: FAILED {str(exc).splitlines()[-1] if str(exc) else exc}")
                rows.append([task.name, red, dims, "failed", "", "", ""])
                continue
            cell = cellwise_pearson(task.test_x, res["pred"])
            r = nanmean(cell)
            log(f"  sweep {red} {dims}: cell r mean {r:.4f}  ({res['seconds']:.1f} s)")
            rows.append([task.name, red, dims, fmt(r, 4), fmt(nanmedian(cell), 4),
                         fmt(nanmean(featurewise_pearson(task.test_x, res["pred"])), 4), fmt(res["seconds"], 1)])
            if r > best_r:
                best, best_r = (red, dims), r
    return best, rows


def wilcoxon_greater(a, b) -> float:
    """One-sided paired Wilcoxon signed-rank p-value of a > b (pairs with a nan dropped)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 1 or np.all(a[ok] == b[ok]):
        return float("nan")
    return float(wilcoxon(a[ok], b[ok], alternative="greater").pvalue)


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "nan"
    return "< 1e-300" if p == 0 else f"{p:.2g}"


# ----------------------------------------------------------------- figures
def figures(collected: dict, out: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(collected)
    paths = []
    fig, axes = plt.subplots(1, len(names), figsize=(max(3.6 * len(names), 5.0), 4.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        methods = list(collected[name]["cell"])
        data = [np.asarray(collected[name]["cell"][m])[np.isfinite(collected[name]["cell"][m])] for m in methods]
        ax.boxplot(data, showfliers=True, widths=0.6)
        ax.set_xticks(range(1, len(methods) + 1))
        ax.set_xticklabels([m.replace(" ", "\n", 1) for m in methods], fontsize=8)
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_ylabel("cell-wise Pearson r")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Cell-wise Pearson r, inferred vs measured (test cells)", fontsize=10)
    fig.tight_layout()
    p = out / "seurat_cellwise_boxplot.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, len(names), figsize=(max(3.8 * len(names), 4.0), 4.1), squeeze=False)
    for ax, name in zip(axes[0], names):
        rec = f"cmot {RECOMMENDED[name]}"
        if rec not in collected[name]["feat"]:
            rec = next(m for m in collected[name]["feat"] if m != "TransferData")
        x = np.asarray(collected[name]["feat"]["TransferData"])
        y = np.asarray(collected[name]["feat"][rec])
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=4 if ok.sum() > 200 else 14, alpha=0.4 if ok.sum() > 200 else 0.8, lw=0)
        lo = float(min(x[ok].min(), y[ok].min(), 0)) if ok.any() else -1
        ax.plot([lo, 1], [lo, 1], color="grey", lw=0.8, ls="--")
        above = float(np.mean(y[ok] > x[ok])) if ok.any() else float("nan")
        ax.set_title(f"{name.replace('_', ' ')}\n{100 * above:.0f}% of {ok.sum()} features above the diagonal",
                     fontsize=8)
        ax.set_xlabel("TransferData feature-wise r")
        ax.set_ylabel(f"{rec} feature-wise r")
        ax.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    p = out / "seurat_featurewise_scatter.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(p)
    return paths


# ----------------------------------------------------------------- main
def core_stamp() -> str:
    """cmot's version and the git commit of python/cmot (with a hash of uncommitted changes)."""
    import hashlib
    import subprocess

    import cmot
    import cmot.metrics  # noqa: F401  (imported once, before the forked runs)
    import cmot.search  # noqa: F401

    repo = HERE.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "python/cmot"], cwd=repo, capture_output=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return f"cmot {cmot.__version__}"
    dirty = f" + uncommitted python/cmot changes (diff sha1 {hashlib.sha1(diff).hexdigest()[:8]})" if diff else ""
    return f"cmot {cmot.__version__} at {head}{dirty}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(TASKS),
                    help=f"comma-separated task names or prefixes among {', '.join(TASKS)} (default all four)")
    ap.add_argument("--seeds", default="0", help="comma-separated split/CMOT seeds (default 0)")
    ap.add_argument("--methods", default=",".join(CMOT_METHODS),
                    help=f"cmot variants to run besides TransferData (default {','.join(CMOT_METHODS)})")
    ap.add_argument("--tune", default="pancancer,a549", metavar="DATASETS",
                    help="tasks on which 'cmot tuned' runs (default pancancer,a549: on pbmc the 5-fold search of "
                         "15 couplings takes long on 2 cores); 'all' for every task")
    ap.add_argument("--sweep", nargs="?", const="all", default=None, metavar="DATASETS",
                    help="re-tune TransferData's reduction/dims on the first seed (SEURAT_GRID), for all selected "
                         "tasks or for the comma-separated names/prefixes given")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for cmot and R (default 1)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run (default 3600)")
    ap.add_argument("--out", default=str(RESULTS), help="folder for the table and figures (default benchmarks/results)")
    ap.add_argument("--no-figures", action="store_true")
    args = ap.parse_args(argv)

    reason = rscript_available()
    if reason:
        sys.exit(f"compare_seurat: {reason}")
    limit_threads(args.threads)
    names = [n for n in _data.resolve_names(args.datasets) if n in TASKS]
    if not names:
        sys.exit(f"compare_seurat: no task among {', '.join(TASKS)} selected")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in CMOT_METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; expected some of {', '.join(CMOT_METHODS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_names = set(_data.resolve_names(args.sweep)) if args.sweep else set()
    tune_names = set(_data.resolve_names(args.tune)) if args.tune else set()
    # import the core once here: the forked cmot runs then all use this same code,
    # even if the working tree changes during the run
    stamp = core_stamp()
    print(f"# {stamp}", flush=True)
    floor = r_baseline_mib()
    print(f"# R + Seurat loaded, nothing else: peak RSS {floor:.0f} MB", flush=True)

    header = ["dataset", "direction", "method", "setting", "cell r mean", "cell r median", "feat r mean",
              "p (cmot > TD)", "s", "peak MB", "call MB"]
    rows, sweep_rows, notes, collected, wins = [], [], [], {}, []
    for name in names:
        settings = SEURAT_SETTINGS[name]
        task_methods = [m for m in methods if m != "cmot tuned" or name in tune_names]
        per = {m: {"cell": [], "feat": [], "s": [], "peak": [], "call": [], "setting": ""}
               for m in (*task_methods, "TransferData")}
        for i, seed in enumerate(seeds):
            task = _data.load(name, seed=seed)
            print(f"# {task} seed {seed}", flush=True)
            if name in sweep_names and i == 0:
                settings, srows = sweep(task, timeout=args.timeout)
                sweep_rows += srows
                print(f"  best TransferData setting: {settings}", flush=True)
            runs = {m: run_cmot(task, m.split()[1], seed, args.timeout) for m in task_methods}
            runs["TransferData"] = run_seurat(task, *settings, floor_mb=floor, timeout=args.timeout)
            for m, r in runs.items():
                cell = cellwise_pearson(task.test_x, r["pred"])
                feat = featurewise_pearson(task.test_x, r["pred"])
                per[m]["cell"].append(cell)
                per[m]["feat"].append(feat)
                per[m]["s"].append(r["seconds"])
                per[m]["peak"].append(r["peak_mb"])
                per[m]["call"].append(r["call_mb"] if r["call_mb"] is not None else np.nan)
                per[m]["setting"] = r["setting"]
                print(f"  {m:13s} cell r mean {nanmean(cell):.4f} median {nanmedian(cell):.4f} feat r mean "
                      f"{nanmean(feat):.4f}  {r['seconds']:.1f} s  peak {r['peak_mb']:.0f} MB  [{r['setting']}]",
                      flush=True)
        wins.append(_feature_wins(name, task.x_features, per, task_methods))
        td_cells = np.concatenate(per["TransferData"]["cell"])
        task_dir = f"{task.dataset}: {task.direction}"
        collected[name] = {"cell": {}, "feat": {}}
        for m in (*task_methods, "TransferData"):
            cells = np.concatenate(per[m]["cell"])
            feats = np.concatenate(per[m]["feat"])
            collected[name]["cell"][m] = cells
            collected[name]["feat"][m] = feats
            means = [nanmean(c) for c in per[m]["cell"]]
            mean_s = fmt(float(np.mean(means)), 4) + (f" ± {np.std(means):.4f}" if len(seeds) > 1 else "")
            label = m + (" (recommended)" if m == f"cmot {RECOMMENDED[name]}" else "")
            rows.append([name, task.direction, label, per[m]["setting"], mean_s, fmt(nanmedian(cells), 4),
                         fmt(nanmean(feats), 4),
                         "-" if m == "TransferData" else _fmt_p(wilcoxon_greater(cells, td_cells)),
                         fmt(float(np.mean(per[m]["s"])), 1), fmt(float(np.max(per[m]["peak"])), 0),
                         fmt(float(np.nanmax(per[m]["call"])), 0)])
        notes.append(f"- {name}: {task_dir}; train {task.train_x.shape[0]} / test {task.test_x.shape[0]} cells, "
                     f"X {task.train_x.shape[1]} / Y {task.train_y.shape[1]} features; paper params "
                     f"{task.paper_params}")

    table = markdown_table(header, rows)
    print()
    print(table)
    text = [f"# cmot vs Seurat TransferData (seeds {','.join(map(str, seeds))}; {machine_note()}; "
            f"threads {args.threads})", "", f"Core used by every cmot run (imported once at the start): {stamp}.", "", "Command: `python benchmarks/compare_seurat.py "
            + " ".join(argv if argv is not None else sys.argv[1:]) + "`", "", table, "",
            f"R + Seurat loaded alone (the floor of every Seurat run): peak RSS {floor:.0f} MB.", "", *notes]
    text += ["", "## Per-feature wins and losses against TransferData", "",
             "Each feature's r across the test cells, averaged over the seeds; 'better' / 'worse': by more "
             "than 0.01.", "", *[line for block in wins for line in block]]
    if sweep_rows:
        text += ["", "## TransferData sweep (split seed " + str(seeds[0]) + ", chosen on the test cells)", "",
                 markdown_table(["task", "reduction", "dims", "cell r mean", "cell r median", "feat r mean", "s"],
                                sweep_rows)]
    if not args.no_figures:
        for p in figures(collected, out):
            print(f"wrote {p}")
            text.append(f"\n![{p.stem}]({p.name})")
    md = out / "compare_seurat.md"
    md.write_text("\n".join(text) + "\n")
    print(f"wrote {md}")
    return rows


#: Features named per task among the largest gains and losses; every feature in a table up to WINS_TABLE_MAX.
WINS_NAMED = 5
WINS_TABLE_MAX = 20


def _feature_wins(name, features, per, methods):
    """Markdown lines: per-feature r of the default cmot against TransferData (mean over seeds)."""
    method = "cmot default" if "cmot default" in methods else methods[0]
    ours = np.nanmean(np.vstack(per[method]["feat"]), axis=0)
    theirs = np.nanmean(np.vstack(per["TransferData"]["feat"]), axis=0)
    ok = np.isfinite(ours) & np.isfinite(theirs)
    diff = np.where(ok, ours - theirs, np.nan)
    names = [str(f) for f in features]
    lines = [f"**{name}** ({method}; {int(ok.sum())} features with r defined)", "",
             f"- better by > 0.01 on {int(np.sum(diff > 0.01))}, worse by > 0.01 on {int(np.sum(diff < -0.01))}, "
             f"within 0.01 on {int(np.sum(np.abs(diff) <= 0.01))}; median difference {np.nanmedian(diff):+.4f}"]
    order = np.argsort(np.nan_to_num(diff, nan=0.0), kind="stable")
    if ok.sum() <= WINS_TABLE_MAX:
        lines += ["", f"| feature | {method} | TransferData | difference |", "| --- | --- | --- | --- |"]
        lines += [f"| {names[j]} | {ours[j]:.4f} | {theirs[j]:.4f} | {diff[j]:+.4f} |" for j in order[::-1] if ok[j]]
    else:
        gains = [j for j in order[::-1][:WINS_NAMED] if ok[j] and diff[j] > 0]
        losses = [j for j in order[:WINS_NAMED] if ok[j] and diff[j] < 0]
        lines.append("- largest gains: " + ", ".join(f"{names[j]} ({theirs[j]:.3f} -> {ours[j]:.3f})" for j in gains))
        lines.append("- largest losses: " + ", ".join(f"{names[j]} ({theirs[j]:.3f} -> {ours[j]:.3f})" for j in losses))
    return lines + [""]


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"# total {time.time() - t0:.0f} s")
