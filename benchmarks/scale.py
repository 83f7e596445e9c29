"""How CMOT's time and memory grow with the number of cells.

    .venv/bin/python benchmarks/scale.py --sizes 1000,2000           # quick
    .venv/bin/python benchmarks/scale.py                              # 1000 ... 20000
    .venv/bin/python benchmarks/scale.py --data pbmc --sizes 1000,2000,5000
    .venv/bin/python benchmarks/scale.py --sizes 10000x20000,200000x50000 --plot out.png   # reference x query

Each size runs in a fresh Python process: ``n`` source and ``n`` target cells, or
``NSxNT`` for ``NS`` source (reference) and ``NT`` target (query) cells:

- ``--data synthetic`` (default): ``cmot.datasets.make_multimodal(n, n,
  n_x_features=50, n_y_features=200, random_state=0)``;
- ``--data pbmc``: source = n pbmc10k cells, target = n pbmc5k cells, drawn
  with replacement (seeded), log-normalized RNA (4,000 genes, sparse) as Y and
  14 CLR proteins as X (the pbmc10k_to_pbmc5k task).

CMOT runs with its default parameters (``random_state=0``).  Columns: ``fit s``,
``predict s``, ``total s`` (wall seconds); ``data MB`` (resident memory of the
process after building the data, before fit); ``peak RSS MB`` (the process's
peak resident memory during fit + predict, interpreter and data included: its
``VmHWM``, reset with ``/proc/self/clear_refs`` after the data are built so
that a loading peak does not count; ``ru_maxrss`` where that is unavailable);
``extra MB`` (peak RSS minus data MB: what fit + predict added);
``x time`` / ``x mem`` (ratio of total s / extra MB to the previous size) and ``time exp`` (log(time ratio) / log(size ratio): 1 = linear,
2 = quadratic); ``OT iters`` (Sinkhorn iterations run, all majorization steps
together: at most 10 x 200 with the defaults); ``outl %`` (target cells flagged
as poorly mapped: the synthetic target has no new type, so ideally ~0).  ``--mem-limit-gb`` caps each child's address space so that a
size too large for the machine fails with MemoryError instead of swapping
other users out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _rss_mb(key="VmRSS"):
    from _common import _status_kb

    return _status_kb(key) / 1024


def _size(text: str) -> tuple[int, int]:
    ns, _, nt = text.strip().partition("x")
    return int(ns), int(nt or ns)


def child(size: str, data: str, seed: int, threads: int | None) -> dict:
    import numpy as np

    from _common import limit_threads

    limit_threads(threads)
    warnings.simplefilter("ignore")
    ns, nt = _size(size)
    if data == "synthetic":
        from cmot.datasets import make_multimodal

        d = make_multimodal(ns, nt, n_x_features=50, n_y_features=200, random_state=seed)
        sx, sy, ty = d.source_x, d.source_y, d.target_y
    elif data == "pbmc":
        import _data

        task = _data.load("pbmc10k_to_pbmc5k")
        rng = np.random.default_rng(seed)
        i = rng.integers(0, task.train_x.shape[0], ns)
        j = rng.integers(0, task.test_y.shape[0], nt)
        sx, sy, ty = task.train_x[i], task.train_y[i], task.test_y[j]
        del task
    else:
        raise SystemExit(f"--data: expected synthetic or pbmc, found {data!r}")
    from cmot import CMOT

    from _common import _reset_peak

    # forget the peak of building/loading the data: measure fit + predict only
    can_reset = _reset_peak()
    data_mb = _rss_mb()
    model = CMOT(random_state=seed)
    t0 = time.perf_counter()
    model.fit(sx, sy)
    t1 = time.perf_counter()
    pred = model.predict(ty)
    t2 = time.perf_counter()
    from cmot.sparse_transport import uses_sparse

    return {
        "n": size, "ns": ns, "nt": nt, "support": "sparse" if uses_sparse(ns, nt, model.correction) else "dense",
        "fit s": t1 - t0, "predict s": t2 - t1, "total s": t2 - t0, "data MB": data_mb,
        "peak RSS MB": _rss_mb("VmHWM") if can_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outl %": 100 * float(np.mean(model.outliers_)), "OT iters": int(getattr(model, "n_iter_", -1)), "finite": bool(np.isfinite(pred).all()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,2000,5000,10000,20000",
                    help="comma-separated cell counts: N (N source and N target cells) or NSxNT")
    ap.add_argument("--plot", help="also draw time and peak memory against the reference size to this PNG")
    ap.add_argument("--data", default="synthetic", help="synthetic (default) or pbmc")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per size (default 1800)")
    ap.add_argument("--mem-limit-gb", type=float, default=12.0, help="address-space cap per child (default 12; 0: none)")
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        if args.mem_limit_gb > 0:
            lim = int(args.mem_limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        try:
            res = child(args.child, args.data, args.seed, args.threads)
        except MemoryError:
            res = {"n": args.child, "error": f"MemoryError (address space capped at {args.mem_limit_gb:g} GB)"}
        except Exception as exc:  # noqa: BLE001
            res = {"n": args.child, "error": f"{type(exc).__name__}: {exc}"}
        print("RESULT " + json.dumps(res), flush=True)
        return

    from _common import emit, fmt, machine_note, markdown_table

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    header = ["source cells", "target cells", "transport", "fit s", "predict s", "total s", "data MB", "peak RSS MB", "extra MB", "x time", "x mem",
              "time exp", "OT iters", "outl %"]
    rows, prev, results = [], None, []
    print(f"# scale: data={args.data}, sizes {sizes}", flush=True)
    for n in sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(n), "--data", args.data, "--seed",
               str(args.seed), "--mem-limit-gb", str(args.mem_limit_gb)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            res = json.loads(lines[-1][7:]) if lines else {
                "n": n, "error": f"child exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
        except subprocess.TimeoutExpired:
            res = {"n": n, "error": f"timeout after {args.timeout:g} s"}
        if "error" in res:
            print(f"  n={n}: FAILED {res['error']} ({time.perf_counter() - t0:.0f} s)", flush=True)
            ns, nt = _size(n)
            rows.append([ns, nt, "FAILED: " + res["error"][:70]] + ["-"] * (len(header) - 3))
            continue
        xt = xm = ex = "-"
        if prev is not None:
            rt = res["total s"] / prev["total s"]
            m0 = max(prev["peak RSS MB"] - prev["data MB"], 1e-9)
            rm = (res["peak RSS MB"] - res["data MB"]) / m0
            xt, xm = fmt(rt, 2), fmt(rm, 2)
            grow = res["ns"] * res["nt"] / (prev["ns"] * prev["nt"])
            ex = fmt(math.log(rt) / math.log(grow), 2) if grow != 1 else "-"
        row = [res["ns"], res["nt"], res["support"], fmt(res["fit s"], 2), fmt(res["predict s"], 2), fmt(res["total s"], 2), fmt(res["data MB"], 0),
               fmt(res["peak RSS MB"], 0), fmt(res["peak RSS MB"] - res["data MB"], 0), xt, xm, ex, res["OT iters"], fmt(res["outl %"], 1)]
        rows.append(row)
        results.append(res)
        prev = res
        print("  " + " | ".join(str(c) for c in row), flush=True)
    text = (f"CMOT scaling (data {args.data}, default parameters; {machine_note()})\n\n"
            + markdown_table(header, rows) + "\n")
    emit(text, args.out)
    if args.plot and results:
        _plot(results, args.plot)


def _plot(results, path):
    """Time and peak memory against the number of reference cells, one line per query size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for nt in sorted({r["nt"] for r in results}):
        pts = sorted((r["ns"], r["total s"], r["peak RSS MB"] / 1024) for r in results if r["nt"] == nt)
        xs = [p[0] for p in pts]
        axes[0].plot(xs, [p[1] for p in pts], "o-", label=f"{nt:,} query cells")
        axes[1].plot(xs, [p[2] for p in pts], "o-", label=f"{nt:,} query cells")
    axes[0].set_ylabel("fit + predict (s)")
    axes[1].set_ylabel("peak memory, inputs included (GiB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("reference cells")
        ax.grid(alpha=0.3)
    axes[0].axhline(600, color="grey", ls="--", lw=0.8)
    axes[1].axhline(12, color="grey", ls="--", lw=0.8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
