"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad user input: a file, an option value or a model that cannot be used.

    The message is one line that names the file (or option) and says how to fix it.
    """


class Interrupted(Exception):
    """Raised when SIGINT/SIGTERM stopped a long job after it saved its state."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
