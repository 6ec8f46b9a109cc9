"""Command-line commands, one module each.

A module here defines ``register(subparsers)`` that adds its sub-command and sets
``func=run`` where ``run(args) -> dict`` returns the JSON-able result. The CLI discovers
modules automatically, so adding a command never edits a shared list.
"""
