"""Segment Public API client: the few calls the dynamic providers make, nothing more.

Facts it follows (Segment's Public API reference, https://docs.segmentapis.com, and its
OpenAPI spec v36.2.0): Bearer token, vendor media types (``v1alpha`` for destination
subscriptions), ``{"data": ...}`` envelopes, deepObject pagination
``pagination[count]``/``pagination[cursor]``, 404 = not there, 429/5xx retried by ``api_http``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pulumi.dynamic import Config

from components.api_http import CONFIG_NAMESPACE, MAX_PAGES, ApiClient, ApiSettings

API_URL_KEY = f"{CONFIG_NAMESPACE}:segmentApiUrl"
REGION_KEY = f"{CONFIG_NAMESPACE}:segmentRegion"
TOKEN_KEY = f"{CONFIG_NAMESPACE}:segmentToken"

Region = Literal["us", "eu"]


@dataclass(frozen=True)
class RegionHosts:
    """Segment's two hosts for one data-residency region."""

    api_url: str  # Public API (sources, destinations)
    tracking_url: str  # HTTP Tracking API (the bridge sends events here)


# Segment's official hosts per region. Public API: the v36.2.0 spec's introduction ("for
# US-based Workspaces, use api.segmentapis.com. For EU-based Workspaces,
# eu1.api.segmentapis.com"). Tracking API: https://segment.com/docs/guides/regional-segment/
# (api.segment.io; EU workspaces events.eu1.segmentapis.com).
REGIONS: Mapping[Region, RegionHosts] = {
    "us": RegionHosts("https://api.segmentapis.com", "https://api.segment.io"),
    "eu": RegionHosts("https://eu1.api.segmentapis.com", "https://events.eu1.segmentapis.com"),
}
DEFAULT_REGION: Region = "us"  # also the `segmentRegion` default in Pulumi.yaml (tested)
DEFAULT_API_URL = REGIONS[DEFAULT_REGION].api_url

MEDIA_V1 = "application/vnd.segment.v1+json"
MEDIA_V1ALPHA = "application/vnd.segment.v1alpha+json"  # destination subscription endpoints
PAGE_SIZE = 200  # the spec's maximum for pagination[count]

# Catalog ids (Segment's catalog, GET /catalog/sources and /catalog/destinations): the one
# place they are written down.
HTTP_API_SOURCE_METADATA_ID = "iUM16Md8P2"
WEBHOOKS_ACTIONS_METADATA_ID = "614a3c7d791c91c41bae7599"
WEBHOOKS_SEND_ACTION_ID = "nFPnRozhz1mh4Gbx4MLvT5"
BATCH_SIZE_RANGE = (1, 4000)  # the Send action's batch_size field

MASK_CHAR = "•"


class SegmentSettings(ApiSettings):
    """Where the Segment Public API is and the token to call it with (from stack config)."""

    url_key = API_URL_KEY
    token_key = TOKEN_KEY
    default_url = DEFAULT_API_URL
    credential_name = "Segment Public API token"
    credential_example = "<token>"

    @classmethod
    def url_from_config(cls, config: Config) -> str:
        """An explicit `segmentApiUrl`, else the Public API host of `segmentRegion`."""
        explicit = config.get(cls.url_key)
        if explicit:
            return str(explicit)
        region = str(config.get(REGION_KEY) or DEFAULT_REGION)
        hosts = REGIONS.get(region)  # type: ignore[call-overload]
        # An unknown region has no host: the URL check then names segmentApiUrl as unusable
        # (the program's own config check has already named segmentRegion).
        return hosts.api_url if hosts is not None else ""


def is_masked(value: Any) -> bool:
    """Segment masks secret settings with bullet characters; a masked value is not drift."""
    return isinstance(value, str) and MASK_CHAR in value


class SegmentClient(ApiClient):
    """Typed calls to the Segment Public API; each returns the object inside the envelope."""

    api_name = "Segment Public API"
    settings_type = SegmentSettings

    # -- sources ---------------------------------------------------------------------------
    def create_source(self, body: dict[str, Any]) -> dict[str, Any]:
        data = self._data("POST", "/sources", "create source", body.get("slug"), body=body)
        return dict(data["source"])

    def get_source(self, source_id: str) -> dict[str, Any]:
        data = self._data("GET", f"/sources/{source_id}", "read source", source_id)
        return dict(data["source"])

    def update_source(self, source_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data = self._data("PATCH", f"/sources/{source_id}", "update source", source_id, body=body)
        return dict(data["source"])

    def delete_source(self, source_id: str) -> None:
        self._delete(f"/sources/{source_id}", "delete source", source_id, MEDIA_V1)

    def add_write_key(self, source_id: str) -> str:
        """Mint a write key (alpha endpoint, outside the v36 spec; needs Source Admin)."""
        data = self._data("POST", f"/sources/{source_id}/writekey", "add write key", source_id)
        return str(data["writeKey"])

    def remove_write_key(self, source_id: str, write_key: str) -> None:
        """Revoke one write key (alpha endpoint, like add_write_key); already gone is fine.
        Errors name the source, never the key."""
        self._delete(f"/sources/{source_id}/writekey/{write_key}", "remove write key", source_id)

    def list_sources(self) -> Iterator[dict[str, Any]]:
        return self._paginate("/sources", "list sources", "sources", MEDIA_V1)

    def find_source_by_slug(self, slug: str) -> dict[str, Any] | None:
        return next((s for s in self.list_sources() if s.get("slug") == slug), None)

    # -- destinations ----------------------------------------------------------------------
    def create_destination(self, body: dict[str, Any]) -> dict[str, Any]:
        data = self._data(
            "POST", "/destinations", "create destination", body.get("name"), body=body
        )
        return dict(data["destination"])

    def get_destination(self, destination_id: str) -> dict[str, Any]:
        data = self._data(
            "GET", f"/destinations/{destination_id}", "read destination", destination_id
        )
        return dict(data["destination"])

    def update_destination(self, destination_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data = self._data(
            "PATCH",
            f"/destinations/{destination_id}",
            "update destination",
            destination_id,
            body=body,
        )
        return dict(data["destination"])

    def delete_destination(self, destination_id: str) -> None:
        self._delete(
            f"/destinations/{destination_id}", "delete destination", destination_id, MEDIA_V1
        )

    def list_destinations(self) -> Iterator[dict[str, Any]]:
        return self._paginate("/destinations", "list destinations", "destinations", MEDIA_V1)

    # -- destination subscriptions (alpha) -------------------------------------------------
    def create_subscription(self, destination_id: str, body: dict[str, Any]) -> dict[str, Any]:
        data = self._data(
            "POST",
            f"/destinations/{destination_id}/subscriptions",
            "create destination subscription",
            destination_id,
            body=body,
            media_type=MEDIA_V1ALPHA,
        )
        return dict(data["destinationSubscription"])

    def get_subscription(self, destination_id: str, subscription_id: str) -> dict[str, Any]:
        data = self._data(
            "GET",
            f"/destinations/{destination_id}/subscriptions/{subscription_id}",
            "read destination subscription",
            subscription_id,
            media_type=MEDIA_V1ALPHA,
        )
        return dict(data["subscription"])

    def update_subscription(
        self, destination_id: str, subscription_id: str, update: dict[str, Any]
    ) -> dict[str, Any]:
        data = self._data(
            "PATCH",
            f"/destinations/{destination_id}/subscriptions/{subscription_id}",
            "update destination subscription",
            subscription_id,
            body={"input": update},
            media_type=MEDIA_V1ALPHA,
        )
        return dict(data["subscription"])

    def delete_subscription(self, destination_id: str, subscription_id: str) -> None:
        self._delete(
            f"/destinations/{destination_id}/subscriptions/{subscription_id}",
            "delete destination subscription",
            subscription_id,
            MEDIA_V1ALPHA,
        )

    def list_subscriptions(self, destination_id: str) -> Iterator[dict[str, Any]]:
        return self._paginate(
            f"/destinations/{destination_id}/subscriptions",
            f"list subscriptions of destination {destination_id}",
            "subscriptions",
            MEDIA_V1ALPHA,
        )

    # -- plumbing --------------------------------------------------------------------------
    def _data(
        self,
        method: str,
        path: str,
        operation: str,
        object_id: Any,
        body: Any = None,
        media_type: str = MEDIA_V1,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        envelope = self._call(
            method, path, operation, object_id, body=body, params=params, media_type=media_type
        )
        if not isinstance(envelope, dict) or not isinstance(envelope.get("data"), dict):
            raise ValueError(f"{self.api_name}: {operation}: response has no data envelope")
        return dict(envelope["data"])

    def _paginate(
        self, path: str, operation: str, key: str, media_type: str
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = pagination_params(cursor)
            data = self._data("GET", path, operation, None, media_type=media_type, params=params)
            yield from data.get(key) or []
            cursor = (data.get("pagination") or {}).get("next")
            if not cursor:
                return
        raise ValueError(f"{self.api_name}: {operation}: more than {MAX_PAGES} pages")


def pagination_params(cursor: str | None) -> dict[str, str]:
    """The deepObject query the spec requires on every list call."""
    params = {"pagination[count]": str(PAGE_SIZE)}
    if cursor:
        params["pagination[cursor]"] = cursor
    return params
