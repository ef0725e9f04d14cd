"""The `ued` command-line tool."""
