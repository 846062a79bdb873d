"""Provider-neutral logic of each payload function; adapters in `aws/` and `azure/` supply the
stores and the calls to neighbouring functions."""
