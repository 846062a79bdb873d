"""Every AWS resource that exists in moto right now, read from moto's in-process backends.

moto keeps its state in module-level `BackendDict`s (account -> region -> backend) that fill
lazily; iterating with `dict.items()` visits only backends that were created, so listing never
creates empty regions. Attribute names are moto 5.x's (the project pins moto < 6).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _backends(backend_dict: Any) -> Iterator[Any]:
    for account_backends in list(dict.values(backend_dict)):
        yield from list(dict.values(account_backends))


def _res(kind: str, ident: str) -> dict[str, str]:
    return {"cloud": "aws", "type": kind, "id": ident}


def moto_resources() -> list[dict[str, str]]:
    from moto.awslambda.models import lambda_backends
    from moto.awslambda_simple.models import lambda_simple_backends
    from moto.dynamodb.models import dynamodb_backends
    from moto.events.models import events_backends
    from moto.iam.models import iam_backends
    from moto.iot.models import iot_backends
    from moto.s3.models import s3_backends
    from moto.scheduler.models import scheduler_backends
    from moto.stepfunctions.models import stepfunctions_backends

    out: list[dict[str, str]] = []
    for iam in _backends(iam_backends):
        out.extend(_res("iam:role", r.arn) for r in list(iam.roles.values()))
        out.extend(
            _res("iam:policy", p.arn)
            for p in list(iam.managed_policies.values())
            if ":iam::aws:policy/" not in p.arn  # AWS managed policies (every partition) are not ours
        )
    seen_functions: set[str] = set()
    for backend_dict in (lambda_backends, lambda_simple_backends):
        for lam in _backends(backend_dict):
            for group in list(lam._lambdas._functions.values()):
                latest = group.get("latest")
                if latest is not None and latest.function_arn not in seen_functions:
                    seen_functions.add(latest.function_arn)
                    out.append(_res("lambda:function", latest.function_arn))
    for iot in _backends(iot_backends):
        out.extend(_res("iot:thing", t.arn) for t in list(iot.things.values()))
        out.extend(_res("iot:certificate", c.arn) for c in list(iot.certificates.values()))
        out.extend(_res("iot:policy", p.arn) for p in list(iot.policies.values()))
        out.extend(_res("iot:topic-rule", r.arn) for r in list(iot.rules.values()))
    for ddb in _backends(dynamodb_backends):
        out.extend(_res("dynamodb:table", t.table_arn) for t in list(ddb.tables.values()))
    for s3 in _backends(s3_backends):
        out.extend(_res("s3:bucket", f"arn:aws:s3:::{name}") for name in list(s3.buckets))
    for events in _backends(events_backends):
        for bus in list(events.event_buses.values()):
            out.extend(_res("events:rule", r.arn) for r in list(bus.rules.values()))
    for scheduler in _backends(scheduler_backends):
        for group in list(scheduler.schedule_groups.values()):
            if group.name != "default":  # every account has it
                out.append(_res("scheduler:schedule-group", group.arn))
            out.extend(_res("scheduler:schedule", sc.arn) for sc in list(group.schedules.values()))
    for sfn in _backends(stepfunctions_backends):
        out.extend(_res("states:state-machine", sm.arn) for sm in list(sfn.state_machines))
    return out
