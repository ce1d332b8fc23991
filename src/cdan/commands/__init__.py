"""CLI subcommands, one module each (see cdan.cli)."""
