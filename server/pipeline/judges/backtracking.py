"""Which regexes can backtrack exponentially: the check a judge file's ``verdict.regex`` passes at startup.

A file's verdict regex is run by Python's ``re`` on every sample the model writes, on the event loop,
and ``re`` has no timeout. A pattern such as ``(?:A|A)+`` or ``(a+)+`` tries exponentially many ways to
split a run of characters before it fails, so one sample ("Verdict: " and 24 A's, then "!") holds every
caller of the server for seconds. That needs a loop (a quantifier that repeats more than once: ``*``,
``+``, ``{m,n}`` with n > 1) around a choice (an alternation ``|``, a conditional, or another quantifier
of variable count): the same text can then be matched in exponentially many ways. Without such a loop
the cost of a match stays polynomial in the sample's length. The check reads the pattern's structure
(the standard library's own parser) and refuses such loops, conservatively: a loop whose choices can
never overlap (``(?:,\\s*\\d+)*``) is refused too, and is written with a possessive quantifier
(``(?:,\\s*+\\d++)*``), an atomic group ``(?>...)`` or a character class instead, which never backtrack.
What it does not bound: polynomial backtracking, as in ``.*x.*y`` over a long sample.
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

# Constructs that the text after them never backtracks into (their insides are checked on their own).
_ATOMIC = (sre.ATOMIC_GROUP, sre.POSSESSIVE_REPEAT, sre.ASSERT, sre.ASSERT_NOT)


def exponential_loop(pattern: str) -> bool:
    """Whether ``pattern`` has a loop around a choice (see the module's docstring).

    Raises:
        re.error: if the pattern does not compile.
    """
    return _scan(_parser.parse(pattern), in_loop=False)


def _scan(items: Any, in_loop: bool) -> bool:
    """Whether ``items`` (a parsed subpattern) holds a choice inside a loop; ``in_loop``: it is in one."""
    return any(_has_choice_in_loop(op, av, in_loop) for op, av in items)


def _has_choice_in_loop(op: Any, av: Any, in_loop: bool) -> bool:
    if op in _ATOMIC:  # backtracking inside one attempt of it still counts, from a fresh start
        return _scan(av if op is sre.ATOMIC_GROUP else av[-1], in_loop=False)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, body = av
        return (in_loop and low != high) or _scan(body, in_loop or high > 1)
    if op is sre.BRANCH:
        return in_loop or any(_scan(alternative, in_loop) for alternative in av[1])
    if op is sre.GROUPREF_EXISTS:
        _, yes, no = av
        return in_loop or _scan(yes, in_loop) or (no is not None and _scan(no, in_loop))
    if op is sre.SUBPATTERN:
        return _scan(av[-1], in_loop)
    return False  # a literal, a class, an anchor, a backreference: no choice
