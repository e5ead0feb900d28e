"""``MHD2_*`` environment variables for every command-line option (as ``UVICORN_*``).

``--tls-key-password`` is ``MHD2_TLS_KEY_PASSWORD``, ``--workers`` is
``MHD2_WORKERS``: the option's long name, upper-case, ``-`` as ``_``. A
variable counts only for an option the command line does not give; a flag
takes ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``; a
repeatable option (``--index``) takes a comma-separated list. A value is
checked like the option's (a bad one exits 2, naming the variable).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["PREFIX", "add_environment_help", "environment_arguments", "variable_for"]

PREFIX = "MHD2_"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_SKIP = frozenset({"help", "version"})


def _options(parser: argparse.ArgumentParser) -> Iterable[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and action.dest not in _SKIP and not isinstance(
                action, argparse._SubParsersAction):
            yield action


def variable_for(action: argparse.Action) -> str:
    """The environment variable of an option: ``--tls-key`` is ``MHD2_TLS_KEY``."""
    if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x: MHD2_X
        longest = action.option_strings[0]
    else:
        longest = max(action.option_strings, key=len)
    return PREFIX + longest.lstrip("-").upper().replace("-", "_")


def add_environment_help(parser: argparse.ArgumentParser) -> None:
    """Append ``[env: MHD2_...]`` to every option's help text."""
    for action in _options(parser):
        if action.help == argparse.SUPPRESS:
            continue
        action.help = f"{action.help or ''} [env: {variable_for(action)}]".strip()
    parser.epilog = ((parser.epilog + "\n") if parser.epilog else "") + (
        "Every option can also be set in the environment, as the variable shown next to it; "
        "the command line wins.")


def environment_arguments(parser: argparse.ArgumentParser, given: Sequence[str],
                          environ: Mapping[str, str] | None = None) -> list[str]:
    """Command-line tokens for the ``MHD2_*`` variables of options not in *given*.

    Raises:
        SystemExit: (status 2, via ``parser.error``) a flag variable that is
            not a yes/no value.
    """
    env = os.environ if environ is None else environ
    present = {token.split("=", 1)[0] for token in given if token.startswith("-")}
    tokens: list[str] = []
    for action in _options(parser):
        name = variable_for(action)
        if name not in env or present.intersection(action.option_strings):
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            present_no = {s for s in present if s.startswith("--no-")}
            if present_no.intersection(action.option_strings):
                continue
            yes = _flag(parser, name, env[name])
            positive = min(action.option_strings, key=len)
            tokens.append(positive if yes else "--no-" + positive[2:])
        elif action.nargs == 0:  # store_true / store_false
            if _flag(parser, name, env[name]):
                tokens.append(action.option_strings[-1])
        elif isinstance(action, argparse._AppendAction):
            for item in env[name].split(","):
                if item.strip():
                    tokens += [action.option_strings[-1], item.strip()]
        else:
            _check(parser, action, name, env[name])
            tokens.append(f"{max(action.option_strings, key=len)}={env[name]}")
    return tokens


def _check(parser: argparse.ArgumentParser, action: argparse.Action, name: str,
           value: str) -> None:
    """A bad value exits 2 naming the variable (argparse would name the option)."""
    try:
        converted = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        parser.error(f"environment variable {name}: {exc}")
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        parser.error(f"environment variable {name}: {value!r} is not one of {choices}")


def _flag(parser: argparse.ArgumentParser, name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    parser.error(f"environment variable {name}: expected 1/true/yes/on or 0/false/no/off, "
                 f"not {value!r}")
