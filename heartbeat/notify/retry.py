"""The one retry policy for every channel, and the concurrent fan-out.

Retry only what can help (:attr:`NotifyError.retryable`), with exponential backoff
and jitter, until a deadline; then give up *for now* (the delivery stays pending
in KV and a later tick retries it with the same notification id).  A channel that
answers with ``Retry-After`` is never tried sooner than it asked; when that would
pass the deadline the round ends at once, and :attr:`DeliveryResult.retry_after_s`
tells the caller how long to hold the next round.  Log when the error changes, not
on every attempt.  Nothing else in the package retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)

from heartbeat.notify.base import Notification, Notifier, NotifyError

logger = logging.getLogger(__name__)

OnResult = Callable[[str, "DeliveryResult"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """``delivered``; else ``permanent`` (do not retry) or not (keep it pending).

    ``retry_after_s``: the channel's last answer asked for this many more seconds
    (from when the result is returned) before it is tried again; None if it did not.
    """

    delivered: bool
    permanent: bool
    attempts: int
    error: str = ""
    retry_after_s: float | None = None


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, NotifyError) and exc.retryable


class DeliveryAborted(Exception):
    """``may_send`` said no: stop trying now and keep the delivery pending."""


class _Attempts:
    """Runs single attempts within the deadline and logs when the error changes."""

    def __init__(
        self,
        notifier: Notifier,
        notification: Notification,
        deadline: float,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self.notifier = notifier
        self.notification = notification
        self.deadline = deadline
        self.may_send = may_send
        self.count = 0
        self.last_error = ""
        self.not_before: float | None = None  # loop time the channel asked us to wait for

    async def __call__(self) -> None:
        if self.may_send is not None and not self.may_send():
            raise DeliveryAborted
        self.count += 1
        name = self.notifier.name
        try:
            async with asyncio.timeout_at(self.deadline) as cm:
                await self.notifier.send(self.notification)
        except NotifyError as e:
            loop = asyncio.get_running_loop()
            asked = e.retry_after_s
            self.not_before = None if asked is None else loop.time() + asked
            self._failed(str(e), permanent=not e.retryable)
            raise
        except Exception as e:
            self.not_before = None
            if isinstance(e, TimeoutError) and cm.expired():
                # The deadline ended a retry: the error worth reporting is the last real one.
                text = self.last_error or f"{name}: attempt cut short by the delivery deadline"
                self._failed(text, permanent=False)
            else:
                text = f"{name}: unexpected {type(e).__name__} in notifier: {e}"
                self._failed(text, permanent=False, bug=e)
            raise NotifyError(text, retryable=True) from e

    def wait_left(self) -> float | None:
        """Seconds until the channel's last ``Retry-After`` ends (None: it set none)."""
        if self.not_before is None:
            return None
        return max(0.0, self.not_before - asyncio.get_running_loop().time())

    def _failed(self, text: str, *, permanent: bool, bug: Exception | None = None) -> None:
        changed, self.last_error = text != self.last_error, text
        n = self.notification
        if permanent:
            logger.error(
                "notify %s: delivery FAILED PERMANENTLY, not retrying "
                "(event=%s subject=%s id=%s): %s",
                self.notifier.name,
                n.event,
                n.subject,
                n.notification_id,
                text,
            )
        elif changed:
            logger.log(
                logging.ERROR if bug else logging.WARNING,
                "notify %s: delivery failed (attempt %d, event=%s subject=%s id=%s), retrying: %s",
                self.notifier.name,
                self.count,
                n.event,
                n.subject,
                n.notification_id,
                text,
                exc_info=bug,
            )


async def send_with_retry(
    notifier: Notifier,
    notification: Notification,
    *,
    deadline_s: float,
    initial_backoff_s: float = 0.2,
    max_backoff_s: float = 5.0,
    may_send: Callable[[], bool] | None = None,
    previous_error: str = "",
) -> DeliveryResult:
    """Deliver ``notification`` to one channel, retrying until ``deadline_s`` passes.

    ``previous_error`` is how the last round for this notification ended: a round
    that fails the same way logs nothing new (a long outage is not a log flood).

    Delivery failures never raise (only cancellation and a bad ``deadline_s`` do):
    the outcome is the :class:`DeliveryResult`.
    No attempt starts, and no attempt runs, past the deadline.
    """
    if deadline_s <= 0:
        raise ValueError(f"deadline_s must be positive, got {deadline_s}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    attempt = _Attempts(notifier, notification, deadline, may_send)
    attempt.last_error = previous_error

    def stop(state: RetryCallState) -> bool:
        # Do not sleep into (or past) the deadline only to be cut short there.
        return loop.time() + state.upcoming_sleep >= deadline

    backoff = wait_exponential(multiplier=initial_backoff_s, max=max_backoff_s) + wait_random(
        0, initial_backoff_s
    )

    def wait(state: RetryCallState) -> float:
        # Never sooner than the channel asked (Retry-After, counted from its answer).
        base = float(backoff(state))
        asked = attempt.wait_left()
        return base if asked is None else max(base, asked)

    retrying = AsyncRetrying(
        retry=retry_if_exception(_is_retryable),
        wait=wait,
        stop=stop,
        reraise=True,
    )
    try:
        await retrying(attempt)
    except DeliveryAborted:
        logger.info(
            "notify %s: stopped before attempt %d, keeping id=%s pending",
            notifier.name,
            attempt.count + 1,
            notification.notification_id,
        )
        return DeliveryResult(False, False, attempt.count, "aborted", attempt.wait_left())
    except NotifyError as e:
        if not e.retryable:
            return DeliveryResult(False, True, attempt.count, str(e))
        wait_left = attempt.wait_left()
        if str(e) != previous_error:
            logger.info(
                "notify %s: still failing after %d attempt(s) in %.1fs, keeping id=%s pending%s",
                notifier.name,
                attempt.count,
                deadline_s,
                notification.notification_id,
                "" if wait_left is None else f" (it asked to wait {wait_left:.1f}s more)",
            )
        return DeliveryResult(False, False, attempt.count, str(e), wait_left)
    if attempt.count > 1:
        logger.info(
            "notify %s: delivered id=%s after %d attempts",
            notifier.name,
            notification.notification_id,
            attempt.count,
        )
    return DeliveryResult(True, False, attempt.count)


async def fan_out(
    notifiers: Sequence[Notifier],
    notification: Notification,
    *,
    deadline_s: float,
    on_result: OnResult | None = None,
    initial_backoff_s: float = 0.2,
    max_backoff_s: float = 5.0,
    may_send: Callable[[], bool] | None = None,
    previous_errors: Mapping[str, str] | None = None,
) -> dict[str, DeliveryResult]:
    """Send to every channel concurrently; ``on_result(name, result)`` runs as each
    channel finishes (so a success is recorded without waiting for slow channels).

    One channel's failure, slowness or failing ``on_result`` never cancels or delays
    another's.  An exception from ``on_result`` is logged, not raised.  ``may_send``
    is asked before every attempt; when it says no, the channel stops at once and
    its delivery stays pending (a replica that no longer leads sends nothing).
    """
    names = [n.name for n in notifiers]
    if len(set(names)) != len(names):
        raise ValueError(f"notifier names must be distinct, got {names}")

    async def one(notifier: Notifier) -> DeliveryResult:
        result = await send_with_retry(
            notifier,
            notification,
            deadline_s=deadline_s,
            initial_backoff_s=initial_backoff_s,
            max_backoff_s=max_backoff_s,
            may_send=may_send,
            previous_error=(previous_errors or {}).get(notifier.name, ""),
        )
        if on_result is not None:
            try:
                await on_result(notifier.name, result)
            except Exception:
                logger.exception(
                    "notify %s: recording the result of id=%s failed",
                    notifier.name,
                    notification.notification_id,
                )
        return result

    results = await asyncio.gather(*(one(n) for n in notifiers))
    return dict(zip(names, results, strict=True))
