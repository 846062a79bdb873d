"""Local stand-ins for Azure and AWS that the real SDK clients talk to. Never deployed."""
