"""Secrets out of URLs before they are shown.

A URL can carry credentials in two places: the user-info (`user:pass@`) and the
query string (`?token=...`, LES.NET CDR links, FusionPBX export keys). Every log
line and message that names a URL goes through `redact_url`; only
`service show --show-secrets` prints a URL whole.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MASK = "***"


def redact_url(url: str | None) -> str | None:
    """`url` with its user-info, query string and fragment replaced by `***`.

    A local path (no `://`) is returned as it is. Text that does not parse as a
    URL is cut at the first `?` and any `@` before the path is masked.
    """
    if url is None or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        # e.g. an unbalanced "[" in the host: mask by hand, never fail on a message.
        netloc, sep, tail = rest.partition("/")
        path, q, _query = (sep + tail).partition("?")
        if "@" in netloc:
            netloc = MASK + "@" + netloc.rpartition("@")[2]
        return f"{scheme}://{netloc}{path}" + ("?" + MASK if q else "")
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query or url.split("#", 1)[0].endswith("?"):
        shown += "?" + MASK
    if parts.fragment:
        shown += "#" + MASK
    return shown
