"""CMOT's parameters, declared once: each name with its constraint.

:data:`PARAMETER_CONSTRAINTS` is the one table of the estimator's parameters
(``CMOT.__init__`` must list the same names; a test keeps them in step), and
:func:`check_params` validates a dict of them against it.  Every error message
starts with the Python parameter name and a colon (``n_neighbors: expected ...``)
so that the R package can put its own name for the parameter in its place.

A constraint is :class:`Int`, :class:`Real`, :class:`Bool` or :class:`Const`
(one allowed value such as ``"auto"`` or ``None``); ``a | b`` allows either.
"""

from __future__ import annotations

from numbers import Real as _RealNumber

import numpy as np

__all__ = ["Int", "Real", "Bool", "Const", "PARAMETER_CONSTRAINTS", "check_params", "check_param", "check_value"]


class _Mismatch(Exception):
    """Raised by a constraint; ``kind`` is "type" (wrong kind of value) or "value" (out of range)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class _Constraint:
    def __or__(self, other):
        return AnyOf(self, other)

    def __ror__(self, other):
        return AnyOf(other, self)

    def convert(self, value):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _is_number(value) -> bool:
    return isinstance(value, _RealNumber) and not isinstance(value, (bool, np.bool_))


class Int(_Constraint):
    """An integer in ``[low, high]`` (None: unbounded); whole-valued floats (as R passes
    numbers) and numpy integers are accepted and returned as ``int``.

    >>> Int(1).convert(np.float64(3.0))
    3
    >>> Int(1).describe()
    'an integer >= 1'
    """

    def __init__(self, low=None, high=None):
        self.low, self.high = low, high

    def convert(self, value):
        if not _is_number(value) or not np.isfinite(value) or not float(value).is_integer():
            raise _Mismatch("type")
        value = int(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise _Mismatch("value")
        return value

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an integer between {self.low} and {self.high}"
        if self.low is not None:
            return f"an integer >= {self.low}"
        if self.high is not None:
            return f"an integer <= {self.high}"
        return "an integer"


class Real(_Constraint):
    """A real number within ``low``/``high``; ``closed`` says which bounds are allowed
    ("both", "left", "right" or "neither"); infinite values only with ``allow_inf``.

    >>> Real(0, 1, closed="neither").describe()
    'a number strictly between 0 and 1'
    >>> Real(0, None, closed="neither").convert(np.float32(2.5))
    2.5
    """

    def __init__(self, low=None, high=None, *, closed: str = "both", allow_inf: bool = False):
        self.low, self.high, self.closed, self.allow_inf = low, high, closed, allow_inf

    def convert(self, value):
        if not _is_number(value):
            raise _Mismatch("type")
        value = float(value)
        if np.isnan(value) or (np.isinf(value) and not self.allow_inf):
            raise _Mismatch("value")
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            raise _Mismatch("value")
        if self.high is not None and (value > self.high or (value == self.high and not right)):
            raise _Mismatch("value")
        return value

    def describe(self) -> str:
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            if self.closed == "both":
                return f"a number in [{lo}, {hi}]"
            if self.closed == "neither":
                return f"a number strictly between {lo} and {hi}"
            left, right = ("[" if self.closed == "left" else "("), ("]" if self.closed == "right" else ")")
            return f"a number in {left}{lo}, {hi}{right}"
        finite = "a number" if self.allow_inf else "a finite number"
        if lo is not None:
            return f"{finite} {'>=' if self.closed in ('both', 'left') else '>'} {lo}"
        if hi is not None:
            return f"{finite} {'<=' if self.closed in ('both', 'right') else '<'} {hi}"
        return finite + (" (np.inf allowed)" if self.allow_inf else "")


class Bool(_Constraint):
    """True or False (numpy booleans too).

    >>> Bool().convert(np.True_)
    True
    """

    def convert(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise _Mismatch("type")
        return bool(value)

    def describe(self) -> str:
        return "True or False"


class Const(_Constraint):
    """One allowed value (a string such as ``"auto"``, or None), described as ``label``.

    >>> Const(None, "None (paper mode)").describe()
    'None (paper mode)'
    """

    def __init__(self, value, label: str | None = None):
        self.value = value
        self.label = label or (f'"{value}"' if isinstance(value, str) else repr(value))

    def convert(self, value):
        if self.value is None:
            if value is None:
                return None
            raise _Mismatch("type")
        if isinstance(value, str) and isinstance(self.value, str):
            if value == self.value:
                return value
            raise _Mismatch("value")
        raise _Mismatch("type")

    def describe(self) -> str:
        return self.label


class AnyOf(_Constraint):
    """Any of several constraints (built by ``|``); the first that accepts the value wins."""

    def __init__(self, *options):
        flat = []
        for o in options:
            o = o if isinstance(o, _Constraint) else Const(o)
            flat.extend(o.options if isinstance(o, AnyOf) else [o])
        self.options = flat

    def convert(self, value):
        kinds = []
        for option in self.options:
            try:
                return option.convert(value)
            except _Mismatch as m:
                kinds.append(m.kind)
        raise _Mismatch("value" if "value" in kinds else "type")

    def describe(self) -> str:
        parts = [o.describe() for o in self.options]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _shown(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


#: CMOT's parameters and what each accepts, in the order of ``CMOT.__init__``
#: (see the class docstring for what they mean).
PARAMETER_CONSTRAINTS = {
    "n_components": Int(1),
    "align_neighbors": Int(1),
    "mu": Real(0, 1, closed="neither"),
    "match_neighbors": Int(1),
    "reg_e": Real(0, None, closed="neither") | Const(None, "None (automatic)"),
    "reg_cl": Real(0, None),
    "reg_m": Const("auto") | Const(None, "None (balanced transport)") | Real(0, None, closed="neither"),
    "n_clusters": Int(1),
    "n_neighbors": Const("auto") | Int(1),
    "n_features": Int(1),
    "scale": Bool(),
    "n_pcs": Const("auto") | Const(None, "None (paper mode)") | Int(1),
    "representation": Const("pca") | Const("precomputed"),
    "barycentric_weight": Real(0, 1),
    "correction": Const("robust") | Const("transport"),
    "shrinkage": Const("auto") | Real(0, 1),
    "weight_scale": Const("auto") | Real(0, None, closed="neither"),
    "max_iter": Int(1),
    "max_inner_iter": Int(1),
    "tol": Real(0, None, closed="neither"),
    "outlier_threshold": Real(None, None, allow_inf=True),
    "outlier_method": Const("distance") | Const("isolation_forest"),
    "random_state": Const(None) | Int(0, 2**32 - 1),
    "verbose": Bool(),
}


def check_param(name: str, value):
    """Validate one parameter; return it normalized (whole floats as ``int``, numbers as ``float``).

    Raises
    ------
    TypeError
        When ``value`` is of a kind the parameter never takes.
    ValueError
        When it is of the right kind but out of range, or ``name`` is unknown.

    Examples
    --------
    >>> check_param("n_neighbors", 10.0)
    10
    >>> check_param("n_neighbors", -3)
    Traceback (most recent call last):
    ...
    ValueError: n_neighbors: expected "auto" or an integer >= 1, found -3.
    """
    if name not in PARAMETER_CONSTRAINTS:
        raise ValueError(
            f"{name}: unknown parameter; valid parameters are {', '.join(PARAMETER_CONSTRAINTS)}."
        )
    return check_value(name, value, PARAMETER_CONSTRAINTS[name])


def check_value(name: str, value, constraint):
    """``value`` checked against ``constraint`` and normalized; errors start with ``name:``.

    >>> check_value("n_splits", 5.0, Int(2))
    5
    """
    try:
        return constraint.convert(value)
    except _Mismatch as m:
        err = ValueError if m.kind == "value" else TypeError
        raise err(f"{name}: expected {constraint.describe()}, found {_shown(value)}.") from None


def check_params(params: dict) -> dict:
    """Validate a dict of CMOT parameters (all of them or some); return them normalized.

    Unknown names are an error that lists the valid ones.  Every message starts with
    the parameter's name and a colon.

    Examples
    --------
    >>> check_params({"n_neighbors": 10.0, "reg_m": None, "mu": np.float32(0.5)})
    {'n_neighbors': 10, 'reg_m': None, 'mu': 0.5}
    >>> check_params({"k": 3})
    Traceback (most recent call last):
    ...
    ValueError: k: unknown parameter; valid parameters are n_components, align_neighbors, mu, match_neighbors, \
reg_e, reg_cl, reg_m, n_clusters, n_neighbors, n_features, scale, n_pcs, representation, barycentric_weight, \
correction, shrinkage, weight_scale, max_iter, max_inner_iter, tol, outlier_threshold, outlier_method, \
random_state, verbose.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params: expected a dict of CMOT parameters, found {type(params).__name__}.")
    return {name: check_param(name, value) for name, value in params.items()}
