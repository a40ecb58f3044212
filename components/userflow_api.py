"""Userflow REST client for webhook subscriptions (the only Userflow object a stack owns).

Facts it follows (NOTES §4, §5): Bearer API key, ``Userflow-Version: 2020-01-03`` on every call,
JSON in and out, lists as ``{"data", "has_more"}`` paged with ``limit``/``starting_after``,
errors as ``{"error": {"code", "message"}}``; 429/5xx retried by ``api_http``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pulumi.dynamic import Config

from components.api_http import HttpClient, NotFoundError, RetryPolicy, check_base_url
from components.segment_api import CONFIG_NAMESPACE

API_URL_KEY = f"{CONFIG_NAMESPACE}:userflowApiUrl"
API_KEY_KEY = f"{CONFIG_NAMESPACE}:userflowApiKey"
DEFAULT_API_URL = "https://api.userflow.com"
API_VERSION = "2020-01-03"  # the only Userflow API version
PAGE_LIMIT = 100
MAX_PAGES = 500


@dataclass(frozen=True)
class UserflowSettings:
    """Where the Userflow API is and the key to call it with (from stack config)."""

    api_url: str
    api_key: str

    def problems(self) -> list[str]:
        found: list[str] = []
        if not self.api_key:
            found.append(
                f"the Userflow API key is missing: run "
                f"`pulumi config set --secret {API_KEY_KEY} ak_...`"
            )
        url_problem = check_base_url(self.api_url, API_URL_KEY)
        if url_problem:
            found.append(url_problem)
        return found


def userflow_settings_from_config(config: Config) -> UserflowSettings:
    return UserflowSettings(
        api_url=str(config.get(API_URL_KEY) or DEFAULT_API_URL),
        api_key=str(config.get(API_KEY_KEY) or ""),
    )


class UserflowClient:
    """Typed calls to Userflow's webhook subscription endpoints."""

    def __init__(
        self,
        settings: UserflowSettings,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.http = HttpClient(
            "Userflow API",
            settings.api_url,
            settings.api_key,
            headers={"Userflow-Version": API_VERSION, "Accept": "application/json"},
            policy=policy,
            sleep=sleep,
        )

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
        try:
            self.http.request(
                "DELETE",
                f"/webhook_subscriptions/{subscription_id}",
                operation="delete webhook subscription",
                object_id=subscription_id,
            )
        except NotFoundError:
            return  # already gone is what delete wanted

    def list_webhook_subscriptions(self) -> Iterator[dict[str, Any]]:
        starting_after: str | None = None
        for _ in range(MAX_PAGES):
            params = {"limit": str(PAGE_LIMIT)}
            if starting_after:
                params["starting_after"] = starting_after
            page = self.http.request(
                "GET",
                "/webhook_subscriptions",
                operation="list webhook subscriptions",
                params=params,
            )
            items = list((page or {}).get("data") or [])
            yield from items
            if not (page or {}).get("has_more") or not items:
                return
            starting_after = str(items[-1]["id"])
        raise ValueError(f"Userflow API: list webhook subscriptions: more than {MAX_PAGES} pages")

    def _object(
        self, method: str, path: str, operation: str, object_id: Any, body: Any = None
    ) -> dict[str, Any]:
        result = self.http.request(
            method,
            path,
            operation=operation,
            object_id=str(object_id) if object_id else None,
            body=body,
        )
        if not isinstance(result, dict):
            raise ValueError(f"Userflow API: {operation}: response is not a JSON object")
        return result
