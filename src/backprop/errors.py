"""The mistakes a user can fix, as one hierarchy.

Every front door (``backprop``, ``backprop-experiment``) catches :class:`UserError`
once: its message is the whole report, printed as one line, exit status 2.  Any
other exception is a bug in this code and keeps its traceback (exit status 1), so
none of these classes derives from ``ValueError``: a NumPy shape bug must never
pass for a bad setting.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message says what, where, and what to do."""


class ConfigError(UserError):
    """A bad setting.  ``key`` is the dotted key it is about, when there is one.

    The message reads ``<key> <text>`` (``lr must be a number > 0, got -1.0``), or
    ``text`` with ``{key}`` and ``{section}`` filled in where it names them;
    :meth:`within` puts the key under its section and :meth:`at` names the file.
    """

    def __init__(self, text: str, key: str | None = None, source: str | None = None) -> None:
        self.text, self.key, self.source = text, key, source
        where = f"{source}: " if source else ""
        if key and "{key}" in text:
            section = key.rsplit(".", 1)[0] if "." in key else "the settings"
            message = text.replace("{key}", key).replace("{section}", section)
        else:
            message = f"{key} {text}" if key else text
        super().__init__(where + message)

    def within(self, section: str) -> ConfigError:
        key = f"{section}.{self.key}" if self.key else None
        return ConfigError(self.text, key, self.source)

    def at(self, source: str) -> ConfigError:
        return ConfigError(self.text, self.key, source)


class DataError(UserError):
    """A problem with the user's data file; the message says where and what to do."""


class InputError(DataError):
    """Rows to predict that do not fit the model."""


class OutputError(UserError):
    """A place to write that cannot take the output: a folder where a file goes, a folder of
    the user's files, no permission, no space left."""


class ModelFileError(UserError):
    """A model folder or checkpoint that is missing, damaged or inconsistent."""


class TrackingError(UserError):
    """A tracking server that does not answer, or a run, model or name it does not have."""


class TrainingDiverged(UserError):
    """The loss or the weights stopped being finite numbers; the message suggests a smaller lr."""
