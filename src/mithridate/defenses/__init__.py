"""Defences: detectors (sanitisation), robust training, model inspection, certificates."""
