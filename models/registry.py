"""Models registered by name (torch-fidelity style): a dict filled by a validating function."""

import dataclasses
from dataclasses import dataclass

from bench.core.config import from_dict
from bench.core.errors import BenchError
from models.base import GenerativeModel, ModelConfig


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user names it: 'vae:beta=4' -> name 'vae', params {'beta': '4'}."""

    name: str
    params: dict

    @property
    def label(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.params.items())


MODELS: dict[str, type[GenerativeModel]] = {}


def register_model(name: str, cls: type[GenerativeModel]) -> None:
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"model name {name!r} must be a lowercase identifier")
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered")
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        raise TypeError(f"{cls!r} is not a GenerativeModel")
    if not (
        dataclasses.is_dataclass(cls.config_class) and issubclass(cls.config_class, ModelConfig)
    ):
        raise TypeError(f"{cls.__name__}.config_class must be a ModelConfig dataclass")
    _check_capabilities(cls)
    MODELS[name] = cls


def _check_capabilities(cls: type[GenerativeModel]) -> None:
    """A declared capability must come with the method that provides it: callers trust the
    declaration and would otherwise get None codes or NotImplementedError mid-evaluation."""
    for flag, method in (("has_encoder", "encode"), ("has_posterior", "posterior")):
        if getattr(cls, flag) and getattr(cls, method) is getattr(GenerativeModel, method):
            raise TypeError(f"{cls.__name__} declares {flag} but does not define {method}()")
    if cls.has_posterior and not cls.has_encoder:
        raise TypeError(f"{cls.__name__} declares has_posterior, which needs has_encoder")


def parse_model_spec(text: str) -> ModelSpec:
    name, _, rest = text.strip().partition(":")
    if name not in MODELS:
        raise BenchError(f"unknown model {name!r}; accepted: {', '.join(sorted(MODELS))}")
    params = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise BenchError(f"model {text!r}: expected KEY=VALUE after ':', e.g. vae:beta=4")
        params[key.strip()] = value.strip()
    spec = ModelSpec(name, params)
    model_config(spec, {})  # validate keys and types now, before anything runs
    return spec


def model_config(spec: ModelSpec, shared: dict) -> ModelConfig:
    """Config of one model: class defaults <- shared backbone settings <- the spec's params."""
    cls = MODELS[spec.name].config_class
    return from_dict(cls, {**shared, **spec.params, "name": spec.name}, f"model {spec.label!r}")


def build_model(spec: ModelSpec, shared: dict, image_size: int) -> GenerativeModel:
    return MODELS[spec.name](model_config(spec, shared), image_size)
