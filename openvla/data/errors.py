"""The one exception type of the data package: bad raw episodes, bad RLDS files, unknown names.

It subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working; messages always name the
file (or dataset) and the problem, e.g. ``demo.hdf5:data/demo_3: actions has shape (120, 6), expected (T, 7)``.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset input is missing, malformed or inconsistent; the message names the file and the problem."""
