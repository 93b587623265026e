"""Evaluation: the one metrics module, and end-to-end scenarios."""
