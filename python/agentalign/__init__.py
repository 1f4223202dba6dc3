"""agentalign: align game agents like large language models, then ship them into a game engine."""

__version__ = "0.1.0"
