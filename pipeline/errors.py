"""The one error type the command-line tools turn into a one-line message."""

import reprlib


class LsvitError(Exception):
    """A problem with the user's input or environment.

    The message is one line that names the bad value, the allowed values where there are any, and what to
    do about it. Modules raise subclasses (which may also derive from a builtin such as ``ValueError``);
    the CLIs catch this base class, print ``error: <message>`` and exit with status 2.
    """


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 100


def short(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters however big the value is.

    ``reprlib`` stops at a few items per level, so a deeply nested or aliased value is never expanded.
    """
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int beyond Python's 4300-digit str() limit
        text = f"<an integer of {value.bit_length()} bits>" if isinstance(value, int) else "<value>"
    return clip(text, limit)


def clip(text: str, limit: int = 80) -> str:
    """``text`` cut to at most ``limit`` characters (ending in ``...`` when cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
