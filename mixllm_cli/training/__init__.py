"""Offline training (encode, fit, calibrate, publish) and changes to the pool (add / remove an LLM)."""
