"""Event wiring: one module per caller convention (see commands/wiring.py)."""
