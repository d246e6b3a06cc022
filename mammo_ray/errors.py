"""Named errors of mammo_ray.

Every error a user can cause by what they pass in (a file, a key, a value) is a
:class:`MammoRayError`; the command-line entry points print its message on one line and
exit with status 2 (see :mod:`mammo_ray.cli`).
"""

from __future__ import annotations

__all__ = [
    "MammoRayError",
    "ConfigError",
    "MiasFormatError",
    "ArchiveError",
    "FetchError",
    "CacheError",
    "ModelError",
    "CheckpointError",
    "SearchSpaceError",
    "Interrupted",
]


class MammoRayError(Exception):
    """Base class of the errors that name a bad input and end a command with exit code 2."""


class ConfigError(MammoRayError):
    """A configuration file, key or value is invalid."""


class MiasFormatError(MammoRayError):
    """MIAS data (Info.txt, a PGM image, the file set) does not match its documented format."""


class ArchiveError(MammoRayError):
    """An archive cannot be read safely (unsupported type, unsafe or empty member list)."""


class FetchError(MammoRayError):
    """A download failed or produced something that is not a MIAS archive."""


class CacheError(MammoRayError):
    """A preprocessing cache is missing, incomplete or was written by another configuration."""


class ModelError(MammoRayError):
    """A backbone cannot be built: unknown name, or pretrained weights that cannot be had."""


class CheckpointError(MammoRayError):
    """A checkpoint file is missing, unreadable or does not fit the model it is loaded into."""


class SearchSpaceError(ConfigError):
    """A search space file has an unknown key, a bad range, or a value no trial can use."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a command after it saved what lets it continue; the message
    says how. The command line prints it and exits 130, like any Ctrl-C."""
