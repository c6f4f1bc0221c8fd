"""Keep secrets out of everything the tool shows or stores: messages, replies, URLs, logs.

A secret reaches us in two ways: the API key (environment or key file), and credentials a
user put inside a base URL (`http://user:KEY@host/v1`, `.../v1?key=KEY`). Both can come
back at us: a server or proxy may echo the Authorization header or the request URL in an
error body, or even inside a normal reply. `Redactor` knows every configured secret and
replaces it wherever it appears; `redact_url` is the one way a base URL is shown or stored
(card, summary, errors, `teacher check`, logs), so no caller formats a raw URL itself.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a credential (Azure `api-key`, Google `key`, signed URLs ...).
_SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session", re.IGNORECASE)
# A URL inside free text (a command line, an exception message): scheme://... up to a space or quote.
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# Things that look like API keys even when we were not told them (sk-..., key_..., api-...).
_KEY_LIKE = re.compile(r"\b(sk|key|api)[-_][A-Za-z0-9_\-*]{6,}")
_MIN_SECRET = 6  # shorter "secrets" (a user name like `u`) would mask ordinary words


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a malformed port: treat the URL as opaque)
    except ValueError:
        return None
    return parts


def url_secrets(url: str) -> list[str]:
    """The credentials inside `url`: user name and password, and secret-looking query values."""
    parts = _split(url)
    if parts is None:
        return []
    # The password; the user name only when it stands alone (a token passed as the user name):
    # next to a password it is a name like "user", which must not vanish from every reply.
    found = [parts.password] if parts.password else [parts.username or ""]
    found += [value for name, value in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_PARAM.search(name)]
    # The raw (percent-encoded) forms too: that is how a server echoes a URL back.
    netloc_user = parts.netloc.rpartition("@")[0]
    found.append(netloc_user.split(":", 1)[-1])
    if parts.password:  # the HTTP client sends user info as Basic auth, which a server may echo
        found.append(base64.b64encode(f"{unquote(parts.username or '')}:{unquote(parts.password)}".encode()).decode())
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if _SECRET_PARAM.search(name):
            found.append(value)
    return [s for s in dict.fromkeys(found) if len(s) >= _MIN_SECRET]


def redact_url(url: str) -> str:
    """`url` fit to show: user info replaced by `***`, secret query values by `***`."""
    parts = _split(url)
    if parts is None or not parts.netloc:  # not a URL we can take apart: hide what may be user info or a query
        _, at, tail = url.rpartition("@")
        url = f"{MASK}@{tail}" if at else url
        base, mark, _ = url.partition("?")
        return f"{base}?{MASK}" if mark else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, MASK if _SECRET_PARAM.search(name) else value) for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """Every URL inside `text` (a command line, an error message) through `redact_url`."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class Redactor:
    """Replaces the configured secrets (the API key, credentials inside base URLs) in text.

    `scrub` is for the teacher's replies: only the exact secrets go, so a reply about
    `api_key_rotation` stays as written. `__call__` is for messages we show (errors,
    listings): secrets, URLs with credentials and anything shaped like a key.
    """

    def __init__(self, secrets: Iterable[str | None] = (), urls: Iterable[str] = ()):
        found = [s for s in secrets if s and len(s) >= _MIN_SECRET]
        for url in urls:
            found += url_secrets(url)
        self.secrets = sorted(set(found), key=len, reverse=True)  # longest first: no half-masked key

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __call__(self, text: str) -> str:
        return _KEY_LIKE.sub(r"\1-***", redact_urls(self.scrub(text)))

    def install_log_filter(
        self, names: tuple[str, ...] = ("syllabus.http", "openai", "openai._base_client", "httpx", "httpx2")
    ) -> None:
        """Redact the records of the HTTP clients' loggers (wire.py's, and httpx's for a proxied URL; an app's logging
        config): they carry URLs and request options. Logger filters do not reach child
        loggers, hence the explicit names."""
        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, _LogFilter) and f.redactor.secrets == self.secrets for f in logger.filters):
                logger.addFilter(_LogFilter(self))


class _LogFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # a broken format string is the logger's problem, not ours
            return True
        record.msg, record.args = self.redactor(message), ()
        return True
