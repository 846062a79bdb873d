"""Azure Function App blueprints, one module per payload function, plus their Azure stores."""
