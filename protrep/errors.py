"""Exceptions raised for bad input."""

__all__ = ["DataError"]


class DataError(ValueError):
    """Input data that cannot be used as given.

    The message always names the offending file (or folder) and says what is wrong
    with it, so that a user can fix the input without reading a traceback.
    """

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
