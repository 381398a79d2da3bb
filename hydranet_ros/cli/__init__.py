"""Command-line front ends; each is a console script declared in setup.py."""
