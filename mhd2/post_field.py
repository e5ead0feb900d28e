"""One form field the POST parser kept in memory (``MHD_request_get_post_data_list``)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PostField"]


class PostField(NamedTuple):
    """A form field as ``request.post_data`` lists it.

    Attributes:
        name: the field name.
        value: the value, decoded as UTF-8 (undecodable bytes as surrogate escapes).
        filename: the file name of a ``multipart/form-data`` file field, or ``None``.
        content_type: the part's ``Content-Type``, or ``None``.
        transfer_encoding: the part's ``Content-Transfer-Encoding``, or ``None``.
    """

    name: str
    value: str
    filename: str | None = None
    content_type: str | None = None
    transfer_encoding: str | None = None
