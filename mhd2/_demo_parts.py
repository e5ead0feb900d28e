"""Pieces of :mod:`mhd2.demo` that are not about waiting: the page, the icon,
small responses and the message parser."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .enums import ValueKind
from .request import Request
from .response import Response

#: The page: HTML, CSS and JavaScript in one file, no external assets.
PAGE = resources.files("mhd2").joinpath("demo_page.html").read_bytes()
#: The icon, an SVG speech bubble (inlined in the page too).
FAVICON = (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">'
           b'<rect x="4" y="6" width="56" height="40" rx="10" fill="#2563eb"/>'
           b'<path d="M16 44 L14 60 L32 44 Z" fill="#2563eb"/>'
           b'<circle cx="20" cy="26" r="5" fill="#fff"/><circle cx="32" cy="26" r="5" fill="#fff"/>'
           b'<circle cx="44" cy="26" r="5" fill="#fff"/></svg>')


def json_response(status: int, payload: Any) -> Response:
    response = Response.from_buffer_static(status, json.dumps(payload).encode())
    response.add_header("Content-Type", "application/json")
    response.add_header("Cache-Control", "no-store")
    return response


def text_response(status: int, text: str) -> Response:
    response = Response.from_buffer_static(status, text.encode())
    response.add_header("Content-Type", "text/plain; charset=utf-8")
    return response


def parse_message(request: Request, data: bytes) -> tuple[str, str, str]:
    """``(problem, name, text)`` from a ``POST /send`` body."""
    return parse_fields(data, request.get_value(ValueKind.HEADER, "Content-Type"),
                         request.get_value(ValueKind.GET_ARGUMENT, "name"))


def parse_fields(data: bytes, content_type: str | None, name_arg: str | None
                  ) -> tuple[str, str, str]:
    """``(problem, name, text)`` from a message body: JSON, or plain text with ``?name=``."""
    try:
        body = data.decode("utf-8")
    except UnicodeDecodeError:
        return "400 Bad Request: the message is not UTF-8\n", "", ""
    content_type = (content_type or "").lower()
    name: Any = name_arg or "anonymous"
    text: Any = body
    if content_type.split(";")[0].strip() == "application/json":
        try:
            obj = json.loads(body)
        except ValueError:
            return "400 Bad Request: the body is not valid JSON\n", "", ""
        if not isinstance(obj, dict):
            return '400 Bad Request: send a JSON object {"name": ..., "text": ...}\n', "", ""
        name = obj.get("name") or "anonymous"
        text = obj.get("text")
    if not isinstance(name, str) or not isinstance(text, str):
        return "400 Bad Request: 'name' and 'text' must be strings\n", "", ""
    name, text = name.strip()[:40], text.strip()
    if not text:
        return "400 Bad Request: the message is empty\n", "", ""
    return "", name or "anonymous", text
