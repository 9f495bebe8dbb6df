"""The one exception family irc raises on purpose."""


class IrcError(Exception):
    """Base of every error irc raises on purpose: bad model, bad artifact, bad input, unsupported op.

    The message names what is at fault (node, input, op, byte offset) so it can be printed as one line.
    """


class UnsupportedError(IrcError):
    """The model uses ops or features irc cannot compile; the message lists all of them at once."""


class ArtifactError(IrcError):
    """A model.bin file is damaged, truncated or of an unknown version."""


class InputError(IrcError):
    """Feeds given to run() do not match the model's inputs."""
