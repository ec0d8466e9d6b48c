"""Subcommand modules: each exposes register(subparsers, common_parent)."""
