"""The one exception type for a user's mistake.

Raise `UserError("path/to/file:12: key 'x' is not a number")` anywhere; the command line prints it as
one line and exits with status 2, never with a traceback. Bugs stay ordinary exceptions.
"""


class UserError(Exception):
    """A problem with the user's input (a path, a line, a key), reported in one line, exit status 2."""
