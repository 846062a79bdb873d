"""Resource names per cloud, and each cloud's rules for them.

Every cloud resource name the deployer creates is spelled here and nowhere else. Each naming
class also lists all the names it would produce for a twin with the rule each must satisfy,
so that validating a twin name is "generate every name, check every rule" rather than a
second, drifting copy of the rules.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """A cloud's constraint on one kind of name."""

    kind: str
    min_len: int
    max_len: int
    pattern: str  # full-match regex
    description: str

    def problems(self, name: str) -> list[str]:
        out: list[str] = []
        if not self.min_len <= len(name) <= self.max_len:
            out.append(f"{self.kind} name {name!r} has {len(name)} characters; allowed {self.min_len}-{self.max_len}")
        if not re.fullmatch(self.pattern, name):
            out.append(f"{self.kind} name {name!r} breaks the rule: {self.description}")
        return out


# Azure (learn.microsoft.com "Naming rules and restrictions for Azure resources").
AZ_RESOURCE_GROUP = NameRule("Azure resource group", 1, 90, r"[\w\-.()]*[\w\-()]", "letters, digits, - _ . ( ); not ending in '.'")
AZ_IDENTITY = NameRule("Azure managed identity", 3, 128, r"[A-Za-z0-9][\w-]*", "letters, digits, - and _, starting with a letter or digit")
AZ_STORAGE_ACCOUNT = NameRule("Azure storage account", 3, 24, r"[a-z0-9]+", "lowercase letters and digits only")
AZ_SITE = NameRule("Azure Function App", 2, 60, r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", "letters, digits and hyphens, not starting or ending with a hyphen")
AZ_PLAN = NameRule("Azure App Service plan", 1, 60, r"[A-Za-z0-9-]+", "letters, digits and hyphens")
AZ_IOT_HUB = NameRule("Azure IoT Hub", 3, 50, r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", "letters, digits and hyphens, not ending with a hyphen")
AZ_EVENTGRID = NameRule("Azure Event Grid topic", 3, 50, r"[A-Za-z0-9-]+", "letters, digits and hyphens")
AZ_COSMOS = NameRule("Azure Cosmos DB account", 3, 44, r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", "lowercase letters, digits and hyphens, not starting or ending with a hyphen")
AZ_DIGITAL_TWINS = NameRule("Azure Digital Twins instance", 3, 63, r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?", "letters, digits and hyphens, starting and ending with a letter or digit")
AZ_GRAFANA = NameRule("Azure Managed Grafana", 2, 23, r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?", "letters, digits and hyphens, starting with a letter, ending with a letter or digit")

# AWS
AWS_LAMBDA = NameRule("AWS Lambda function", 1, 64, r"[A-Za-z0-9_-]+", "letters, digits, hyphens and underscores")
AWS_IAM_ROLE = NameRule("AWS IAM role", 1, 64, r"[\w+=,.@-]+", "letters, digits and + = , . @ _ -")
AWS_DYNAMODB = NameRule("AWS DynamoDB table", 3, 255, r"[A-Za-z0-9_.-]+", "letters, digits, _ . and -")
AWS_S3_BUCKET = NameRule("AWS S3 bucket", 3, 63, r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", "lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit")
AWS_IOT_THING = NameRule("AWS IoT thing", 1, 128, r"[A-Za-z0-9:_-]+", "letters, digits, : _ and -")
AWS_IOT_RULE = NameRule("AWS IoT topic rule", 1, 128, r"[A-Za-z0-9_]+", "letters, digits and underscores")
AWS_TWINMAKER = NameRule("AWS IoT TwinMaker workspace", 1, 128, r"[A-Za-z0-9][A-Za-z0-9_-]*", "letters, digits, _ and -, starting with a letter or digit")
AWS_EVENTBRIDGE_RULE = NameRule("AWS EventBridge rule", 1, 64, r"[\w.-]+", "letters, digits, . _ and -")
AWS_GRAFANA = NameRule("AWS Managed Grafana workspace", 1, 255, r"[A-Za-z0-9\-._~]+", "letters, digits and - . _ ~")

# GCP
GCP_FUNCTION = NameRule("GCP Cloud Function", 1, 63, r"[a-z](?:[a-z0-9-]*[a-z0-9])?", "lowercase letters, digits and hyphens, starting with a letter")
GCP_BUCKET = NameRule("GCP Cloud Storage bucket", 3, 63, r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?", "lowercase letters, digits, - _ and ., starting and ending with a letter or digit")
GCP_TOPIC = NameRule("GCP Pub/Sub topic", 3, 255, r"[A-Za-z][\w.~+%-]*", "starting with a letter; letters, digits, - _ . ~ + %")
GCP_SERVICE_ACCOUNT = NameRule("GCP service account", 6, 30, r"[a-z](?:[a-z0-9-]*[a-z0-9])?", "lowercase letters, digits and hyphens, starting with a letter, ending with a letter or digit")
GCP_FIRESTORE = NameRule("GCP Firestore database", 4, 63, r"[a-z](?:[a-z0-9-]*[a-z0-9])?", "lowercase letters, digits and hyphens, starting with a letter, ending with a letter or digit")


def _gcp_slug(text: str) -> str:
    """`text` in what GCP ids accept (lowercase letters, digits, hyphens)."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower())


def _gcp_account_id(base: str) -> str:
    """A service account id (6-30 characters) for `base`: itself when it fits, else a readable
    prefix and a hash of the whole (so two long bases never meet)."""
    slug = _gcp_slug(base)
    if 6 <= len(slug) <= 30:
        return slug
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{slug[:21].rstrip('-')}-{digest}"

# DTDL: a DTMI segment is letters, digits and underscores, not starting with a digit, not ending with '_'.
DTMI_PATTERN = re.compile(r"dtmi:(?:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*;[1-9][0-9]{0,8}")


def is_valid_dtmi(value: str) -> bool:
    return bool(DTMI_PATTERN.fullmatch(value))


def _short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def layer_tag(layer: str) -> str:
    """`L0` -> `l0`, `L3_hot` -> `l3-hot`: the form used inside resource names."""
    return layer.lower().replace("_", "-")


class AzureNaming:
    """Names of a twin's Azure resources. `twin` is the spec's `twin.name`."""

    COSMOS_DATABASE = "iot-data"
    COSMOS_CONTAINER = "hot-data"
    COLD_CONTAINER = "cold-data"
    ARCHIVE_CONTAINER = "archive-data"

    def __init__(self, twin: str) -> None:
        self.twin = twin

    RESOURCE_GROUP_SUFFIX = "-rg"

    def resource_group(self) -> str:
        return f"{self.twin}{self.RESOURCE_GROUP_SUFFIX}"

    @classmethod
    def twin_of_resource_group(cls, group: str) -> str | None:
        """The inverse of `resource_group` (None for a group no twin name gives; ARM ids may
        change the case of a group's name, so the suffix is matched without it)."""
        if len(group) <= len(cls.RESOURCE_GROUP_SUFFIX) or not group.lower().endswith(cls.RESOURCE_GROUP_SUFFIX):
            return None
        return group[: -len(cls.RESOURCE_GROUP_SUFFIX)]

    def identity(self) -> str:
        return f"{self.twin}-identity"

    def storage_account(self) -> str:
        # Globally unique and 3-24 lowercase alphanumerics: squash the twin name and add a short
        # hash of the full name, so two twins whose names squash alike still differ.
        squashed = re.sub(r"[^a-z0-9]", "", self.twin.lower())
        return (squashed[:14] + "st" + _short_hash(self.twin, 6))[:24]

    def plan(self, layer: str) -> str:
        return f"{self.twin}-{layer_tag(layer)}-plan"

    def function_app(self, layer: str) -> str:
        return f"{self.twin}-{layer_tag(layer)}-functions"

    def iot_hub(self) -> str:
        return f"{self.twin}-iothub"

    def iot_system_topic(self) -> str:
        return f"{self.twin}-iothub-events"

    def event_subscription(self, purpose: str) -> str:
        return f"{self.twin}-{purpose}-sub"

    def events_topic(self) -> str:
        """The control plane's own Event Grid topic for `twin.*` events."""
        return f"{self.twin}-twin-events"

    def cosmos_account(self) -> str:
        return f"{self.twin.lower()}-cosmos"

    def digital_twins(self) -> str:
        return f"{self.twin}-adt"

    def grafana(self) -> str:
        return f"{self.twin}-grafana"

    def iot_device(self, device_id: str) -> str:
        """IoT Hub registry id of a device."""
        return f"{self.twin}-{device_id}"

    def logic_app(self) -> str:
        return f"{self.twin}-notification-workflow"

    GRAFANA_DATASOURCE = "Hot-Reader-Data"

    def all_names(self) -> list[tuple[str, NameRule]]:
        layers = ("L0", "L1", "L2", "L3_hot", "L3_cold", "L4")
        names: list[tuple[str, NameRule]] = [
            (self.resource_group(), AZ_RESOURCE_GROUP),
            (self.identity(), AZ_IDENTITY),
            (self.storage_account(), AZ_STORAGE_ACCOUNT),
            (self.iot_hub(), AZ_IOT_HUB),
            (self.iot_system_topic(), AZ_EVENTGRID),
            (self.events_topic(), AZ_EVENTGRID),
            (self.cosmos_account(), AZ_COSMOS),
            (self.digital_twins(), AZ_DIGITAL_TWINS),
            (self.grafana(), AZ_GRAFANA),
        ]
        names += [(self.plan(layer), AZ_PLAN) for layer in layers]
        names += [(self.function_app(layer), AZ_SITE) for layer in layers]
        return names


class AwsNaming:
    """Names of a twin's AWS resources."""

    def __init__(self, twin: str) -> None:
        self.twin = twin

    def resource_group(self) -> str:
        return f"{self.twin}-resources"

    def function(self, function: str) -> str:
        """Lambda function (and its IAM role) for a payload function, e.g. `persister`."""
        return f"{self.twin}-{function}"

    def role(self, function: str) -> str:
        return f"{self.twin}-{function}"

    def iot_thing(self, device_id: str) -> str:
        return f"{self.twin}-{device_id}"

    def iot_policy(self, device_id: str) -> str:
        return f"{self.twin}-{device_id}"

    def iot_topic(self) -> str:
        return f"{self.twin}/iot-data"

    def feedback_topic(self, device_id: str) -> str:
        """MQTT topic `event-feedback` publishes a device's feedback to (inside the `{twin}/*`
        topics the feedback Lambda's role may publish to)."""
        return f"{self.twin}/feedback/{device_id}"

    def iot_rule(self) -> str:
        return f"{self.twin}_trigger_dispatcher".replace("-", "_")

    def hot_table(self) -> str:
        return f"{self.twin}-hot-iot-data"

    def cold_bucket(self) -> str:
        return f"{self.twin.lower()}-cold-iot-data"

    def archive_bucket(self) -> str:
        return f"{self.twin.lower()}-archive-iot-data"

    def twinmaker_bucket(self) -> str:
        return f"{self.twin.lower()}-twinmaker"

    def twinmaker_workspace(self) -> str:
        return f"{self.twin}-twinmaker"

    def component_type(self, device_id: str) -> str:
        return f"{self.twin}-{device_id}"

    def schedule_rule(self, mover: str) -> str:
        return f"{self.twin}-{mover}"

    def grafana_workspace(self) -> str:
        return f"{self.twin}-grafana"

    def state_machine(self) -> str:
        return f"{self.twin}-lambda-chain"

    def event_action(self, function_name: str) -> str:
        return f"{self.twin}-{function_name}"

    def all_names(self, device_ids: list[str] | tuple[str, ...] = ()) -> list[tuple[str, NameRule]]:
        # The longest function names decide whether the twin name fits the Lambda/IAM limits.
        functions = ("hot-reader-last-entry", "cold-to-archive-mover", "hot-to-cold-mover", "event-checker")
        names: list[tuple[str, NameRule]] = [
            (self.hot_table(), AWS_DYNAMODB),
            (self.cold_bucket(), AWS_S3_BUCKET),
            (self.archive_bucket(), AWS_S3_BUCKET),
            (self.twinmaker_bucket(), AWS_S3_BUCKET),
            (self.twinmaker_workspace(), AWS_TWINMAKER),
            (self.iot_rule(), AWS_IOT_RULE),
            (self.grafana_workspace(), AWS_GRAFANA),
            (self.schedule_rule("cold-to-archive-mover"), AWS_EVENTBRIDGE_RULE),
        ]
        names += [(self.function(f), AWS_LAMBDA) for f in functions]
        names += [(self.role(f), AWS_IAM_ROLE) for f in functions]
        for device_id in device_ids:
            names.append((self.iot_thing(device_id), AWS_IOT_THING))
            names.append((self.function(f"{device_id}-processor"), AWS_LAMBDA))
            names.append((self.role(f"{device_id}-processor"), AWS_IAM_ROLE))
        return names


class GcpNaming:
    """Names of a twin's GCP resources."""

    def __init__(self, twin: str) -> None:
        self.twin = twin

    def function(self, function: str) -> str:
        return f"{self.twin.lower()}-{function}"

    def _keyed_function(self, kind: str, key: str) -> str:
        """A function id for one of several functions of a `kind` (`{twin}-{kind}-{key}-{hash}`):
        ids are at most 63 lowercase letters, digits and hyphens, while device ids and action names
        may hold `_` or capitals, so the key is slugged and shortened and a hash keeps keys that
        differ only in those apart."""
        digest = hashlib.sha256(f"{self.twin}\n{kind}\n{key}".encode()).hexdigest()[:8]
        prefix = f"{self.twin.lower()}-{kind}-"
        room = 63 - len(prefix) - len(digest) - 1
        slug = _gcp_slug(key)[:max(room, 0)].strip("-")
        return f"{prefix}{slug}-{digest}" if slug else f"{prefix}{digest}"

    def device_processor(self, device_id: str) -> str:
        """The Cloud Function that processes one device's readings (with its own code, if any)."""
        return self._keyed_function("processor", device_id)

    def event_action(self, function_name: str) -> str:
        """The Cloud Function running a user's event action (`autoDeploy`)."""
        return self._keyed_function("action", function_name)

    def telemetry_topic(self) -> str:
        return f"{self.twin}-telemetry"

    def feedback_topic(self) -> str:
        """Event feedback for the twin's devices (each reads its own filtered subscription)."""
        return f"{self.twin}-feedback"

    def feedback_subscription(self, device_id: str) -> str:
        """A device's feedback subscription: twin and device, and a hash of both (twin `a` with
        device `b-feedback-c` and twin `a-feedback-b` with device `c` would read the same)."""
        digest = hashlib.sha256(f"{self.twin}\n{device_id}".encode()).hexdigest()[:8]
        return f"{self.twin}-feedback-{device_id}-{digest}"

    def cold_bucket(self) -> str:
        return f"{self.twin.lower()}-cold"

    def archive_bucket(self) -> str:
        return f"{self.twin.lower()}-archive"

    def service_account(self) -> str:
        """The id of the service account the twin's functions run as (`{id}@{project}.iam...`)."""
        return _gcp_account_id(f"{self.twin}-functions")

    def device_account(self, device_id: str) -> str:
        """The id of a device's own service account (its publish credentials): a readable prefix of
        twin and device, and a hash of both, since device ids may differ only in case or `_`/`-`."""
        digest = hashlib.sha256(f"{self.twin}\n{device_id}".encode()).hexdigest()[:8]
        return f"{_gcp_slug(self.twin)[:10].rstrip('-')}-{_gcp_slug(device_id)[:10].strip('-') or 'dev'}-{digest}"

    def functions_bucket(self) -> str:
        return f"{self.twin.lower()}-functions"

    def firestore_database(self) -> str:
        return f"{self.twin.lower()}-hot"

    def hot_collection(self) -> str:
        return f"{self.twin}-hot-data"

    def schedule(self, mover: str) -> str:
        return f"{self.twin.lower()}-{mover}"

    def workflow(self) -> str:
        return f"{self.twin.lower()}-event-workflow"

    def all_names(self) -> list[tuple[str, NameRule]]:
        functions = ("cold-to-archive-mover", "hot-reader-last-entry")
        names: list[tuple[str, NameRule]] = [
            (self.telemetry_topic(), GCP_TOPIC),
            (self.cold_bucket(), GCP_BUCKET),
            (self.archive_bucket(), GCP_BUCKET),
            (self.functions_bucket(), GCP_BUCKET),
            (self.service_account(), GCP_SERVICE_ACCOUNT),
            (self.firestore_database(), GCP_FIRESTORE),
        ]
        names += [(self.function(f), GCP_FUNCTION) for f in functions]
        return names


def twin_name_problems(twin: str, providers: list[str], device_ids: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Every naming rule that `twin` (and the device ids, where they enter names) would break
    on the given clouds. Empty when every generated name is valid."""
    problems: list[str] = []
    named: list[tuple[str, NameRule]] = []
    if "azure" in providers:
        named += AzureNaming(twin).all_names()
    if "aws" in providers:
        named += AwsNaming(twin).all_names(device_ids)
    if "gcp" in providers:
        named += GcpNaming(twin).all_names()
    seen: set[str] = set()
    for name, rule in named:
        for problem in rule.problems(name):
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems
