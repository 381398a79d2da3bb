"""The one exception family that front ends (CLIs, nodes) turn into a single clear line."""


class HydraNetError(Exception):
    """A problem the user can fix (bad file, bad argument, no network); never a bug."""


def one_line(exc: BaseException) -> str:
    """An exception's text on one line: some libraries' (rosbags' YAML errors) span several."""
    return " ".join(str(exc).split())
