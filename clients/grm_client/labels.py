"""One rule for reading a trainer's label as the GRM's reference answer, shared by grm-serve and grm-client.

Labels reach the judge from datasets (pandas, ``datasets``), JSON bodies and trainers' own rows, so the
same answer comes in several spellings. The server, grm-client's adapters and the Ray front's routing key
all read them with :func:`reference_of_label`, so the prompt the GRM sees, the rows the client groups
together and the replica a call is routed to agree:

* ``None``, a blank string and NaN (pandas' missing value, which Python's ``json``, ``requests`` and
  ``aiohttp`` write as ``NaN``) are no reference; so are pandas' other missing values, ``pd.NA`` (its
  nullable dtypes: ``Int64``, ``string``, ``convert_dtypes()``, ``dtype_backend="numpy_nullable"``) and
  ``pd.NaT``, and numpy's ``NaT``. They are recognised by their type's name and package, so neither
  pandas nor numpy is imported;
* a string is the reference as written;
* an integer, or a float that holds one (pandas stores an integer column with a gap as floats), is its
  decimal digits: ``3``, ``3.0`` and ``numpy.int64(3)`` are all ``"3"``; another float is its shortest
  round-trip text (``2.5``). A numpy ``float32`` or ``float16`` is read at its own precision, as numpy
  writes it: ``numpy.float32(0.1)`` is ``"0.1"``, not the ``0.10000000149011612`` it widens to;
* a ``Decimal`` (pyarrow's decimal columns) is a number the same way: ``Decimal("3.00")`` is ``"3"``,
  ``Decimal("2.50")`` is ``"2.5"`` (trailing zeros dropped, never an exponent: ``Decimal("1E-7")`` is
  ``"0.0000001"``); a NaN ``Decimal`` is no reference;
* anything else (a boolean, a list, an object, an infinite number, a date) is no answer: :class:`ValueError`.

This module imports nothing outside the standard library (the server imports it too).
"""

from __future__ import annotations

import decimal
import math
import numbers

__all__ = ["reference_of_label"]


def reference_of_label(value: object) -> str | None:
    """The reference answer a label stands for, or None when it stands for none.

    Raises:
        ValueError: for a boolean, a list, an object, a date or an infinite number (no single answer).
    """
    if value is None or _is_missing(value):
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if _is_bool(value):
        raise ValueError(f"a label must be a string or a number (a reference answer), got a boolean: {value!r}")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            raise ValueError(f"a label must be a finite number, got {number!r}")
        if number.is_integer():
            return str(int(number))
        # numpy's narrower floats (float32, float16) widen to float64 digits they never held; numpy
        # writes each at its own precision (its str is the shortest text that reads back the same).
        return repr(number) if isinstance(value, float) or not _from_numpy(value) else str(value)
    raise ValueError(
        f"a label must be a string or a number (a reference answer), got {type(value).__name__}: {value!r}"
    )


def _decimal_text(value: decimal.Decimal) -> str | None:
    """A Decimal's digits: whole ones as an integer, others without trailing zeros or an exponent."""
    if value.is_nan():
        return None
    if value.is_infinite():
        raise ValueError(f"a label must be a finite number, got {value!r}")
    # A context as precise as the value, so nothing is rounded (the default keeps 28 digits).
    exact = decimal.Context(prec=max(1, len(value.as_tuple().digits)))
    if value == value.to_integral_value(context=exact):
        return str(int(value))
    return format(value.normalize(context=exact), "f")


def _from_numpy(value: object) -> bool:
    return type(value).__module__.partition(".")[0] == "numpy"


def _is_missing(value: object) -> bool:
    """pandas' ``NA`` and ``NaT``, numpy's ``NaT``: told by their type, without importing either package."""
    kind = type(value)
    package = kind.__module__.partition(".")[0]
    if package == "pandas":
        return kind.__name__ in ("NAType", "NaTType")
    if package == "numpy" and kind.__name__ in ("datetime64", "timedelta64"):
        return bool(value != value)  # NaT is the one value unequal to itself
    return False


def _is_bool(value: object) -> bool:
    """Python's bool or numpy's (grm-client does not depend on numpy; its bool is no ``numbers.Integral``
    anyway, but it is checked by name so a numpy bool is refused like Python's)."""
    return isinstance(value, bool) or type(value).__name__ == "bool_"
