"""The one exception type for a user's mistake.

Raise `UserError("path/to/file:12: key 'x' is not a number")` anywhere; the command line prints it as
one line and exits with status 2, never with a traceback. Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A problem with the user's input (a path, a line, a key), reported in one line, exit status 2."""


class Terminated(BaseException):
    """A signal that stops a command now (SIGTERM to `touchstone run`); the command line exits with
    128 + the signal's number, the shell's convention. A BaseException, so that no `except Exception`
    on the way up swallows it, while `finally` blocks still run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
