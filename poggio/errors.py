"""Errors the core raises for bad input; each names the field it is about, for inline messages."""


class PoggioError(Exception):
    """Base of the errors the core raises on purpose."""


class InvalidInput(PoggioError):
    """A value a person or program gave is not acceptable. ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(PoggioError):
    """The thing asked for does not exist in this workspace."""
