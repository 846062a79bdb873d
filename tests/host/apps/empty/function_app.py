"""A function_app.py without an app object."""

VALUE = 1
