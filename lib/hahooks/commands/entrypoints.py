"""Subcommands (placeholder until its issue lands)."""


def register(sub, common) -> None:
    return None
