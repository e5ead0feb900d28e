"""Field syntax the application's header and trailer lines must obey.

RFC 9110 §5.1: ``field-name = token``; ``token = 1*tchar``.  RFC 9110 §5.5:
field values do not contain CR, LF or NUL; MHD2 also refuses TAB in values
it is given, and mhd2 refuses every other control character too.

Protocol-neutral: the response, action and content-creator checks apply it to
what the application gives, whichever protocol then writes it.
"""

from __future__ import annotations

import re

__all__ = ["BAD_VALUE", "TOKEN"]

#: ``tchar`` sequences: a valid field name.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Something a field value must not contain.
BAD_VALUE = re.compile(r"[\x00-\x1f\x7f]|[^\x00-\xff]")
