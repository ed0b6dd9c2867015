"""One thin module per command: its arguments, then calls into the domain packages."""
