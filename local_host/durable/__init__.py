"""Durable Functions emulation: history/ID rules (`history`), persistence (`store`), engine (`scheduler`)."""
