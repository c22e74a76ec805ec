"""The thin runtime: a bundle -> frames, with no torch (numpy + ONNX Runtime / OpenVINO / TensorRT).

    from turbo_edge.runtime import Pipeline, write_video
    pipe = Pipeline.from_bundle("bundles/student", backend="openvino", precision="int8", threads=2)
    write_video(pipe.generate("a red circle moving left", steps=4, seed=0), "clip.mp4", fps=8)

It depends on ``turbo_edge.spec`` only; a test imports it with torch made unimportable.
"""

from turbo_edge.runtime.pipeline import GenerationResult, Pipeline, PromptTruncatedWarning
from turbo_edge.runtime.video import write_video

__all__ = ["GenerationResult", "Pipeline", "PromptTruncatedWarning", "write_video"]
