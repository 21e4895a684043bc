"""Canary routing: a share of the requests addressed to `name` or `name@production` go to `name@canary`.

The canary is looked up through the same resolver as every model (so its alias is re-resolved after
`serve.alias_ttl_s`, and a promotion or rollback reaches a running server without a restart). With
`canary.routing: request_id` a request carrying an `X-Request-Id` header always takes the same side
(a hash of the seed and the id); without one, and with `routing: random`, a draw from a seeded
generator decides. Pinned references (`name:3`, `name@other`) are never rerouted.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time

from tuneloom.config import CanaryConfig
from tuneloom.serve.targets import Target, TargetResolver, UnknownModel

PRODUCTION_SUFFIX = "@production"
CANARY_SUFFIX = "@canary"


def hashed_fraction(seed: int, request_id: str) -> float:
    """A number in [0, 1) fixed by the seed and the request id."""
    digest = hashlib.sha256(f"{seed}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class CanaryRouter:
    """Chooses between a model's production version and its canary, request by request."""

    def __init__(self, resolver: TargetResolver, settings: CanaryConfig) -> None:
        self.resolver = resolver
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()
        self._absent: dict[str, float] = {}  # name -> until when it is known to have no canary

    def production_name(self, ref: str) -> str | None:
        """The model name when `ref` addresses its production version (`name` or `name@production`)."""
        if ref.endswith(PRODUCTION_SUFFIX):
            return ref.removesuffix(PRODUCTION_SUFFIX)
        return ref if ":" not in ref and "@" not in ref else None

    def canary(self, name: str) -> Target | None:
        """`name@canary`, or None when the model has none (remembered for `alias_ttl_s`)."""
        now = time.monotonic()
        with self._lock:
            if self._absent.get(name, 0.0) > now:
                return None
        try:
            return self.resolver.resolve(name + CANARY_SUFFIX)
        except UnknownModel:
            with self._lock:
                self._absent[name] = now + self.resolver.settings.alias_ttl_s
            return None

    def takes_canary(self, request_id: str | None) -> bool:
        """Whether this request goes to the canary, by its id's hash or by a seeded draw."""
        share = self.settings.share
        if share <= 0.0:
            return False
        if request_id and self.settings.routing == "request_id":
            return hashed_fraction(self.settings.seed, request_id) < share
        with self._lock:
            return self._rng.random() < share

    def route(self, ref: str, target: Target, request_id: str | None) -> Target:
        """The target that answers: `target` (what `ref` resolved to), or the model's canary for its share."""
        name = self.production_name(ref)
        if name is None or self.settings.share <= 0.0 or target.name != name:
            return target
        canary = self.canary(name)
        if canary is None or canary.served == target.served or not self.takes_canary(request_id):
            return target
        return canary
