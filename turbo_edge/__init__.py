"""turbo-edge: distil, prune, export and run few-step text-to-video diffusion students at the edge."""

__version__ = "0.3.0"
