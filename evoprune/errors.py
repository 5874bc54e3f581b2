"""The one exception type for bad user input: the CLI prints it on one line and exits with code 2."""


class EvopruneError(Exception):
    """A problem with what the user asked for (bad flag value, missing file, unknown name)."""
