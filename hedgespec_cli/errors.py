"""Error classes. Every message says what is wrong and how to fix it.

Library code raises these; the CLI catches `HedgespecError` once, prints the
message as one line on stderr and exits non-zero.
"""


class HedgespecError(Exception):
    """Base class: a user-facing problem with a fix-it message."""

    exit_code = 2


class ConfigError(HedgespecError):
    """A setting, profile or option is invalid."""


class CheckpointError(HedgespecError):
    """A model checkpoint is missing, unreadable or not a checkpoint."""


class VocabMismatchError(CheckpointError):
    """A drafter's tokenizer/vocabulary differs from the target's."""


class WorkloadError(HedgespecError):
    """A workload or prompt is unusable."""


class RunDirError(HedgespecError):
    """A run directory or results file is unusable."""


class CorpusError(HedgespecError):
    """A zoo corpus source cannot be fetched, unpacked or read."""


class RegressionError(HedgespecError):
    """`compare --fail-on`: a metric regressed beyond its threshold, significantly.

    Exit code 1, not 2: the inputs were fine, the candidate is worse. Raised
    (rather than typer.Exit(1)) so the CLI boundary prints the one-line reason.
    """

    exit_code = 1


class BenchInterrupted(HedgespecError):
    """Ctrl-C or SIGTERM: what was measured is saved (a bench run continues with --resume)."""

    exit_code = 130
