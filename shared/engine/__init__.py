"""The engine's contract: durable function names, error classes and the payloads that cross the
activity boundary. Orchestrators, activities and the HTTP API all import it from here."""
