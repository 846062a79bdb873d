"""Code deployed INTO the twin's clouds (Azure Function Apps, AWS Lambdas, Google Cloud Functions)
and its packaging.

- `common/`: pure runtime helpers (telemetry normalisation, envelope, token check, retrying POST,
  lazy settings, ADT patch building); no cloud SDK at import.
- `core/`: each payload function's provider-neutral logic, written against small store and
  invocation interfaces.
- `azure/`: one `func.Blueprint` per function; `aws/`: one Lambda handler module per function;
  `gcp/`: one functions-framework entry point per function.
- `packaging.py`: reproducible zips (one per Function App, one per Lambda, one per Cloud Function).
"""
