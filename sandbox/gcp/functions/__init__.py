"""Cloud Functions (2nd gen): source upload, functions as long-running operations, revisions run
under functions-framework behind a stable front door, IAM on the function and its Cloud Run service."""
