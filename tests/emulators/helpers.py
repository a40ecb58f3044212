"""Small builders shared by the emulator tests: headers, and a wired Segment source →
Webhooks (Actions) destination → Send subscription, made through the Public API itself."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import requests

from sandbox.segment import ADMIN_TOKEN
from sandbox.userflow import API_VERSION, SANDBOX_API_KEY

V1 = "application/vnd.segment.v1+json"
V1ALPHA = "application/vnd.segment.v1alpha+json"
HTTP_API_SOURCE = "iUM16Md8P2"
WEBHOOKS_ACTIONS = "614a3c7d791c91c41bae7599"
SEND_ACTION = "nFPnRozhz1mh4Gbx4MLvT5"
DEFAULT_TRIGGER = 'type = "identify" or type = "track" or type = "group"'
# Segment's full official Public API document (v36.2.0), wherever a developer keeps a copy:
# `SEGMENT_FULL_SPEC=PATH` makes the tests also validate against it and compare the shipped
# subset with it. Unset (a plain clone), the emulator's shipped subset is all there is.
FULL_SPEC_ENV = "SEGMENT_FULL_SPEC"
FULL_SPEC_PATH = Path(os.environ[FULL_SPEC_ENV]) if os.environ.get(FULL_SPEC_ENV) else None


def segment_headers(token: str = ADMIN_TOKEN, media: str = V1) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": media, "Accept": media}


def userflow_headers(key: str = SANDBOX_API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Userflow-Version": API_VERSION}


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    media: str = V1,
    token: str = ADMIN_TOKEN,
    params: dict[str, Any] | None = None,
) -> requests.Response:
    return requests.request(
        method,
        base + path,
        headers=segment_headers(token, media),
        data=None if body is None else json.dumps(body),
        params=params,
        timeout=5,
    )


def created(response: requests.Response, key: str) -> dict[str, Any]:
    """The object a create call answered with, after checking that it succeeded."""
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"][key]
    return found


def post_source(
    base: str,
    slug: str,
    enabled: bool = True,
    metadata_id: str = HTTP_API_SOURCE,
    token: str = ADMIN_TOKEN,
    media: str = V1,
) -> requests.Response:
    body = {"slug": slug, "enabled": enabled, "metadataId": metadata_id}
    return call(base, "POST", "/sources", body, media=media, token=token)


def create_source(base: str, slug: str, enabled: bool = True) -> dict[str, Any]:
    return created(post_source(base, slug, enabled), "source")


def create_destination(
    base: str,
    source_id: str,
    secret: str | None = "s3cr3t",  # noqa: S107 - a test value
    enabled: bool = True,
) -> dict[str, Any]:
    settings = {"sharedSecret": secret} if secret is not None else {}
    body = {
        "sourceId": source_id,
        "metadataId": WEBHOOKS_ACTIONS,
        "enabled": enabled,
        "name": "Userflow bridge",
        "settings": settings,
    }
    return created(call(base, "POST", "/destinations", body), "destination")


def post_subscription(
    base: str,
    destination_id: str,
    url: str,
    trigger: str = DEFAULT_TRIGGER,
    enabled: bool = True,
    settings: dict[str, Any] | None = None,  # on top of url and method, which it may replace
) -> requests.Response:
    body = {
        "name": "Send to bridge",
        "actionId": SEND_ACTION,
        "trigger": trigger,
        "enabled": enabled,
        "settings": {"url": url, "method": "POST", **(settings or {})},
    }
    return call(base, "POST", f"/destinations/{destination_id}/subscriptions", body, V1ALPHA)


def create_subscription(
    base: str,
    destination_id: str,
    url: str,
    trigger: str = DEFAULT_TRIGGER,
    enabled: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    response = post_subscription(base, destination_id, url, trigger, enabled, settings)
    return created(response, "destinationSubscription")


def track(base: str, write_key: str, kind: str, event: dict[str, Any]) -> requests.Response:
    return requests.post(f"{base}/v1/{kind}", json=event, auth=(write_key, ""), timeout=5)
