"""Pub/Sub: topics, subscriptions, publish, push delivery (and Eventarc's CloudEvents) and pull,
over REST on the GCP endpoint and over gRPC at `PUBSUB_EMULATOR_HOST`."""
