"""Root pytest configuration: notebooks under book/ run through nbval in quick mode."""

import os

# Chapters run by nbval use the smallest run size; the same code path as demo/full.
os.environ.setdefault("SMOOTHDISTILL_MODE", "quick")
os.environ.setdefault("MPLBACKEND", "Agg")
