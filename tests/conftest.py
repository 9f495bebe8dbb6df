"""Test session settings: a private kernel cache so tests never touch the user's."""
import os
import tempfile

os.environ.setdefault("IRC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "irc-test-cache"))
