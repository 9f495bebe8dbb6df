"""Debugging and inspection tools behind ``irc verify``, ``irc profile`` and ``irc dump --format dot|onnx``.

- ``verify``: run the pass pipeline one pass at a time against the reference interpreter and name the
  first pass (and tensor) that changes the outputs; ``bisect_kernels`` checks each compiled kernel
  against its op's reference on the same operands.
- ``profile``: per-node times of the compiled model through the executor's step hook.
- ``dot``: the graph as Graphviz DOT; ``to_onnx``: the graph written back as an ONNX model.
- ``progress``: the progress line ``irc compile`` shows on a terminal.
"""
