"""The Segment catalog entries the emulator knows, shaped as the Public API returns them.

Only the entries this project uses: the HTTP API source (the Userflow source), the JavaScript
website source (the sandbox's "app" source; `IqDTy1TpoU` is the real catalog id, the one the
official spec's examples use), and the Webhooks (Actions) destination with its Send action.
"""

from __future__ import annotations

from typing import Any

HTTP_API_SOURCE_ID = "iUM16Md8P2"
JAVASCRIPT_SOURCE_ID = "IqDTy1TpoU"
WEBHOOKS_ACTIONS_DESTINATION_ID = "614a3c7d791c91c41bae7599"
WEBHOOKS_SEND_ACTION_ID = "nFPnRozhz1mh4Gbx4MLvT5"
WEBHOOKS_SEND_ACTION_SLUG = "send"
SEND_METHODS = ("POST", "PUT", "PATCH")
DEFAULT_DATA_MAPPING: dict[str, Any] = {"@path": "$."}
BATCH_SIZE_RANGE = (1, 4000)

_LOGO = "https://cdn.filepicker.io/api/file/sandbox-logo"

SOURCE_METADATA: dict[str, dict[str, Any]] = {
    HTTP_API_SOURCE_ID: {
        "id": HTTP_API_SOURCE_ID,
        "name": "HTTP API",
        "slug": "http-api",
        "description": "The HTTP Tracking API lets you record analytics data from any website "
        "or application.",
        "logos": {"default": _LOGO, "mark": None, "alt": None},
        "options": [],
        "categories": ["Server"],
        "isCloudEventSource": False,
    },
    JAVASCRIPT_SOURCE_ID: {
        "id": JAVASCRIPT_SOURCE_ID,
        "name": "Javascript",
        "slug": "javascript",
        "description": "Track and analyze information about your visitors with analytics.js.",
        "logos": {"default": _LOGO, "mark": None, "alt": None},
        "options": [],
        "categories": ["Website"],
        "isCloudEventSource": False,
    },
}


def _field(
    sort_order: int,
    key: str,
    label: str,
    kind: str,
    required: bool,
    description: str,
    default: Any = None,
    choices: Any = None,
) -> dict[str, Any]:
    return {
        "id": f"sandboxField{sort_order:02d}{key}",
        "sortOrder": sort_order,
        "fieldKey": key,
        "label": label,
        "type": kind,
        "description": description,
        "defaultValue": default,
        "required": required,
        "multiple": False,
        "choices": choices,
        "dynamic": False,
        "allowNull": False,
    }


SEND_ACTION: dict[str, Any] = {
    "id": WEBHOOKS_SEND_ACTION_ID,
    "slug": WEBHOOKS_SEND_ACTION_SLUG,
    "name": "Send",
    "description": "Send an HTTP request.",
    "platform": "CLOUD",
    "hidden": False,
    "defaultTrigger": None,
    "fields": [
        _field(0, "url", "URL", "STRING", True, "URL to deliver data to."),
        _field(
            1,
            "method",
            "Method",
            "STRING",
            True,
            "HTTP method to use.",
            "POST",
            [{"label": m, "value": m} for m in SEND_METHODS],
        ),
        _field(2, "batch_size", "Batch Size", "NUMBER", False, "Maximum events per batch.", 0),
        _field(3, "headers", "Headers", "OBJECT", False, "HTTP headers to send."),
        _field(4, "data", "Data", "OBJECT", False, "Payload to deliver.", DEFAULT_DATA_MAPPING),
        _field(
            5, "enable_batching", "Batch Data", "BOOLEAN", False, "Send events in batches.", False
        ),
    ],
}

DESTINATION_METADATA: dict[str, dict[str, Any]] = {
    WEBHOOKS_ACTIONS_DESTINATION_ID: {
        "id": WEBHOOKS_ACTIONS_DESTINATION_ID,
        "name": "Webhooks (Actions)",
        "slug": "actions-webhook",
        "description": "Send events to a webhook.",
        "logos": {"default": _LOGO, "mark": None, "alt": None},
        "options": [
            {
                "name": "sharedSecret",
                "type": "string",
                "required": False,
                "description": "If set, Segment signs each request with an HMAC in X-Signature.",
                "label": "Shared Secret",
            }
        ],
        "status": "PUBLIC",
        "previousNames": ["Webhooks (Actions)"],
        "categories": ["Raw Data"],
        "website": "https://segment.com",
        "components": [],
        "supportedFeatures": {"cloudModeInstances": "MULTIPLE", "replay": False},
        "supportedMethods": {
            "pageview": True,
            "identify": True,
            "alias": True,
            "track": True,
            "group": True,
        },
        "supportedPlatforms": {"browser": True, "server": True, "mobile": True},
        "actions": [SEND_ACTION],
        "presets": [],
        "contacts": [],
        "partnerOwned": False,
        "supportedRegions": ["us-west-2", "eu-west-1"],
        "regionEndpoints": ["US", "EU"],
    }
}

# Settings the real API never returns in clear text.
SECRET_DESTINATION_SETTINGS: dict[str, frozenset[str]] = {
    WEBHOOKS_ACTIONS_DESTINATION_ID: frozenset({"sharedSecret"})
}


def mask_secret(value: Any) -> Any:
    """A secret setting as reads show it: bullets only, so a masked value is never drift."""
    if isinstance(value, str) and value:
        return "•" * len(value)
    return value
