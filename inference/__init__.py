"""Serving side of diamond-price: a Starlette app over onnxruntime.

This package must stay importable without scikit-learn, pandas, skl2onnx or onnx:
the serving image carries none of them.
"""
