"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class UserError(Exception):
    """Something the user can fix: bad input, a missing file, an unknown name."""


class LayoutError(UserError):
    """A layout file that cannot describe an island."""


class ConfigError(UserError):
    """A YAML config or a command-line override that does not fit."""


class CorpusError(UserError):
    """A corpus or shard that is missing, truncated or corrupt."""
