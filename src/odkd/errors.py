"""User-facing errors. The CLI prints these as one clear line (no traceback)."""


class OdkdError(Exception):
    """Base class of errors caused by user input (files, configs, checkpoints)."""


class DataError(OdkdError):
    """A dataset file is malformed; the message names the file and the field."""


class CheckpointError(OdkdError):
    """A checkpoint cannot be read or does not match the model (missing/unexpected keys)."""


class NonFiniteError(OdkdError, FloatingPointError):
    """Training diverged (non-finite loss or model); usually train.lr is too high."""


def one_line(e: BaseException) -> str:
    """``e``'s message for the CLI's one-line report.

    A DataLoader worker's error is re-raised by torch in the main process as the same class
    with the worker's whole formatted traceback as its message; only its last line (the
    original ``Class: message``) says what is wrong, so the rest is dropped.
    """
    text = str(e).strip()
    if "Traceback (most recent call last)" in text:
        last = text.splitlines()[-1]
        head, sep, msg = last.partition(": ")
        text = msg if sep and head.rsplit(".", 1)[-1] == type(e).__name__ else last
    return " ".join(text.split("\n"))
