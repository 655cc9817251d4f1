"""The command line. The only package that imports typer.

Command modules import the heavy core (torch, transformers) inside their
command functions so that `hedgespec --help` stays fast.
"""
