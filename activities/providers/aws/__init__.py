"""The AWS provider: one module per resource kind the plan emits for `provider == "aws"`.

Importing this package registers every kind (`@register("aws", kind)`). The engine loads it
through `TWIN_PROVIDER_MODULES` (e.g. `activities.providers,activities.providers.aws`) or by
`activities.providers` importing it.
"""

from activities.providers.aws import (  # noqa: F401  (registers on import)
    dynamodb_table,
    grafana,
    grafana_datasource,
    iot_device,
    iot_topic_rule,
    lambda_function,
    resource_group,
    s3_bucket,
    schedule,
    step_function,
    twinmaker_component_type,
    twinmaker_entities,
    twinmaker_workspace,
    web_identity,
)
