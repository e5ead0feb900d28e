"""HTTP/1.x over a transport: the connection loop and the request body source.

The sans-IO rules it applies live in :mod:`mhd2._http1`.
"""

from .connection import HTTP1Connection

__all__ = ["HTTP1Connection"]
