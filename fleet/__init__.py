"""Fleet: decide which component versions every customer instance runs, then roll them out."""

__version__ = "0.1.0"
