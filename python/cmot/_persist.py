"""Model files: ``save_model`` / ``load_model`` (CMOT.save / CMOT.load call these).

STUB: still pickle; to be replaced by a format that cannot execute code."""

from __future__ import annotations

import pickle

__all__ = ["save_model", "load_model"]


def save_model(model, path) -> None:
    from . import __version__

    with open(path, "wb") as fh:
        pickle.dump({"format": "cmot-model", "version": __version__, "model": model}, fh, protocol=4)


def load_model(path):
    with open(path, "rb") as fh:
        obj = pickle.load(fh)
    if not isinstance(obj, dict) or obj.get("format") != "cmot-model":
        raise ValueError(f"path: expected a model written by CMOT.save, found another file: {path}")
    return obj["model"]
