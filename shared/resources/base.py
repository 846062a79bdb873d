"""What every resource configuration shares, and how one is read back from its JSON form.

A configuration is the desired state of one planned resource: the planner builds it, its JSON
form (`to_json`) crosses the Durable boundary inside the activity payload, and the resource's
provider parses it back once (`parse_config`) and then reads attributes. Models are frozen (a
plan never changes) and forbid unknown fields (a misspelt field is an error, never ignored).
"""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from shared.contracts import Function
from shared.resources.ownership import Owner, planned_owner

EVENT_ACTION_PACKAGE = Function.EVENT_ACTION
"""Package name of a user's event action function (our wrapper around the user's code)."""

PackageName = Function
"""What a hosted function runs: one of our payload functions (the user-code ones carry the
users' code as well, `UserCodeRef`)."""


class ResourceConfig(BaseModel):
    """The fields of every resource kind, ownership among them (`shared.resources.ownership`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    """The resource's name in its cloud (from `shared.naming`)."""
    owner: Owner | None = Field(default_factory=planned_owner)
    """The twin and control plane that own the resource's cloud objects: every planned resource
    has it (`build_plan` plans inside `planning_for(owner)`); providers refuse to touch a cloud
    object for a configuration without one."""

    def to_json(self) -> dict[str, JsonValue]:
        """The JSON form that crosses the Durable boundary (`parse_config` reads it back)."""
        return self.model_dump(mode="json")


class ConfigPart(BaseModel):
    """A part of a configuration: frozen, unknown fields refused, like the configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class UserCodeRef(ConfigPart):
    """A user's code folder in a stored deployment bundle (`shared.bundle`): what a function runs
    besides (processor) or instead of (event action) our own code. Only the reference crosses the
    Durable boundary; the provider reads the folder from the control plane's bundle store and
    checks it against `digest` before packaging it."""

    kind: Literal["processor", "event-action"]
    name: str = Field(min_length=1)
    """The device id (processor) or the spec's function name (event action)."""
    bundle: str = Field(pattern="^[0-9a-f]{64}$")
    """SHA-256 (hex) of the stored bundle: its name in the bundle store."""
    path: str = Field(min_length=1)
    """The folder inside the bundle, e.g. `lambda_functions/processors/temperature-sensor-1`."""
    digest: str = Field(pattern="^[0-9a-f]{64}$")
    """SHA-256 (hex) of the folder's files (`shared.bundle.folder_digest`): changes exactly when
    the folder's code does, and so does the package built from it."""
    module: str = Field(pattern="^[A-Za-z_][A-Za-z0-9_]*$")
    """The entry module in the folder (`process`, `action`, `lambda_function`)."""
    function: str = Field(pattern="^[A-Za-z_][A-Za-z0-9_]*$")
    """The entry function in that module (`process`, `action`, `lambda_handler`)."""


class GrafanaDatasourceFields(ResourceConfig):
    """The hot-reader datasource in a Grafana workspace (either cloud's Managed Grafana). Its URL
    and token are wired settings, never configuration."""

    grafana: str
    """The workspace's name."""
    type: str
    """The datasource plugin (`marcusolsson-json-datasource`)."""
    access: Literal["proxy", "direct"]


C = TypeVar("C", bound=ResourceConfig)


class ConfigError(ValueError):
    """A configuration that does not fit its kind's model; `problems` are (JSON path, message)."""

    def __init__(self, resource_id: str, problems: list[tuple[str, str]]) -> None:
        self.resource_id = resource_id
        self.problems = problems
        listed = "; ".join(f"{path}: {message}" for path, message in problems)
        super().__init__(f"{resource_id}: invalid configuration: {listed}")


def _path(location: tuple[int | str, ...]) -> str:
    out = "config"
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_config(resource_id: str, data: object, model: type[C]) -> C:
    """`data` (a configuration's JSON form) as `model`; a `ConfigError` naming every problem's
    JSON path otherwise. Values are never echoed: a wrong field must not leak what it held."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(resource_id, [(_path(e["loc"]), e["msg"]) for e in exc.errors(include_input=False)]) from None
