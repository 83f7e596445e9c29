"""Shared helpers of the benchmark scripts: isolated timed runs with peak-memory
measurement, accuracy metrics, and table printing."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time
import traceback
import warnings

import numpy as np
from cmot._utils import to_dense

# ----------------------------------------------------------------- memory
def _status_kb(key: str) -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _child(conn, fn, args, kwargs):
    try:
        warnings.simplefilter("ignore")
        can_reset = _reset_peak()
        base_kb = _status_kb("VmRSS")
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        secs = time.perf_counter() - t0
        peak_kb = _status_kb("VmHWM") if can_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        conn.send(("ok", out, secs, (peak_kb - base_kb) / 1024.0, peak_kb / 1024.0))
    except BaseException as exc:  # report, never hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(), None, None))
    finally:
        conn.close()


def measured(fn, *args, timeout: float | None = None, **kwargs) -> dict:
    """Run ``fn(*args, **kwargs)`` in a forked child process and measure it.

    Returns a dict with ``result`` (fn's return value, pickled back), ``seconds``
    (wall time of the call inside the child), ``peak_mb`` (the child's peak
    resident set size during the call minus its resident set size when the
    call started: the extra memory the call needed on top of the inputs it
    inherited), ``peak_total_mb`` (the child's peak RSS, inputs included) and
    ``error`` (None, a message, or "timeout").

    The child is forked after the data are loaded, so it starts with them in
    memory at no cost; its high-water mark is reset (``/proc/self/clear_refs``)
    before the call, so the peak is that of the call alone.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(child, fn, args, kwargs))
    p.start()
    child.close()
    res = {"result": None, "seconds": float("nan"), "peak_mb": float("nan"), "peak_total_mb": float("nan"), "error": None}
    if parent.poll(timeout):
        try:
            status, out, secs, peak, total = parent.recv()
        except EOFError:
            status, out = "error", f"child died (exit code {p.exitcode})"
            secs = peak = total = None
        if status == "ok":
            res.update(result=out, seconds=secs, peak_mb=peak, peak_total_mb=total)
        else:
            res["error"] = out
            if secs:  # traceback
                res["traceback"] = secs
    else:
        res["error"] = "timeout" if p.is_alive() else f"child died (exit code {p.exitcode})"
    if p.is_alive():
        p.kill()
    p.join()
    return res


# ----------------------------------------------------------------- metrics
# Pearson scores are cmot.metrics.cellwise_pearson / featurewise_pearson, called as
# (measured, inferred); they are re-exported here only for scripts not yet switched.
from cmot.metrics import binarize, cellwise_pearson, featurewise_auroc, featurewise_pearson  # noqa: E402,F401


def peakwise_auroc(pred, true_binary, *, binarize_at: float | None = None) -> np.ndarray:
    """AUROC of each peak (column): the inferred values ``pred`` against the measured
    binary peaks; nan for peaks with one class in the test cells
    (:func:`cmot.metrics.featurewise_auroc`, equal to ``sklearn.metrics.roc_auc_score``
    per peak).  With ``binarize_at`` the inferred values are first min-max normalized
    per peak and cut at that threshold, values equal to it counting as 1
    (:func:`cmot.metrics.binarize` with ``inclusive=True``; the paper's protocol cuts
    at 0.5), which makes the score coarser.
    """
    truth = (to_dense(true_binary) > 0).astype(np.int8)
    p = to_dense(pred, np.float64)
    if binarize_at is not None:
        p = binarize(p, binarize_at, inclusive=True)
    return featurewise_auroc(truth, p)


def nanmean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def nanmedian(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")


# ----------------------------------------------------------------- tables
def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if not np.isfinite(v):
        return "nan"
    if digits == 0:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def markdown_table(header: list, rows: list) -> str:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def core_state() -> str:
    """Which cmot core was measured: version, git HEAD, and a hash of uncommitted core changes."""
    import hashlib
    import subprocess

    import cmot

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "HEAD", "--", "python/cmot"], cwd=root, capture_output=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        head, diff = "?", b""
    dirty = f" + uncommitted python/cmot changes (diff sha1 {hashlib.sha1(diff).hexdigest()[:8]})" if diff else ""
    return f"cmot {getattr(cmot, '__version__', '?')} at {head or '?'}{dirty}"


def machine_note() -> str:
    import platform

    try:
        load = os.getloadavg()
        load_s = f"load average {load[0]:.2f}"
    except OSError:
        load_s = "load average n/a"
    return (
        f"{platform.node()}, {os.cpu_count()} CPUs, {load_s}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {core_state()}"
    )


def limit_threads(n: int | None) -> None:
    """Cap BLAS/OpenMP threads of numpy, scipy and sklearn (inherited by forked children).

    On a small shared machine, OpenBLAS threads that spin while the cores are
    busy can make LAPACK calls tens of times slower (seen here: scipy's
    ``gesdd`` on 479 x 1912 took 0.4 s with 1 thread, 17 s with 2)."""
    if n is None or n <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def emit(text: str, out: str | None) -> None:
    """Print a result table and, with ``--out``, also write it to that file."""
    print()
    print(text)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as fh:
            fh.write(text)
        print(f"written to {out}")


def add_run_args(ap, *, timeout_help: str = "seconds allowed per run (default 1800)") -> None:
    """The options every table script shares: --timeout, --out and --threads."""
    ap.add_argument("--timeout", type=float, default=1800, help=timeout_help)
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--threads", type=int, default=None,
                    help="cap BLAS/OpenMP threads (default: library default, all cores)")
