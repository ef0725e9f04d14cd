"""The one error type the CLI turns into a single clear line and exit code 2."""


class UsageError(Exception):
    """Bad input from the user (unknown name, malformed file, foreign checkpoint...); the message names the fix."""
