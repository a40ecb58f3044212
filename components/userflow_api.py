"""Userflow REST client for webhook subscriptions (the only Userflow object a stack owns).

Facts it follows (Userflow's API reference, https://userflow.com/docs/api): Bearer API key,
``Userflow-Version: 2020-01-03`` on every call, JSON in and out, lists as ``{"data", "has_more"}``
paged with ``limit``/``starting_after``, errors as ``{"error": {"code", "message"}}``; 429/5xx
retried by ``api_http``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from components.api_http import CONFIG_NAMESPACE, MAX_PAGES, ApiClient, ApiSettings

API_URL_KEY = f"{CONFIG_NAMESPACE}:userflowApiUrl"
API_KEY_KEY = f"{CONFIG_NAMESPACE}:userflowApiKey"
DEFAULT_API_URL = "https://api.userflow.com"
API_VERSION = "2020-01-03"  # the only Userflow API version
PAGE_LIMIT = 100
# Webhook topics (https://userflow.com/docs/api#webhook-topics): `*`, user(.created|.updated),
# group(.created|.updated), event, event.tracked and event.tracked.<snake_case event name>.
TOPIC_PATTERN = re.compile(
    r"^(\*|user(\.created|\.updated)?|group(\.created|\.updated)?"
    r"|event(\.tracked(\.[a-z0-9_]+)?)?)$"
)
TOPIC_FORMS = (
    "*, user[.created|.updated], group[.created|.updated], event, event.tracked[.<name>]"
)


class UserflowSettings(ApiSettings):
    """Where the Userflow API is and the key to call it with (from stack config)."""

    url_key = API_URL_KEY
    token_key = API_KEY_KEY
    default_url = DEFAULT_API_URL
    credential_name = "Userflow API key"
    credential_example = "ak_..."


class UserflowClient(ApiClient):
    """Typed calls to Userflow's webhook subscription endpoints."""

    api_name = "Userflow API"
    settings_type = UserflowSettings
    headers: ClassVar[Mapping[str, str]] = {
        "Userflow-Version": API_VERSION,
        "Accept": "application/json",
    }

    def create_webhook_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._object(
            "POST", "/webhook_subscriptions", "create webhook subscription", body.get("url"), body
        )

    def get_webhook_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._object(
            "GET",
            f"/webhook_subscriptions/{subscription_id}",
            "read webhook subscription",
            subscription_id,
        )

    def update_webhook_subscription(
        self, subscription_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._object(
            "PATCH",
            f"/webhook_subscriptions/{subscription_id}",
            "update webhook subscription",
            subscription_id,
            body,
        )

    def delete_webhook_subscription(self, subscription_id: str) -> None:
        self._delete(
            f"/webhook_subscriptions/{subscription_id}",
            "delete webhook subscription",
            subscription_id,
        )

    def list_webhook_subscriptions(self) -> Iterator[dict[str, Any]]:
        starting_after: str | None = None
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_LIMIT)}
            if starting_after:
                params["starting_after"] = starting_after
            page = self._call(
                "GET", "/webhook_subscriptions", "list webhook subscriptions", params=params
            )
            items = list((page or {}).get("data") or [])
            yield from items
            if not (page or {}).get("has_more") or not items:
                return
            starting_after = str(items[-1]["id"])
        raise ValueError(
            f"{self.api_name}: list webhook subscriptions: more than {MAX_PAGES} pages"
        )

    def _object(
        self, method: str, path: str, operation: str, object_id: Any, body: Any = None
    ) -> dict[str, Any]:
        result = self._call(method, path, operation, object_id, body=body)
        if not isinstance(result, dict):
            raise ValueError(f"{self.api_name}: {operation}: response is not a JSON object")
        return result
