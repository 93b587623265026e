"""Robust training: trainers that tolerate poisoned samples in the training set."""
