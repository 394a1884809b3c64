"""The model zoo. Adding a model: one new file and one ``register_model`` line here."""

from models.ae import AE
from models.dogvae import DogVAE
from models.gan import GAN
from models.registry import MODELS, ModelSpec, build_model, parse_model_spec, register_model
from models.vae import VAE

register_model("ae", AE)
register_model("vae", VAE)
register_model("gan", GAN)
register_model("dogvae", DogVAE)

__all__ = ["MODELS", "ModelSpec", "build_model", "parse_model_spec", "register_model"]
