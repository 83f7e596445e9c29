"""scikit-learn's estimator protocol without importing scikit-learn.

:class:`ParamsMixin` gives an estimator what ``sklearn.base.BaseEstimator`` gives the
ones that follow its conventions (every ``__init__`` argument stored unchanged under
its own name): ``get_params``, ``set_params``, ``sklearn.base.clone`` (through
``__sklearn_clone__``), scikit-learn's tags and a repr of the parameters that differ
from their defaults.  cmot does not inherit ``BaseEstimator`` because importing it
costs about a second (``sklearn.utils`` imports scipy.stats and pandas), paid by
every R session before its first ``RunCMOT``; see :mod:`cmot._pca`.
"""

from __future__ import annotations

import copy
import inspect

__all__ = ["ParamsMixin"]


class ParamsMixin:
    """``get_params`` / ``set_params`` / clone / repr as scikit-learn's ``BaseEstimator``.

    Examples
    --------
    >>> class Model(ParamsMixin):
    ...     def __init__(self, alpha=1.0, name="a"):
    ...         self.alpha, self.name = alpha, name
    >>> m = Model(alpha=2.0)
    >>> m, m.get_params()
    (Model(alpha=2.0), {'alpha': 2.0, 'name': 'a'})
    >>> m.set_params(name="b").name
    'b'
    """

    @classmethod
    def _get_param_names(cls) -> list:
        """The ``__init__`` arguments, sorted (as scikit-learn lists them)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind != p.VAR_KEYWORD]
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            raise RuntimeError(f"{cls.__name__}: an estimator's __init__ takes no *args.")
        return sorted(p.name for p in params)

    def get_params(self, deep: bool = True) -> dict:
        """The parameters, by name (``deep``: with those of parameters that have them, as ``name__key``)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set parameters by name (``name__key`` sets a parameter's own parameter); returns self."""
        valid = self.get_params(deep=True)
        nested = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"{name}: unknown parameter of {type(self).__name__}; "
                                 f"valid parameters are {', '.join(self._get_param_names())}.")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __sklearn_clone__(self):
        """A new unfitted estimator with copies of the parameters (``sklearn.base.clone``)."""
        return type(self)(**{k: copy.deepcopy(v) for k, v in self.get_params(deep=False).items()})

    def __sklearn_tags__(self):
        """scikit-learn's default estimator tags (for its meta-estimators; scikit-learn >= 1.6)."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or repr(value) != repr(default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"
