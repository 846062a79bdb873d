"""Latency and fault profiles of the sandbox, seeded so tests and benchmarks repeat.

A profile says how long an operation takes (provisioning delays modelled on the real
services, scaled down), what share of calls are throttled or fail, and how long role
assignments take to become effective. Every service asks the shared `Faults` object,
so switching the profile (control endpoint `POST /profile`) changes them all at once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

# Typical real provisioning times in seconds, per ARM resource type (lower case) or
# AWS operation key. `realistic` scales them by `delay_scale`, so that the ratios between
# resources stay true while a whole deployment takes seconds.
REAL_PROVISIONING_SECONDS: dict[str, float] = {
    "microsoft.resources/resourcegroups": 2,
    "microsoft.managedidentity/userassignedidentities": 3,
    "microsoft.storage/storageaccounts": 25,
    "microsoft.web/serverfarms": 10,
    "microsoft.web/sites": 40,
    "microsoft.devices/iothubs": 180,
    "microsoft.eventgrid/systemtopics": 20,
    "microsoft.eventgrid/topics": 20,
    "microsoft.eventgrid/eventsubscriptions": 15,
    "microsoft.documentdb/databaseaccounts": 300,
    "microsoft.documentdb/databaseaccounts/sqldatabases": 20,
    "microsoft.documentdb/databaseaccounts/sqldatabases/containers": 20,
    "microsoft.digitaltwins/digitaltwinsinstances": 240,
    "microsoft.dashboard/grafana": 360,
    "microsoft.authorization/roleassignments": 2,
    "kudu/deployment": 60,
    "aws/lambda": 5,
    "aws/dynamodb": 10,
    "aws/iottwinmaker/componenttype": 10,
    "aws/grafana/workspace": 300,
    "gcp/cloudfunctions": 90,  # a 2nd gen deploy: build plus Cloud Run revision
}


@dataclass(frozen=True)
class Profile:
    name: str
    # Multiplier applied to REAL_PROVISIONING_SECONDS (0 = instant).
    delay_scale: float = 0.0
    # Share of calls (0..1) answered 429 (with Retry-After) and 503 before doing anything.
    throttle_rate: float = 0.0
    unavailable_rate: float = 0.0
    # Share of long-running operations that fail once (the retry then succeeds).
    lro_fail_once_rate: float = 0.0
    # Seconds (already scaled) until a new role assignment is effective on the data plane;
    # meanwhile data-plane calls by that principal get 403.
    rbac_propagation_seconds: float = 0.0
    # Retry-After value sent with 429/503 and with LRO polls, in seconds.
    retry_after_seconds: int = 0
    # Eventual visibility: the share (0..1) of ARM creates answered 201/202 whose resource reads
    # as absent (404) for `late_visibility_seconds` (already scaled) after the answer.
    late_visibility_rate: float = 0.0
    late_visibility_seconds: float = 0.0
    description: str = ""


PROFILES: dict[str, Profile] = {
    "instant": Profile("instant", description="no delays, no faults: for tests"),
    "realistic": Profile(
        "realistic",
        delay_scale=0.01,
        late_visibility_rate=0.5,
        late_visibility_seconds=1.0,
        description="provisioning delays in proportion to the real services, scaled by 0.01; half of "
        "the long-running creates read as absent for 1 s after their 201/202",
    ),
    "flaky": Profile(
        "flaky",
        throttle_rate=0.08,
        unavailable_rate=0.04,
        lro_fail_once_rate=0.25,
        rbac_propagation_seconds=1.0,
        late_visibility_rate=0.3,
        late_visibility_seconds=0.5,
        description="8% of calls 429, 4% 503, a quarter of LROs fail once, RBAC takes 1 s to apply, "
        "30% of long-running creates read as absent for 0.5 s after their 201/202",
    ),
}


@dataclass
class Faults:
    """The sandbox-wide fault injector: one seeded RNG, one current profile.

    Decisions are drawn from a single seeded `random.Random` under a lock, so one run of a
    deterministic client against the sandbox sees the same faults every time.
    """

    profile: Profile = field(default_factory=lambda: PROFILES["instant"])
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _failed_once: set[str] = field(init=False, repr=False, default_factory=set)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def set_profile(self, name: str, seed: int | None = None) -> Profile:
        if name not in PROFILES:
            raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}")
        with self._lock:
            self.profile = PROFILES[name]
            if seed is not None:
                self.seed = seed
            self._rng = random.Random(self.seed)
            self._failed_once.clear()
        return self.profile

    def injected_status(self) -> int | None:
        """429 or 503 when this call should be refused before doing anything, else None."""
        p = self.profile
        if not (p.throttle_rate or p.unavailable_rate):
            return None
        with self._lock:
            x = self._rng.random()
        if x < p.throttle_rate:
            return 429
        if x < p.throttle_rate + p.unavailable_rate:
            return 503
        return None

    def provisioning_seconds(self, kind: str) -> float:
        """How long an operation on `kind` (see REAL_PROVISIONING_SECONDS) takes now."""
        return REAL_PROVISIONING_SECONDS.get(kind.lower(), 0.0) * self.profile.delay_scale

    def late_visibility(self) -> float:
        """Seconds a resource whose create was just accepted stays unreadable (0: visible at once)."""
        p = self.profile
        if not p.late_visibility_rate:
            return 0.0
        with self._lock:
            late = self._rng.random() < p.late_visibility_rate
        return p.late_visibility_seconds if late else 0.0

    def fail_once(self, operation_key: str) -> bool:
        """True the first time a given operation is asked about, with the profile's probability.

        The draw depends on the seed and the operation alone, not on the shared RNG: which
        operations fail is then the same in every run, however threads interleave their calls."""
        p = self.profile
        if not p.lro_fail_once_rate:
            return False
        with self._lock:
            if operation_key in self._failed_once:
                return False
            if random.Random(f"{self.seed}/{operation_key}").random() < p.lro_fail_once_rate:
                self._failed_once.add(operation_key)
                return True
            return False
