"""Google Cloud Functions (gen2) entry points, one module per payload function, for
functions-framework: an HTTP function (`@functions_framework.http`) or a Pub/Sub-triggered
CloudEvent function (`@functions_framework.cloud_event`) named after the function
(`hot-writer` -> `hot_writer`), plus the GCP stores (Firestore hot, Cloud Storage cold/archive).
A package's `main.py` re-exports the entry point (`payload_functions.packaging`)."""
