"""Decoder compression: a tiny decoder distilled against a model's full VAE decoder (``turbo-edge decoder train``)."""
