"""TC2 (Task Conflict Calibration) for self-supervised learning."""
from importlib.metadata import version as _version, PackageNotFoundError
try: __version__ = _version("tc2_nb")
except PackageNotFoundError: __version__ = "unknown"
