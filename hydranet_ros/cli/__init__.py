"""Command-line front ends; each is a console script declared in setup.py."""

from ..entry_points import guard_run_as_module

guard_run_as_module()
