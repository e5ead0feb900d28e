"""The import graph of mhd2.http2, type-only imports included: no circles, calls go down.

import-linter (``lint-imports``, pyproject's contracts) leaves out imports made
only for type checking; this test counts them too.  The layers are the ones of
``docs/design.rst`` (the HTTP/2 module map) and of the ``mhd2.http2`` contract
in pyproject.toml: a module imports only modules of the layers below its own.
"""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")

#: Top to bottom; modules of one layer do not import each other.
LAYERS = [
    {"mhd2.http2"},
    {"mhd2.http2.connection"},
    {"mhd2.http2.serve", "mhd2.http2.writer", "mhd2.http2.liveness", "mhd2.http2.stop",
     "mhd2.http2.idle"},
    {"mhd2.http2.reply", "mhd2.http2.tunnel"},
    {"mhd2.http2.stream"},
    {"mhd2.http2.port"},
    {"mhd2.http2.engine"},
    {"mhd2.http2.outbox"},
    {"mhd2.http2.events", "mhd2.http2.guard", "mhd2.http2.machine"},
    {"mhd2.http2.checks", "mhd2.http2.hpack_out"},
]


def _edges() -> tuple[set[str], set[tuple[str, str]]]:
    graph = grimp.build_graph("mhd2", exclude_type_checking_imports=False)
    modules = {m for m in graph.modules if m == "mhd2.http2" or m.startswith("mhd2.http2.")}
    edges = {(m, i) for m in modules for i in graph.find_modules_directly_imported_by(m)
             if i in modules and i != m}
    return modules, edges


def _cycles(modules: set[str], edges: set[tuple[str, str]]) -> list[list[str]]:
    """Every import circle (as one path back to its start), found by depth-first search."""
    out: list[list[str]] = []
    after: dict[str, list[str]] = {m: sorted(b for a, b in edges if a == m) for m in modules}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in after[m]:
            if state.get(n) == 1:
                out.append([*path[path.index(n):], n])
            elif n not in state:
                visit(n, [*path, n])
        state[m] = 2

    for m in sorted(modules):
        if m not in state:
            visit(m, [m])
    return out


def test_http2_has_no_import_circles_even_for_types() -> None:
    modules, edges = _edges()
    assert _cycles(modules, edges) == []


def test_http2_imports_go_down_the_layers() -> None:
    modules, edges = _edges()
    rank = {m: n for n, layer in enumerate(LAYERS) for m in layer}
    assert modules == set(rank), "every module of mhd2.http2 has its place in LAYERS"
    upward = sorted((a, b) for a, b in edges if rank[a] >= rank[b])
    assert upward == []
