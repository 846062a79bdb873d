"""Provider-neutral logic of each payload function; adapters in `aws/`, `azure/` and `gcp/` supply the
stores and the calls to neighbouring functions."""
