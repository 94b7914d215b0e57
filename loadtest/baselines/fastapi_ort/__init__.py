"""The seed project's architecture (FastAPI + ONNX Runtime), kept only as a comparator."""
