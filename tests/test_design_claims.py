"""docs/design.rst's claims about the code's shape, checked against the code.

The layer contracts are shown in design.rst by including pyproject.toml itself,
so they cannot drift; what is checked here is the prose around them: which
modules are sans-IO (no trio, not even for type checking), and that every
module the contracts name exists.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mhd2"

#: design.rst: "The sans-IO cores ... never import it, not even for type checking".
SANS_IO = [
    "_http1/*.py", "_auth/*.py", "_post/*.py",
    "_proxy/protocol.py", "_proxy/forwarded.py", "_proxy/addresses.py", "_proxy/trusted.py",
    "_proxy/rfc7239.py", "_proxy/x_forwarded.py",
    "_static/conditionals.py", "_static/encodings.py", "_static/files.py",
    "_static/listing.py", "_static/ranges.py", "_static/snapshot.py", "_static/tree.py",
    "http2/engine.py", "http2/outbox.py", "http2/events.py", "http2/guard.py", "http2/machine.py",
    "http2/checks.py", "http2/hpack_out.py", "http2/port.py",
    "request.py", "_syntax.py", "_date.py", "_slot.py", "exchange_view.py",
]


def sans_io_files() -> list[Path]:
    files = sorted({path for pattern in SANS_IO for path in PACKAGE.glob(pattern)})
    assert len(files) > 30, files
    return files


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sans_io_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_sans_io_cores_never_import_trio(path: Path) -> None:
    trio_imports = {name for name in imported_modules(path)
                    if name == "trio" or name.startswith("trio.")}
    assert not trio_imports, f"{path.relative_to(ROOT)} imports {sorted(trio_imports)}"


def test_every_module_the_contracts_name_exists() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for contract in config["contracts"]:
        containers = contract.get("containers", [""])
        names: list[str] = []
        for layer in contract.get("layers", []):
            names += [n.strip() for n in layer.split("|")]
        names += contract.get("source_modules", []) + contract.get("forbidden_modules", [])
        for container in containers:
            for name in names:
                dotted = f"{container}.{name}" if container else name
                relative = Path(*dotted.split(".")[1:])
                assert ((PACKAGE / relative).with_suffix(".py").is_file()
                        or (PACKAGE / relative / "__init__.py").is_file()), (
                    f"{contract['name']}: {dotted} is not a module")


def test_design_rst_includes_the_contracts_from_pyproject() -> None:
    design = (ROOT / "docs" / "design.rst").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    markers = re.findall(r":(?:start-after|end-before): (.+)", design)
    assert len(markers) == 2 and all(marker in pyproject for marker in markers)
    included = pyproject.split(markers[0])[1].split(markers[1])[0]
    assert included.count("[[tool.importlinter.contracts]]") == len(
        tomllib.loads(pyproject)["tool"]["importlinter"]["contracts"])
