"""keepalived wiring (placeholder until issue 5 lands)."""
