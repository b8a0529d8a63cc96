"""Who gets a session slot: the server's capacity, shared fairly between client addresses.

A slot is reserved synchronously (no await between the check and the count), so a burst of
connections can never overshoot VOICEBOT_MAX_SESSIONS while some of them are still in their
handshake; it is released exactly once, whatever way the session ends.
"""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECS = 60.0


class Refused(Exception):
    """No slot for this connection; `reason` is what the client is told."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RateWindow:
    """At most `limit` events per client in any 60 s (0: no limit)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic):
        self._limit = limit
        self._clock = clock
        # Ordered by each client's latest event (moved to the end on every event), so clients
        # idle for a minute sit at the front and are dropped from there: O(1) amortised.
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        """Record an event for `client` if it is within its limit; False (and nothing recorded) if not."""
        if not self._limit:
            return True
        now = self._clock()
        self._forget_idle(now)
        events = self._events.setdefault(client, deque())
        while events and events[0] <= now - WINDOW_SECS:
            events.popleft()
        if len(events) >= self._limit:
            return False
        events.append(now)
        self._events.move_to_end(client)
        return True

    def _forget_idle(self, now: float) -> None:
        """Bound the table by the clients seen in the last minute."""
        while self._events:
            client, events = next(iter(self._events.items()))
            if events and events[-1] > now - WINDOW_SECS:
                return
            del self._events[client]


@dataclass
class Slot:
    """One reserved session; `release()` is idempotent."""

    admission: Admission
    client: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self)


class Admission:
    """Counts reserved sessions, in total and per client address."""

    def __init__(
        self,
        *,
        max_sessions: int,
        max_per_client: int,
        new_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_sessions = max_sessions
        # Never half the server or more to one address, whatever the setting: on a small server
        # (the offline stack holds 2) one client could otherwise take every slot.
        self._max_per_client = min(max_per_client, max(1, max_sessions // 2)) if max_per_client else 0
        self._starts = RateWindow(new_per_minute, clock)
        self._per_client: dict[str, int] = defaultdict(int)
        self.reserved = 0
        self.draining = False

    @property
    def accepting(self) -> bool:
        return not self.draining and self.reserved < self.max_sessions

    def reserve(self, client: str, *, exempt: bool = False) -> Slot:
        """A slot for `client`, or Refused. `exempt` skips the per-client limits (Twilio's
        signed streams all come from Twilio's few addresses)."""
        if self.draining:
            raise Refused("server shutting down")
        if self.reserved >= self.max_sessions:
            raise Refused("server full")
        if not exempt:
            if self._max_per_client and self._per_client[client] >= self._max_per_client:
                raise Refused(f"too many sessions from your address (at most {self._max_per_client})")
            if not self._starts.allow(client):
                raise Refused("too many new sessions from your address; try again in a minute")
        self.reserved += 1
        self._per_client[client] += 1
        return Slot(self, client)

    def _release(self, slot: Slot) -> None:
        self.reserved -= 1
        self._per_client[slot.client] -= 1
        if not self._per_client[slot.client]:
            del self._per_client[slot.client]
