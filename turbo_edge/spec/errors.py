"""Runtime errors. Each message says what went wrong and what to do about it (one line, no traceback needed)."""

from __future__ import annotations


class RuntimeInputError(ValueError):
    """A request the bundle cannot serve: empty/unknown-word prompt, unsupported steps, shape outside the profile."""


class BundleError(ValueError):
    """A bundle directory that is missing, incomplete, of another schema, or tampered with (sha256 mismatch)."""


class GenerationCancelled(RuntimeError):
    """A generation its caller cancelled (``Pipeline.run(cancelled=...)`` said so between two denoiser calls)."""


class BackendUnavailableError(RuntimeError):
    """The requested backend's library, provider or device is not present on this machine."""


class ModelLayoutError(ValueError):
    """A model directory is missing, incomplete, not in the diffusers text-to-video layout, or too large for this machine."""


class PlanError(ValueError):
    """A pruning plan that cannot be applied to this architecture (reported before any training)."""


class CardError(ValueError):
    """A model card (``turbo_edge.json``) that is malformed or of a version this build cannot read."""


class UnverifiedBundleWarning(UserWarning):
    """A bundle loaded with ``verify=False`` (``--no-verify``): its graphs run without their sha256 being checked."""


UNVERIFIED = ("--no-verify: the bundle's files are not hash-checked, so a changed or tampered graph runs as it is; "
              "run `turbo-edge verify` on it, or drop --no-verify")
