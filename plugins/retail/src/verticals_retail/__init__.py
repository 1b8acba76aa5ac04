"""verticals-retail: next-item recommendations from interaction logs, top-k inside the ONNX graph."""
