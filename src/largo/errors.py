"""User-facing errors: anything the user can fix by changing an argument, a file or a path.

The CLI turns a `LargoError` into one line on stderr and exit code 2; every other exception is a bug and
keeps its traceback.
"""


class LargoError(Exception):
    """A mistake in the user's input (bad path, unknown name, value out of range, corrupt file)."""
