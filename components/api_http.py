"""The one small HTTP layer the Segment and Userflow clients share (provider plumbing: provider.py).

JSON in and out, a User-Agent, retries on 429 and 5xx that honour the server's own wait hint
(Segment's ``msBeforeNext``, ``X-RateLimit-Reset``, ``Retry-After``) with a cap, and errors that
name the operation and the object id and show the API's error body but never the token.

Dynamic providers are pickled into Pulumi state, so nothing here is created at import time: the
``requests.Session`` is made lazily, one per thread (provider calls run on several threads), and
``HttpClient`` refuses to be pickled at all so a token can never reach the state by accident.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import requests
from pulumi.dynamic import Config

from components.project import PROJECT
from components.version import VERSION

CONFIG_NAMESPACE = PROJECT  # where the providers find their stack config keys
USER_AGENT = f"userflow-segment-pulumi/{VERSION} (+pulumi dynamic provider)"
# The error body is shown to the operator; a whole HTML error page would drown the message.
ERROR_BODY_LIMIT = 2000
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 500  # a bound on every listing, so a cursor bug can't loop forever


class ApiError(Exception):
    """A call to an outside API failed; the message says which call, on what, and why."""

    def __init__(
        self, api: str, operation: str, object_id: str | None, status: int | None, body: str
    ) -> None:
        self.api = api
        self.operation = operation
        self.object_id = object_id
        self.status = status
        self.body = body[:ERROR_BODY_LIMIT]
        target = f" {object_id}" if object_id else ""
        status_text = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{api}: {operation}{target} failed ({status_text}): {self.body}")


class NotFoundError(ApiError):
    """The object is not there (HTTP 404): read treats it as gone, delete as already deleted."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a call the API asked us to repeat."""

    max_attempts: int = 10  # the Segment Terraform provider retries 429 up to 10 times
    max_wait_s: float = 30.0  # cap on any single wait, whatever the server asks for
    base_backoff_s: float = 0.5  # exponential backoff when the server gives no hint
    timeout_s: float = 30.0


def check_base_url(url: str, what: str, loopback_http: bool = True) -> str | None:
    """Return what to fix about an API or bridge base URL, or None when it is fine.

    The one URL rule of the project (stack config and provider inputs alike):
    - https, with a host. Plain http only to a loopback host (127.0.0.1, localhost, ::1: the
      sandbox's emulators and local bridge) and only where ``loopback_http`` allows it, so a
      typo can't send a token or a webhook secret over the open internet. ``::1`` is loopback
      as much as 127.0.0.1 is, so it is treated alike.
    - no query string, fragment or user:password: paths are appended to a base URL, so a query
      would land in the middle of every call's URL, and credentials belong in config secrets.
    The message names ``what`` and never the URL itself (a pasted value could be a secret).
    """
    parts = urlsplit(url)
    plain = "" if not loopback_http else " (plain http only to 127.0.0.1, localhost or [::1])"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{what} must be an absolute https:// URL{plain}"
    if parts.scheme == "http" and (not loopback_http or parts.hostname not in LOCAL_HOSTS):
        return f"{what} uses plain http; use https://{plain}"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"{what} must not carry a query string, fragment or user:password"
    return None


def wait_hint_seconds(
    headers: Mapping[str, str], body: Any, now: float | None = None
) -> float | None:
    """The wait the server asked for, in seconds, or None when it gave no hint.

    Order: Segment's ``errors[].data.msBeforeNext`` (most precise), then ``Retry-After``
    (seconds or an HTTP date), then ``X-RateLimit-Reset`` (epoch seconds or ms, or a delta).
    """
    current = time.time() if now is None else now
    if isinstance(body, dict):
        for error in body.get("errors") or []:
            data = error.get("data") if isinstance(error, dict) else None
            if isinstance(data, dict) and isinstance(data.get("msBeforeNext"), int | float):
                return max(0.0, float(data["msBeforeNext"]) / 1000.0)
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
        try:
            parsed = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            parsed = None  # unreadable: fall through to the next hint or to backoff
        if parsed is not None:
            return max(0.0, parsed.timestamp() - current)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return None
        if value > 1e12:  # epoch milliseconds
            return max(0.0, value / 1000.0 - current)
        if value > 1e9:  # epoch seconds
            return max(0.0, value - current)
        return max(0.0, value)  # a delta in seconds
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def retry_delay(policy: RetryPolicy, attempt: int, hint_s: float | None, jitter: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's hint, else backoff; capped."""
    if hint_s is not None:
        return min(policy.max_wait_s, hint_s)
    backoff = policy.base_backoff_s * 2.0 ** max(0, attempt - 1)
    return min(policy.max_wait_s, backoff * (1.0 + jitter))


def redact(text: str, secrets: list[str]) -> str:
    """Remove every known secret from text shown to the operator."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class HttpClient:
    """A JSON API client bound to one base URL and one bearer token."""

    def __init__(
        self,
        api: str,
        base_url: str,
        token: str,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.api = api
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._headers = dict(headers or {})
        self.policy = policy or RetryPolicy()
        self._sleep = sleep or time.sleep
        self._local = threading.local()

    def __reduce__(self) -> Any:
        # A client holds a token and sockets: it must never reach the pickled provider.
        raise TypeError("HttpClient holds credentials and must not be pickled")

    def __repr__(self) -> str:
        return f"HttpClient(api={self.api!r}, base_url={self.base_url!r})"

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {"User-Agent": USER_AGENT, "Authorization": f"Bearer {self._token}"}
            )
            session.headers.update(self._headers)
            self._local.session = session
        return session

    def close(self) -> None:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        object_id: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        media_type: str | None = None,
    ) -> Any:
        """Send one call, retrying what the API asks to retry; return the decoded JSON body."""
        headers: dict[str, str] = {}
        if media_type:
            headers["Accept"] = media_type
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = media_type or "application/json"
            data = json.dumps(body).encode("utf-8")
        url = self.base_url + path
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._session().request(
                    method,
                    url,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=self.policy.timeout_s,
                )
            except requests.RequestException as exc:
                # A POST that timed out may still have been carried out: repeating it could
                # create a duplicate, so it fails here and create's adoption sorts it out.
                if attempt >= self.policy.max_attempts or method.upper() == "POST":
                    reason = f"{type(exc).__name__} calling {self.base_url}"
                    raise ApiError(
                        self.api, operation, object_id, None, self._safe(reason)
                    ) from None
                self._sleep(retry_delay(self.policy, attempt, None, random.random()))
                continue
            decoded = _decode(response)
            if response.status_code < 400:
                return decoded
            if response.status_code in RETRYABLE_STATUSES and attempt < self.policy.max_attempts:
                hint = wait_hint_seconds(response.headers, decoded)
                self._sleep(retry_delay(self.policy, attempt, hint, random.random()))
                continue
            error_type = NotFoundError if response.status_code == 404 else ApiError
            raise error_type(
                self.api, operation, object_id, response.status_code, self._safe(response.text)
            )

    def _safe(self, text: str) -> str:
        return redact(text, [self._token])


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


# -- API settings and clients ----------------------------------------------------------------


@dataclass(frozen=True)
class ApiSettings:
    """Where an API is and the bearer credential to call it with (from stack config).

    Each API's subclass names its two config keys, its default URL and how its credential is
    called, so reading and checking the config is written once for both APIs.
    """

    api_url: str
    token: str = field(repr=False)  # a repr must never carry the credential into a log

    url_key: ClassVar[str]
    token_key: ClassVar[str]
    default_url: ClassVar[str]
    credential_name: ClassVar[str]  # e.g. "Segment Public API token" (missing-key message)
    credential_example: ClassVar[str]  # what `pulumi config set` is shown with

    @classmethod
    def from_config(cls, config: Config) -> Self:
        return cls(api_url=cls.url_from_config(config), token=str(config.get(cls.token_key) or ""))

    @classmethod
    def url_from_config(cls, config: Config) -> str:
        """The API's URL: the stack's explicit one, else the API's default."""
        return str(config.get(cls.url_key) or cls.default_url)

    def problems(self) -> list[str]:
        """What to fix in the stack config before any call can work."""
        found: list[str] = []
        if not self.token:
            found.append(
                f"the {self.credential_name} is missing: run "
                f"`pulumi config set --secret {self.token_key} {self.credential_example}`"
            )
        url_problem = check_base_url(self.api_url, self.url_key)
        if url_problem:
            found.append(url_problem)
        return found


class ApiClient:
    """Typed calls to one API, over one ``HttpClient`` built from that API's settings."""

    api_name: ClassVar[str]  # names the API in every error
    settings_type: ClassVar[type[ApiSettings]]  # what the providers read from stack config
    headers: ClassVar[Mapping[str, str]] = {}  # sent on every call, besides auth and User-Agent

    def __init__(
        self,
        settings: ApiSettings,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.http = HttpClient(
            self.api_name,
            settings.api_url,
            settings.token,
            headers=self.headers,
            policy=policy,
            sleep=sleep,
        )

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        object_id: Any = None,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> Any:
        """One call; ``object_id`` is whatever names the object in an error (id, slug, url)."""
        return self.http.request(
            method,
            path,
            operation=operation,
            object_id=str(object_id) if object_id else None,
            params=params,
            body=body,
            media_type=media_type,
        )

    def _delete(
        self, path: str, operation: str, object_id: str, media_type: str | None = None
    ) -> None:
        try:
            self._call("DELETE", path, operation, object_id, media_type=media_type)
        except NotFoundError:
            return  # already gone is what delete wanted
