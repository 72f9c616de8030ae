"""Suggestions for typos: "did you mean" for unknown subcommands (``harmonize aply``)."""

from __future__ import annotations

import difflib

import click


class SuggestingGroup(click.Group):
    """A click group whose "No such command" error suggests the closest subcommand."""

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if (name and not name.startswith("-") and not ctx.resilient_parsing
                and self.get_command(ctx, name) is None):
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.6)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)
