from dataclasses import dataclass

import pytest

from dlconcepts.config import fields_of, load_toml, param, parse_set_pairs, resolve, to_dict
from dlconcepts.errors import ConfigError


@dataclass(frozen=True)
class Toy:
    hidden: tuple[int, ...] = param((30, 15), "widths", positive=True)
    lr: float = param(0.01, "learning rate", positive=True)
    epochs: int = param(100, "epochs", positive=True)
    activation: str = param("relu", "act", choices=("relu", "tanh"))
    standardize: bool = param(True, "scale")
    patience: int = param(0, "patience", minimum=0)


def test_defaults_and_help():
    cfg = resolve(Toy)
    assert cfg == Toy()
    infos = {f.name: f for f in fields_of(Toy)}
    assert infos["lr"].help == "learning rate"
    assert "> 0" in infos["lr"].accepted()


def test_set_pairs_are_typed():
    cfg = resolve(Toy, set_pairs=parse_set_pairs(["hidden=64,32,8", "lr=1e-4", "epochs=7", "standardize=false", "activation=tanh"]))
    assert cfg.hidden == (64, 32, 8)
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float)
    assert cfg.epochs == 7 and cfg.standardize is False and cfg.activation == "tanh"


def test_order_defaults_then_mappings_then_set():
    cfg = resolve(Toy, {"epochs": 5, "lr": 0.5}, {"epochs": 6}, set_pairs=[("epochs", "7")])
    assert (cfg.epochs, cfg.lr) == (7, 0.5)


def test_toml_types_are_checked():
    assert resolve(Toy, {"hidden": [4, 2], "lr": 1}).hidden == (4, 2)  # int is a fine float
    with pytest.raises(ConfigError, match="epochs=1.5 is not an integer"):
        resolve(Toy, {"epochs": 1.5})
    with pytest.raises(ConfigError, match="is not true or false"):
        resolve(Toy, {"standardize": "yes please"})


@pytest.mark.parametrize(
    "pair, message",
    [
        ("lrr=0.1", "unknown config key 'lrr'.*did you mean 'lr'.*accepted keys: hidden, lr"),
        ("epochs=abc", "epochs='abc' is not an integer; expected an integer > 0"),
        ("lr=-1", "lr=-1.0 is impossible: it must be > 0"),
        ("epochs=0", "epochs=0 is impossible: it must be > 0"),
        ("patience=-2", "patience=-2 is impossible: it must be >= 0"),
        ("activation=tahn", "activation=tahn is not accepted \\(did you mean 'tanh'\\?\\); expected one of relu, tanh"),
        ("hidden=30,0", "hidden=0 is impossible"),
        ("hidden=", "hidden is empty"),
        ("lr=nan", "lr=nan is not a finite number"),
    ],
)
def test_bad_values_name_the_problem(pair, message):
    with pytest.raises(ConfigError, match=message):
        resolve(Toy, set_pairs=parse_set_pairs([pair]), owner="toy")


def test_set_without_equals_is_refused():
    with pytest.raises(ConfigError, match="is not key=value"):
        parse_set_pairs(["epochs"])


def test_load_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('epochs = 3\nhidden = [8, 4]\n[other]\nx = 1\n')
    assert load_toml(path)["hidden"] == [8, 4]
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    path.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)


def test_to_dict_is_json_ready():
    assert to_dict(Toy())["hidden"] == [30, 15]


@dataclass(frozen=True)
class WithOptional:
    target: float | None = param(None, "a level to reach, or none", minimum=-1000.0)


def test_an_optional_number_takes_none_from_set_and_python_and_keeps_its_limits():
    assert resolve(WithOptional).target is None
    assert resolve(WithOptional, set_pairs=[("target", "-90")]).target == -90.0
    assert resolve(WithOptional, {"target": 5}, set_pairs=[("target", "none")]).target is None
    assert resolve(WithOptional, {"target": None}).target is None  # a resumed run's config.json holds null
    assert to_dict(resolve(WithOptional, {"target": 3})) == {"target": 3.0}
    with pytest.raises(ConfigError, match=r"target='high' is not a number or none; expected a number or none >= -1000 \(default: none\)"):
        resolve(WithOptional, set_pairs=[("target", "high")])
    with pytest.raises(ConfigError, match=r"target=-5000\.0 is impossible"):
        resolve(WithOptional, {"target": -5000.0})


def test_check_false_skips_only_the_configs_own_check():
    @dataclass(frozen=True)
    class Checked:
        n: int = param(1, "n", positive=True)

        def check(self):
            raise ConfigError("whole config refused")

    assert resolve(Checked, check=False).n == 1
    with pytest.raises(ConfigError, match="whole config refused"):
        resolve(Checked)
    with pytest.raises(ConfigError, match="n=0 is impossible"):
        resolve(Checked, {"n": 0}, check=False)
