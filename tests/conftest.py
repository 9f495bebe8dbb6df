"""Test session settings (a private kernel cache so tests never touch the user's) and shared fixtures."""
import importlib.util
import os
import pathlib
import sys
import tempfile

import pytest

os.environ.setdefault("IRC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "irc-test-cache"))


# ---------------------------------------------------------------------------------------------- the model zoo

EXPORT_ZOO = pathlib.Path(__file__).resolve().parent.parent / "tools" / "export_zoo.py"


class Zoo:
    """The models of tools/export_zoo.py, each exported into ``outdir`` the first time a test asks for it."""

    def __init__(self, module, outdir: pathlib.Path):
        self.module, self.outdir, self._paths = module, outdir, {}
        self.names = list(module.ZOO)

    def path(self, name: str, dynamo: bool = False) -> str:
        """The ONNX file of zoo model ``name`` from the TorchScript exporter, or the dynamo one with ``dynamo``."""
        if (name, dynamo) not in self._paths:
            self._paths[name, dynamo] = self.module.export(name, self.outdir, dynamo)
        return self._paths[name, dynamo]

    def inputs(self, name: str, batch: int, seed: int = 0):
        """Random feeds for zoo model ``name``: input name -> array with ``batch`` rows."""
        return self.module.sample_inputs(name, batch, seed)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> Zoo:
    """The exported model zoo (tools/export_zoo.py); tests that use it skip where torch is not installed."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("export_zoo", EXPORT_ZOO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return Zoo(module, tmp_path_factory.mktemp("zoo"))
