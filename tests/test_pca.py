"""cmot's own PCA (cmot._pca) against scikit-learn's, and what `import cmot` loads."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from cmot._pca import PCA

ATTRS = ("components_", "mean_", "explained_variance_", "explained_variance_ratio_", "singular_values_")


def _data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)) @ rng.normal(size=(8, p)) + rng.normal(size=(n, p))


@pytest.mark.parametrize("shape,solver,k", [((300, 50), "full", 10), ((400, 600), "full", 30),
                                            ((1000, 400), "randomized", 50), ((600, 2000), "randomized", 30),
                                            ((3000, 200), "randomized", 20)])
def test_full_and_randomized_are_scikit_learns(shape, solver, k):
    x = _data(*shape)
    ours, theirs = PCA(k, svd_solver=solver, random_state=0).fit(x), SkPCA(k, svd_solver=solver, random_state=0).fit(x)
    for name in ATTRS:
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=1e-12, atol=1e-13, err_msg=name)
    assert ours.noise_variance_ == pytest.approx(theirs.noise_variance_, rel=1e-12)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(PCA(k, svd_solver=solver, random_state=0).fit_transform(x),
                               SkPCA(k, svd_solver=solver, random_state=0).fit_transform(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(50, 400), (400, 400), (300, 60)])
def test_gram_is_the_exact_pca(shape):
    x = _data(*shape, seed=1)
    gram, full = PCA(12, svd_solver="gram").fit(x.copy()), PCA(12, svd_solver="full").fit(x)
    np.testing.assert_allclose(gram.explained_variance_, full.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose(gram.components_, full.components_, atol=1e-8)  # same signs (svd_flip)
    np.testing.assert_allclose(gram.transform(x), full.transform(x), atol=1e-8)


def test_range_finder_lu_and_qr_run_on_one_blas_thread_and_restore_the_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import cmot._pca as pca_module

    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    seen = []
    lu = pca_module.linalg.lu

    def spy(x, **kw):
        seen.append([lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"])
        return lu(x, **kw)

    x = _data(600, 2000)
    pca_module.linalg.lu = spy
    try:
        ours = PCA(30, svd_solver="randomized", random_state=0).fit(x)
    finally:
        pca_module.linalg.lu = lu
    assert len(seen) == 14 and all(n == 1 for counts in seen for n in counts)  # 7 power iterations, 2 LUs each
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"] == before
    theirs = SkPCA(30, svd_solver="randomized", random_state=0).fit(x)
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=1e-12, atol=1e-13)
    with threadpoolctl.threadpool_limits(1, "blas"):  # everything on one thread: the same operations, bitwise
        ours = PCA(30, svd_solver="randomized", random_state=0).fit(x)
        theirs = SkPCA(30, svd_solver="randomized", random_state=0).fit(x)
    assert np.array_equal(ours.components_, theirs.components_)
    assert np.array_equal(ours.explained_variance_, theirs.explained_variance_)


def test_copy_false_overwrites_and_copy_true_does_not():
    x = _data(100, 30)
    keep = x.copy()
    PCA(5).fit(x)
    assert np.array_equal(x, keep)
    PCA(5, copy=False).fit(x)
    assert not np.array_equal(x, keep)


def test_bad_solver_and_too_many_components_raise():
    with pytest.raises(ValueError, match="svd_solver: expected"):
        PCA(2, svd_solver="arpack").fit(_data(20, 5))
    with pytest.raises(ValueError, match="n_components: expected 1 to min"):
        PCA(9).fit(_data(20, 5))


def test_import_cmot_and_a_default_fit_load_no_scikit_learn_pandas_or_scipy_stats():
    code = ("import sys, cmot; from cmot.datasets import make_multimodal; d = make_multimodal(300, 60, random_state=0);"
            "cmot.CMOT(random_state=0, verbose=False).fit(d.source_x, d.source_y).predict(d.target_y);"
            "print(sorted(m for m in ('sklearn', 'pandas', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scikit_learn_reads_the_estimator_protocol():
    from sklearn.base import clone

    from cmot import CMOT

    model = CMOT(reg_e=2.0, random_state=3)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    sk_utils = pytest.importorskip("sklearn.utils")
    if hasattr(sk_utils, "get_tags"):  # scikit-learn >= 1.6
        assert sk_utils.get_tags(model).estimator_type is None
