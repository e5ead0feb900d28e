"""The action slot: "exactly one action per callback call, and it is this call's own".

Every kind of application callback that answers with an action -- the request
callback, an upload callback (and the POST parser's reader and done
callbacks, which answer with upload actions too), a dynamic content creator
-- is called through a :class:`Slot`, and only through :meth:`Slot.call`
(or :meth:`Slot.call_async`):

* the slot is emptied, then the callback runs; the ``action_*`` functions it
  calls *claim* the slot, and a second claim in the same call is the usage
  error MHD2 reports as ``ACTION_ALREADY_CREATED``;
* what it returned must be the very action it claimed (not another
  request's, not one kept from an earlier call): else a
  :class:`~mhd2.UsageError` that says what to return;
* the slot is then *spent*: it lets go of the action (an action refers to its
  request, and a slot kept full would tie the request and its engine state
  into a reference cycle), and an action made after the call has returned
  is refused.

Sans-IO, and below the request: :class:`~mhd2.Request`'s narrow view of its
exchange names the slots by this type.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import isawaitable
from typing import Any, ClassVar, TypeVar

from .enums import StatusCode
from .errors import UsageError

__all__ = ["DCCSlot", "Slot", "UploadSlot"]

_A = TypeVar("_A")

#: What a slot holds once its call has returned its action (see Slot.spend).
_SPENT: Any = object()


class Slot:
    """Where the one action of one callback call is kept (see the module docstring).

    One subclass per kind of callback (so that a slot is one field per
    request); their class attributes make the messages.

    Class attributes:
        what: the kind of action, for the error message ("an upload action").
        where: the kind of callback ("upload callback").
        misuse: the usage error's text when the callback returns something
            other than its own action (``{result!r}`` is what it returned).
        misuse_code: that error's MHD2 code (``None``: ``API_MISUSE``).
    """

    __slots__ = ("value",)

    what: ClassVar[str] = "an action"
    where: ClassVar[str] = "request callback"
    misuse: ClassVar[str] = (
        "the request callback must return the action made for this request "
        "by an mhd2.action_* function, not {result!r}")
    misuse_code: ClassVar[StatusCode | None] = None

    def __init__(self) -> None:
        #: The action claimed in the current call (``None``: none yet; or spent).
        self.value: Any = None

    # -- calling a callback -----------------------------------------------------------

    def call(self, callback: Callable[..., Any], *args: Any) -> Any:
        """Call ``callback(*args)`` as one call of this slot's kind; check what it returned.

        Returns:
            The action the call made and returned (the slot is then spent);
            ``None`` if it returned ``None`` (the slot is left as the call
            left it: the caller decides, see :meth:`take`); or, when the
            callback returned an awaitable (an ``async def``), that awaitable:
            await it and pass its result to :meth:`returned`.

        Raises:
            UsageError: it returned anything else (:attr:`misuse`).
            Whatever the callback raised.
        """
        self.value = None
        result = callback(*args)
        if result is self.value and result is not None:
            # The common answer, checked with one comparison.
            self.value = _SPENT
            return result
        if result is None or not isawaitable(result):
            return self.returned(result)
        return result

    async def call_async(self, callback: Callable[..., Any], *args: Any,
                         misuse: str | None = None) -> Any:
        """:meth:`call`, awaiting an awaitable result: the checked action or ``None``.

        Args:
            misuse: the usage error's text instead of :attr:`misuse`
                (``{result!r}`` and ``{callback!r}``, the callback's name).
        """
        self.value = None
        result = callback(*args)
        if result is not None and result is not self.value and isawaitable(result):
            result = await result
        return self.returned(result, callback, misuse)

    def returned(self, result: object, callback: object = None,
                 misuse: str | None = None) -> Any:
        """Check that *result*, what a call returned, is the action it made.

        Returns:
            *result* (the slot is then spent), or ``None`` for ``None``.

        Raises:
            UsageError: *result* is not the action claimed in this call.
        """
        if result is None:
            return None
        if result is not self.value or result is _SPENT:
            name = getattr(callback, "__name__", callback)
            raise UsageError((misuse or self.misuse).format(result=result, callback=name),
                             self.misuse_code)
        self.value = _SPENT
        return result

    # -- the action functions' side ------------------------------------------------------

    def claim(self, action: _A) -> _A:
        """Keep *action* as this call's action.

        Raises:
            UsageError: an action was already made in this call, or the
                call is over (:meth:`spend`).
        """
        if self.value is not None:
            if self.value is _SPENT:
                raise UsageError(
                    f"{self.what} was created after the {self.where} had returned "
                    "its action; create the action inside the callback and return it",
                    StatusCode.ACTION_ALREADY_CREATED,
                )
            raise UsageError(
                f"{self.what} was already created in this call of the {self.where}; "
                "return that action instead of creating another",
                StatusCode.ACTION_ALREADY_CREATED,
            )
        self.value = action
        return action

    def check_free(self) -> None:
        """Raise the usage error of :meth:`claim` if the slot is taken."""
        if self.value is not None:
            self.claim(None)

    # -- after the call --------------------------------------------------------------

    def take(self) -> Any:
        """Empty the slot; return what it held (an action made but not returned,
        to release; or ``None``, or the spent marker)."""
        value, self.value = self.value, None
        return value

    def spend(self) -> None:
        """The call is over: let go of its action (no action -> request ->
        exchange cycle), and refuse actions made after the call until the
        next call empties the slot."""
        self.value = _SPENT

    def pass_on(self, action: _A) -> _A:
        """Make *action*, which a nested call of this slot's kind returned, the
        action of the call around it (the POST parser's upload callback
        answers with what its reader or done callback answered)."""
        self.value = action
        return action


class UploadSlot(Slot):
    """The slot of an upload callback's one upload action."""

    __slots__ = ()

    what = "an upload action"
    where = "upload callback"
    misuse = ("an upload callback must return the upload action made for its request "
              "by an mhd2.upload_action_* function, not {result!r}")


class DCCSlot(Slot):
    """The slot of a content creator's one DCC action (one per call: a fresh context)."""

    __slots__ = ()

    what = "a DCC action"
    where = "content creator"
    misuse = ("a content creator must return the DCC action made from its own ctx "
              "(dcc_action_continue(ctx, ...), dcc_action_finish(ctx) ...)")
    misuse_code = StatusCode.DCC_ACTION_INVALID
