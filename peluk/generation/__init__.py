"""Generation: ``generate_step`` (prefill, then one token per step), ``generate``, ``stream``."""

from peluk.generation.generate import GenerationError, generate, generate_step, stream

__all__ = ["generate", "generate_step", "stream", "GenerationError"]
