"""hedgespec: benchmark online drafter selection for speculative decoding."""

__version__ = "0.1.0"
