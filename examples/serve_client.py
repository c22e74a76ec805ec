"""Ask a `turbo-edge serve` server for a clip over HTTP (tritonclient) and write it as a GIF.

    turbo-edge serve --bundle bundles/student &                     # serving ... at http://127.0.0.1:8000/...
    python examples/serve_client.py "a red circle moving left" --seed 3 --out clip.gif

Each row of a request is one clip; ``--seed``, ``--steps`` and ``--guidance`` are optional inputs (left out: the
bundle's defaults), and so is ``--frames`` (the ``num_frames`` input) for a bundle exported for a range of clip lengths. Needs ``pip install 'turbo-edge[serve]'`` (tritonclient) and pillow.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException


def request_clip(client: httpclient.InferenceServerClient, model: str, prompt: str, seed: int | None = None,
                 steps: int | None = None, guidance: float | None = None, frames: int | None = None) -> np.ndarray:
    """uint8 frames [F, H, W, 3] for one prompt; raises ``InferenceServerException`` with the server's message."""
    values = {"prompt": (np.array([[prompt.encode("utf-8")]], dtype=object), "BYTES"),
              "seed": (None if seed is None else np.array([[seed]], dtype=np.int64), "INT64"),
              "steps": (None if steps is None else np.array([[steps]], dtype=np.int32), "INT32"),
              "guidance": (None if guidance is None else np.array([[guidance]], dtype=np.float32), "FP32"),
              "num_frames": (None if frames is None else np.array([[frames]], dtype=np.int32), "INT32")}
    inputs = []
    for name, (array, datatype) in values.items():
        if array is not None:
            tensor = httpclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
    result = client.infer(model, inputs, outputs=[httpclient.InferRequestedOutput("frames")])
    return result.as_numpy("frames")[0]


def write_gif(frames: np.ndarray, path: str, fps: int = 8, scale: int = 4) -> None:
    images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--url", default="127.0.0.1:8000", help="the server's HTTP host:port")
    parser.add_argument("--model", default="turbo_edge", help="the model name given to `turbo-edge serve --model-name`")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--frames", type=int, help="clip length, for a bundle exported with --min-frames / --max-frames")
    parser.add_argument("--out", help="write the clip here as a GIF (default: print its shape only)")
    args = parser.parse_args(argv)
    client = httpclient.InferenceServerClient(url=args.url)
    try:
        frames = request_clip(client, args.model, args.prompt, seed=args.seed, steps=args.steps, guidance=args.guidance, frames=args.frames)
    except InferenceServerException as exc:
        print(f"serve_client: error: {exc.message()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"serve_client: error: cannot reach {args.url} ({exc}); start the server with `turbo-edge serve --bundle B`", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.out:
        write_gif(frames, args.out)
        print(f"wrote {args.out} ({frames.shape[0]} frames, {frames.shape[1]}x{frames.shape[2]})")
    else:
        print(f"frames {list(frames.shape)} {frames.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
