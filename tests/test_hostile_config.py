"""Hostile configs for lsvit-train: seeds, model_kwargs and YAML files end in one short `error:` line (exit 2)
before anything is built or written."""

import time

import pytest
from helpers_hostile import files, one_error, run_main

from lsvit.trainer.cli import train_main
from lsvit.trainer.config import TrainConfig

pytest_plugins = ["fixtures_train"]


# Defect 12: seeds -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", "99999999999", "4294967296"])
def test_out_of_range_seed_flags_are_one_line(tiny_shards, tmp_path, monkeypatch, capsys, seed):
    code, _, err = run_main(
        train_main, monkeypatch, capsys, "--seed", seed, "--shards", tiny_shards, "--out", tmp_path / "o"
    )
    assert code == 2 and one_error(err) == f"error: seed={seed} must be an integer in 0..4294967295"
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [("abc", "'abc'"), ("1.5", "1.5"), ("true", "True"), ("[1]", "[1]"), ("9" * 5000, None)],
)
def test_non_integer_seed_in_a_config_is_one_line(tiny_shards, tmp_path, monkeypatch, capsys, value, shown):
    (tmp_path / "c.yaml").write_text(f"seed: {value}\n")
    code, _, err = run_main(
        train_main,
        monkeypatch,
        capsys,
        "--config",
        tmp_path / "c.yaml",
        "--shards",
        tiny_shards,
        "--out",
        tmp_path / "o",
    )
    line = one_error(err)
    assert code == 2 and (
        f"seed={shown} must be an integer in 0..4294967295" in line if shown else "4300 digits" in line
    )
    assert len(line) < 300 and not (tmp_path / "o").exists()
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1  # the whole NumPy range is fine


# Defect 14: model_kwargs in configs and on the command line ------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ('{"depth": -1}', "model_kwargs depth=-1 must be in [1, 128]"),
        ('{"patch_size": 64}', "model_kwargs patch_size=64 must be at most img_size=32"),
        (
            '{"checkpoint_path": "x.pt"}',
            "model_kwargs 'checkpoint_path' not accepted by lsvit_tiny_patch16_224; allowed: patch_size, ",
        ),
        ('{"depth": 2.5}', "model_kwargs depth=2.5 must be an integer in [1, 128]"),
        ('{"qkv_bias": "yes"}', "model_kwargs qkv_bias='yes' must be true or false"),
        ('{"in_chans": 1}', "model_kwargs in_chans=1 must be in [3, 3] (frames are RGB)"),
        (
            '{"num_classes": 3}',
            "model_kwargs may not set num_classes; use the options the shards' classes instead",
        ),
        (
            '{"embed_dim": 8192, "depth": 64, "num_heads": 64}',
            "has 53.7B parameters, more than the 4B allowed; lower embed_dim or depth",
        ),
        (
            '{"depth": 2, "depth": 3}',
            "--model-kwargs '{\"depth\": 2, \"depth\": 3}' is not valid JSON (key 'depth' is given twice)",
        ),
    ],
    ids=[
        "negative",
        "patch-over-image",
        "checkpoint_path",
        "float",
        "bool",
        "channels",
        "reserved",
        "too-big",
        "duplicate",
    ],
)
def test_model_kwargs_are_validated(tiny_shards, tmp_path, monkeypatch, capsys, kwargs, message):
    args = ["--model-kwargs", kwargs, "--img-size", "32", "--shards", tiny_shards, "--out", tmp_path / "o"]
    code, _, err = run_main(train_main, monkeypatch, capsys, *args, "--workers", "0", "--device", "cpu")
    line = one_error(err)
    assert code == 2 and message in line, line
    assert files(tmp_path) == []


# Defect 15 and duplicate keys: YAML that would blow up or silently drop a value ----------------------

LAUGHS = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
seed: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LAUGHS, "c.yaml:2: YAML aliases (*a) are not allowed in a config file; write the value out"),
        ("lr: &x 0.1\nmin_lr: *x\n", "c.yaml:2: YAML aliases (*x) are not allowed"),
        (
            "epochs: 2\nlr: 0.1\nepochs: 3\n",
            "c.yaml:3: key 'epochs' is given twice (first on line 1); keep one",
        ),
        ("model_kwargs:\n  depth: 2\n  depth: 3\n", "c.yaml:3: key 'depth' is given twice (first on line 2)"),
        ("batch-size: 2\nbatch_size: 4\n", "'batch-size' and 'batch_size' are the same option; keep one"),
        ("[" * 100000, "nests too deeply; a config is a flat mapping of options"),
        (
            "seed: !!python/object:os.system [echo]\n",
            "is not valid YAML/JSON: could not determine a constructor",
        ),
        ("lr: 0.1\n" + "# padding\n" * 200000, "is larger than 1048576 bytes"),
    ],
    ids=[
        "billion-laughs",
        "alias",
        "duplicate",
        "nested-duplicate",
        "dash-and-underscore",
        "deep",
        "python-tag",
        "huge",
    ],
)
def test_hostile_yaml_is_one_short_line(tiny_shards, tmp_path, monkeypatch, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    t0 = time.perf_counter()
    code, _, err = run_main(
        train_main,
        monkeypatch,
        capsys,
        "--config",
        tmp_path / "c.yaml",
        "--shards",
        tiny_shards,
        "--out",
        tmp_path / "o",
    )
    line = one_error(err)
    assert code == 2 and message in line and len(line) < 400, line
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "o").exists()


def test_device_files_and_bytes_as_configs(tiny_shards, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(train_main, monkeypatch, capsys, "--config", "/dev/zero", "--out", tmp_path / "o")
    assert code == 2 and "config file /dev/zero is larger than 1048576 bytes" in one_error(err)
    (tmp_path / "c.yaml").write_bytes(b"lr: \xff\xfe\n")
    code, _, err = run_main(
        train_main, monkeypatch, capsys, "--config", tmp_path / "c.yaml", "--out", tmp_path / "o"
    )
    assert code == 2 and "is not UTF-8 text (byte 4)" in one_error(err)
    assert not (tmp_path / "o").exists()
