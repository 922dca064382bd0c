"""User-facing errors. The CLI prints these as one clear line (no traceback)."""


class OdkdError(Exception):
    """Base class of errors caused by user input (files, configs, checkpoints)."""


class DataError(OdkdError):
    """A dataset file is malformed; the message names the file and the field."""


class CheckpointError(OdkdError):
    """A checkpoint cannot be read or does not match the model (missing/unexpected keys)."""
