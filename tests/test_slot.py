"""Slot.call: the one place that checks "exactly one action, and it is this call's own".

Sans-IO unit tests of :class:`mhd2._slot.Slot` (the request callback's,
upload callbacks' and content creators' slots), with plain objects as
actions: what a call may return, the messages of the usage errors, and the
spent slot that refuses an action made after the call.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import mhd2
from mhd2._slot import DCCSlot, Slot, UploadSlot


class _Action:
    """A stand-in action: claims the slot it is made for."""

    def __init__(self, slot: Slot) -> None:
        slot.claim(self)


def test_call_returns_the_action_it_made_and_spends_the_slot() -> None:
    slot = Slot()
    made: list[_Action] = []

    def callback(tag: str) -> _Action:
        assert tag == "x"
        made.append(_Action(slot))
        return made[-1]

    assert slot.call(callback, "x") is made[0]
    # Spent: the slot lets go of the action, and an action made later is refused.
    assert slot.value is not made[0]
    with pytest.raises(mhd2.UsageError, match="created after the request callback had returned"):
        _Action(slot)
    # The next call empties it again.
    assert slot.call(callback, "x") is made[1]


def test_a_second_action_in_one_call_is_refused() -> None:
    slot = Slot()

    def callback() -> _Action:
        _Action(slot)
        return _Action(slot)

    with pytest.raises(mhd2.UsageError, match="already created in this call") as info:
        slot.call(callback)
    assert info.value.code is mhd2.StatusCode.ACTION_ALREADY_CREATED


@pytest.mark.parametrize(
    ("slot", "text", "code"),
    [
        (Slot(), "the request callback must return the action made for this request by an "
                 "mhd2.action_* function, not ", mhd2.StatusCode.API_MISUSE),
        (UploadSlot(), "an upload callback must return the upload action made for its request "
                       "by an mhd2.upload_action_* function, not ", mhd2.StatusCode.API_MISUSE),
        (DCCSlot(), "a content creator must return the DCC action made from its own ctx "
                    "(dcc_action_continue(ctx, ...), dcc_action_finish(ctx) ...)",
         mhd2.StatusCode.DCC_ACTION_INVALID),
    ],
)
def test_anything_but_its_own_action_is_a_usage_error(slot: Slot, text: str,
                                                       code: mhd2.StatusCode) -> None:
    other = Slot()
    stale = _Action(slot)  # made in an earlier call
    slot.spend()
    for wrong in (_Action(other), stale, "an action", 42):
        def callback(wrong: object = wrong) -> object:
            _Action(slot)  # it made one, but returns something else
            return wrong

        with pytest.raises(mhd2.UsageError) as info:
            slot.call(callback)
        assert str(info.value).startswith(text)
        assert info.value.code is code


def test_none_is_returned_and_the_slot_keeps_what_the_call_made() -> None:
    slot = UploadSlot()
    kept: list[_Action] = []

    def callback() -> None:
        kept.append(_Action(slot))

    assert slot.call(callback) is None
    assert slot.take() is kept[0]  # the caller's choice: release it, or take it as the answer
    assert slot.call(lambda: None) is None and slot.take() is None


async def test_an_async_callback_is_checked_once_awaited() -> None:
    slot = Slot()

    async def callback(tag: str) -> _Action:
        await trio.lowlevel.checkpoint()
        return _Action(slot) if tag == "own" else _Action(Slot())

    pending = slot.call(callback, "own")
    action = slot.returned(await pending)
    assert isinstance(action, _Action)
    with pytest.raises(mhd2.UsageError, match="created after"):
        _Action(slot)
    pending = slot.call(callback, "foreign")
    with pytest.raises(mhd2.UsageError, match="must return the action made for this request"):
        slot.returned(await pending)
    # call_async does both, for plain and async callbacks alike.
    assert isinstance(await slot.call_async(callback, "own"), _Action)
    assert isinstance(await slot.call_async(lambda: _Action(slot)), _Action)


async def test_call_async_names_the_callback_in_its_own_message() -> None:
    slot = UploadSlot()

    def my_reader() -> Any:
        return "not an action"

    with pytest.raises(mhd2.UsageError) as info:
        await slot.call_async(my_reader, misuse="{callback!r} must return X, not {result!r}")
    assert str(info.value) == "'my_reader' must return X, not 'not an action'"


def test_pass_on_makes_a_nested_calls_action_the_outer_calls() -> None:
    slot = UploadSlot()
    inner: list[_Action] = []

    def reader() -> _Action:
        inner.append(_Action(slot))
        return inner[-1]

    def outer() -> _Action:
        # (the POST parser: its upload callback answers with its reader's action)
        action = slot.call(reader)
        return slot.pass_on(action)  # type: ignore[no-any-return]

    assert slot.call(outer) is inner[0]
    with pytest.raises(mhd2.UsageError, match="created after the upload callback"):
        _Action(slot)
