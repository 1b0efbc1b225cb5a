"""The Open Inference Protocol (KServe V2): bodies, binary tensors, request parsing, tensors, endpoints."""
