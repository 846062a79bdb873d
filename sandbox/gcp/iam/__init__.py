"""IAM: service accounts (REST v1 and the `google.iam.admin.v1.IAM` gRPC service) and the IAM
policies of projects, functions and Cloud Run services."""
