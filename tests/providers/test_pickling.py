"""Every provider, pickled the way Pulumi pickles it into the state (dill, recurse=True), holds
no token, session or socket, even after it has been configured and has made calls; and once
unpickled it is configured again from the stack config and works."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider

from components.api_http import HttpClient, RetryPolicy
from components.provider import ConfiguredProvider
from components.segment_destination import SegmentWebhookDestinationProvider
from components.segment_source import SegmentSourceLookupProvider, SegmentSourceProvider
from components.userflow_webhook import UserflowWebhookSubscriptionProvider
from tests.providers.conftest import (
    FAST_RETRIES,
    SEGMENT_TOKEN,
    USERFLOW_KEY,
    Sandbox,
    configured,
    segment_api,
    unpickle,
)

SegmentFactory = Callable[[], ConfiguredProvider[Any]]
SEGMENT_PROVIDERS: list[SegmentFactory] = [
    lambda: SegmentSourceProvider(FAST_RETRIES),
    lambda: SegmentSourceLookupProvider(FAST_RETRIES),
    lambda: SegmentWebhookDestinationProvider(FAST_RETRIES),
]
FORBIDDEN_TYPES = (requests.Session, socket.socket, HttpClient, type(threading.local()))


def objects_inside(root: Any) -> Iterator[Any]:
    """Everything reachable from an unpickled object (attributes, containers)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            stack.append(vars(item))


def assert_clean(provider: ResourceProvider, secret: str) -> bytes:
    serialized = serialize_provider(provider)
    raw = base64.b64decode(serialized)
    assert secret.encode() not in raw
    for word in (b"Session", b"socket", b"HttpClient", b"Bearer"):
        assert word not in raw, word
    restored = unpickle(raw)
    for item in objects_inside(restored):
        assert not isinstance(item, FORBIDDEN_TYPES), item
        assert not (isinstance(item, str) and secret in item)
    return raw


@pytest.mark.parametrize("factory", SEGMENT_PROVIDERS)
def test_segment_providers_pickle_without_token_session_or_socket(
    factory: SegmentFactory, segment: Sandbox
) -> None:
    fresh = factory()
    used = configured(factory(), segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN)
    segment_api(
        segment,
        "POST",
        "/sources",
        {"slug": "app-x", "enabled": True, "metadataId": "iUM16Md8P2"},
    )
    # A real call, so a session with a pooled connection exists when it is pickled.
    assert used.client().find_source_by_slug("app-x") is not None

    raw = assert_clean(used, SEGMENT_TOKEN)
    # A used provider pickles exactly like a fresh one: no spurious diff of `__provider`.
    assert raw == base64.b64decode(serialize_provider(fresh))

    restored = unpickle(raw)
    assert isinstance(restored, type(fresh))
    configured(restored, segmentApiUrl=segment.url, segmentToken=SEGMENT_TOKEN)
    assert restored.client().find_source_by_slug("app-x") is not None


def test_userflow_provider_pickles_without_key_session_or_socket(userflow: Sandbox) -> None:
    fresh = UserflowWebhookSubscriptionProvider(FAST_RETRIES)
    used = configured(
        UserflowWebhookSubscriptionProvider(FAST_RETRIES),
        userflowApiUrl=userflow.url,
        userflowApiKey=USERFLOW_KEY,
    )
    assert list(used.client().list_webhook_subscriptions()) == []

    raw = assert_clean(used, USERFLOW_KEY)
    assert raw == base64.b64decode(serialize_provider(fresh))

    restored = unpickle(raw)
    configured(restored, userflowApiUrl=userflow.url, userflowApiKey=USERFLOW_KEY)
    assert list(restored.client().list_webhook_subscriptions()) == []


def test_an_unconfigured_provider_says_so_instead_of_calling_out() -> None:
    restored = unpickle(base64.b64decode(serialize_provider(SegmentSourceProvider())))
    with pytest.raises(ValueError, match="not configured"):
        restored.read("src1", {})


# What `serialize_provider` wrote into `__provider` for each provider before the providers shared
# a base class (commit 59cb1e4). Stacks hold these bytes: they must keep unpickling, and today's
# provider must pickle to the very same bytes, or every stack would show a `__provider` diff.
STATE_PICKLES: list[tuple[type[ConfiguredProvider[Any]], RetryPolicy | None, str]] = [
    (
        SegmentSourceProvider,
        None,
        "gASVSAAAAAAAAACMGWNvbXBvbmVudHMuc2VnbWVudF9zb3VyY2WUjBVTZWdtZW50U291cmNlUHJvdmlkZXKUk5QpgZR9lIwGcG9saWN5lE5zYi4=",
    ),
    (
        SegmentSourceLookupProvider,
        None,
        "gASVTgAAAAAAAACMGWNvbXBvbmVudHMuc2VnbWVudF9zb3VyY2WUjBtTZWdtZW50U291cmNlTG9va3VwUHJvdmlkZXKUk5QpgZR9lIwGcG9saWN5lE5zYi4=",
    ),
    (
        SegmentWebhookDestinationProvider,
        None,
        "gASVWQAAAAAAAACMHmNvbXBvbmVudHMuc2VnbWVudF9kZXN0aW5hdGlvbpSMIVNlZ21lbnRXZWJob29rRGVzdGluYXRpb25Qcm92aWRlcpSTlCmBlH2UjAZwb2xpY3mUTnNiLg==",
    ),
    (
        UserflowWebhookSubscriptionProvider,
        None,
        "gASVWAAAAAAAAACMG2NvbXBvbmVudHMudXNlcmZsb3dfd2ViaG9va5SMI1VzZXJmbG93V2ViaG9va1N1YnNjcmlwdGlvblByb3ZpZGVylJOUKYGUfZSMBnBvbGljeZROc2Iu",
    ),
    (
        SegmentSourceProvider,
        RetryPolicy(max_attempts=3),
        "gASVywAAAAAAAACMGWNvbXBvbmVudHMuc2VnbWVudF9zb3VyY2WUjBVTZWdtZW50U291cmNlUHJvdmlkZXKUk5QpgZR9lIwGcG9saWN5lIwTY29tcG9uZW50cy5hcGlfaHR0cJSMC1JldHJ5UG9saWN5lJOUKYGUfZQojA5iYXNlX2JhY2tvZmZfc5RHP+AAAAAAAACMDG1heF9hdHRlbXB0c5RLA4wKbWF4X3dhaXRfc5RHQD4AAAAAAACMCXRpbWVvdXRfc5RHQD4AAAAAAAB1YnNiLg==",
    ),
]


@pytest.mark.parametrize(("provider_type", "policy", "serialized"), STATE_PICKLES)
def test_providers_pickled_into_existing_state_unpickle_to_the_same_bytes(
    provider_type: type[ConfiguredProvider[Any]],
    policy: RetryPolicy | None,
    serialized: str,
) -> None:
    restored = unpickle(base64.b64decode(serialized))
    assert type(restored) is provider_type
    assert restored.__getstate__() == {"policy": policy}
    assert serialize_provider(provider_type(policy)) == serialized
    with pytest.raises(ValueError, match="not configured"):
        restored.client()
