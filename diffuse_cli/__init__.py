"""diffuse_cli: denoise signals, audio and images with a step-conditioned diffusion model."""

__version__ = "0.1.0"
