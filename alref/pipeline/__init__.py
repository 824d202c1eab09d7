"""The segmentation pipeline: baseline decisions, the run itself, and its outputs."""
