"""Torch-free contracts every other layer shares: stage configs, the parameterisation maths, noise, the tokenizer,
the bundle schema, the model card and pruning-plan data. Imports nothing from ``turbo_edge`` outside ``spec``."""
