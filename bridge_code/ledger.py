"""What the bridge has already accepted and delivered: one DynamoDB item per key.

Segment's signature carries no timestamp and covers a batch's first event only, so nothing
in the scheme stops a captured request from being sent again; and Userflow's `POST /events`
has no idempotency key, so a second call is a second event. Both are stopped here, with the
shape AWS Lambda Powertools' idempotency utility uses: an item is *claimed* (state
`pending`, held until a time) by a conditional write, the work is done, then the item is
*completed* (state `done`). A claim whose holder failed is *released* so that the next try
(a Segment retry after a 503, an SQS redelivery) is not mistaken for a repeat; a claim whose
holder vanished (crash, timeout) can be taken over once its hold has passed.

Delivery completes its claims in bulk, because DynamoDB bills every item written, whatever
the call, and a second write per event doubled the ledger's cost: every claim of one
invocation names that invocation as its *holder*, and once the invocation has finished all
its calls (each failed one released) it writes one `settled#<holder>` item. A pending claim
whose holder settled is done; one whose holder never settled (it crashed) is taken over once
its hold has passed, as before. A delivered event costs one write, plus one per invocation.

Items: `pk` (S, "<kind>#<key>"), `state` (pending | done | uncertain), `token` (S, the
claimant: a random id per claim, or its holder), `held_until` (N, epoch seconds),
`expires_at` (N, epoch seconds; the table's TTL attribute: DynamoDB deletes expired items
within days, so expiry is also checked here). A `settled#<holder>` item has `pk` and
`expires_at` only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# The key kinds (one table, three prefixes).
ACCEPTED = "accepted"
DELIVERED = "delivered"
SETTLED = "settled"

ClaimState = Literal["claimed", "taken_over", "done", "busy"]
"""claimed: nobody had it; taken_over: an earlier holder vanished or ended uncertain (what it
did is unknown); done: completed before; busy: another holder's claim is still held."""


class LedgerUnavailable(Exception):
    """The ledger could not be read or written; the message names the error type only."""


@dataclass(frozen=True)
class Claim:
    state: ClaimState
    key: str
    token: str


class Ledger(Protocol):
    """claim -> (work) -> complete, or settle the holder; or release. The DynamoDB table or a
    test double."""

    def claim(self, kind: str, key: str, hold_seconds: float, keep_seconds: float,
              holder: str | None = None) -> Claim: ...

    def complete(self, claim: Claim, keep_seconds: float) -> None: ...

    def release(self, claim: Claim, uncertain: bool = False) -> None: ...

    def settle(self, holder: str, keep_seconds: float) -> None: ...


def new_holder() -> str:
    """A holder id: random, so that no one can name another holder's settlement."""
    return uuid.uuid4().hex


def _state(item: dict[str, Any]) -> str:
    return str(item.get("state", {}).get("S", ""))


def _token(item: dict[str, Any]) -> str:
    return str(item.get("token", {}).get("S", ""))


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class DynamoLedger:
    """The ledger on a DynamoDB table (partition key `pk`, TTL attribute `expires_at`)."""

    def __init__(self, client: Callable[[], Any], table: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client  # built on first use: boto3 is imported lazily
        self._table = table
        self._clock = clock

    def claim(self, kind: str, key: str, hold_seconds: float, keep_seconds: float,
              holder: str | None = None) -> Claim:
        """Take the key unless it is done, or held by a live claim. A claim with a `holder` is
        completed by `settle(holder)`; a pending claim whose holder settled is done."""
        pk = f"{kind}#{key}"
        token = holder or uuid.uuid4().hex
        now = self._clock()
        item = {"pk": {"S": pk}, "state": {"S": "pending"}, "token": {"S": token},
                "held_until": {"N": str(int(now + hold_seconds) + 1)},
                "expires_at": {"N": str(int(now + keep_seconds) + 1)}}
        try:
            reply = self._client().put_item(
                TableName=self._table, Item=item, ReturnValues="ALL_OLD",
                ConditionExpression=(
                    "attribute_not_exists(pk) OR expires_at < :now OR #state = :uncertain"
                    " OR (#state = :pending AND held_until < :now)"),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":now": {"N": str(int(now))},
                                           ":pending": {"S": "pending"},
                                           ":uncertain": {"S": "uncertain"}})
        except Exception as error:
            if _error_code(error) != "ConditionalCheckFailedException":
                raise LedgerUnavailable(f"ledger write failed ({type(error).__name__})") from None
            return Claim(self._current_state(pk, holder is not None), pk, token)
        old = reply.get("Attributes") or {}
        if not old or int(old.get("expires_at", {}).get("N", "0")) < now:
            return Claim("claimed", pk, token)
        if holder is not None and _state(old) == "pending" and self._settled(_token(old)):
            # Its holder finished after all: the work is done. This claim has just
            # overwritten the item, so it says so there.
            done = Claim("done", pk, token)
            self.complete(done, keep_seconds)
            return done
        return Claim("taken_over", pk, token)

    def _current_state(self, pk: str, settles: bool) -> ClaimState:
        item = self._get(pk)
        if _state(item) == "done" or (
                settles and _state(item) == "pending" and self._settled(_token(item))):
            return "done"
        # Held by a live claim, or gone between the two calls (released, or expired):
        # someone else is on it.
        return "busy"

    def _settled(self, holder: str) -> bool:
        item = self._get(f"{SETTLED}#{holder}") if holder else {}
        return bool(item) and int(item.get("expires_at", {}).get("N", "0")) >= self._clock()

    def _get(self, pk: str) -> dict[str, Any]:
        try:
            reply = self._client().get_item(TableName=self._table, Key={"pk": {"S": pk}},
                                            ConsistentRead=True)
        except Exception as error:
            raise LedgerUnavailable(f"ledger read failed ({type(error).__name__})") from None
        item = reply.get("Item")
        return item if isinstance(item, dict) else {}

    def settle(self, holder: str, keep_seconds: float) -> None:
        """Every claim `holder` still has pending is done (the failed ones were released)."""
        item = {"pk": {"S": f"{SETTLED}#{holder}"},
                "expires_at": {"N": str(int(self._clock() + keep_seconds) + 1)}}
        try:
            self._client().put_item(TableName=self._table, Item=item)
        except Exception as error:
            raise LedgerUnavailable(f"ledger write failed ({type(error).__name__})") from None

    def complete(self, claim: Claim, keep_seconds: float) -> None:
        item = {"pk": {"S": claim.key}, "state": {"S": "done"}, "token": {"S": claim.token},
                "expires_at": {"N": str(int(self._clock() + keep_seconds) + 1)}}
        try:
            self._client().put_item(TableName=self._table, Item=item)
        except Exception as error:
            raise LedgerUnavailable(f"ledger write failed ({type(error).__name__})") from None

    def release(self, claim: Claim, uncertain: bool = False) -> None:
        """Give the key back; `uncertain` keeps a mark that the work may have happened."""
        names = {"#token": "token", "#state": "state"}
        values = {":token": {"S": claim.token}, ":pending": {"S": "pending"}}
        key = {"pk": {"S": claim.key}}
        only_ours = "#token = :token AND #state = :pending"
        try:
            if uncertain:
                self._client().update_item(
                    TableName=self._table, Key=key, UpdateExpression="SET #state = :uncertain",
                    ConditionExpression=only_ours, ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":uncertain": {"S": "uncertain"}})
            else:
                self._client().delete_item(
                    TableName=self._table, Key=key, ConditionExpression=only_ours,
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as error:
            if _error_code(error) == "ConditionalCheckFailedException":
                return  # taken over meanwhile: no longer ours to release
            raise LedgerUnavailable(f"ledger write failed ({type(error).__name__})") from None
