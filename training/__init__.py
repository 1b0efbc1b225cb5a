"""Training side of diamond-price: SQLite rows -> scikit-learn pipeline -> MAE gate -> ONNX registry."""
