"""Pure runtime helpers shared by every payload function (standard library only)."""
