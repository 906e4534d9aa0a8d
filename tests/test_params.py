"""capture/params.py and paramfiles.py: hyperparameters from real command lines, config files,
Hydra's resolved config and the script itself."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from repro.capture import paramfiles, params

# command line -> (values, ambiguous raw words, words that are no parameter)
# Real command lines, from the READMEs and docs of the projects they name.
TABLE: list[tuple[str, dict[str, Any], dict[str, list[str]], list[str]]] = [
    # 1. pytorch/examples mnist (argparse)
    ("python main.py --batch-size 64 --epochs 14 --lr 1.0 --gamma 0.7 --save-model",
     {"batch_size": 64, "epochs": 14, "lr": 1.0, "gamma": 0.7, "save_model": True}, {}, []),
    # 2. pytorch/examples imagenet: `--rank 0 /data/imagenet` could be rank=0 + a positional, or
    #    a flag + two positionals: recorded raw
    ("python main.py -a resnet18 --lr 0.1 --epochs 90 -b 256 --dist-url tcp://127.0.0.1:23456 "
     "--dist-backend nccl --multiprocessing-distributed --world-size 1 --rank 0 /data/imagenet",
     {"a": "resnet18", "lr": 0.1, "epochs": 90, "b": 256, "dist_url": "tcp://127.0.0.1:23456",
      "dist_backend": "nccl", "multiprocessing_distributed": True, "world_size": 1},
     {"rank": ["--rank", "0", "/data/imagenet"]}, []),
    # 3. HF transformers run_glue (TrainingArguments)
    ("python run_glue.py --model_name_or_path bert-base-cased --task_name mrpc --do_train "
     "--do_eval --max_seq_length 128 --per_device_train_batch_size 8 --learning_rate 5e-5 "
     "--num_train_epochs 3 --output_dir /tmp/mrpc/",
     {"model_name_or_path": "bert-base-cased", "task_name": "mrpc", "do_train": True,
      "do_eval": True, "max_seq_length": 128, "per_device_train_batch_size": 8,
      "learning_rate": 5e-5, "num_train_epochs": 3, "output_dir": "/tmp/mrpc/"}, {}, []),
    # 4. HF run_clm with bool fields written out and a `none` choice
    ("python run_clm.py --model_name_or_path gpt2 --dataset_name wikitext "
     "--per_device_eval_batch_size 8 --do_eval --overwrite_output_dir --use_fast_tokenizer False "
     "--report_to none --save_steps 500 --logging_steps 10 --output_dir /tmp/test-clm",
     {"model_name_or_path": "gpt2", "dataset_name": "wikitext", "per_device_eval_batch_size": 8,
      "do_eval": True, "overwrite_output_dir": True, "use_fast_tokenizer": False,
      "report_to": "none", "save_steps": 500, "logging_steps": 10,
      "output_dir": "/tmp/test-clm"}, {}, []),
    # 5. HF + DeepSpeed launcher
    ("deepspeed --num_gpus=2 run_translation.py --deepspeed ds_config_zero3.json "
     "--model_name_or_path t5-small --per_device_train_batch_size 1 --output_dir output_dir "
     "--overwrite_output_dir --fp16 --do_train --max_train_samples 500 --num_train_epochs 1",
     {"deepspeed": "ds_config_zero3.json", "model_name_or_path": "t5-small",
      "per_device_train_batch_size": 1, "output_dir": "output_dir", "overwrite_output_dir": True,
      "fp16": True, "do_train": True, "max_train_samples": 500, "num_train_epochs": 1}, {}, []),
    # 6. DeepSpeed's own flags
    ("deepspeed --num_gpus 2 --master_port 29501 train.py --deepspeed --deepspeed_config "
     "ds_config.json --epochs 2",
     {"deepspeed": True, "deepspeed_config": "ds_config.json", "epochs": 2}, {}, []),
    # 7. accelerate (its --config_file belongs to the launcher, not the script)
    ("accelerate launch --config_file default_config.yaml --num_processes 2 --mixed_precision "
     "fp16 run_no_trainer.py --model_name_or_path gpt2 --per_device_train_batch_size 4",
     {"model_name_or_path": "gpt2", "per_device_train_batch_size": 4}, {}, []),
    # 8. accelerate with launcher flags
    ("accelerate launch --multi_gpu --cpu train.py --lr 3e-4 --with_tracking",
     {"lr": 3e-4, "with_tracking": True}, {}, []),
    # 9. torchrun (nanoGPT): a positional config script, `--key=value` overrides
    ("torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py --compile=False "
     "--batch_size=12",
     {"compile": False, "batch_size": 12}, {}, ["config/train_gpt2.py"]),
    # 10. torchrun, multi-node spelling with values
    ("torchrun --nnodes 2 --nproc-per-node 4 --rdzv-id 42 --rdzv-backend c10d "
     "--rdzv-endpoint host:29400 train.py --lr 1e-3 --batch_size 64",
     {"lr": 1e-3, "batch_size": 64}, {}, []),
    # 11. nanoGPT on CPU
    ("python train.py config/train_shakespeare_char.py --device=cpu --compile=False "
     "--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 "
     "--max_iters=2000 --dropout=0.0",
     {"device": "cpu", "compile": False, "eval_iters": 20, "log_interval": 1, "block_size": 64,
      "batch_size": 12, "n_layer": 4, "max_iters": 2000, "dropout": 0.0}, {},
     ["config/train_shakespeare_char.py"]),
    # 12. python -m torch.distributed.launch (DeiT)
    ("python -m torch.distributed.launch --nproc_per_node=4 --use_env main.py --model "
     "deit_base_patch16_224 --batch-size 256 --data-path /path/to/imagenet --output_dir out",
     {"model": "deit_base_patch16_224", "batch_size": 256, "data_path": "/path/to/imagenet",
      "output_dir": "out"}, {}, []),
    # 13. python -m torch.distributed.run with a value option before the script
    ("python -m torch.distributed.run --nproc_per_node 2 train.py --epochs 5",
     {"epochs": 5}, {}, []),
    # 14. python -m a module of the project
    ("python -m src.train --lr 0.001 --epochs 10 --seed 7", {"lr": 0.001, "epochs": 10,
                                                            "seed": 7}, {}, []),
    # 15. Hydra overrides
    ("python my_app.py db=postgresql db.timeout=20 db.user=root",
     {"db": "postgresql", "db.timeout": 20, "db.user": "root"}, {}, []),
    # 16. Hydra multirun: -m is Hydra's, a sweep stays the string it is
    ("python my_app.py --multirun db=mysql,postgresql schema=warehouse",
     {"db": "mysql,postgresql", "schema": "warehouse"}, {}, ["--multirun"]),
    # 17. Hydra append, force-add, delete
    ("python my_app.py +db.driver=mysql ++db.port=3307 ~db.user ~db.pass=x",
     {"db.driver": "mysql", "db.port": 3307, "~db.user": True, "~db.pass": "x"}, {}, []),
    # 18. Hydra experiment with its own settings (hydra.* is not the job's config)
    ("python train.py +experiment=resnet lr=0.1 trainer.max_epochs=10 hydra.run.dir=outputs/x "
     "-m model.layers=[64,128]",
     {"experiment": "resnet", "lr": 0.1, "trainer.max_epochs": 10, "model.layers": [64, 128]},
     {}, ["hydra.run.dir=outputs/x", "-m"]),
    # 19. Hydra with its --config-name and a group override with a slash
    ("python app.py --config-name exp1 model/encoder=resnet optimizer.lr=1e-4",
     {"model/encoder": "resnet", "optimizer.lr": 1e-4}, {}, ["--config-name", "exp1"]),
    # 20. Lightning CLI: sub-command, dotted options, a config file
    ("python main.py fit --model.learning_rate 0.1 --trainer.max_epochs 5 --config config.yaml",
     {"model.learning_rate": 0.1, "trainer.max_epochs": 5, "config": "config.yaml"}, {},
     ["fit"]),
    # 21. fire: a command and `--k=v`
    ("python main.py train --lr=0.01 --epochs=3 --verbose=True",
     {"lr": 0.01, "epochs": 3, "verbose": True}, {}, ["train"]),
    # 22. fire: positionals only
    ("python calculator.py double 10", {}, {}, ["double", "10"]),
    # 23. click: sub-command, dashes, a --no- flag
    ("python cli.py train --lr 0.01 --batch-size 32 --no-shuffle --dropout .1",
     {"lr": 0.01, "batch_size": 32, "no_shuffle": True, "dropout": 0.1}, {}, ["train"]),
    # 24. YOLOv5: config files by option, --img
    ("python train.py --img 640 --batch 16 --epochs 3 --data coco128.yaml --weights yolov5s.pt "
     "--cfg yolov5s.yaml --hyp data/hyps/hyp.scratch-low.yaml",
     {"img": 640, "batch": 16, "epochs": 3, "data": "coco128.yaml", "weights": "yolov5s.pt",
      "cfg": "yolov5s.yaml", "hyp": "data/hyps/hyp.scratch-low.yaml"}, {}, []),
    # 25. detectron2: yacs KEY VALUE pairs after the options cannot be told apart: raw
    ("python tools/train_net.py --config-file configs/faster_rcnn_R_50_FPN_1x.yaml "
     "--num-gpus 8 SOLVER.IMS_PER_BATCH 2 SOLVER.BASE_LR 0.0025",
     {"config_file": "configs/faster_rcnn_R_50_FPN_1x.yaml"},
     {"num_gpus": ["--num-gpus", "8", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.0025"]},
     []),
    # 26. timm through its shell script
    ("./distributed_train.sh 4 --data-dir /data/imagenet --model resnet50 -b 128 --lr 0.5 "
     "--warmup-epochs 5 --weight-decay 1e-4 --sched cosine -j 8 --amp --native-amp",
     {"data_dir": "/data/imagenet", "model": "resnet50", "b": 128, "lr": 0.5,
      "warmup_epochs": 5, "weight_decay": 1e-4, "sched": "cosine", "j": 8, "amp": True,
      "native_amp": True}, {}, ["4"]),
    # 27. timm: a positional first, then options
    ("python train.py /imagenet --model resnet50 --epochs 200 --lr 0.05 --amp -b 256",
     {"model": "resnet50", "epochs": 200, "lr": 0.05, "amp": True, "b": 256}, {}, ["/imagenet"]),
    # 28. fairseq: flags, a tuple and a JSON string stay strings
    ("fairseq-train data-bin/iwslt14 --arch transformer_iwslt_de_en "
     "--share-decoder-input-output-embed --optimizer adam --adam-betas '(0.9, 0.98)' "
     "--clip-norm 0.0 --lr 5e-4 --warmup-updates 4000 --eval-bleu "
     "--eval-bleu-args '{\"beam\": 5}' --maximize-best-checkpoint-metric",
     {"arch": "transformer_iwslt_de_en", "share_decoder_input_output_embed": True,
      "optimizer": "adam", "adam_betas": "(0.9, 0.98)", "clip_norm": 0.0, "lr": 5e-4,
      "warmup_updates": 4000, "eval_bleu": True, "eval_bleu_args": '{"beam": 5}',
      "maximize_best_checkpoint_metric": True}, {}, ["data-bin/iwslt14"]),
    # 29. absl/ml_collections (flax examples): dotted overrides of a config
    ("python main.py --workdir=/tmp/mnist --config=configs/default.py "
     "--config.learning_rate=0.05 --config.num_epochs=5",
     {"workdir": "/tmp/mnist", "config": "configs/default.py", "config.learning_rate": 0.05,
      "config.num_epochs": 5}, {}, []),
    # 30. the brief's own ambiguity: is 3 the value of -v, or a positional?
    ("python script.py -v 3 file.txt", {}, {"v": ["-v", "3", "file.txt"]}, []),
    # 31. a flag-like option followed by a word: flag + positional, or a value?
    ("python train.py --lr 0.1 --verbose data.csv", {"lr": 0.1},
     {"verbose": ["--verbose", "data.csv"]}, []),
    # 32. counted and attached short options
    ("python train.py -vvv -j8 --lr 0.1", {"lr": 0.1}, {"v": ["-vvv"], "j": ["-j8"]}, []),
    # 33. nargs in the middle is a list; at the end it could be value + positionals
    ("python train.py --betas 0.9 0.999 --milestones 30 60 90",
     {"betas": [0.9, 0.999]}, {"milestones": ["--milestones", "30", "60", "90"]}, []),
    # 33b. a run of words that are not all numbers: a list, or a value and positionals?
    ("python train.py --tasks mrpc sst2 --lr 1 --ckpt m.pt data.csv --epochs 3",
     {"lr": 1, "epochs": 3},
     {"tasks": ["--tasks", "mrpc", "sst2"], "ckpt": ["--ckpt", "m.pt", "data.csv"]}, []),
    # 34. repeated options become a list; negative numbers are values
    ("python train.py --tag a --tag b --clip -1 --offset -0.5 --scale 1e-3",
     {"tag": ["a", "b"], "clip": -1, "offset": -0.5, "scale": 1e-3}, {}, []),
    # 35. typing: only where unambiguous
    ("python train.py --seed 007 --mask 0x10 --act None --x null --y TRUE --z inf --w yes "
     "--ids [1,2,3] --pair 1,2",
     {"seed": "007", "mask": "0x10", "act": None, "x": None, "y": True, "z": "inf", "w": "yes",
      "ids": [1, 2, 3], "pair": "1,2"}, {}, []),
    # 36. interpreter options, and `--` ends the script's options
    ("python -u -W ignore train.py --lr 0.1 -- --not-an-option",
     {"lr": 0.1}, {}, ["--", "--not-an-option"]),
    # 37. uv run / env prefixes
    ("uv run train.py --lr 2", {"lr": 2}, {}, []),
    ("env CUDA_VISIBLE_DEVICES=0 python3 train.py --lr 2", {"lr": 2}, {}, []),
    # 38. a shell command line
    ("sh -c 'python train.py --lr 0.1 --epochs 2'", {"lr": 0.1, "epochs": 2}, {}, []),
    # 39. make-style assignments
    ("make train LR=0.1 EPOCHS=3", {"LR": 0.1, "EPOCHS": 3}, {}, ["train"]),
    # 40. an option value that looks like an assignment is the option's
    ("python train.py --tag team=vision --lr 0.1", {"tag": "team=vision", "lr": 0.1}, {}, []),
    # 41. a secret's recorded placeholder is just a string
    ("python train.py --api-key '<secret:$REPRO_SECRET_API_KEY:pbkdf2-sha256:00:11>' --lr 1",
     {"api_key": "<secret:$REPRO_SECRET_API_KEY:pbkdf2-sha256:00:11>", "lr": 1}, {}, []),
    # 42. the same key read two ways is ambiguous, never half a value
    ("python train.py -v 2 -v 3 file.txt", {}, {"v": ["-v", "2", "-v", "3", "file.txt"]}, []),
]


@pytest.mark.parametrize(("line", "values", "ambiguous", "rest"), TABLE,
                         ids=[f"{i + 1}" for i in range(len(TABLE))])
def test_argv_table(line: str, values: dict[str, Any], ambiguous: dict[str, list[str]],
                    rest: list[str]) -> None:
    parsed = params.parse_argv(shlex.split(line))
    assert parsed.parsed
    assert parsed.values == values
    assert {k: type(v) for k, v in parsed.values.items()} == \
        {k: type(v) for k, v in values.items()}  # 1.0 is a float, not an int that compares equal
    assert parsed.ambiguous == ambiguous
    assert list(parsed.args) == rest


def test_table_is_large() -> None:
    assert len(TABLE) >= 30


def test_a_long_value_is_kept_as_a_summary() -> None:
    prompt = "x" * 5000
    got = params.parse_argv(["python", "t.py", "--prompt", prompt, "--lr", "1"]).values
    assert got["prompt"].startswith("<string of 5000 characters, sha256:") and got["lr"] == 1


@pytest.mark.parametrize(("line", "program"), [
    ("python -u train.py --lr 1", ["python", "-u", "train.py"]),
    ("torchrun --nproc_per_node=2 train.py --lr 1", ["torchrun", "--nproc_per_node=2", "train.py"]),
    ("accelerate launch --num_processes 2 t.py --lr 1",
     ["accelerate", "launch", "--num_processes", "2", "t.py"]),
    ("python -m pkg.train --lr 1", ["python", "-m", "pkg.train"]),
    ("torchrun --no-python python t.py --lr 1", ["torchrun", "--no-python", "python", "t.py"]),
])
def test_program_is_what_starts_the_script(line: str, program: list[str]) -> None:
    assert list(params.parse_argv(shlex.split(line)).program) == program


@pytest.mark.parametrize("line", [
    "bash -c 'python train.py --lr 1 | tee log'",  # a pipeline: whose words are these?
    "accelerate config",  # not a launch
    "python",
    "torchrun --nproc_per_node 2",
])
def test_no_script_no_params(line: str) -> None:
    parsed = params.parse_argv(shlex.split(line))
    assert not parsed.parsed
    assert parsed.values == {} and parsed.ambiguous == {}


def test_config_files_named_by_options() -> None:
    parsed = params.parse_argv(shlex.split(
        "python t.py --config configs/base.yaml --cfg x.json --hyp h.yaml -c a.toml "
        "--data coco.yaml --train-config=tc.yml --weights w.pt"))
    assert parsed.files == ("configs/base.yaml", "x.json", "h.yaml", "a.toml", "tc.yml")


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1), ("-3", -3), ("+4", 4), ("0", 0), ("1.5", 1.5), ("5e-5", 5e-5), ("1E3", 1000.0),
    (".5", 0.5), ("3.", 3.0), ("true", True), ("False", False), ("null", None), ("None", None),
    ("[]", []), ("[a, 2]", ["a", 2]), ("[[1]]", "[[1]]"), ("007", "007"), ("0x1f", "0x1f"),
    ("nan", "nan"), ("1_000", "1_000"), ("", ""), ("none", "none"), ("1e999999", "1e999999"),
    ("9" * 101, "9" * 101),
])
def test_type_value(text: str, value: Any) -> None:
    got = params.type_value(text)
    assert got == value and type(got) is type(value)


def test_flatten() -> None:
    assert params.flatten({"model": {"depth": 12, "act": {"name": "gelu"}}, "lr": 0.1,
                           "layers": [64, 64], "empty": {}}) == \
        {"model.depth": 12, "model.act.name": "gelu", "lr": 0.1, "layers": [64, 64],
         "empty": {}}
    long = list(range(5000))
    summary = params.flatten({"vocab": long})["vocab"]
    assert summary.startswith("<list of 5000 items, sha256:")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_collect_merges_sources_in_order(tmp_path: Path) -> None:
    write(tmp_path / "configs/base.yaml",
          "model:\n  depth: 12\n  width: 256\noptim:\n  lr: 0.1\n  betas: [0.9, 0.99]\n")
    write(tmp_path / "repro_params.toml", "[data]\nsplit = 'train'\nseed = 1\n")
    write(tmp_path / "extra.json", '{"model": {"width": 512}, "dropout": 0.1}')
    script = write(tmp_path / "run" / "params.json", '{"optim": {"lr": 0.05}, "steps": 100}')
    argv = ["python", "t.py", "--config", "configs/base.yaml", "--cfg", "extra.json",
            "--dropout", "0.2", "-v", "3", "x.txt"]
    got = paramfiles.collect(argv, cwd=tmp_path, root=tmp_path, config_files=["repro_params.toml"],
                         script_file=script)
    assert got.warnings == []
    s = got.section
    assert s["values"] == {
        "config": "configs/base.yaml", "cfg": "extra.json", "data.seed": 1, "data.split": "train",
        "dropout": 0.2, "model.depth": 12, "model.width": 512, "optim.betas": [0.9, 0.99],
        "optim.lr": 0.05, "steps": 100}
    assert s["sources"]["model.depth"] == "file:configs/base.yaml"
    assert s["sources"]["model.width"] == "file:extra.json"
    assert s["sources"]["data.split"] == "file:repro_params.toml"
    assert s["sources"]["dropout"] == "argv"
    assert s["sources"]["optim.lr"] == "script"
    assert s["ambiguous"] == {"v": ["-v", "3", "x.txt"]}
    assert s["files"] == ["repro_params.toml", "configs/base.yaml", "extra.json"]
    assert s["program"] == ["python", "t.py"]


def test_script_params_override_an_ambiguous_key(tmp_path: Path) -> None:
    script = write(tmp_path / "params.json", '{"v": 3}')
    got = paramfiles.collect(["python", "t.py", "-v", "3", "x.txt"], cwd=tmp_path, root=tmp_path,
                         script_file=script)
    assert got.section["values"] == {"v": 3} and got.section["ambiguous"] == {}


def test_script_params_as_json_lines(tmp_path: Path) -> None:
    script = write(tmp_path / "params.json", '{"lr": 0.1}\n{"lr": 0.2, "bs": 8}\n')
    got = paramfiles.collect(["python", "t.py"], cwd=tmp_path, root=tmp_path, script_file=script)
    assert got.section["values"] == {"lr": 0.2, "bs": 8}


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("bad.yaml", "a: [1, 2\n", "not valid YAML"),
    ("alias.yaml", "a: &x [1]\nb: *x\n", "alias"),
    ("list.yaml", "- 1\n- 2\n", "not a mapping"),
    ("bad.json", "{", "not valid JSON"),
    ("bad.toml", "a = \n", "not valid TOML"),
])
def test_unreadable_config_is_a_warning(tmp_path: Path, name: str, text: str,
                                        reason: str) -> None:
    write(tmp_path / name, text)
    got = paramfiles.collect(["python", "t.py", "--config", name, "--lr", "1"], cwd=tmp_path,
                         root=tmp_path)
    assert len(got.warnings) == 1 and reason in got.warnings[0] and name in got.warnings[0]
    assert got.section["values"] == {"config": name, "lr": 1}


def test_a_fifo_is_never_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cfg.yaml")
    got = paramfiles.collect(["python", "t.py", "--config", "cfg.yaml"], cwd=tmp_path, root=tmp_path)
    assert "not a regular file" in got.warnings[0]


def test_bad_script_params_is_a_warning(tmp_path: Path) -> None:
    script = write(tmp_path / "params.json", "[1, 2]")
    got = paramfiles.collect(["python", "t.py"], cwd=tmp_path, root=tmp_path, script_file=script)
    assert "REPRO_PARAMS_FILE" in got.warnings[0] and "not a JSON mapping" in got.warnings[0]


def test_secret_keys_in_files_are_redacted(tmp_path: Path) -> None:
    write(tmp_path / "c.yaml", "wandb:\n  api_key: hunter2\n  project: x\n")
    got = paramfiles.collect(["python", "t.py", "--config", "c.yaml"], cwd=tmp_path, root=tmp_path,
                         redact=lambda k, v: "<secret>")
    assert got.section["values"]["wandb.api_key"] == "<secret>"
    assert got.section["values"]["wandb.project"] == "x"
    assert "hunter2" not in json.dumps(got.section)


def test_hydra_config_written_during_the_run(tmp_path: Path) -> None:
    old = write(tmp_path / "outputs/2026-11-30/10-00-00/.hydra/config.yaml", "lr: 9\n")
    os.utime(old, (1, 1))
    since = time.time()
    write(tmp_path / "outputs/2026-12-01/11-40-00/.hydra/config.yaml",
          "lr: 0.1\nmodel:\n  depth: 4\n")
    got = paramfiles.collect(["python", "app.py", "lr=0.1", "model.depth=4"], cwd=tmp_path,
                         root=tmp_path, hydra_since=since)
    assert got.section["values"] == {"lr": 0.1, "model.depth": 4}
    assert got.section["sources"] == {"lr": "hydra", "model.depth": "hydra"}


def test_hydra_run_dir_from_argv(tmp_path: Path) -> None:
    since = time.time()
    write(tmp_path / "runs/a/.hydra/config.yaml", "lr: 0.3\n")
    got = paramfiles.collect(["python", "app.py", "hydra.run.dir=runs/a"], cwd=tmp_path,
                         root=tmp_path, hydra_since=since)
    assert got.section["values"] == {"lr": 0.3}


def test_an_old_hydra_config_is_not_this_runs(tmp_path: Path) -> None:
    old = write(tmp_path / "outputs/2026-11-30/10-00-00/.hydra/config.yaml", "lr: 9\n")
    os.utime(old, (1, 1))
    got = paramfiles.collect(["python", "app.py", "lr=0.1"], cwd=tmp_path, root=tmp_path,
                         hydra_since=time.time())
    assert got.section["values"] == {"lr": 0.1}


# ---------------------------------------------------------------------------------------------
# End to end: real `repro run`s of real scripts in a real git repository.

TRAIN = """\
import argparse, json, os, pathlib
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--batch-size", type=int, default=8)
p.add_argument("--config")
a = p.parse_args()
depth = 1
if a.config:
    import re
    depth = int(re.search(r"depth: (\\d+)", pathlib.Path(a.config).read_text()).group(1))
loss = a.lr * depth / a.batch_size
pathlib.Path("metrics.json").write_text(json.dumps({"loss": loss}))
"""


def commit(repo: Path, files: dict[str, str], message: str = "files") -> None:
    from tests.conftest import git

    for name, text in files.items():
        write(repo / name, text)
    gitignore = repo / ".gitignore"
    if "metrics.json" not in gitignore.read_text():
        gitignore.write_text(".repro/\nmetrics.json\noutputs/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def run(*argv: str) -> None:
    from repro.cli.main import main
    from tests.conftest import PYTHON

    assert main(["run", "--quiet", "--metrics", "metrics.json", "--", PYTHON, *argv]) == 0


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a repro command."""
    from repro.cli.main import main

    capfd.readouterr()
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def test_runs_differing_in_lr_differ_in_params(repo: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": TRAIN})
    run("train.py", "--lr", "0.01", "--batch-size", "8")
    run("train.py", "--lr", "0.02", "--batch-size", "8")
    code, out, _ = cli(capfd, "diff", "latest~1", "latest")
    assert code == 1
    verdict = out.splitlines()[0]
    assert verdict.startswith("different params"), verdict
    assert "command" not in verdict
    assert "lr: 0.01 → 0.02" in out
    lines = out.splitlines()
    assert lines.index("params  changed") < lines.index("command  changed"), out  # listed first
    code, out, _ = cli(capfd, "diff", "latest~1", "latest", "--json")
    doc = json.loads(out)
    [change] = doc["sections"]["params"]["changes"]
    assert (change["key"], change["a"], change["b"]) == ("lr", 0.01, 0.02)
    assert change["source"] == {"a": "argv", "b": "argv"}
    code, out, _ = cli(capfd, "diff", "latest~1", "latest", "--markdown")
    assert "lr: `0.01 → 0.02`" in out
    # The Python API
    import repro

    assert repro.load("latest").params.values == {"lr": 0.02, "batch_size": 8}


def test_a_changed_positional_is_still_a_different_command(
        repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": "import sys, json, pathlib\n"
                              "pathlib.Path('metrics.json').write_text(json.dumps({'n': 1}))\n"})
    run("train.py", "a", "--lr", "0.01")
    run("train.py", "b", "--lr", "0.02")
    _, out, _ = cli(capfd, "diff", "latest~1", "latest")
    assert out.splitlines()[0].startswith("different params, command"), out


def test_a_config_change_names_the_nested_key(repo: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    base = "model:\n  depth: {}\n  width: 64\noptim:\n  lr: 0.1\n"
    commit(repo, {"train.py": TRAIN, "configs/base.yaml": base.format(12)})
    run("train.py", "--config", "configs/base.yaml")
    commit(repo, {"configs/base.yaml": base.format(24)}, "deeper")
    run("train.py", "--config", "configs/base.yaml")
    code, out, _ = cli(capfd, "diff", "latest~1", "latest")
    assert code == 1
    assert out.splitlines()[0].startswith("different code (1 file), params"), out
    assert "model.depth: 12 → 24" in out
    doc = json.loads(cli(capfd, "diff", "latest~1", "latest", "--json")[1])
    [change] = doc["sections"]["params"]["changes"]
    assert change["key"] == "model.depth"
    assert change["source"]["b"] == "file:configs/base.yaml"


def test_runs_where_and_columns(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": TRAIN})
    run("train.py", "--lr", "0.01", "--batch-size", "8")  # loss 0.00125
    run("train.py", "--lr", "0.8", "--batch-size", "4")  # loss 0.2
    run("train.py", "--lr", "0.01", "--batch-size", "2")  # loss 0.005
    code, out, _ = cli(capfd, "runs", "--where", "lr=0.01", "--where", "loss<0.002",
                    "--columns", "lr,batch_size,loss")
    assert code == 0
    lines = out.splitlines()
    rows = [line for line in lines if line[:8].isdigit()]  # a run id starts with its date
    assert len(rows) == 1, out
    assert lines[0].split()[-3:] == ["lr", "batch_size", "loss"]
    assert rows[0].split()[-3:] == ["0.01", "8", "0.00125"]
    doc = json.loads(cli(capfd, "runs", "--json", "--where", "lr=1e-2")[1])
    assert [r["params"]["batch_size"] for r in doc["runs"]] == [2, 8]
    doc = json.loads(cli(capfd, "runs", "--json", "--columns", "batch_size", "-n", "1")[1])
    assert doc["runs"][0]["columns"] == {"batch_size": 2}
    code, _, err = cli(capfd, "runs", "--where", "lr>big")
    assert code == 2
    assert "error:" in err and "compares numbers" in err and "hint:" in err
    code, _, err = cli(capfd, "runs", "--where", "lr")
    assert code == 2 and "has no comparison" in err
    code, out, err = cli(capfd, "runs", "--where", "lr=5")
    assert code == 0 and out == "" and "no runs match lr=5" in err
    assert "warning:" not in err  # lr is a parameter of these runs: no value matched
    code, out, err = cli(capfd, "runs", "--where", "seed=42", "--where", "lr=0.01")
    assert code == 0 and out == "" and "no runs match seed=42 and lr=0.01" in err
    assert "warning: no run has a parameter or metric `seed`" in err and "hint:" in err


def test_script_params_override_the_command_line(repo: Path) -> None:
    commit(repo, {"train.py": """\
import json, os, pathlib
with open(os.environ["REPRO_PARAMS_FILE"], "w") as f:
    json.dump({"lr": 0.5, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}}, f)
pathlib.Path("metrics.json").write_text(json.dumps({"loss": 1.0}))
"""})
    run("train.py", "--lr", "0.01", "--epochs", "3")
    import repro

    p = repro.load("latest").params
    assert p.values == {"lr": 0.5, "epochs": 3, "optimizer.name": "adam",
                        "optimizer.betas": [0.9, 0.99]}
    assert p.sources == {"lr": "script", "epochs": "argv", "optimizer.name": "script",
                            "optimizer.betas": "script"}


HYDRA_APP = """\
# What a Hydra app leaves behind (hydra-core writes .hydra/ under outputs/DATE/TIME/).
import json, pathlib, sys, time
overrides = dict(a.split("=", 1) for a in sys.argv[1:])
cfg = {"db": {"driver": "mysql", "timeout": int(overrides.get("db.timeout", 10))},
       "lr": float(overrides.get("lr", 0.1))}
out = pathlib.Path("outputs", time.strftime("%Y-%m-%d"), time.strftime("%H-%M-%S"), ".hydra")
out.mkdir(parents=True, exist_ok=True)
(out / "config.yaml").write_text(
    f"db:\\n  driver: {cfg['db']['driver']}\\n  timeout: {cfg['db']['timeout']}\\nlr: {cfg['lr']}\\n")
(out / "overrides.yaml").write_text("".join(f"- {a}\\n" for a in sys.argv[1:]))
pathlib.Path("metrics.json").write_text(json.dumps({"loss": cfg["lr"]}))
"""


def test_hydra_resolved_config(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"app.py": HYDRA_APP})
    run("app.py", "lr=0.1")
    run("app.py", "lr=0.1", "db.timeout=20")
    import repro

    p = repro.load("latest").params
    assert p.values == {"db.driver": "mysql", "db.timeout": 20, "lr": 0.1}
    assert p.sources == {"db.driver": "hydra", "db.timeout": "hydra", "lr": "hydra"}
    assert p.files == ()
    _, out, _ = cli(capfd, "diff", "latest~1", "latest")
    assert out.splitlines()[0].startswith("different params"), out
    assert "+ db.timeout: 20" not in out  # the resolved config had it before: a change
    assert "db.timeout: 10 → 20" in out


def test_params_files_from_the_configuration(repo: Path) -> None:
    commit(repo, {"train.py": TRAIN, "params.toml": "[train]\nepochs = 3\n",
                  "repro.yaml": "params_files: [params.toml]\n"})
    run("train.py", "--lr", "0.3")
    import repro

    p = repro.load("latest").params
    assert p.values == {"lr": 0.3, "train.epochs": 3}
    assert p.sources["train.epochs"] == "file:params.toml"


def test_a_secret_in_a_config_file_is_never_recorded(repo: Path) -> None:
    commit(repo, {"train.py": TRAIN, "cfg.yaml": "depth: 2\nwandb:\n  api_key: hunter2-secret\n"})
    run("train.py", "--config", "cfg.yaml")
    text = next((repo / ".repro" / "runs").iterdir()).joinpath("manifest.yaml").read_text()
    assert "hunter2" not in text
    assert "wandb.api_key: \"<secret:pbkdf2-sha256:" in text


def test_show_lists_the_params(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": TRAIN, "c.yaml": "depth: 3\n"})
    run("train.py", "--lr", "0.01", "--config", "c.yaml")
    _, out, _ = cli(capfd, "show", "latest")
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "param lr = 0.01" in lines
    assert "param depth = 3 (file:c.yaml)" in lines


def test_an_ignored_params_file_is_an_input(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": TRAIN, "repro.yaml": "seed: 1\nparams_files: [local.yaml]\n",
                  ".gitignore": ".repro/\nmetrics.json\nlocal.yaml\n"})
    write(repo / "local.yaml", "depth: 1\n")
    run("train.py")
    write(repo / "local.yaml", "depth: 2\n")
    run("train.py")
    doc = json.loads(cli(capfd, "diff", "latest~1", "latest", "--json")[1])
    assert doc["fingerprint"]["same"] is False
    assert [c["key"] for c in doc["sections"]["params"]["changes"]] == ["depth"]
    assert [c["key"] for c in doc["sections"]["data"]["changes"]] == ["local.yaml"]
    assert doc["verdict"] == "different params, data, same results"


@pytest.mark.parametrize(("key", "value"), [("values", [1, 2]), ("sources", "argv"),
                                            ("ambiguous", 3), ("program", "python")])
def test_a_damaged_params_section_is_refused_at_load(key: str, value: Any) -> None:
    from repro import errors
    from repro.record import manifest

    doc = {"schema": "repro/run/v1",
           "run": {"run_id": "x", "status": "succeeded", "started_at": "t"},
           "command": {"argv": ["python"]}, "seed": {"value": 1, "source": "flag"},
           "code": {"commit": "0" * 40}, "params": {key: value}}
    with pytest.raises(errors.ManifestError, match=f"params.{key} must be"):
        manifest.from_dict(doc, "m.yaml")


def test_a_running_run_has_its_command_line_params(repo: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """The manifest written before the command starts holds the argv's parameters: `runs
    --where` finds a run still going (or one whose repro was killed)."""
    import subprocess
    import sys

    commit(repo, {"train.py": "import pathlib, time\n"
                              "while not pathlib.Path('go').exists():\n    time.sleep(0.05)\n",
                  ".gitignore": ".repro/\ngo\n"})
    proc = subprocess.Popen([sys.executable, "-m", "repro", "run", "--quiet", "--",
                             sys.executable, "train.py", "--lr", "0.3"], cwd=repo)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            doc = json.loads(cli(capfd, "runs", "--json", "--where", "lr=0.3")[1])
            if doc["runs"]:
                break
            time.sleep(0.1)
        assert [r["status"] for r in doc["runs"]] == ["running"]
        assert doc["runs"][0]["params"] == {"lr": 0.3}
    finally:
        (repo / "go").write_text("")
        assert proc.wait(timeout=60) == 0


def test_a_groups_row_shows_its_params(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from repro.cli.main import main
    from tests.conftest import PYTHON

    commit(repo, {"train.py": TRAIN})
    assert main(["run", "--quiet", "--repeat", "2", "--metrics", "metrics.json", "--", PYTHON,
                 "train.py", "--lr", "0.04", "--batch-size", "16"]) == 0
    _, out, _ = cli(capfd, "runs", "--columns", "lr,batch_size")
    rows = [line.split() for line in out.splitlines() if line.startswith("group:")]
    assert len(rows) == 1 and rows[0][-2:] == ["0.04", "16"], out


HYDRA_REAL = """\
import json, pathlib
import hydra
from omegaconf import DictConfig

@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    pathlib.Path("metrics.json").write_text(json.dumps({"loss": cfg.optim.lr * cfg.model.depth}))

main()
"""


def test_a_real_hydra_app(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """hydra-core itself (the test extra) writes outputs/DATE/TIME/.hydra/config.yaml."""
    pytest.importorskip("hydra", reason="hydra-core is in the test extra; install it")
    commit(repo, {"app.py": HYDRA_REAL,
                  "conf/config.yaml": "optim:\n  name: sgd\n  lr: 0.1\nmodel:\n  depth: 4\n"})
    run("app.py")
    run("app.py", "optim.lr=0.01", "+trainer.epochs=3")
    import repro

    p = repro.load("latest").params
    assert p.values == {"optim.name": "sgd", "optim.lr": 0.01, "model.depth": 4,
                        "trainer.epochs": 3}
    assert set(p.sources.values()) == {"hydra"}
    _, out, _ = cli(capfd, "diff", "latest~1", "latest")
    assert out.splitlines()[0].startswith("different params"), out
    assert "optim.lr: 0.1 → 0.01" in out and "+ trainer.epochs: 3" in out


def test_runs_where_over_a_remote(repo: Path, tmp_path: Path,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    commit(repo, {"train.py": TRAIN})
    run("train.py", "--lr", "0.01")
    run("train.py", "--lr", "0.02")
    (tmp_path / "shared").mkdir()
    url = (tmp_path / "shared").as_uri()
    code, _, err = cli(capfd, "push", "--remote", url)
    assert code == 0, err
    doc = json.loads(cli(capfd, "runs", "--remote", url, "--json", "--where", "lr>0.015",
                         "--columns", "lr")[1])
    assert doc["remote"] == url and [r["columns"] for r in doc["runs"]] == [{"lr": 0.02}]


def test_hydra_references_are_resolved(tmp_path: Path) -> None:
    assert paramfiles.resolve_references(
        {"optim.base_lr": 0.1, "optim.lr": "${optim.base_lr}", "a": "${b}", "b": "${optim.lr}",
         "t": "${now:%H}", "p": "${optim.base_lr}/x", "u": "${nope}", "loop": "${loop}"}) == {
        "optim.base_lr": 0.1, "optim.lr": 0.1, "a": 0.1, "b": 0.1, "t": "${now:%H}",
        "p": "${optim.base_lr}/x", "u": "${nope}", "loop": "${loop}"}
    since = time.time()
    write(tmp_path / "outputs/2026-12-01/11-40-00/.hydra/config.yaml",
          "optim:\n  base_lr: 0.1\n  lr: ${optim.base_lr}\n")
    got = paramfiles.collect(["python", "app.py"], cwd=tmp_path, root=tmp_path,
                             hydra_since=since)
    assert got.section["values"] == {"optim.base_lr": 0.1, "optim.lr": 0.1}


def test_a_replay_has_the_same_params(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from repro.cli.main import main

    commit(repo, {"train.py": TRAIN, "configs/base.yaml": "model:\n  depth: 3\n"})
    run("train.py", "--lr", "0.5", "--config", "configs/base.yaml")
    assert main(["replay", "latest"]) == 0
    doc = json.loads(cli(capfd, "diff", "latest~1", "latest", "--json")[1])
    assert doc["sections"]["params"]["changes"] == [], doc["sections"]["params"]
    import repro

    p = repro.load("latest").params
    assert p.values == {"lr": 0.5, "config": "configs/base.yaml", "model.depth": 3}
    assert p.sources["model.depth"] == "file:configs/base.yaml"
