"""AWS Lambda handlers, one module per payload function (`handler(event, context)`), plus the
AWS stores. Each package's entry point is `lambda_function.handler`."""
