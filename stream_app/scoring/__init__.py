"""Sentiment scoring: text normalization and the ONNX model runtime."""
