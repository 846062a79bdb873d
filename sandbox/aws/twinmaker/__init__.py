"""AWS IoT TwinMaker stand-in (moto has no backend for it)."""
