"""Replaying labelled data: presets, streams, λ sweeps, baselines, the frontier and its plot."""
