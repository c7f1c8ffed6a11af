"""Generation slots and the waiting queue: at most N generations at once, up to Q waiting in order.

Beyond that a newcomer is refused with :class:`Busy` at once, as the original PICO did. A
waiter leaves the queue as soon as it is gone (cancelled, or its client disconnected), so a
dead entry can never hold up the ones behind it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from pico.errors import Busy, Cancelled

RETRY_AFTER_SECONDS = 2
POLL_SECONDS = 0.5  # how often a waiter checks that its client is still there
SHUTTING_DOWN = "The server is shutting down; retry on another instance."


class Waiter(Protocol):
    """What waits for a slot: a job, or a batch of them."""

    size: int  # requests it stands for, counted against the queue

    def gone(self) -> str | None:
        """Why it no longer wants a slot (cancelled, client left), or None."""


class Slots:
    """The slot gate. Thread-safe; wake() tells waiters to look at themselves again."""

    def __init__(self, slots: int, queue: int):
        self.slots = slots
        self.queue_limit = queue
        self._running = 0
        self._waiting: deque[Waiter] = deque()
        self._cond = threading.Condition()
        self._closed = False

    @property
    def busy(self) -> bool:
        """True while every slot is taken."""
        return self._running >= self.slots

    def counts(self) -> tuple[int, int]:
        """(slots in use, requests waiting), read together."""
        with self._cond:
            return self._running, sum(w.size for w in self._waiting)

    def check_room(self, pending: int) -> None:
        """Raise Busy unless one more request fits, ``pending`` requests not yet queued counted in."""
        with self._cond:
            if self._closed:
                raise Busy(SHUTTING_DOWN, retry_after=RETRY_AFTER_SECONDS)
            waiting = sum(w.size for w in self._waiting) + pending
            if self._running >= self.slots and waiting >= self.queue_limit:
                raise self._busy()

    def acquire(self, waiter: Waiter) -> None:
        """Take a slot now, or wait for one in arrival order; Busy when the queue is full, Cancelled when gone."""
        with self._cond:
            if self._closed:
                raise Busy(SHUTTING_DOWN, retry_after=RETRY_AFTER_SECONDS)
            reason = waiter.gone()
            if reason:
                raise Cancelled(reason)
            if self._running < self.slots and not self._waiting:
                self._running += 1
                return
            if sum(w.size for w in self._waiting) + waiter.size > self.queue_limit:
                raise self._busy()
            self._waiting.append(waiter)
            try:
                while not (self._waiting[0] is waiter and self._running < self.slots):
                    reason = waiter.gone()
                    if reason:
                        raise Cancelled(reason)
                    if self._closed:
                        raise Busy(SHUTTING_DOWN, retry_after=RETRY_AFTER_SECONDS)
                    self._cond.wait(POLL_SECONDS)
                self._waiting.popleft()
                self._running += 1
            except BaseException:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                raise
            finally:
                self._cond.notify_all()

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def wake(self) -> None:
        """Make every waiter check whether it is gone (after a cancel)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse newcomers and turn the waiting away; slots in use stay until released."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _busy(self) -> Busy:
        queue = f" and the queue is full ({self.queue_limit} waiting)" if self.queue_limit else ""
        return Busy(f"All {self.slots} generation slot(s) are busy{queue}; retry shortly.",
                    retry_after=RETRY_AFTER_SECONDS)
