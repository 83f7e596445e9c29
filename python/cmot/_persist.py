"""Model files: ``save_model`` / ``load_model`` (``CMOT.save`` / ``CMOT.load`` call these).

A model file cannot run code when it is read: it holds numbers, text and the
names of a few known classes, never pickled Python objects.

Format ``cmot-model``, version 1
--------------------------------
A ZIP archive (the layout of NumPy's ``.npz``; any file name):

* ``cmot-model.json``: UTF-8 JSON with ``format`` (``"cmot-model"``),
  ``format_version`` (1), ``cmot_version`` (the writer's), ``class`` (module
  and qualified name of the estimator), ``params`` (the constructor
  parameters), ``attributes`` (every other instance attribute: the fitted
  state), ``arrays`` (the names of the array members, in order) and
  ``sha256``;
* ``arrays/<n>.npy``: one NumPy ``.npy`` file per array (numbers, booleans or
  unicode text; never object arrays), read with ``allow_pickle=False``.

Values in ``params`` and ``attributes`` are JSON (None, booleans, integers,
floats, strings, lists) or objects tagged with ``"__t"``: ``ndarray`` and
``scalar`` (an array member), ``sparse`` (a CSR/CSC/COO matrix stored as its
parts), ``dict`` (keys tagged by type: str, int, float, bool), ``tuple``,
``random_state`` / ``generator`` (NumPy random generators, by their state) and
``object`` / ``namedtuple`` (an instance of an allowed class, rebuilt from its
attributes without calling its constructor).  Allowed classes are those defined
in ``cmot`` or ``cmot.*`` modules (the PCA of models written by cmot 0.7 and later is
:class:`cmot._pca.PCA`) and scikit-learn's ``PCA`` (earlier models) and
``TruncatedSVD``; a file naming any other class is refused and no module named
by a file is imported otherwise.

A parameter of the estimator that a file does not list (one added to cmot after
the file was written, such as ``representation``) takes its default, which
keeps the behaviour of the version that wrote the file.

``sha256`` is the SHA-256 of every array member's bytes in the order of
``arrays``, followed by the JSON document without its ``sha256`` entry
(serialized with sorted keys and no spaces).  It is checked before anything
is decoded: a truncated, corrupted or altered file is an error instead of a
model with changed predictions.  Members are stored uncompressed.

Files written by cmot 0.3 were pickles; they can run code when read, so
``load_model`` refuses them unless ``allow_pickle=True`` is given (only for
files from a trusted source), and then warns; save the model again to convert it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import struct
import tempfile
import warnings
import zipfile
import zlib

import numpy as np
import scipy.sparse as sp

__all__ = ["save_model", "load_model", "FORMAT", "FORMAT_VERSION"]

FORMAT = "cmot-model"
FORMAT_VERSION = 1
_META = "cmot-model.json"
_SKLEARN_CLASSES = {
    ("sklearn.decomposition._pca", "PCA"),
    ("sklearn.decomposition._truncated_svd", "TruncatedSVD"),
}
#: What zipfile, zlib, json and numpy raise for a damaged archive (NotImplementedError and
#: RuntimeError: a flipped compression-method or encryption flag).
_DAMAGED = (zipfile.BadZipFile, EOFError, OSError, KeyError, TypeError, ValueError, AttributeError, IndexError,
            MemoryError, NotImplementedError, RuntimeError, OverflowError, struct.error, zlib.error)
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_SPARSE_PARTS = {
    "csr": ("data", "indices", "indptr"),
    "csc": ("data", "indices", "indptr"),
    "coo": ("data", "row", "col"),
}


# ----------------------------------------------------------------------- encoding
class _Encoder:
    """Turns a value into JSON plus a list of arrays; ``where`` names the attribute in errors."""

    def __init__(self):
        self.arrays = []

    def array(self, a, where):
        a = np.asarray(a)
        tag = {}
        if a.dtype == object:
            if not all(isinstance(v, str) for v in a.ravel()):
                kinds = sorted({type(v).__name__ for v in a.ravel()})
                raise TypeError(f"{where}: cannot store an object array holding {', '.join(kinds)} in a model file")
            a, tag = a.astype(str), {"object": True}
        if a.dtype.kind not in "biufcUSMm":
            raise TypeError(f"{where}: cannot store an array of dtype {a.dtype} in a model file")
        self.arrays.append(a)
        return len(self.arrays) - 1, tag

    def __call__(self, v, where):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and type(v) is int:
            return v
        if isinstance(v, float) and type(v) is float:
            return v
        if isinstance(v, np.generic):
            i, tag = self.array(np.asarray(v), where)
            return {"__t": "scalar", "ref": i, **tag}
        if isinstance(v, np.ndarray):
            i, tag = self.array(v, where)
            return {"__t": "ndarray", "ref": i, **tag}
        if sp.issparse(v):
            return self.sparse(v, where)
        if type(v) is list:
            return [self(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if type(v) is tuple:
            return {"__t": "tuple", "items": [self(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if type(v) is dict:
            return {"__t": "dict", "items": [[_key(k, where), self(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if isinstance(v, np.random.RandomState):
            return {"__t": "random_state", "state": self(v.get_state(legacy=False), f"{where}.state")}
        if isinstance(v, np.random.Generator):
            bg = v.bit_generator
            return {"__t": "generator", "bit_generator": type(bg).__name__, "state": self(bg.state, f"{where}.state")}
        return self.instance(v, where)

    def sparse(self, v, where):
        fmt = v.format
        if fmt not in _SPARSE_PARTS:
            v, fmt = v.tocsr(), "csr"
        parts = {p: self.array(getattr(v, p), f"{where}.{p}")[0] for p in _SPARSE_PARTS[fmt]}
        return {"__t": "sparse", "format": fmt, "shape": list(v.shape), "matrix": isinstance(v, sp.spmatrix), **parts}

    def instance(self, v, where):
        cls = type(v)
        if not _allowed(cls.__module__, cls.__qualname__):
            raise TypeError(
                f"{where}: cannot store an object of class {cls.__module__}.{cls.__qualname__} in a model file "
                "(allowed: numbers, text, arrays, sparse matrices, lists, tuples, dicts, NumPy random generators, "
                "cmot classes, scikit-learn PCA and TruncatedSVD)"
            )
        head = {"module": cls.__module__, "qualname": cls.__qualname__}
        if isinstance(v, tuple) and hasattr(cls, "_fields"):
            return {"__t": "namedtuple", **head, "items": [self(x, f"{where}.{f}") for f, x in zip(cls._fields, v)]}
        return {"__t": "object", **head, "state": self(_attributes(v), where)}


def _attributes(v) -> dict:
    """An object's attributes: its ``__dict__`` and any ``__slots__`` that are set."""
    state = dict(vars(v)) if hasattr(v, "__dict__") else {}
    for klass in type(v).__mro__:
        for name in (klass.__dict__.get("__slots__", ()) if not isinstance(klass.__dict__.get("__slots__"), str)
                     else (klass.__dict__["__slots__"],)):
            if name not in ("__dict__", "__weakref__") and hasattr(v, name):
                state[name] = getattr(v, name)
    return state


def _key(k, where):
    for tag, kind in (("b", bool), ("i", int), ("f", float), ("s", str)):
        if type(k) is kind:
            return [tag, k]
    raise TypeError(f"{where}: cannot store a dict key of type {type(k).__name__} ({k!r}) in a model file")


def _allowed(module: str, qualname: str) -> bool:
    return module == "cmot" or module.startswith("cmot.") or (module, qualname) in _SKLEARN_CLASSES


def _find_class(module: str, qualname: str):
    if not isinstance(module, str) or not isinstance(qualname, str) or not _allowed(module, qualname):
        raise _Corrupt(f"a class of cmot or an allowed scikit-learn class, found {module}.{qualname}")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise _Corrupt(f"a class {module}.{qualname} in this cmot version, found none")
    return obj


# ----------------------------------------------------------------------- decoding
class _Corrupt(Exception):
    """Raised inside the reader with 'what was expected, found what'."""


def _decode(v, arrays):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_decode(x, arrays) for x in v]
    if not isinstance(v, dict) or "__t" not in v:
        raise _Corrupt(f"a tagged value, found {str(v)[:60]}")
    t = v["__t"]
    if t in ("ndarray", "scalar"):
        a = _array(v["ref"], arrays)
        if v.get("object"):
            a = a.astype(object)
        return a[()] if t == "scalar" else a
    if t == "sparse":
        return _decode_sparse(v, arrays)
    if t == "tuple":
        return tuple(_decode(x, arrays) for x in v["items"])
    if t == "dict":
        return {_decode_key(k): _decode(x, arrays) for k, x in v["items"]}
    if t == "random_state":
        rs = np.random.RandomState()
        rs.set_state(_decode(v["state"], arrays))
        return rs
    if t == "generator":
        if v["bit_generator"] not in _BIT_GENERATORS:
            raise _Corrupt(f"a NumPy bit generator ({', '.join(_BIT_GENERATORS)}), found {v['bit_generator']!r}")
        bg = getattr(np.random, v["bit_generator"])()
        bg.state = _decode(v["state"], arrays)
        return np.random.Generator(bg)
    if t == "namedtuple":
        return _find_class(v["module"], v["qualname"])(*(_decode(x, arrays) for x in v["items"]))
    if t == "object":
        obj = object.__new__(_find_class(v["module"], v["qualname"]))
        for name, value in _decode(v["state"], arrays).items():
            object.__setattr__(obj, name, value)  # also for frozen dataclasses and __slots__
        return obj
    raise _Corrupt(f"a known value tag, found {t!r}")


def _array(ref, arrays):
    if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < len(arrays):
        raise _Corrupt(f"an array number below {len(arrays)}, found {ref!r}")
    return arrays[ref]


def _decode_sparse(v, arrays):
    fmt = v["format"]
    if fmt not in _SPARSE_PARTS:
        raise _Corrupt(f"a sparse format ({', '.join(_SPARSE_PARTS)}), found {fmt!r}")
    a, b, c = (_array(v[p], arrays) for p in _SPARSE_PARTS[fmt])
    shape = tuple(v["shape"])
    if fmt == "coo":
        m = sp.coo_matrix((a, (b, c)), shape=shape)
    else:
        m = (sp.csr_matrix if fmt == "csr" else sp.csc_matrix)((a, b, c), shape=shape)
    if not v.get("matrix", True):
        m = getattr(sp, f"{fmt}_array")(m)
    return m


def _decode_key(k):
    tag, value = k if isinstance(k, list) and len(k) == 2 else (None, None)
    if (tag, type(value)) in (("s", str), ("i", int), ("b", bool)):
        return value
    if tag == "f" and type(value) in (int, float):
        return float(value)
    raise _Corrupt(f"a dict key tagged b, i, f or s, found {k!r}")


# ----------------------------------------------------------------------- files
def _json_body(meta: dict) -> bytes:
    """The JSON document without its checksum, as it is hashed."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _digest(meta: dict, members: list) -> str:
    """The checksum of a file: SHA-256 of the array members' bytes, in order, then the JSON body."""
    h = hashlib.sha256()
    for raw in members:
        h.update(raw)
    h.update(_json_body(meta))
    return h.hexdigest()


class _Hashing:
    """A write-only stream that hashes what passes through it (arrays are never copied whole)."""

    def __init__(self, dest, h):
        self.dest, self.h = dest, h

    def write(self, data):
        self.h.update(data)
        return self.dest.write(data)


def save_model(model, path) -> None:
    """Write ``model`` (a fitted or unfitted cmot estimator) to ``path`` (see the module docstring).

    Raises
    ------
    TypeError
        If an attribute holds a value the format cannot store (named in the message).

    Examples
    --------
    >>> import os, tempfile
    >>> from cmot import CMOT
    >>> p = os.path.join(tempfile.mkdtemp(), "model.cmot")
    >>> save_model(CMOT(n_neighbors=7), p)
    >>> load_model(p).n_neighbors
    7
    """
    from . import __version__

    cls = type(model)
    if not (cls.__module__ == "cmot" or cls.__module__.startswith("cmot.")):
        raise TypeError(f"model: expected a cmot estimator, found {cls.__module__}.{cls.__qualname__}")
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    state = dict(vars(model))
    params = {n: state.pop(n) for n in names if n in state}
    enc = _Encoder()
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "cmot_version": __version__,
        "class": [cls.__module__, cls.__qualname__],
        "params": {k: enc(v, k) for k, v in params.items()},
        "attributes": {k: enc(v, k) for k, v in state.items()},
        "arrays": [f"arrays/{i}.npy" for i in range(len(enc.arrays))],
    }
    _write_zip(os.fspath(path), meta, enc.arrays)


def _write_zip(path: str, meta: dict, arrays: list) -> None:
    """Write to a temporary file next to ``path``, then move it there (no half-written model).

    Members are stored uncompressed, as in NumPy's ``.npz``: deflating float data saves
    little and costs seconds per 100 MB."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cmot-model-", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it, not mkstemp's 0600
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, a in zip(meta["arrays"], arrays):
                with zf.open(name, "w", force_zip64=a.nbytes > 2**31) as dest:
                    np.lib.format.write_array(_Hashing(dest, h), a, allow_pickle=False)
            h.update(_json_body(meta))
            meta["sha256"] = h.hexdigest()
            zf.writestr(_META, json.dumps(meta, sort_keys=True, indent=1, allow_nan=True))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_model(path, *, allow_pickle: bool = False, expected: type | None = None):
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
    allow_pickle : bool, default=False
        Also read a model file of cmot 0.3 (a pickle).  Reading a pickle can run
        any code the file names: pass True only for files from a trusted source.
    expected : type, optional
        The class the model must be (``CMOT.load`` passes ``CMOT``).

    Raises
    ------
    ValueError
        If ``path`` is not a cmot model file (a foreign, truncated or corrupted
        file, a checksum that does not match, a newer format version), holds
        another class than ``expected``, or is a cmot 0.3 pickle and
        ``allow_pickle`` is False.
    FileNotFoundError
        If nothing exists at ``path``.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"path: expected a model file written by CMOT.save, found nothing at {p!r}.")
    with open(p, "rb") as fh:
        head = fh.read(4)
    model = _load_pickle(p, allow_pickle) if head[:1] == b"\x80" else _load_archive(p, head)
    if expected is not None and not isinstance(model, expected):
        found = type(model)
        raise ValueError(f"path: expected a {expected.__qualname__} model file, found a {found.__module__}."
                         f"{found.__qualname__} in {p!r}.")
    return model


def _load_archive(p: str, head: bytes):
    if head != b"PK\x03\x04":
        raise ValueError(f"path: expected a model file written by CMOT.save (a {FORMAT} ZIP archive), found "
                         f"another kind of file (it starts with {head!r}): {p!r}.")
    try:
        with zipfile.ZipFile(p) as zf:
            meta, arrays = _read_members(zf)
        return _rebuild(meta, arrays)
    except _Corrupt as exc:
        raise ValueError(f"path: expected a model file written by CMOT.save: {exc} in {p!r}.") from None
    except _DAMAGED as exc:
        raise ValueError(
            f"path: expected a complete model file written by CMOT.save, found a truncated or corrupted file "
            f"({type(exc).__name__}: {exc}): {p!r}."
        ) from None


def _read_members(zf: zipfile.ZipFile):
    names = zf.namelist()
    if _META not in names:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise _Corrupt(f"a {_META} entry, found a ZIP archive of other files ({shown or 'empty'})")
    meta = json.loads(zf.read(_META).decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise _Corrupt(f"format {FORMAT!r}, found {found!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise _Corrupt(
            f"format version {FORMAT_VERSION} or older, found {version!r} (written by cmot "
            f"{meta.get('cmot_version', '?')}; read it with that version or newer)"
        )
    h = hashlib.sha256()
    for name in meta["arrays"]:  # the checksum first, reading in chunks: nothing is decoded from a bad file
        with zf.open(name) as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    h.update(_json_body(meta))
    if meta.get("sha256") != h.hexdigest():
        raise _Corrupt(f"the checksum {str(meta.get('sha256'))[:16]}..., found other content (the file was altered)")
    arrays = []
    for name in meta["arrays"]:
        with zf.open(name) as fh:
            arrays.append(np.lib.format.read_array(fh, allow_pickle=False))
    return meta, arrays


def _rebuild(meta: dict, arrays: list):
    cls = _find_class(*meta["class"])
    params = {k: _decode(v, arrays) for k, v in meta["params"].items()}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise _Corrupt(f"parameters of {cls.__qualname__} in this cmot version, found unknown {', '.join(unknown)}")
    for name, par in inspect.signature(cls.__init__).parameters.items():
        # a parameter added after the file was written: its default, which keeps that version's behaviour
        if name != "self" and name not in params and par.default is not inspect.Parameter.empty:
            params[name] = par.default
    model = object.__new__(cls)
    model.__dict__.update(params)
    model.__dict__.update({k: _decode(v, arrays) for k, v in meta["attributes"].items()})
    return model


def _load_pickle(p: str, allow_pickle: bool):
    if not allow_pickle:
        raise ValueError(
            f"path: expected a model file written by CMOT.save of cmot >= 0.4 ({FORMAT} format), found a pickle "
            f"(the format of cmot 0.3), which can run code when it is read: {p!r}. If the file comes from a trusted "
            "source, load it with CMOT.load(path, allow_pickle=True) and save it again to convert it."
        )
    import pickle

    warnings.warn(f"{p}: reading a cmot 0.3 pickle model file (allow_pickle=True); save it again with CMOT.save "
                  "to convert it to the format that cannot run code.", UserWarning, stacklevel=3)
    with open(p, "rb") as fh:
        obj = pickle.load(fh)
    if not isinstance(obj, dict) or obj.get("format") != "cmot-model" or "model" not in obj:
        raise ValueError(f"path: expected a model written by CMOT.save, found another pickle: {p!r}.")
    return obj["model"]
