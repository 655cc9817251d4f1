"""`python -m hedgespec_cli`: the `hedgespec` command without an installed entry point."""

from hedgespec_cli.cli.app import main

if __name__ == "__main__":
    main()
