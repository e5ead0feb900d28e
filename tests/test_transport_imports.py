"""The import graph of mhd2.transport, type-only imports included: kinds over a base.

import-linter (``lint-imports``, the ``mhd2.transport`` contract in
pyproject.toml) leaves out imports made only for type checking; this test
counts them too.  The base knows no kind, and only the factory knows them all.
"""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")

#: Top to bottom; modules of one layer do not import each other.
LAYERS = [
    {"mhd2.transport"},
    {"mhd2.transport.factory"},
    {"mhd2.transport.tls", "mhd2.transport.plain"},
    {"mhd2.transport.stream", "mhd2.transport.last_words"},
    {"mhd2.transport.base"},
]


def test_transport_imports_go_down_the_layers_even_for_types() -> None:
    graph = grimp.build_graph("mhd2", exclude_type_checking_imports=False)
    modules = {m for m in graph.modules if m == "mhd2.transport" or m.startswith("mhd2.transport.")}
    rank = {m: n for n, layer in enumerate(LAYERS) for m in layer}
    assert modules == set(rank), "every module of mhd2.transport has its place in LAYERS"
    edges = {(m, i) for m in modules for i in graph.find_modules_directly_imported_by(m)
             if i in modules and i != m}
    upward = sorted((a, b) for a, b in edges if rank[a] >= rank[b])
    assert upward == []
