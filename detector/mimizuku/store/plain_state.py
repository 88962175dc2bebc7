"""Model files that load without running code: a JSON tree plus numpy arrays (format 2).

A pickle names the functions that rebuild it, so loading one runs whatever its writer chose; a
signature or an owner check only says *who* chose. This format names nothing that runs. A fitted
object becomes two files:

* ``<name>.json``: its state as a tree of JSON values with one-key tagged objects for what JSON
  lacks - ``{"T": [...]}`` a tuple, ``{"FS": [...]}`` a frozenset, ``{"S": [...]}`` a set,
  ``{"D": {...}}`` a mapping with string keys, ``{"M": [[k, v], ...]}`` any other mapping,
  ``{"F": "nan"}`` a float JSON cannot spell, ``{"A": "a3"}`` an array of the ``.npz``,
  ``{"O": "FileIntegrityDetector", "S": {...}}`` an instance of a trusted class (its attributes),
  ``{"R": 7}`` the 7th tuple, frozenset or instance written before (shared once, as in memory).
* ``<name>.npz``: the arrays (``numpy.savez``, uncompressed), read with ``allow_pickle=False``:
  an object array (the one kind that would unpickle) is refused by numpy itself.

Loading calls no function the file names. The only classes it builds are those in ``trusted``,
an explicit map from the name written in the file to the class the caller allows (never a
wildcard): ``cls.__new__(cls)``, then that class's own ``__setstate__`` (or its ``__dict__``
filled) with plain values, exactly the attributes the class's ``__getstate__`` gave at save.
Anything else - an unknown tag, a class not in the map, an attribute name that is not a plain
identifier, a reference to nothing - is a ``PlainStateError`` naming it.

Why not skops (scikit-learn's secure persistence): no scikit-learn object is stored at all (the
detectors keep the fitted LocalOutlierFactor's arrays, not the estimator; DBSCAN is not kept), so
what skops adds - reducers for scikit-learn's internals - would not be used, while our own classes
would still have to be trusted one by one, as here. A JSON tree and an ``.npz`` need no new
dependency, are readable with ``json`` and ``numpy`` alone, and load in about the time the
pickles did (``bench/model_load.py``).

Standard library and numpy only (numpy imported when used).
"""
from __future__ import annotations

import io
import json
import math
import re
from typing import Any, Dict, List, Mapping, Tuple

__all__ = ["PlainStateError", "dump_state", "load_state"]

_ATTR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARRAY_RE = re.compile(r"a[0-9]+")
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class PlainStateError(ValueError):
    """The state cannot be written as plain data, or a file is not plain data we wrote."""


class _Encoder:
    def __init__(self, trusted: Mapping[str, type]):
        self.names = {cls: name for name, cls in trusted.items()}
        self.arrays: Dict[str, Any] = {}
        self.shared: Dict[int, int] = {}     # id(obj) -> its number (tuples, frozensets, instances)
        self.keep: List[Any] = []            # keeps numbered objects alive so ids stay unique
        self.open: set = set()               # instances being written (a cycle is refused)

    def _number(self, v: Any) -> Any:
        n = self.shared.get(id(v))
        if n is not None:
            return {"R": n}
        self.shared[id(v)] = len(self.keep)
        self.keep.append(v)
        return None

    def enc(self, v: Any) -> Any:
        t = type(v)
        if v is None or t is bool or t is int or t is str:
            return v
        if t is float:
            return v if math.isfinite(v) else {"F": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
        if t is list:
            return [self.enc(x) for x in v]
        if t is dict:
            if all(type(k) is str for k in v):
                return {"D": {k: self.enc(x) for k, x in v.items()}}
            return {"M": [[self.enc(k), self.enc(x)] for k, x in v.items()]}
        if t is tuple or t is frozenset:
            ref = self._number(v)
            if ref is not None:
                return ref
            return {"T" if t is tuple else "FS": [self.enc(x) for x in v]}
        if t is set:
            return {"S": [self.enc(x) for x in v]}
        import numpy as np

        if isinstance(v, (np.ndarray, np.generic)):
            arr = np.asarray(v)
            if arr.dtype.hasobject:
                raise PlainStateError("an array of Python objects cannot be stored as plain data")
            name = f"a{len(self.arrays)}"
            self.arrays[name] = arr
            return {"A": name} if isinstance(v, np.ndarray) else {"A": name, "scalar": True}
        name = self.names.get(t)
        if name is None:
            raise PlainStateError(f"a {t.__module__}.{t.__qualname__} is not plain data and not a trusted class")
        if id(v) in self.open:
            raise PlainStateError(f"a {name} refers back to itself")
        ref = self._number(v)
        if ref is not None:
            return ref
        getstate = getattr(v, "__getstate__", None)
        state = getstate() if getstate is not None else v.__dict__
        if not isinstance(state, dict) or not all(type(k) is str and _ATTR_RE.fullmatch(k) for k in state):
            raise PlainStateError(f"the state of a {name} is not a map of attribute names")
        self.open.add(id(v))
        try:
            return {"O": name, "S": {k: self.enc(x) for k, x in state.items()}}
        finally:
            self.open.discard(id(v))


def dump_state(value: Any, trusted: Mapping[str, type]) -> Tuple[bytes, bytes]:
    """(the JSON tree, the ``.npz`` of its arrays) of ``value``; ``trusted``: file name -> class
    of the instances it may hold. ``PlainStateError`` for anything else."""
    import numpy as np

    enc = _Encoder(trusted)
    tree = enc.enc(value)
    doc = json.dumps({"plain_state": 1, "value": tree}, ensure_ascii=False, allow_nan=False,
                     separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    np.savez(buf, **enc.arrays)
    return doc, buf.getvalue()


class _Decoder:
    def __init__(self, arrays: Any, trusted: Mapping[str, type]):
        self.arrays = arrays
        self.trusted = trusted
        self.table: List[Any] = []
        self.pending = object()

    def bad(self, what: str) -> PlainStateError:
        return PlainStateError(what)

    def dec(self, v: Any) -> Any:
        t = type(v)
        if v is None or t is bool or t is int or t is str or t is float:
            return v
        if t is list:
            return [self.dec(x) for x in v]
        if t is not dict or len(v) not in (1, 2):
            raise self.bad(f"unexpected JSON value of type {t.__name__}")
        tag, body = next(iter(v.items()))
        if len(v) == 2 and not (tag == "O" or tag == "A"):
            raise self.bad(f"unexpected keys {sorted(v)}")
        if tag == "D" and type(body) is dict:
            return {k: self.dec(x) for k, x in body.items()}
        if tag == "M" and type(body) is list:
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise self.bad("a mapping entry is not a [key, value] pair")
                key = self.dec(pair[0])   # before the value, as written: references count in order
                out[key] = self.dec(pair[1])
            return out
        if tag in ("T", "FS") and type(body) is list:
            at = len(self.table)
            self.table.append(self.pending)
            got = (tuple if tag == "T" else frozenset)(self.dec(x) for x in body)
            self.table[at] = got
            return got
        if tag == "S" and type(body) is list:
            return {self.dec(x) for x in body}
        if tag == "F" and body in _FLOATS:
            return _FLOATS[body]
        if tag == "R" and type(body) is int:
            if not 0 <= body < len(self.table) or self.table[body] is self.pending:
                raise self.bad(f"reference {body} to nothing written before it")
            return self.table[body]
        if tag == "A" and type(body) is str and _ARRAY_RE.fullmatch(body):
            scalar = v.get("scalar", False)
            if len(v) == 2 and scalar is not True:
                raise self.bad(f"unexpected keys {sorted(v)}")
            if body not in self.arrays.files:
                raise self.bad(f"array {body} is not in the .npz file")
            arr = self.arrays[body]   # allow_pickle=False: numpy refuses object arrays
            return arr[()] if scalar else arr
        if tag == "O" and type(body) is str:
            return self._instance(body, v)
        raise self.bad(f"unknown or malformed node {tag!r}")

    def _instance(self, name: str, v: Dict[str, Any]) -> Any:
        cls = self.trusted.get(name)
        if cls is None:
            raise self.bad(f"class {name!r} is not among the trusted classes ({', '.join(sorted(self.trusted)) or 'none'})")
        raw = v.get("S")
        if type(raw) is not dict or len(v) != 2:
            raise self.bad(f"a {name} without its attributes")
        bad = [k for k in raw if not _ATTR_RE.fullmatch(k) or k.startswith("__")]
        if bad:
            raise self.bad(f"a {name} with attribute names that are not plain identifiers: {bad[:3]}")
        at = len(self.table)
        self.table.append(self.pending)
        state = {k: self.dec(x) for k, x in raw.items()}
        obj = cls.__new__(cls)
        setstate = getattr(obj, "__setstate__", None)
        if setstate is not None:  # the class's own (scikit-learn's BaseEstimator, CommandDetector)
            setstate(state)
        else:
            obj.__dict__.update(state)
        self.table[at] = obj
        return obj


def load_state(doc: bytes, arrays: bytes, trusted: Mapping[str, type]) -> Any:
    """The value ``dump_state`` wrote. Nothing the files name is called: only the classes of
    ``trusted`` are built (their own ``__setstate__``). ``PlainStateError`` for anything else."""
    import numpy as np

    try:
        parsed = json.loads(doc.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise PlainStateError(f"not valid JSON ({str(e)[:200]})") from None
    if type(parsed) is not dict or parsed.get("plain_state") != 1 or "value" not in parsed:
        raise PlainStateError("not a plain-state document (no \"plain_state\": 1)")
    try:
        npz = np.load(io.BytesIO(arrays), allow_pickle=False)
    except Exception as e:   # numpy raises many kinds for a file that is not an .npz
        raise PlainStateError(f"the arrays are not a readable .npz file ({type(e).__name__}: {e})") from None
    if not hasattr(npz, "files"):
        raise PlainStateError("the arrays file is a single .npy array, not an .npz archive")
    try:
        with npz:
            return _Decoder(npz, trusted).dec(parsed["value"])
    except PlainStateError:
        raise
    except RecursionError:
        raise PlainStateError("nested too deeply") from None
    except ValueError as e:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise PlainStateError(f"an array cannot be read safely ({e})") from None
    except (TypeError, KeyError, OSError) as e:
        raise PlainStateError(f"malformed ({type(e).__name__}: {e})") from None
