"""The command line: entry point, typer app, terminal rendering (the only layer that prints)."""
