"""Principal component analysis without importing scikit-learn.

:class:`PCA` computes what scikit-learn's ``PCA(n_components, svd_solver=...)`` does
for dense float64 data with ``svd_solver`` "full" or "randomized" (the same
operations in the same order: the same components, to the last bit with the same
LAPACK), with the attributes cmot reads (``components_``, ``mean_``,
``explained_variance_``, ...).  It adds "gram": the exact components from the
eigenvectors of the centred cells' ``n x n`` Gram matrix, much faster than either
when there are fewer cells than features (the poorly-mapped detector's PCAs).

cmot computes its own because importing scikit-learn costs about a second, most
of it scipy.stats and pandas (imported by ``sklearn.utils``), and every R session
paid it before its first ``RunCMOT``; the rest of scikit-learn is imported only
by the parts that use it (Step A's alignment, the paper's IsolationForest,
:mod:`cmot.search`, the CLI's split).
"""

from __future__ import annotations

import contextlib
import functools
import numbers

import numpy as np
from scipy import linalg

__all__ = ["PCA", "check_random_state", "randomized_svd", "svd_flip"]


def check_random_state(seed):
    """A ``numpy.random.RandomState`` from ``seed`` as scikit-learn makes it: None (NumPy's
    global one), an int (a new one seeded with it) or a RandomState (itself).

    Examples
    --------
    >>> float(check_random_state(0).normal()) == float(np.random.RandomState(0).normal())
    True
    """
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"random_state: expected None, an int or a numpy RandomState, found {seed!r}.")


def svd_flip(u, v, u_based_decision: bool = True):
    """Signs of singular vectors made deterministic (scikit-learn's rule): the entry of
    largest magnitude in each column of ``u`` (or row of ``v``) is positive.  In place.

    Examples
    --------
    >>> u, v = svd_flip(np.array([[-2.0], [1.0]]), np.array([[1.0, 3.0]]))
    >>> u.ravel().tolist(), v.ravel().tolist()
    ([2.0, -1.0], [-1.0, -3.0])
    """
    if u_based_decision:
        rows = np.argmax(np.abs(u.T), axis=1)
        signs = np.sign(u.T.reshape(-1)[rows + np.arange(u.T.shape[0]) * u.T.shape[1]])
        u *= signs[np.newaxis, :]
        if v is not None:
            v *= signs[:, np.newaxis]
    else:
        cols = np.argmax(np.abs(v), axis=1)
        signs = np.sign(v.reshape(-1)[cols + np.arange(v.shape[0]) * v.shape[1]])
        if u is not None:
            u *= signs[np.newaxis, :]
        v *= signs[:, np.newaxis]
    return u, v


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's controller of the loaded BLAS libraries, made once (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController()
    except Exception:  # noqa: BLE001 - without threadpoolctl the factorizations simply run as configured
        return None


def _sequential_blas():
    """A context in which BLAS and LAPACK run on one thread (a no-op without threadpoolctl)."""
    controller = _blas_controller()
    return contextlib.nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


def _lu(x):
    """``P @ L, U`` of ``x`` (scipy's ``lu(permute_l=True)``) on one BLAS thread.

    OpenBLAS's threaded LU and QR of a tall thin matrix gain nothing and, on some
    machines, stall for 50-110 ms on about one call in ten (on a 2-vCPU VM, 60 LUs of
    4,000 x 60 took 1.5 s on two threads against 0.12 s on one): the range finder runs
    both on one thread and its matrix products on every thread.  On one thread
    the PCA equals scikit-learn's bitwise, on more to rounding (~1e-14)."""
    with _sequential_blas():
        return linalg.lu(x, permute_l=True, check_finite=False)


def _range_finder(a, size: int, n_iter: int, random_state):
    """An orthonormal basis of ``a``'s range: Gaussian test vectors, ``n_iter`` power
    iterations normalized by LU (by nothing for at most 2; see :func:`_lu`), a final QR."""
    q = random_state.normal(size=(a.shape[1], size))
    normalize = (lambda x: (x, None)) if n_iter <= 2 else _lu
    for _ in range(n_iter):
        q, _ = normalize(a @ q)
        q, _ = normalize(a.T @ q)
    q = a @ q
    with _sequential_blas():
        q, _ = linalg.qr(q, mode="economic", check_finite=False)
    return q


def randomized_svd(m, n_components: int, *, n_oversamples: int = 10, random_state=None):
    """Truncated randomized SVD (Halko et al. 2011) as scikit-learn's ``randomized_svd``
    computes it with ``n_iter="auto"``, ``flip_sign=False``: ``U, s, Vt``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 30)) + 0.01 * rng.normal(size=(40, 30))
    >>> u, s, vt = randomized_svd(m, 3, random_state=0)
    >>> bool(np.allclose(s, np.linalg.svd(m, compute_uv=False)[:3]))
    True
    """
    random_state = check_random_state(random_state)
    n_iter = 7 if n_components < 0.1 * min(m.shape) else 4
    transpose = m.shape[0] < m.shape[1]
    if transpose:
        m = m.T
    q = _range_finder(m, n_components + n_oversamples, n_iter, random_state)
    uhat, s, vt = linalg.svd(q.T @ m, full_matrices=False, lapack_driver="gesdd")
    u = q @ uhat
    if transpose:
        return vt[:n_components, :].T, s[:n_components], u[:, :n_components].T
    return u[:, :n_components], s[:n_components], vt[:n_components, :]


class PCA:
    """Principal components of dense data (see the module docstring).

    Parameters
    ----------
    n_components : int
    svd_solver : {"full", "randomized", "gram"}
        "full" and "randomized" as in scikit-learn; "gram": exact, from the Gram
        matrix of the centred cells (fast with fewer cells than features).
    random_state : None, int or numpy RandomState
        For "randomized".
    copy : bool
        False lets ``fit`` overwrite the array it is given.

    Attributes
    ----------
    components_, mean_, explained_variance_, explained_variance_ratio_,
    singular_values_, noise_variance_, n_components_, n_samples_, n_features_in_
        As scikit-learn's ``PCA``.
    total_variance_ : float
        The sum of the features' variances (``ddof=1``; ``explained_variance_ratio_``'s denominator).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 8))
    >>> full, gram = PCA(3, svd_solver="full").fit(x), PCA(3, svd_solver="gram").fit(x)
    >>> bool(np.allclose(full.transform(x), gram.transform(x)))
    True
    """

    def __init__(self, n_components: int, svd_solver: str = "full", random_state=None, copy: bool = True):
        self.n_components = n_components
        self.svd_solver = svd_solver
        self.random_state = random_state
        self.copy = copy

    def __repr__(self):
        return f"PCA(n_components={self.n_components!r}, svd_solver={self.svd_solver!r})"

    def fit(self, x, y=None):
        self._fit(x)
        return self

    def fit_transform(self, x, y=None):
        u, s = self._fit(x)
        return u[:, : self.n_components_] * s[: self.n_components_]

    def transform(self, x):
        x = np.asarray(x, dtype=np.float64)
        out = x @ self.components_.T
        out -= self.mean_.reshape(1, -1) @ self.components_.T
        return out

    def _fit(self, x):
        if self.svd_solver not in ("full", "randomized", "gram"):
            raise ValueError(f"svd_solver: expected 'full', 'randomized' or 'gram', found {self.svd_solver!r}.")
        x = np.asarray(x, dtype=np.float64)
        n, p = x.shape
        k = int(self.n_components)
        if not 1 <= k <= min(n, p):
            raise ValueError(f"n_components: expected 1 to min(n_samples, n_features)={min(n, p)}, found {k}.")
        self.n_features_in_ = p
        self.mean_ = np.mean(x, axis=0).reshape(-1)
        centred = x.copy() if self.copy else x
        centred -= self.mean_
        if self.svd_solver == "full":
            u, s, vt = linalg.svd(centred, full_matrices=False)
            u, vt = svd_flip(u, vt, u_based_decision=False)
            variance = s**2 / (n - 1)
            total = variance.sum()
            self.noise_variance_ = float(np.mean(variance[k:])) if k < min(n, p) else 0.0
        else:
            if self.svd_solver == "randomized":
                u, s, vt = randomized_svd(centred, k, random_state=self.random_state)
            else:
                u, s, vt = _gram_svd(centred, k)
            u, vt = svd_flip(u, vt, u_based_decision=False)
            variance = s**2 / (n - 1)
            centred **= 2
            total = np.sum(centred) / (n - 1)
            self.noise_variance_ = float((total - variance.sum()) / (min(n, p) - k)) if k < min(n, p) else 0.0
        self.n_samples_, self.n_components_ = n, k
        # "full": a copy of the leading rows; else vt as it is (its memory layout, as
        # scikit-learn keeps it, gives the same transform to the last bit)
        self.components_ = vt[:k].copy() if self.svd_solver == "full" else vt
        self.explained_variance_ = variance[:k].copy()
        self.explained_variance_ratio_ = variance[:k] / total
        self.total_variance_ = float(total)
        self.singular_values_ = s[:k].copy()
        return u, s


def _gram_svd(centred, k):
    """The ``k`` leading singular triplets of ``centred`` from the eigenvectors of its rows'
    Gram matrix (``n x n``): ``U, s, Vt``."""
    gram = centred @ centred.T
    n = gram.shape[0]
    values, vectors = linalg.eigh(gram, subset_by_index=(n - k, n - 1), check_finite=False)
    values, u = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    s = np.sqrt(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        vt = np.where(s[:, None] > 0, (u.T @ centred) / s[:, None], 0.0)
    return u, s, vt
