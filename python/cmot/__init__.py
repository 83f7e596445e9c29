"""cmot: Cross-Modality Optimal Transport (Alatkar & Wang, Genome Biology 2023).

Infer a modality (X) that target cells lack from source cells measured in both X
and a shared modality (Y).

>>> from cmot import CMOT
>>> from cmot.datasets import make_multimodal
>>> d = make_multimodal(120, 40, random_state=0)
>>> x_hat = CMOT(n_neighbors=10, random_state=0).fit(d.source_x, d.source_y).predict(d.target_y)
>>> x_hat.shape
(40, 30)
"""

__version__ = "0.9.0"

from ._params import check_params  # noqa: E402
from .estimator import CMOT, PAPER_MODE, PoorlyMappedWarning  # noqa: E402
from .transport import OTConvergenceError, OTConvergenceWarning  # noqa: E402

__all__ = ["CMOT", "PAPER_MODE", "check_params", "PoorlyMappedWarning", "OTConvergenceError", "OTConvergenceWarning",
           "__version__"]
__all__ += ["transfer"]  # scanpy-style API (plots: cmot.plotting)


def __getattr__(name):
    # cmot.transfer is imported on first use: cmot.tools imports pandas (0.2 s), which
    # neither the estimator nor the R package needs
    if name == "transfer":
        from .tools import transfer

        return transfer
    raise AttributeError(f"module 'cmot' has no attribute {name!r}")
