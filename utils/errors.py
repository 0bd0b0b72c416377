"""The one error a user's mistake raises: bad data, a flag that cannot work, a missing file. Scripts print its
message as one line and exit 2 (utils/cli.py run_guarded)."""


class DataError(Exception):
    """A problem with the user's data or flags; its message names the file or flag and the fix."""
