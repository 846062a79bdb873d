"""Event feedback: publish a rule's feedback to the device over MQTT, through the IoT Core data
plane (`iot-data` `Publish`, QoS 1) on the topic `{twin}/feedback/{device}`
(`AwsNaming.feedback_topic`). Invoked directly by the event checker on AWS (L2), or through its
Function URL, token-checked, by an event checker on another cloud (L0 of L1's cloud).

Input: `{"detail": {"digitalTwinName", "iotDeviceId", "payload"}}` (`core.events.parse_feedback`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from payload_functions.aws.runtime import client, either, naming
from payload_functions.common.errors import UpstreamError
from payload_functions.common.settings import Settings
from payload_functions.core.events import feedback_received, parse_feedback
from shared.contracts import Function, Setting

FUNCTION = Function.EVENT_FEEDBACK
READS = frozenset({Setting.DIGITAL_TWIN_INFO, Setting.IOT_ENDPOINT, Setting.INTER_CLOUD_TOKEN,
                   Setting.INTER_CLOUD_TOKEN_PREVIOUS})
QOS = 1
"""At least once: a device that was briefly offline with a persistent session still gets it."""
IOT_DATA = "iot-data"


def iot_data_client(endpoint: str) -> Any:
    """An `iot-data` client for the account's ATS data endpoint (`IOT_ENDPOINT`).

    An endpoint configured the standard way (`AWS_ENDPOINT_URL_IOT_DATA_PLANE`, `AWS_ENDPOINT_URL`, the
    config file) wins, as it would for any other client: that is how the sandbox and tests route
    AWS calls, and `IOT_ENDPOINT` there names a host that only exists in the real cloud."""
    import botocore.session
    from botocore.configprovider import ConfiguredEndpointProvider

    core = botocore.session.get_session()
    configured = ConfiguredEndpointProvider(
        full_config=core.full_config, scoped_config=core.get_scoped_config(), client_name=IOT_DATA).provide()
    if configured:
        return client(IOT_DATA)
    import boto3

    url = endpoint if "://" in endpoint else f"https://{endpoint}"
    return boto3.client(IOT_DATA, endpoint_url=url)


def publish(event: Any, settings: Settings) -> dict[str, Any]:
    twin = settings.twin_info().twin_name
    feedback = parse_feedback(event, twin)
    endpoint = settings.require(Setting.IOT_ENDPOINT)
    topic = naming(settings).feedback_topic(feedback.device_id)
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = json.dumps(feedback.message(sent_at), separators=(",", ":"), sort_keys=True, default=str).encode("utf-8")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        iot_data_client(endpoint).publish(topic=topic, qos=QOS, payload=body, contentType="application/json")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise UpstreamError(f"publishing feedback to {topic} failed: {code}") from None
    except BotoCoreError as exc:
        raise UpstreamError(f"publishing feedback to {topic} failed: {type(exc).__name__}") from None
    return {"published": topic, "iotDeviceId": feedback.device_id, "qos": QOS, "sentAt": sent_at}


def handler(event: Any, context: Any = None) -> Any:
    settings = Settings(READS)
    return either(str(FUNCTION), event, lambda e: publish(e, settings),
                  lambda req: publish(feedback_received(req, settings), settings))
