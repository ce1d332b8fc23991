"""User-facing errors: the CLI prints these as one line and exits 2."""


class CdanError(Exception):
    """A problem the user can fix (bad path, missing weights, wrong shape). Printed without traceback."""


class MissingWeightsError(CdanError):
    """A pretrained weights file is not available offline. The message names the file to provide."""
