"""sdnotes/pocket/training.py: what the two training commands share (arguments, --minutes, stages,
timing records, the noising loss), and the one-way imports between training and evaluation.

The tiny training runs of each command are in test_pocket.py and test_control.py.
"""

import ast
import json
import pathlib

import pytest
import torch

from sdnotes.pocket import train, training
from sdnotes.pocket.control import train as control_train
from sdnotes.schedule import stable_diffusion_scheduler

PACKAGE = pathlib.Path(training.__file__).resolve().parent


def test_minutes_take_stage_equals_minutes_pairs():
    assert training.parse_minutes("", ["clip", "vae", "unet"]) == {}
    assert training.parse_minutes("clip=1.5,unet=7", ["clip", "vae", "unet"]) == {"clip": 1.5, "unet": 7.0}
    assert training.parse_minutes(" controlnet = 85 ", ["controlnet"]) == {"controlnet": 85.0}


@pytest.mark.parametrize("text, message", [
    ("85", "STAGE=MINUTES pairs separated by commas, got '85'; write e.g. --minutes clip=10"),
    ("clip:5", "STAGE=MINUTES pairs"),
    ("clip=5=6", "STAGE=MINUTES pairs"),
    ("latents=5", "'latents' is not a training stage; budgets apply to"),
    ("clip=five", "needs a number of minutes"),
    ("clip=0", "more than 0 minutes, got 0.0"),
    ("clip=-2", "more than 0 minutes"),
])
def test_bad_minutes_say_the_format(text, message):
    with pytest.raises(ValueError, match=message):
        training.parse_minutes(text, ["clip", "vae", "unet"])


@pytest.mark.parametrize("command, argv, message", [
    (train.main, ["--minutes", "85"], "error: --minutes takes STAGE=MINUTES pairs"),
    (train.main, ["--minutes", "controlnet=85"], "error: --minutes: 'controlnet' is not a training stage"),
    (control_train.main, ["--minutes", "85"], "write e.g. --minutes controlnet=10"),
    (control_train.main, ["--minutes", "unet=5"], "budgets apply to ['controlnet']"),
    (control_train.main, ["--stages", "data,unet"], "error: unknown stage 'unet'"),
])
def test_both_commands_refuse_bad_arguments_before_any_work(command, argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as error:
        command(argv + ["--out", str(tmp_path / "run")])
    assert error.value.code == 2
    assert message in capsys.readouterr().err  # argparse's usage, then the message
    assert not (tmp_path / "run").exists()


def test_both_commands_document_the_one_minutes_format(capsys):
    for command in (train.main, control_train.main):
        with pytest.raises(SystemExit):
            command(["--help"])
        assert "--minutes STAGE=MINUTES[,...]" in " ".join(capsys.readouterr().out.split())


def test_stages_and_preset():
    assert training.parse_stages("clip,unet", train.STAGES) == ["clip", "unet"]
    with pytest.raises(ValueError, match=r"unknown stage 'vea'; choose from \['clip'"):
        training.parse_stages("clip,vea", train.STAGES)
    assert training.preset_for("smoke", torch.device("cuda")) == "smoke"
    assert training.preset_for(None, torch.device("cuda")) == "gpu"
    assert training.preset_for(None, torch.device("cpu")) == "cpu"


def test_run_stages_skips_finished_stages_times_the_others_and_never_times_export(tmp_path):
    run = train.Run(tmp_path, {"batch": 4}, torch.device("cpu"))
    calls = []

    def make_result(run):
        calls.append("make")
        (run.out / "result.txt").write_text("done")
        run.steps_done["make"] = 3

    def export(run):
        calls.append("export")

    functions = {"make": make_result, "export": export}
    results = {"make": "result.txt", "export": None}
    training.run_stages(run, ["make", "export"], functions, results, force=False, preset="smoke",
                        extra_fields={"batch": 4})
    training.run_stages(run, ["make", "export"], functions, results, force=False, preset="smoke")
    assert calls == ["make", "export", "export"]
    training.run_stages(run, ["make"], functions, results, force=True, preset="smoke")
    assert calls[-1] == "make"
    records = [json.loads(line) for line in (tmp_path / "logs" / "timings.jsonl").read_text().splitlines()]
    assert [record["stage"] for record in records] == ["make", "make"]
    first = records[0]
    assert set(first) == {"stage", "seconds", "preset", "device", "steps", "batch"}
    assert (first["preset"], first["steps"], first["batch"]) == ("smoke", 3, 4)
    assert first["device"].startswith("cpu (") and first["seconds"] >= 0
    assert "batch" not in records[1]


def test_an_exported_folder_is_replaced_only_with_force(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit, match="already holds a ControlNet; it is not replaced silently. Pass --force"):
        training.refuse_to_overwrite(tmp_path, "config.json", "a ControlNet", force=False)
    training.refuse_to_overwrite(tmp_path, "config.json", "a ControlNet", force=True)
    training.refuse_to_overwrite(tmp_path, "model_index.json", "a pocket model", force=False)


def test_noise_prediction_loss_is_ddpm_eq_4_then_the_mse():
    scheduler = stable_diffusion_scheduler()
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    seen = {}

    def predict_noise(noisy_latents, timesteps):
        seen["noisy_latents"], seen["timesteps"] = noisy_latents, timesteps
        return torch.einsum("ij,bjhw->bihw", weight, noisy_latents)

    loss = training.noise_prediction_loss(predict_noise, scheduler, latents, torch.Generator().manual_seed(2))
    # By hand, drawing in the same order: the noise first, then one timestep per picture.
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, 1000, (3,), generator=generator)
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy_latents = alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise
    assert torch.equal(seen["timesteps"], timesteps)
    assert torch.equal(seen["noisy_latents"], noisy_latents)
    expected = (torch.einsum("ij,bjhw->bihw", weight, noisy_latents) - noise).pow(2).mean()
    assert torch.allclose(loss, expected, rtol=1e-6)


def imported_modules(path):
    """Every module a file imports, at its top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        if isinstance(node, ast.ImportFrom):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_training_imports_evaluation_never_the_other_way():
    assert "sdnotes.pocket.control.train" not in imported_modules(PACKAGE / "control" / "evaluate.py")
    assert not any(name.startswith("sdnotes.pocket.control") for name in imported_modules(PACKAGE / "train.py"))
    assert not any(name.startswith("sdnotes.pocket.control") for name in imported_modules(PACKAGE / "training.py"))


def test_a_training_checkpoint_loads_into_the_shipped_controlnets_architecture():
    # evaluate.py --steps-curve builds each checkpoint's ControlNet from the loaded one's config.
    from diffusers import ControlNetModel, UNet2DConditionModel

    from sdnotes.paths import POCKET_CONTROLNET_DIR, POCKET_DIR

    unet = UNet2DConditionModel.from_pretrained(POCKET_DIR / "unet")
    trained = control_train.make_controlnet(unet)
    shipped_config = ControlNetModel.load_config(POCKET_CONTROLNET_DIR)
    rebuilt = ControlNetModel.from_config(shipped_config)
    rebuilt.load_state_dict(trained.state_dict())  # strict: the same names and shapes
