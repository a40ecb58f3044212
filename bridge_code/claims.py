"""Userflow calls under the delivery ledger: claim the event, call, release the claim if the
call failed; once every call of the invocation has ended, settle all its claims in one write.

Userflow's REST API has no idempotency key, so this is what keeps an event from reaching it
twice (bridge_code/ledger.py has the states). A claim held by a live invocation makes the
event wait (SQS redelivers it); a claim its holder settled means the event was delivered; a
claim whose holder vanished, or whose call ended without an answer, is taken over and the
event sent again, counted `ambiguous`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

from bridge_code.ledger import DELIVERED, Claim, Ledger, LedgerUnavailable, new_holder
from bridge_code.logs import log
from bridge_code.stats import BridgeStats
from bridge_code.upstream import Outcome, UpstreamClient

# SQS keeps a message (work queue or dead-letter queue) at most 14 days: no redelivery or
# dead-letter replay of an event can come later than that after its delivery.
DELIVERED_KEEP_SECONDS = 14 * 24 * 3600.0
# Added to the invocation's remaining time for how long a delivery claim is held.
CLAIM_MARGIN_SECONDS = 30.0


class ClaimedCalls:
    """One invocation's Userflow calls: each claimed under this invocation as holder."""

    def __init__(self, ledger: Ledger, upstream: UpstreamClient, stats: BridgeStats,
                 deadline_margin_seconds: float) -> None:
        self.ledger = ledger
        self.upstream = upstream
        self.stats = stats
        self.margin = CLAIM_MARGIN_SECONDS + deadline_margin_seconds
        self.holder = new_holder()
        # Set when a failed call's claim could not be released: settling would then mark it
        # delivered, so none of this invocation's claims is settled.
        self.unsettled = False

    def send(self, key: str, method: str, url: str, headers: Mapping[str, str],
             body: bytes | None, deadline: float) -> Outcome:
        """Claim the event, call Userflow, release the claim if the call failed."""
        hold = max(0.0, deadline - time.monotonic()) + self.margin
        try:
            claim = self.ledger.claim(DELIVERED, key, hold, DELIVERED_KEEP_SECONDS, self.holder)
        except LedgerUnavailable as error:
            return Outcome(False, True, None, str(error), 0)
        if claim.state == "done":
            return Outcome(True, False, None, "delivered before", 0, already_delivered=True)
        if claim.state == "busy":
            return Outcome(False, True, None, "being delivered by another invocation", 0)
        try:
            outcome = self.upstream.send(method, url, headers, body, deadline)
        except BaseException:
            # Whether the call went out is unknown: give the claim back, marked so.
            self._release(claim, key, uncertain=True)
            raise
        self.stats.add("segment_to_userflow", "upstream_calls", outcome.attempts)
        if not outcome.ok:  # a delivered event's claim stays pending until `settle`
            self._release(claim, key, uncertain=outcome.uncertain > 0)
        ambiguous = outcome.ok and (outcome.uncertain > 0 or claim.state == "taken_over")
        return replace(outcome, ambiguous=ambiguous)

    def _release(self, claim: Claim, key: str, uncertain: bool) -> None:
        try:
            self.ledger.release(claim, uncertain=uncertain)
        except LedgerUnavailable as error:
            # The claim lapses after its hold instead; the outcome stands.
            log("ledger unavailable", "WARNING", key=key, error=str(error))
            self.unsettled = True

    def settle(self) -> None:
        """Call once every call has ended: the claims still pending were delivered. Should
        this write be lost, a later repeat of one of these events is taken for a crash's
        leftover: sent again, and counted ambiguous."""
        if self.unsettled:
            return
        try:
            self.ledger.settle(self.holder, DELIVERED_KEEP_SECONDS)
        except LedgerUnavailable as error:
            log("ledger unavailable", "WARNING", error=str(error))
