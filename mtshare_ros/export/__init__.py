"""Exported graphs of the models: ONNX files with a dynamic image width and a JSON metadata file beside each
(``onnx.py``), the ``mtshare export`` command (``cli.py``) and a runner for the exported graphs (``runner.py``).
Depends on models/, sharing/ and tasks/ only: the runtime's ONNX backend builds on it, not the other way."""
