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
import scipy.sparse as sp

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
def dense(m) -> np.ndarray:
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching rows of a and b; nan where either row is constant."""
    const = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[const | ~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def cellwise_pearson(pred, true) -> np.ndarray:
    """Pearson r of each test cell across features (nan for a constant profile)."""
    return _rowwise_pearson(dense(pred), dense(true))


def featurewise_pearson(pred, true) -> np.ndarray:
    """Pearson r of each feature across test cells (nan where measured or predicted is constant)."""
    return _rowwise_pearson(dense(pred).T.copy(), dense(true).T.copy())


def peakwise_auroc(pred, true_binary, *, binarize_at: float | None = None) -> np.ndarray:
    """AUROC of each peak (column): inferred values, min-max normalized per peak,
    against the measured binary peak; nan for peaks with one class in the test cells.

    Equal to ``sklearn.metrics.roc_auc_score(true[:, j], pred[:, j])`` for each peak
    (Mann-Whitney U with average ranks for ties), vectorized over peaks.  With
    ``binarize_at`` the normalized values are first cut at that threshold (the
    paper's protocol: cut at 0.5), which makes the score coarser.
    """
    from scipy.stats import rankdata

    p = dense(pred)
    t = dense(true_binary) > 0
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    p = (p - lo) / span
    if binarize_at is not None:
        p = (p >= binarize_at).astype(np.float64)
    ranks = rankdata(p, axis=0)
    n1 = t.sum(axis=0).astype(np.float64)
    n0 = t.shape[0] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = ((ranks * t).sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    return auc


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
