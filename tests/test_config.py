import pytest

from bench.core.config import (
    SweepConfig,
    TrainConfig,
    from_dict,
    load_sweep_config,
    parse_set_option,
)
from bench.core.errors import BenchError
from bench.harness.sweep import parse_seeds, split_model_list


def test_defaults_and_file_changes(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("models: [ae, {name: vae, beta: 4}]\ntrain: {epochs: 3}\n")
    cfg = load_sweep_config(path, {"eval.fid_samples": "200"})
    assert cfg.name == "exp"
    assert cfg.models == ["ae", "vae:beta=4"]
    assert cfg.train.epochs == 3 and cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.eval.fid_samples == 200


def test_unknown_key_names_key_and_accepted():
    with pytest.raises(BenchError, match=r"unknown key 'epoch' in config.train; accepted: epochs"):
        from_dict(SweepConfig, {"train": {"epoch": 3}}, "config")


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train": {"epochs": "three"}}, "config.train.epochs: expected int"),
        ({"train": {"epochs": 2.5}}, "expected an integer"),
        ({"data": {"hflip": "maybe"}}, "expected true or false"),
        ({"seeds": "a,b"}, "config.seeds"),
        ({"train": 5}, "expected a mapping"),
    ],
)
def test_wrong_types(raw, message):
    with pytest.raises(BenchError, match=message):
        from_dict(SweepConfig, raw, "config")


def test_bad_files(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        load_sweep_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(BenchError, match="not valid YAML"):
        load_sweep_config(bad)


def test_set_option_and_lists():
    assert parse_set_option(("train.epochs=3", "data.hflip=true")) == {
        "train.epochs": 3,
        "data.hflip": True,
    }
    with pytest.raises(BenchError, match="SECTION.KEY=VALUE"):
        parse_set_option(("epochs",))
    assert split_model_list("ae,vae:beta=4,kl_warmup_epochs=2,gan") == [
        "ae",
        "vae:beta=4,kl_warmup_epochs=2",
        "gan",
    ]
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,5") == [0, 5]
    with pytest.raises(BenchError):
        parse_seeds("x")
