"""Small helpers shared by every module: dense conversion, timed steps, matching by name."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger("cmot")

__all__ = ["to_dense", "timed_step", "verbose_output", "match_names"]


def to_dense(m, dtype=None) -> np.ndarray:
    """``m`` as a dense ndarray (sparse matrices are densified), optionally cast to ``dtype``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> to_dense(sp.eye(2, format="csr")).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    out = m.toarray() if sp.issparse(m) else np.asarray(m)
    return out if dtype is None else out.astype(dtype, copy=False)


@contextmanager
def timed_step(name: str, verbose: bool = True, log: logging.Logger | None = None):
    """Log ``name ...`` on entry and ``name done in N s`` on exit (INFO level) when ``verbose``.

    Examples
    --------
    >>> with timed_step("nothing", verbose=False):
    ...     pass
    """
    log = log or logger
    t0 = time.perf_counter()
    if verbose:
        log.info("cmot: %s ...", name)
    yield
    if verbose:
        log.info("cmot: %s done in %.2f s", name, time.perf_counter() - t0)


@contextmanager
def verbose_output(verbose: bool, log: logging.Logger | None = None):
    """While ``verbose``, make the ``cmot`` logger's INFO messages visible without any logging set-up.

    When the ``cmot`` logger has handlers of its own (an application such as the
    command line or the R package set it up, with its own level), or logging is
    configured so that its INFO messages reach a handler (for example
    ``logging.basicConfig(level=logging.INFO)``), nothing changes and they go where
    the user sends them.  Otherwise a handler that
    prints them to standard error is attached for the duration, the logger's
    level set to INFO and propagation to the root logger switched off (so no
    handler of the user's prints them a second time); all three are restored on
    exit.

    Examples
    --------
    >>> with verbose_output(False):
    ...     pass
    """
    log = log or logger
    if not verbose or log.handlers or (log.isEnabledFor(logging.INFO) and log.hasHandlers()):
        yield
        return
    handler = logging.StreamHandler()  # the current sys.stderr
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def match_names(wanted, found, arg: str, what: str = "feature", *, found_arg: str | None = None):
    """Positions in ``found`` of each name in ``wanted`` (None when already identical).

    Names must be unique on both sides; every wanted name must be found.  Errors
    name ``arg`` (the argument that holds ``found``), what was expected and what
    was found.

    Examples
    --------
    >>> match_names(["a", "b"], ["b", "a", "c"], "target_y").tolist()
    [1, 0]
    >>> match_names(["a", "b"], ["a", "b"], "target_y") is None
    True
    >>> match_names(["a", "b"], ["a", "a"], "target_y")
    Traceback (most recent call last):
    ...
    ValueError: target_y: expected unique feature names, found 1 duplicated: a
    """
    want = [str(v) for v in wanted]
    have = [str(v) for v in found]
    for side, names in ((found_arg or arg, have), (arg if found_arg else None, want)):
        dup = duplicated(names)
        if dup and side is not None:
            shown = ", ".join(dup[:10]) + (" ..." if len(dup) > 10 else "")
            raise ValueError(f"{side}: expected unique {what} names, found {len(dup)} duplicated: {shown}")
    if want == have:
        return None
    pos = {v: i for i, v in enumerate(have)}
    missing = [v for v in want if v not in pos]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{arg}: expected every one of the {len(want)} {what}s seen in fit, found {len(missing)} missing: {shown}"
        )
    return np.array([pos[v] for v in want], dtype=np.intp)


def duplicated(names) -> list:
    """The names that occur more than once, in order of first repeat.

    >>> duplicated(["a", "b", "a", "c", "b", "a"])
    ['a', 'b']
    """
    seen, dup = set(), []
    for v in names:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    return dup
