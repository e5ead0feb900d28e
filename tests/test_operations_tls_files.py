"""Bad TLS material on the command line: exit 2, one sentence naming the file, no prompt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import child_env

trustme = pytest.importorskip("trustme")
serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server, other = ca.issue_cert("127.0.0.1"), ca.issue_cert("other.example")
    paths = {name: root / f"{name}.pem" for name in
             ("cert", "key", "other_key", "encrypted_key", "junk", "ca")}
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    other.private_key_pem.write_to_path(str(paths["other_key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), None)
    paths["encrypted_key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right password")))
    paths["junk"].write_text("not a certificate\n")
    (root / "password").write_text("right password\n")
    (root / "wrong_password").write_text("wrong\n")
    paths["password"] = root / "password"
    paths["wrong_password"] = root / "wrong_password"
    return paths


def run_with_a_terminal(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mhd2`` with a pseudo-terminal as stdin (where OpenSSL would prompt)."""
    controller, terminal = os.openpty()
    try:
        return subprocess.run([sys.executable, "-m", "mhd2", *argv], stdin=terminal,
                              capture_output=True, text=True, timeout=30, env=child_env())
    finally:
        os.close(controller)
        os.close(terminal)


CASES = {
    "wrong password": (["--tls-key", "encrypted_key", "--tls-key-password-file",
                        "wrong_password"], "encrypted_key", "wrong password"),
    "no password": (["--tls-key", "encrypted_key"], "encrypted_key", "no password"),
    "key mismatch": (["--tls-key", "other_key"], "other_key", "does not match"),
    "missing key": (["--tls-key", "missing"], "missing", "No such file"),
    "junk key": (["--tls-key", "junk"], "junk", "no usable PEM private key"),
    "junk cert": (["--tls-key", "key", "--tls-cert", "junk"], "junk", "no PEM certificate"),
    "junk client CA": (["--tls-key", "key", "--tls-client-ca", "junk"], "junk",
                       "no PEM certificate"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_tls_material_is_one_sentence_and_exit_2(files: dict[str, Path], case: str) -> None:
    extra, culprit, words = CASES[case]
    argv = ["serve", str(files["cert"].parent), "--port", "0", "--tls-cert", str(files["cert"])]
    for i, item in enumerate(extra):
        argv.append(str(files.get(item, files["cert"].parent / item)) if i % 2 else item)
    result = run_with_a_terminal(argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(files["cert"].parent / culprit) in lines[0] and words in lines[0], lines[0]
    assert "usage:" not in result.stderr and "PEM lib" not in result.stderr


def test_the_right_password_from_a_file_is_accepted(files: dict[str, Path]) -> None:
    from mhd2.tls import load_files

    context = load_files(str(files["cert"]), str(files["encrypted_key"]),
                         password=files["password"].read_text().strip())
    assert context.verify_mode.name == "CERT_NONE"
