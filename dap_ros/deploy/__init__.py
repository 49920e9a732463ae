"""Deployment, the offline work: ONNX export (fp32 and mixed precision) and TensorRT engines
(build, sidecar, cache). Running what is built here is ``dap_ros.runtime``'s job. Importing this
package imports neither onnx nor tensorrt; the modules do:

- ``dap_ros.deploy.onnx_export``     ``export_onnx`` + verification (checker, shapes, ORT parity, ops)
- ``dap_ros.deploy.mixed_precision`` fp16 compute with fp32 islands, for strongly typed TensorRT
- ``dap_ros.deploy.graph_check``     op-type listing, TensorRT op support, control-flow check
- ``dap_ros.deploy.accuracy``        output comparison and tolerances (export check, build gate)
- ``dap_ros.deploy.engine_cache``    sidecar JSON, cache keys, mismatch errors, build-if-missing
- ``dap_ros.deploy.trt_build``       ``build_engine`` (TensorRT 10/11 Python API, strongly typed)

Errors (ExportError, EngineError, ...) are in ``dap_ros.errors`` with the others.
"""
