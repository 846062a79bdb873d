"""Firestore (Native mode): the data plane over gRPC at `FIRESTORE_EMULATOR_HOST` and the Admin API
(databases, composite indexes, TTL) over REST."""
