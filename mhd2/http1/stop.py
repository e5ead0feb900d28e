"""A graceful stop on an HTTP/1 connection: what it does, by where the connection is.

The daemon tells every connection when a graceful stop begins
(:meth:`HTTP1Connection.close_if_idle
<mhd2.http1.connection.HTTP1Connection.close_if_idle>`); :func:`stop_step`
decides from the connection's position alone (sans-IO), the connection
carries it out:

* kept alive, between requests, no byte of the next one in: close now;
* accepted, no request yet: it was accepted a moment ago and its first request
  may be on the way, so it may wait :data:`STOP_FIRST_REQUEST_SECONDS` for its
  first byte (:func:`limit_first_wait`), then the request is answered with
  ``Connection: close``;
* a head begun: read it (under ``timeout``) and answer with ``Connection: close``;
* a request in progress: a suspended one is woken and answered
  ``503 Service Unavailable`` (or, its head already sent, its connection is
  closed); an upgraded connection's handler is told
  (``UpgradeHandle.begin_stop``).
"""

from __future__ import annotations

import enum

import trio

__all__ = ["STOP_FIRST_REQUEST_SECONDS", "StopStep", "limit_first_wait", "stop_step"]

#: A graceful stop: how long a connection that has not sent a byte yet (accepted
#: a moment before the stop) may still wait for its first request.  Once its
#: first byte is in, the head has ``timeout`` and the whole stop its grace.
STOP_FIRST_REQUEST_SECONDS = 1.0


class StopStep(enum.Enum):
    """What a connection does when a graceful stop begins (see the module docstring)."""

    CLOSE_NOW = "close now"
    WAIT_FIRST = "wait a little for the first request"
    READ_HEAD = "read the head begun"
    IN_REQUEST = "wake the request in progress"


def stop_step(idle: bool, head_started: bool, served: int) -> StopStep:
    """The step a graceful stop takes on a connection.

    Args:
        idle: no request is in progress (waiting for, or reading, a head).
        head_started: a byte of the next head is in.
        served: requests begun on the connection so far.
    """
    if not idle:
        return StopStep.IN_REQUEST
    if head_started:
        return StopStep.READ_HEAD
    if not served:
        return StopStep.WAIT_FIRST
    return StopStep.CLOSE_NOW


def limit_first_wait(scope: trio.CancelScope) -> None:
    """Stopping: the wait for the first byte ends within :data:`STOP_FIRST_REQUEST_SECONDS`.

    When it passes, the connection's cancel scope *scope* ends the wait and
    the connection is closed without a reply (it had begun no request); the
    head's own ``timeout`` applies from its first byte.
    """
    scope.deadline = min(scope.deadline, trio.current_time() + STOP_FIRST_REQUEST_SECONDS)
