"""How good is a DiT teacher run's causal autoencoder so far: PSNR and the held-out evaluator on its reconstructions.

Encodes val clips (9 frames: the lead-in frame, then the world's 8) with the run's latest autoencoder checkpoint,
decodes them, and scores frames 1..8 with the held-out evaluator (the ground truth scores 1.0 / 1.0). Decides when the
`teacher train --family wan` autoencoder phase is good enough to start the transformer phase.

    python benchmarks/check_dit_vae.py --run runs/dit_teacher [--clips 96] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from turbo_edge.core import checkpoint as ckpt
from turbo_edge.core import wan, world
from turbo_edge.core.autoencoders import CausalWan
from turbo_edge.core.evaluator import Evaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a `teacher train --family wan` run directory")
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = wan.TinyWanSpec()
    last = ckpt.latest_checkpoint(Path(args.run) / "vae_ckpt")
    if last is None:
        raise SystemExit(f"no autoencoder checkpoint under {args.run}/vae_ckpt")
    vae = wan.build_vae(spec)
    vae.load_state_dict(load_file(str(last / "vae.safetensors")))
    vae.eval()
    attrs, clips = world.batch("val", 0, range(args.clips), spec.world_config())
    ae = CausalWan()
    with torch.no_grad():
        rec = ae.decode(vae, ae.encode(vae, clips).permute(0, 2, 1, 3, 4))
    mse = float(((rec.astype(np.float64) - clips) ** 2).mean())
    scored = Evaluator().score(rec[:, spec.lead_in:], attrs)
    print(json.dumps({"checkpoint": str(last), "clips": args.clips, "psnr_db": 10 * np.log10(255**2 / mse),
                      "content_acc": scored.content_acc, "motion_acc": scored.motion_acc}, indent=1))


if __name__ == "__main__":
    main()
