"""Userflow webhooks: every change to a user or group (`user.created`/`user.updated`,
`group.created`/`group.updated`) and every tracked event (`event.tracked.<name>`) becomes one
notification, sent on background threads to each enabled subscription whose topics match
(`*`, or a topic equal to or a dot-prefix of the notification's), signed
`Userflow-Signature: t=<unix>,v1=hex(HMAC-SHA256(secret, f"{t}.{body}"))`, retried on any
non-2xx or network error with backoff on a compressed clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import TYPE_CHECKING

from sandbox.outbound import OutboundRequest
from sandbox.userflow.models import API_VERSION
from sandbox.wire import JsonObject, compact_json, utc_now_iso

if TYPE_CHECKING:
    from sandbox.userflow.server import UserflowEmulator

SIGNATURE_HEADER = "Userflow-Signature"
TOPIC_PATTERN = re.compile(
    r"^(\*|user(\.(created|updated))?|group(\.(created|updated))?|event(\.tracked(\.[^\s]+)?)?)$"
)
WEBHOOK_USER_AGENT = "Userflow-Webhooks"


def userflow_signature(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def topic_matches(subscribed: str, topic: str) -> bool:
    """Hierarchical topics: `*` is everything, `event` covers `event.tracked.flow_started`."""
    return subscribed == "*" or topic == subscribed or topic.startswith(subscribed + ".")


def notify(emu: UserflowEmulator, changes: list[JsonObject]) -> None:
    """Queue one signed notification per change for each matching enabled subscription."""
    outbound: list[OutboundRequest] = []
    with emu.lock:
        for change in changes:
            topic = change["topic"]
            notification = {
                "id": emu.new_id(),
                "object": "webhook_notification",
                "api_version": API_VERSION,
                "created_at": utc_now_iso(),
                "topic": topic,
                "data": {"object": change["object"]},
            }
            body = compact_json(notification)
            targets = [
                s
                for s in emu.subscriptions.values()
                if not s["disabled"] and any(topic_matches(t, topic) for t in s["topics"])
            ]
            emu.notifications.append(
                {
                    "id": notification["id"],
                    "topic": topic,
                    "subscription_ids": [s["id"] for s in targets],
                }
            )
            for subscription in targets:
                stamp = int(time.time())
                signature = userflow_signature(subscription["secret"], stamp, body)
                outbound.append(
                    OutboundRequest(
                        delivery_id=f"{notification['id']}:{subscription['id']}",
                        url=subscription["url"],
                        method="POST",
                        headers={
                            "Content-Type": "application/json",
                            "User-Agent": WEBHOOK_USER_AGENT,
                            SIGNATURE_HEADER: f"t={stamp},v1={signature}",
                        },
                        body=body,
                        retryable=lambda status: True,
                        meta={
                            "notification_id": notification["id"],
                            "subscription_id": subscription["id"],
                            "topic": topic,
                        },
                    )
                )
    for request in outbound:
        emu.deliveries.submit(request)
