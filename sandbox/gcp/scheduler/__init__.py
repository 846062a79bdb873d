"""Cloud Scheduler: HTTP and Pub/Sub target jobs fired on their cron schedule and on demand."""
