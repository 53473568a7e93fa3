"""A browser-native LLM app: Python in the page (Pyodide) over web-llm on the page's WebGPU device.

Importing ``app`` is cheap on purpose: submodules are imported where they are first needed.
"""

__version__ = "0.1.0"
