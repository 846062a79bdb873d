"""The GCP provider: one module per resource kind the plan emits for `provider == "gcp"`.

Importing this package registers every kind (`@register("gcp", kind)`). The engine loads it
through `TWIN_PROVIDER_MODULES` (its default names it). Not here: `workflow` (the event checker's
notification workflow; the plan refuses it on GCP until Google Cloud Workflows is supported).
"""

from activities.providers.gcp import (  # noqa: F401  (registers on import)
    cloud_function,
    firestore,
    gcs_bucket,
    iot_device,
    pubsub_topic,
    scheduler_job,
    service_account,
)
