"""Step-by-step time and memory of CMOT on a549 (RNA from ATAC), with and without
manifold alignment (Step A).

    .venv/bin/python benchmarks/speed.py
    .venv/bin/python benchmarks/speed.py --params paper --fraction 0.5 --repeats 3

Two settings on the a549 training/test split (1,912 source cells, 479 targets):

- ``aligned``: the source is treated as partly paired: ``fit`` gets
  ``correspondence=np.c_[idx, idx]`` for a random ``--fraction`` of the training
  cells ``idx`` (seeded), so Step A (nonlinear manifold alignment) runs;
- ``paired``: ``correspondence=None`` (fully paired source, Step A skipped).

Columns: ``fit s`` (fit, including alignment and Ward clustering), ``predict s``
(cost, OT, outlier report, kNN inference), the internal steps that CMOT logs
(``verbose=True``), ``fit MB`` / ``predict MB`` (peak resident memory of the step
minus resident memory before it, in a forked child that already holds the
data; the high-water mark is reset between steps), ``peak RSS MB`` (the child's
absolute peak, data and interpreter included), and cell-wise r (mean) of the
prediction as a sanity check.  Times are the median over ``--repeats``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _data  # noqa: E402
from _common import (  # noqa: E402
    add_run_args,
    emit,
    limit_threads,
    _reset_peak, _status_kb, fmt, machine_note, markdown_table, measured, nanmean,
)
from cmot.metrics import cellwise_pearson  # noqa: E402

_DONE = re.compile(r"cmot: (.*) done in ([0-9.]+) s")


class _Steps(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.steps = []

    def emit(self, record):
        m = _DONE.match(record.getMessage())
        if m:
            name = re.sub(r"\s*\(.*\)$", "", m.group(1))
            self.steps.append((name, float(m.group(2))))


def _short(name: str) -> str:
    n = name.lower()
    for key, short in (("alignment", "align"), ("ward", "ward"), ("cost", "cost"), ("label-regularized", "OT"),
                       ("poorly", "outliers"), ("knn", "kNN")):
        if key in n:
            return short
    return name


def end_to_end(task, params, correspondence, seed):
    """fit + predict with per-step wall time and peak-memory increments."""
    from cmot import CMOT

    warnings.simplefilter("ignore")
    log = logging.getLogger("cmot")
    handler = _Steps()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    model = CMOT(**params, random_state=seed, verbose=True)
    out = {}
    _reset_peak()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    model.fit(task.train_x, task.train_y, correspondence=correspondence, labels=task.labels_for_ot)
    out["fit s"] = time.perf_counter() - t0
    out["fit MB"] = (_status_kb("VmHWM") - base) / 1024
    peak_fit = _status_kb("VmHWM")
    _reset_peak()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    pred = model.predict(task.test_y)
    out["predict s"] = time.perf_counter() - t0
    out["predict MB"] = (_status_kb("VmHWM") - base) / 1024
    out["peak RSS MB"] = max(peak_fit, _status_kb("VmHWM")) / 1024
    out["steps"] = {}
    for name, secs in handler.steps:
        out["steps"][_short(name)] = out["steps"].get(_short(name), 0.0) + secs
    out["pred"] = np.asarray(pred)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="a549_rna_from_atac", help="task name (default a549_rna_from_atac)")
    ap.add_argument("--params", default="paper", help="paper or default CMOT parameters (default paper)")
    ap.add_argument("--fraction", type=float, default=0.5, help="share of training cells given as known pairs")
    ap.add_argument("--settings", default="aligned,paired", help="comma-separated: aligned, paired")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    add_run_args(ap)
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    task = _data.load(_data.resolve_names(args.dataset)[0], seed=args.seed)
    params = task.paper_params if args.params == "paper" else {}
    print(f"# {task}; params {args.params} {params}", flush=True)
    n = task.train_x.shape[0]
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(n, size=int(round(args.fraction * n)), replace=False))
    step_names = ["align", "ward", "cost", "OT", "outliers", "kNN"]
    header = ["setting", "pairs", "fit s", "predict s", "total s"] + [f"{s} s" for s in step_names] + \
             ["fit MB", "predict MB", "peak RSS MB", "cell r mean"]
    rows = []
    for setting in args.settings.split(","):
        corr = np.c_[idx, idx] if setting == "aligned" else None
        runs = []
        for _ in range(args.repeats):
            res = measured(end_to_end, task, params, corr, args.seed, timeout=args.timeout)
            if res["error"]:
                print(f"  {setting}: FAILED {res['error']}", flush=True)
                if res.get("traceback"):
                    print(res["traceback"], file=sys.stderr)
                break
            runs.append(res["result"])
        if not runs:
            rows.append([setting, "-", "FAILED"] + ["-"] * (len(header) - 3))
            continue
        med = lambda key: float(np.median([r[key] for r in runs]))  # noqa: E731
        meds = lambda s: float(np.median([r["steps"].get(s, np.nan) for r in runs]))  # noqa: E731
        r = nanmean(cellwise_pearson(task.test_x, runs[0]["pred"]))
        row = [setting, len(idx) if corr is not None else n, fmt(med("fit s"), 2), fmt(med("predict s"), 2),
               fmt(med("fit s") + med("predict s"), 2)] + [fmt(meds(s), 2) if np.isfinite(meds(s)) else "-" for s in step_names] + \
              [fmt(med("fit MB"), 0), fmt(med("predict MB"), 0), fmt(med("peak RSS MB"), 0), fmt(r)]
        rows.append(row)
        print("  " + " | ".join(str(c) for c in row), flush=True)
    text = (f"CMOT speed on {task.name} ({task.train_x.shape[0]} source, {task.test_x.shape[0]} target cells; "
            f"params {args.params}; {args.repeats} repeat(s); {machine_note()})\n\n" + markdown_table(header, rows) + "\n")
    emit(text, args.out)


if __name__ == "__main__":
    main()
