"""The compiler: ONNX/TFLite model -> Model Library Format archive with a static runtime."""
