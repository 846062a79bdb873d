"""`GET /api/health`: is everything the change loop relies on in place? Each check says, plainly,
what is wrong and what it means.

- `events`: the `twin.*` events route: a topic the engine publishes to, with a subscription that
  delivers to this app's `twin_events` (or this app's own webhook, as the in-process CLI uses);
- `vault`: the control plane's Key Vault (secret outputs), reachable with this identity;
- `watch`: the watch on Azure Resource Manager events (changes made outside a deployment);
- `identity`: the control plane's identity can read the subscription it deploys to.

A failed check never means a recorded change is dropped: every operation applies the consumers
that are behind before it releases the twin, and a refresh applies what it found itself; the
checks say what would be slower or missing (notification, out-of-band changes, secrets).
Read-only: each check makes a few GET calls, bounded in time, off the event loop. Always 200 (the
answer is the body: `healthy` and every check); auth level FUNCTION.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared.contracts import ControlPlaneSetting
from shared.engine.errors import classify
from shared.engine.infrastructure import (
    EVENT_GRID_WEBHOOK_PATH,
    EVENTS_FUNCTION,
    EVENTS_SUBSCRIPTION,
    WATCH_FUNCTION,
    WATCH_SUBSCRIPTION,
    names_for,
)

CHECK_TIMEOUT_SECONDS = 15.0
bp = func.Blueprint()


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    reason: str


def _own_webhook(base_url: str, endpoint: str, function: str) -> bool:
    """True when `endpoint` is this host's own Event Grid webhook for `function`."""
    parts = urlsplit(endpoint)
    return (endpoint.startswith(base_url.rstrip("/") + EVENT_GRID_WEBHOOK_PATH)
            and f"functionName={function}" in parts.query)


def _delivers_here(sub: Any, base_url: str, function: str) -> str | None:
    """Why the event subscription `sub` does not deliver to this app's `function` (None: it does)."""
    state = str(getattr(sub, "provisioning_state", "") or "")
    if state and state != "Succeeded":
        return f"its provisioning state is {state} (a webhook that failed Event Grid's validation stays so)"
    destination = getattr(sub, "destination", None)
    resource_id = str(getattr(destination, "resource_id", "") or "")
    if resource_id:  # an Azure Function destination
        return None if resource_id.lower().endswith(f"/functions/{function}".lower()) else \
            f"it delivers to {resource_id}, not to this app's {function}"
    delivered_to = str(getattr(destination, "endpoint_base_url", "") or "")
    expected = base_url.rstrip("/") + EVENT_GRID_WEBHOOK_PATH
    if delivered_to.rstrip("/") != expected:
        return f"it delivers to {delivered_to or 'no endpoint'}, not to this app ({expected})"
    return None


def check_events(environ: dict[str, str], base_url: str) -> Check:
    from activities.clouds import clouds_from_environ
    from activities.events import configured_endpoints

    endpoints = configured_endpoints(environ)
    if not endpoints:
        return Check("events", False, f"{ControlPlaneSetting.EVENTS_ENDPOINT} is not set: twin.* events are published "
                                      "nowhere (recorded changes still reach their consumers: every operation applies "
                                      "the consumers behind)")
    if any(_own_webhook(base_url, e, EVENTS_FUNCTION) for e in endpoints):
        return Check("events", True, f"events go straight to this app's {EVENTS_FUNCTION} webhook")
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.eventgrid import EventGridManagementClient

    clouds = clouds_from_environ(environ)
    clouds.azure_subscription_id()  # unset: said at once, without a call that cannot succeed
    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    names = names_for(environ)
    group, topic_name = names.resource_group, names.events_topic
    try:
        topic = eventgrid.topics.get(group, topic_name)
    except ResourceNotFoundError:
        return Check("events", False, f"the events topic {group}/{topic_name} does not exist: "
                                      "events published to it are lost")
    topic_endpoint = str(topic.endpoint or "")
    if topic_endpoint not in endpoints:
        return Check("events", False, f"{ControlPlaneSetting.EVENTS_ENDPOINT} does not name the events topic "
                                      f"{topic_name} ({topic_endpoint})")
    try:
        sub = eventgrid.event_subscriptions.get(str(topic.id), EVENTS_SUBSCRIPTION)
    except ResourceNotFoundError:
        return Check("events", False, f"the events topic {topic_name} has no subscription {EVENTS_SUBSCRIPTION} "
                                      f"to {EVENTS_FUNCTION}: twin.* events are accepted and dropped (recorded "
                                      "changes still reach their consumers: every operation applies the consumers "
                                      "behind)")
    problem = _delivers_here(sub, base_url, EVENTS_FUNCTION)
    if problem is not None:
        return Check("events", False, f"the subscription {EVENTS_SUBSCRIPTION} of {topic_name}: {problem}")
    return Check("events", True, f"{topic_name} delivers to {EVENTS_FUNCTION}")


def check_watch(environ: dict[str, str], base_url: str) -> Check:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.mgmt.eventgrid import EventGridManagementClient

    from activities.clouds import clouds_from_environ

    clouds = clouds_from_environ(environ)
    clouds.azure_subscription_id()  # unset: said at once, without a call that cannot succeed
    eventgrid = clouds.azure_mgmt_client(EventGridManagementClient)
    names = names_for(environ)
    group, watch_topic = names.resource_group, names.watch_topic
    try:
        eventgrid.system_topics.get(group, watch_topic)
        sub = eventgrid.system_topic_event_subscriptions.get(group, watch_topic, WATCH_SUBSCRIPTION)
    except ResourceNotFoundError as exc:
        what = "subscription" if "ubscription" in str(exc) else "system topic"
        return Check("watch", False, f"the watch on Azure Resource Manager events ({group}/{watch_topic}, "
                                     f"{what}) does not exist: changes made outside a deployment are noticed only "
                                     "by POST /api/twins/{twin}/refresh")
    problem = _delivers_here(sub, base_url, WATCH_FUNCTION)
    if problem is not None:
        return Check("watch", False, f"the watch's subscription {WATCH_SUBSCRIPTION}: {problem}")
    return Check("watch", True, f"{watch_topic} delivers resource events to {WATCH_FUNCTION}")


def check_vault(environ: dict[str, str]) -> Check:
    from activities.clouds import clouds_from_environ

    url = (environ.get(ControlPlaneSetting.KEY_VAULT_URL) or "").strip()
    if not url:
        return Check("vault", False, f"{ControlPlaneSetting.KEY_VAULT_URL} is not set: secret outputs are kept in "
                                     "Durable state, readable through its management API")
    from azure.core.exceptions import ResourceNotFoundError

    client = clouds_from_environ(environ).secret_client(url)
    try:
        client.get_secret("twin-control-plane-health-probe")  # never stored: 404 proves access
    except ResourceNotFoundError:
        pass
    finally:
        client.close()
    return Check("vault", True, f"{url} answers this identity")


def check_identity(environ: dict[str, str]) -> Check:
    from azure.mgmt.resource.resources import ResourceManagementClient

    from activities.clouds import clouds_from_environ

    clouds = clouds_from_environ(environ)
    subscription = clouds.azure_subscription_id()
    arm = clouds.azure_mgmt_client(ResourceManagementClient)
    next(iter(arm.resource_groups.list(top=1).by_page()), None)
    return Check("identity", True, f"the identity reads subscription {subscription}")


async def _run(name: str, check: Callable[[], Check]) -> Check:
    """One check off the event loop, bounded in time; an error is the check's plain reason."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return Check(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s")
    except Exception as exc:
        return Check(name, False, str(classify(exc))[:500])


async def health(base_url: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ if environ is None else environ)
    checks = await asyncio.gather(
        _run("events", lambda: check_events(env, base_url)),
        _run("vault", lambda: check_vault(env)),
        _run("watch", lambda: check_watch(env, base_url)),
        _run("identity", lambda: check_identity(env)),
    )
    return {"healthy": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def _base_url(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
async def health_http(req: func.HttpRequest) -> func.HttpResponse:
    body = await health(_base_url(req))
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype="application/json")
