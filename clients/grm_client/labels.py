"""One rule for reading a trainer's label as the GRM's reference answer, shared by grm-serve and grm-client.

Labels reach the judge from datasets (pandas, ``datasets``), JSON bodies and trainers' own rows, so the
same answer comes in several spellings. The server, grm-client's adapters and the Ray front's routing key
all read them with :func:`reference_of_label`, so the prompt the GRM sees, the rows the client groups
together and the replica a call is routed to agree:

* ``None``, a blank string and NaN (pandas' missing value, which Python's ``json``, ``requests`` and
  ``aiohttp`` write as ``NaN``) are no reference;
* a string is the reference as written;
* an integer, or a float that holds one (pandas stores an integer column with a gap as floats), is its
  decimal digits: ``3``, ``3.0`` and ``numpy.int64(3)`` are all ``"3"``; another float is its shortest
  round-trip text (``2.5``);
* anything else (a boolean, a list, an object, an infinite number) is no answer: :class:`ValueError`.

This module imports nothing outside the standard library (the server imports it too).
"""

from __future__ import annotations

import math
import numbers

__all__ = ["reference_of_label"]


def reference_of_label(value: object) -> str | None:
    """The reference answer a label stands for, or None when it stands for none.

    Raises:
        ValueError: for a boolean, a list, an object or an infinite number (no single answer).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if _is_bool(value):
        raise ValueError(f"a label must be a string or a number (a reference answer), got a boolean: {value!r}")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number):
            raise ValueError(f"a label must be a finite number, got {number!r}")
        return str(int(number)) if number.is_integer() else repr(number)
    raise ValueError(
        f"a label must be a string or a number (a reference answer), got {type(value).__name__}: {value!r}"
    )


def _is_bool(value: object) -> bool:
    """Python's bool or numpy's (grm-client does not depend on numpy; its bool is no ``numbers.Integral``
    anyway, but it is checked by name so a numpy bool is refused like Python's)."""
    return isinstance(value, bool) or type(value).__name__ == "bool_"
