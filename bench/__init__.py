"""dogbench: AE vs VAE vs GAN on pictures of dogs, under one harness."""

__version__ = "0.1.0"
