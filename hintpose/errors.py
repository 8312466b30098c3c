"""Errors a user can cause: each carries one message naming the culprit (file, key or id)."""


class HintPoseError(Exception):
    """Base of every user-facing error; stages print its message and exit with status 1."""


class ConfigError(HintPoseError, ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


class DataError(HintPoseError, ValueError):
    """An input file is missing, malformed, or inconsistent with the rest of the data."""
