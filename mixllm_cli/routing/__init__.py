"""The one routing path: `Router` (load once, route many) and its JSONL and tag front ends."""
