"""The command line's logging: ``--log-level`` (mhd2's own loggers to stderr) or
``--log-config FILE`` (a :func:`logging.config.dictConfig` in JSON or YAML)."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging", "load_log_config"]


def configure_logging(level: str) -> None:
    """``--log-level``: the ``mhd2`` logger writes to stderr from *level* up.

    Only mhd2's own logger is configured; the application's logging stays as
    the application sets it up.
    """
    logger = logging.getLogger("mhd2")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    access = logging.getLogger("mhd2.access")
    access.setLevel(logging.INFO)  # --access-log says whether there is one
    if not access.handlers:
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(plain)
        access.propagate = False


def load_log_config(path: str) -> None:
    """``--log-config FILE``: :func:`logging.config.dictConfig` from JSON or YAML.

    A file that cannot be read or used exits 2 with one sentence naming it.
    """
    import json
    import logging.config

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise ValueError("YAML needs PyYAML (pip install pyyaml); or write it as "
                                 "JSON") from None
            config = yaml.safe_load(text)
        else:
            config = json.loads(text)
        if not isinstance(config, dict):
            raise ValueError("it is not a logging.config.dictConfig mapping")
        config.setdefault("version", 1)
        config.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(config)
    except (OSError, ValueError, TypeError, AttributeError, ImportError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"mhd2: cannot use the log configuration {path}: {reason}", file=sys.stderr)
        raise SystemExit(2) from None
