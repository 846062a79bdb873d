"""Pieces every sandbox service shares: the request log and the latency/fault profiles."""
