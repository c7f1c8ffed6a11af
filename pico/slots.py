"""Generation slots and the waiting queue: at most N generations at once, up to Q requests waiting in order.

Beyond that a newcomer is refused with :class:`Busy` at once, as the original PICO did. A
waiter leaves the queue as soon as it is gone (cancelled, or its client disconnected), so a
dead entry can never hold up the ones behind it. A waiter may stand for several requests (a
dynamic batch): its ``size`` counts against the queue, and may grow while it waits.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Protocol

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
            return self._running, self._queued()

    def place(self, match: Callable[[Waiter], bool]) -> int:
        """The queue place of the first waiter ``match`` accepts (1: next), counting the requests ahead; 0: none."""
        with self._cond:
            ahead = 0
            for waiter in self._waiting:
                if match(waiter):
                    return ahead + 1
                ahead += waiter.size
        return 0

    def acquire(self, waiter: Waiter) -> None:
        """Take a slot now, or wait for one in arrival order; Busy when the queue is full, Cancelled when gone."""
        if not self.admit(waiter):
            self.wait(waiter)

    def admit(self, waiter: Waiter) -> bool:
        """Take a slot if one is free (True), else join the queue (False); Busy when the queue has no room."""
        with self._cond:
            if self._closed:
                raise Busy(SHUTTING_DOWN, retry_after=RETRY_AFTER_SECONDS)
            reason = waiter.gone()
            if reason:
                raise Cancelled(reason)
            if self._running < self.slots and not self._waiting:
                self._running += 1
                return True
            if self._queued() + waiter.size > self.queue_limit:
                raise self._busy()
            self._waiting.append(waiter)
            return False

    def grow(self, waiter: Waiter, join: Callable[[], None], more: int = 1) -> None:
        """Let ``more`` requests join a waiter (``join`` adds them, under the gate's lock).

        A queued waiter needs queue room for them (Busy when there is none); one that holds a
        slot already runs them in it.
        """
        with self._cond:
            if self._closed:
                raise Busy(SHUTTING_DOWN, retry_after=RETRY_AFTER_SECONDS)
            if waiter in self._waiting and self._queued() + more > self.queue_limit:
                raise self._busy()
            join()

    def wait(self, waiter: Waiter) -> None:
        """Wait in the queue (after admit() said so) until the waiter's turn and a free slot."""
        with self._cond:
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

    def _queued(self) -> int:
        return sum(w.size for w in self._waiting)

    def _busy(self) -> Busy:
        queue = f" and the queue is full ({self.queue_limit} waiting)" if self.queue_limit else ""
        return Busy(f"All {self.slots} generation slot(s) are busy{queue}; retry shortly.",
                    retry_after=RETRY_AFTER_SECONDS)
