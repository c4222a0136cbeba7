"""Admission by engine work, fair across tenants (per app, no globals).

An RL step sends hundreds of one-row calls at once, and a trainer's client rarely honours a 429
(OpenRLHF retries five times, 1 s apart, then drops the reward). So the server admits work, not
calls, and queues it as long as the caller's own deadline allows:

* :class:`~server.serving.gate.WorkGate` holds the engine's work: at most ``capacity`` samples
  (sequences) generate at once, the engine's own batch limit (vLLM's ``max_num_seqs``). Engine requests
  beyond it wait at the gate, served by start-time fair queueing across tenants, so one tenant's burst
  cannot starve another tenant's call, and within a tenant by call (the call's :class:`Place`). The
  gate measures how fast its work drains (samples per second while requests wait).
* :class:`Admission` decides per call, at once: a call whose estimated completion (the work ahead of
  it at that drain rate, counting other tenants' work only up to its own tenant's share) does not fit
  its deadline is refused with 429 ``overloaded`` and a ``Retry-After`` computed from the queue; every
  other call is admitted, gets its place in line, and waits for the engine within its deadline.
  A call whose rows join batches other calls opened (:mod:`server.serving.grouping`) brings no work
  of its own for them: it waits for those batches, judged by their places. ``max_calls`` bounds the
  calls held at once, as a memory guard only.

What admission counts stays on its books (:class:`Share`) until that work ends: a call's own work
until the call ends, and a grouped batch's k samples, handed over by the call that opened it, until
the batch ends, whichever of its calls are still there.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from server.serving.errors import APIError
from server.serving.gate import Place, WorkGate, current_place

__all__ = ["Admission", "Place", "Share", "WorkGate", "current_place"]


@dataclass(eq=False)
class Share:
    """Samples of admitted work on admission's books (its tenant's ``outstanding``) until released.

    :meth:`Admission.admit` gives each call one for the body of its ``with``; work that outlives the
    call (a grouped batch it opened) takes its part along (:meth:`hand_over`) and releases it when
    that work ends. Releasing twice does nothing.

    Attributes:
        tenant: whose work it is.
        samples: the samples it holds on the books now.
        place: the place in line of the call it came from.
    """

    admission: Admission = field(repr=False)
    tenant: str
    samples: float
    place: Place
    released: bool = False

    def hand_over(self, samples: float) -> Share:
        """A new share of ``samples`` taken out of this one (the books' total does not change)."""
        self.resize(self.samples - samples)
        return self.admission._share(self.tenant, samples, self.place)

    def resize(self, samples: float) -> None:
        """Hold ``samples`` from now on (the work turned out larger or smaller); nothing once released."""
        if not self.released:
            self.admission._book(self.tenant, samples - self.samples)
            self.samples = samples

    def release(self) -> None:
        """The work ended: its samples leave the books."""
        if not self.released:
            self.resize(0.0)
            self.released = True
            self.admission._drop(self.tenant)


class Admission:
    """Admits calls by the engine work they bring and their deadline (see the module docstring).

    Args:
        gate: the engine's work gate (its drain rate and latency drive the estimate).
        max_calls: calls held at once at most (a memory guard).
        max_wait_s: refuse calls whose estimated wait exceeds this even when their deadline allows it
            (None: the deadline alone decides).
        on_reject: called with the reason of each 429 (``deadline`` or ``calls``), for the metrics.
    """

    def __init__(
        self,
        gate: WorkGate,
        *,
        max_calls: int,
        max_wait_s: float | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.gate = gate
        self.max_calls = max_calls
        self.max_wait_s = max_wait_s
        self.on_reject = on_reject
        self.calls = 0
        self.outstanding: dict[str, float] = {}  # per tenant: estimated samples of admitted, unfinished work
        self._tenant_shares: dict[str, int] = {}  # per tenant: shares not released

    def estimated_wait(self, tenant: str | None = None, samples: float = 0.0) -> float:
        """Seconds until a new call of ``tenant`` bringing ``samples`` would finish, beyond its own run.

        The work ahead of it is its tenant's own outstanding work plus each other tenant's, up to
        what its tenant will have had by then (fair queueing serves the tenants in step), drained at
        the gate's measured rate; with no tenant, all the outstanding work. 0 before the gate has
        measured anything.
        """
        rate = self.gate.drain_rate()
        if not rate:
            return 0.0
        if tenant is None:
            ahead = sum(self.outstanding.values()) + samples
        else:
            mine = self.outstanding.get(tenant, 0.0) + samples
            ahead = mine + sum(min(w, mine) for t, w in self.outstanding.items() if t != tenant)
        return max(0.0, ahead / rate - (self.gate.latency or 0.0))

    @contextlib.contextmanager
    def admit(self, tenant: str, samples: float, deadline_s: float, *, joins: Sequence[Place] = ()) -> Iterator[Share]:
        """Admit a call for the body of the ``with``, or refuse it at once.

        The call waits for the later of its own work (``samples``, behind the work outstanding) and the
        batches its rows join (``joins``: the places of the calls that opened them, whose own work
        those batches are; a joining row brings none). Inside the ``with`` the call holds its place
        in line (:data:`~server.serving.gate.current_place`): the tasks it starts inherit it, so each
        of its engine requests, however late (an adaptive round, a batch it opened), is served before
        those of its tenant's later calls. It yields the call's :class:`Share` of the books (its place
        with it), released when the ``with`` ends, save what it handed over.

        Raises:
            APIError: 429 ``overloaded`` with a ``Retry-After`` when its estimated completion does not
                fit ``deadline_s`` (or ``max_wait_s``), or ``max_calls`` calls are held already.
        """
        if self.calls >= self.max_calls:
            retry = self.gate.latency or 1.0
            self._refuse("calls", retry, f"{self.max_calls} calls are already held (--max-concurrent-requests)")
        now = time.monotonic()
        own = self.estimated_wait(tenant, samples) if samples else 0.0
        wait = max([own, *(place.ready_at - now for place in joins)])
        run = self.gate.latency or 0.0
        limit = deadline_s if self.max_wait_s is None else min(deadline_s, self.max_wait_s + run)
        # Only the queue is grounds to refuse: a deadline shorter than a mean run on an empty queue
        # is the caller's to try (a small call can be faster than the mean); it gets 504 if not.
        if wait > 0 and wait + run > limit:
            self._refuse(
                "deadline",
                wait + run - limit,
                f"the engine's queue needs about {wait:.0f}s before this call could run, longer than its "
                f"deadline allows ({limit:.0f}s)",
            )
        place = Place(self.gate.take_ticket(), now + own)
        self.calls += 1
        share = self._share(tenant, samples, place)
        token = current_place.set(place)
        try:
            yield share
        finally:
            current_place.reset(token)
            self.calls -= 1
            share.release()

    def _share(self, tenant: str, samples: float, place: Place) -> Share:
        self._tenant_shares[tenant] = self._tenant_shares.get(tenant, 0) + 1
        self.outstanding.setdefault(tenant, 0.0)
        share = Share(self, tenant, 0.0, place)
        share.resize(samples)
        return share

    def _book(self, tenant: str, samples: float) -> None:
        self.outstanding[tenant] += samples

    def _drop(self, tenant: str) -> None:
        self._tenant_shares[tenant] -= 1
        if not self._tenant_shares[tenant]:  # its last share: nothing of it is outstanding (no rounding left)
            del self._tenant_shares[tenant], self.outstanding[tenant]

    def _refuse(self, reason: str, retry_after_s: float, why: str) -> None:
        if self.on_reject is not None:
            self.on_reject(reason)
        raise APIError(429, "overloaded", f"{why}; retry later", retry_after=str(max(1, math.ceil(retry_after_s))))
