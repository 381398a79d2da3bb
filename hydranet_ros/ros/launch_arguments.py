"""Launch arguments read as the nodes' parameters need them, shared by the launch files.

Launch hands every argument over as text, and launch_ros reads a text parameter as YAML: an
argument such as ``rate:=3`` reaches a double parameter as an integer and ends the node, and
``publish_pointcloud:=1`` reaches a boolean as text. These convert first, and refuse what they
cannot read with the argument's name (launch prints the one line and ends).
"""

from __future__ import annotations

from launch.substitutions import LaunchConfiguration

SWITCH_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
#: The severities ``--ros-args --log-level`` takes.
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def switch(context, name: str) -> bool:
    """A true/false argument (also 1/0, yes/no) as a boolean; anything else is refused
    rather than read as false."""
    text = LaunchConfiguration(name).perform(context).strip()
    if text.lower() not in SWITCH_WORDS:
        raise ValueError(f"{name}:={text!r} is not a switch: use true or false")
    return SWITCH_WORDS[text.lower()]


def number(context, name: str) -> float:
    """A numeric argument as the double its parameter declares."""
    text = LaunchConfiguration(name).perform(context).strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}:={text!r} is not a number") from None


def log_level(context, name: str = "log_level") -> str:
    """A log level as ``--ros-args --log-level`` takes it; anything else is refused here in
    one line, where the node would end with rcl's error instead."""
    text = LaunchConfiguration(name).perform(context).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"{name}:={text!r} is not a log level: use {', '.join(LOG_LEVELS)}")
    return text
