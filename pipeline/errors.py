"""The one error type the command-line tools turn into a one-line message."""


class LsvitError(Exception):
    """A problem with the user's input or environment.

    The message is one line that names the bad value, the allowed values where there are any, and what to
    do about it. Modules raise subclasses (which may also derive from a builtin such as ``ValueError``);
    the CLIs catch this base class, print ``error: <message>`` and exit with status 2.
    """
