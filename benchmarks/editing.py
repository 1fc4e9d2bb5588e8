"""Editing a picture on the pocket model: the measurements behind notebook 10's claims.

With the notebook's own lines (DDIM with clip_sample=False, 20 steps, guidance
7.5, DDIMInverseScheduler at guidance 1, null-text inversion with Adam), on more
pictures and seeds than the notebook runs:

1. reconstruction: rendered two-object scenes ("X on the left and Y on the
   right", 4 word pairs on a blue background) are inverted and regenerated; PSNR
   (dB) against the VAE round trip, by guidance scale, by number of steps, and
   for null-text inversion by the number of Adam steps per denoising step
   (with the CPU seconds it took, one thread);
2. word swap on generated pictures (the 4 pairs x --seeds seeds): the source
   and the edit from the same noise, the source's cross-attention injected for
   the first 80% of the steps into no layer / all / the middle block / the
   down + up blocks; the share of the right half's pixels kept (no channel
   moved by more than 0.1) and whether the pocket judge names the new object
   in the left half;
3. editing the rendered scenes: inversion + null-text + prompt-to-prompt (all
   layers, 80%), the same without injection, and SDEdit at strengths 0.4, 0.6,
   0.8, on the 8 two-object scenes (4 pairs x 2 backgrounds): kept share of the
   right half, share of the changed pixels that lie in the left half, judge on
   the left half; and on 8 one-object scenes (the object on the left on blue,
   on the right on yellow): background kept (pixels farther than 6 px from the
   object), `object_side` of the edit, judge on the whole picture.

    python benchmarks/editing.py                 # all parts, 8 seeds for part 2
    python benchmarks/editing.py --parts 1 --seeds 4

References: Song et al. 2021 (DDIM); Mokady et al. 2023 (null-text inversion);
Hertz et al. 2022 (prompt-to-prompt); Meng et al. 2021 (SDEdit).
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionImg2ImgPipeline
from PIL import Image

import sdnotes
from sdnotes.attention import cross_attention_layer_names, inject_cross_attention
from sdnotes.pocket import data
from sdnotes.pocket.judge import PocketJudge, foreground_mask, object_side

PAIRS = [("cat face", "dog face", "rocket"), ("banana", "sunflower", "penguin"),
         ("ghost", "fish", "bicycle"), ("red apple", "soccer ball", "octopus")]  # old, new (same tokens), kept
BACKGROUNDS = ["blue", "yellow"]
NUM_STEPS = 20
GUIDANCE_SCALE = 7.5
GUIDANCE_SCALES = [1.0, 2.0, 3.0, 5.0, 7.5]
STEP_COUNTS = [10, 20, 50]
NULL_TEXT_ITERATIONS = [0, 1, 2, 5]
LEARNING_RATE = 3e-2
INJECTION_FRACTION = 0.8
SDEDIT_STRENGTHS = [0.4, 0.6, 0.8]
TOLERANCE = 0.1


class Editor:
    """The notebook's functions around one pipeline."""

    def __init__(self):
        self.pipe = sdnotes.load("pocket")
        self.pipe.scheduler = DDIMScheduler.from_config(self.pipe.scheduler.config, clip_sample=False)
        self.pipe.set_progress_bar_config(disable=True)
        self.img2img = StableDiffusionImg2ImgPipeline(**self.pipe.components, requires_safety_checker=False)
        self.img2img.set_progress_bar_config(disable=True)
        self.unet, self.vae = self.pipe.unet, self.pipe.vae
        self.empty = self.encode_text("")

    def scheduler(self, inverse=False):
        if inverse:  # without PNDM's skip_prk_steps, still in the config, which DDIMInverseScheduler does not take
            config = {key: value for key, value in self.pipe.scheduler.config.items() if key != "skip_prk_steps"}
            return DDIMInverseScheduler.from_config(config, clip_sample=False)
        return DDIMScheduler.from_config(self.pipe.scheduler.config, clip_sample=False)

    def encode_text(self, text):
        tokenizer = self.pipe.tokenizer
        ids = tokenizer([text], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        return self.pipe.text_encoder(ids)[0]  # (1, 77, d)

    def encode_picture(self, picture):
        pixels = self.pipe.image_processor.preprocess(picture)
        return self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor

    def decode(self, latents):
        return (self.vae.decode(latents / self.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)

    def invert(self, latents, prompt_embeddings, num_steps):
        scheduler = self.scheduler(inverse=True)
        scheduler.set_timesteps(num_steps)
        path = [latents]
        for t in scheduler.timesteps:
            noise_pred = self.unet(latents, t, encoder_hidden_states=prompt_embeddings).sample
            latents = scheduler.step(noise_pred, t, latents).prev_sample
            path.append(latents)
        return path

    def guided_step(self, scheduler, t, latents, contexts, guidance_scales):
        noise_pred = self.unet(torch.cat([latents] * 2), t, encoder_hidden_states=contexts).sample
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        scales = torch.tensor(guidance_scales, dtype=latents.dtype).reshape(-1, 1, 1, 1)
        return scheduler.step(noise_pred_uncond + scales * (noise_pred_text - noise_pred_uncond), t, latents).prev_sample

    def regenerate(self, start, prompts_embeddings, null_per_step, guidance_scales, num_steps):
        """start (B, 4, h, w); prompts_embeddings (B, 77, d); one (1, 77, d) null embedding per step."""
        scheduler = self.scheduler()
        scheduler.set_timesteps(num_steps)
        batch_size = start.shape[0]
        latents = start
        for step_index, t in enumerate(scheduler.timesteps):
            contexts = torch.cat([null_per_step[step_index].expand(batch_size, -1, -1), prompts_embeddings])
            latents = self.guided_step(scheduler, t, latents, contexts, guidance_scales)
        return latents

    def null_text(self, path, prompt_embeddings, iterations, num_steps=NUM_STEPS):
        scheduler = self.scheduler()
        scheduler.set_timesteps(num_steps)
        null_embedding = self.empty.clone()
        latents = path[-1]
        null_per_step = []
        for step_index, t in enumerate(scheduler.timesteps):
            target = path[num_steps - step_index - 1]
            noise_pred_text = self.unet(latents, t, encoder_hidden_states=prompt_embeddings).sample
            null_embedding = null_embedding.detach().clone().requires_grad_(True)  # a new tensor: Adam updates it in place
            optimizer = torch.optim.Adam([null_embedding], lr=LEARNING_RATE)
            with torch.enable_grad():
                for _ in range(iterations):
                    noise_pred_uncond = self.unet(latents, t, encoder_hidden_states=null_embedding).sample
                    noise_pred = noise_pred_uncond + GUIDANCE_SCALE * (noise_pred_text - noise_pred_uncond)
                    loss = F.mse_loss(scheduler.step(noise_pred, t, latents).prev_sample, target)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            null_embedding = null_embedding.detach()
            null_per_step.append(null_embedding)
            noise_pred_uncond = self.unet(latents, t, encoder_hidden_states=null_embedding).sample
            noise_pred = noise_pred_uncond + GUIDANCE_SCALE * (noise_pred_text - noise_pred_uncond)
            latents = scheduler.step(noise_pred, t, latents).prev_sample
        return null_per_step

    def inverted_edit(self, start, source_embeddings, edit_embeddings, null_per_step, injected_steps):
        scheduler = self.scheduler()
        scheduler.set_timesteps(NUM_STEPS)
        latents = start.expand(2, -1, -1, -1)
        with inject_cross_attention(self.unet, num_steps=injected_steps):
            for step_index, t in enumerate(scheduler.timesteps):
                null_embedding = null_per_step[step_index]
                contexts = torch.cat([null_embedding, null_embedding, source_embeddings, edit_embeddings])
                latents = self.guided_step(scheduler, t, latents, contexts, [GUIDANCE_SCALE] * 2)
        return self.decode(latents)  # (2, 3, H, W)

    def sdedit(self, prompt, picture, strength):
        return self.img2img(prompt, image=picture, strength=strength, num_inference_steps=NUM_STEPS,
                            guidance_scale=GUIDANCE_SCALE, generator=sdnotes.make_generator(0),
                            output_type="pt").images[0]


def two_object_prompt(left_object, right_object):
    return f"{data.article(left_object)} {left_object} on the left and {data.article(right_object)} {right_object} on the right"


def render(objects_and_centres, background, size=0.4, image_size=data.IMAGE_SIZE):
    """Objects at centre x (fractions of the side), vertically centred, longest side `size` x the side."""
    picture = Image.new("RGB", (image_size, image_size), data.BACKGROUNDS[background])
    for name, centre_x in objects_and_centres:
        emoji = data.sprite(name)
        width, height = data.sprite_size(emoji, size * image_size)
        box = data.sprite_box(centre_x * image_size, (image_size - height) // 2, (width, height), image_size)
        data.paste_sprite(picture, emoji, box)
    return picture


def to_tensor(picture):
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, H, W)


def to_picture(image):
    return Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def psnr(images, reference):
    return (10 * torch.log10(1 / ((images - reference) ** 2).mean(dim=(1, 2, 3)))).tolist()


def moved(edited, original):
    return (edited - original).abs().amax(dim=-3)  # (H, W): the largest channel change


def kept_right_half(edited, original):
    half = original.shape[-1] // 2
    return (moved(edited, original)[:, half:] <= TOLERANCE).float().mean().item()


def changes_on_left(edited, original):
    changed = moved(edited, original) > TOLERANCE
    half = original.shape[-1] // 2
    return changed[:, :half].sum().item() / max(changed.sum().item(), 1)


def far_background(picture, margin=6):
    """(H, W) bool: pixels farther than `margin` from every object pixel (object_side's criterion)."""
    foreground = torch.from_numpy(foreground_mask(picture)).float()[None, None]  # (1, 1, H, W)
    near = F.max_pool2d(foreground, 2 * margin + 1, stride=1, padding=margin)[0, 0]
    return near < 0.5


def count_kept(values):
    """How many edits kept more than half of the pixels they should keep (the rest redrew the background)."""
    return sum(value > 0.5 for value in values)


def mean_std(values):
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def part_reconstruction(editor):
    print("\n## 1. Reconstruction (PSNR in dB against the VAE round trip), rendered two-object scenes")
    by_guidance = {scale: [] for scale in GUIDANCE_SCALES}
    by_steps = {(steps, scale): [] for steps in STEP_COUNTS for scale in (1.0, GUIDANCE_SCALE)}
    by_iterations = {iterations: [] for iterations in NULL_TEXT_ITERATIONS}
    seconds = {iterations: [] for iterations in NULL_TEXT_ITERATIONS}
    for old, _, kept in PAIRS:
        for background in BACKGROUNDS[:1]:
            picture = render([(old, 0.26), (kept, 0.74)], background)
            prompt_embeddings = editor.encode_text(two_object_prompt(old, kept))
            latents = editor.encode_picture(picture)
            reference = editor.decode(latents)
            paths = {}
            for steps in STEP_COUNTS:
                paths[steps] = editor.invert(latents, prompt_embeddings, steps)
                scales = GUIDANCE_SCALES if steps == NUM_STEPS else [1.0, GUIDANCE_SCALE]
                start = paths[steps][-1].expand(len(scales), -1, -1, -1)
                values = psnr(editor.decode(editor.regenerate(start, prompt_embeddings.expand(len(scales), -1, -1),
                                                              [editor.empty] * steps, scales, steps)), reference)
                for scale, value in zip(scales, values):
                    if steps == NUM_STEPS:
                        by_guidance[scale].append(value)
                    if scale in (1.0, GUIDANCE_SCALE):
                        by_steps[(steps, scale)].append(value)
            for iterations in NULL_TEXT_ITERATIONS:
                start_time = time.process_time()
                null_per_step = editor.null_text(paths[NUM_STEPS], prompt_embeddings, iterations)
                seconds[iterations].append(time.process_time() - start_time)
                regenerated = editor.regenerate(paths[NUM_STEPS][-1], prompt_embeddings, null_per_step,
                                                [GUIDANCE_SCALE], NUM_STEPS)
                by_iterations[iterations].append(psnr(editor.decode(regenerated), reference)[0])
    count = len(by_guidance[1.0])
    print(f"\n{count} scenes, {NUM_STEPS} steps, inverted at guidance 1\n\n| guidance | PSNR (mean ± std) |\n|---|---|")
    for scale, values in by_guidance.items():
        print(f"| {scale:g} | {mean_std(values)} |")
    print("\n| steps | guidance 1 | guidance 7.5 |\n|---|---|---|")
    for steps in STEP_COUNTS:
        print(f"| {steps} | {mean_std(by_steps[(steps, 1.0)])} | {mean_std(by_steps[(steps, GUIDANCE_SCALE)])} |")
    print(f"\nnull-text inversion, guidance {GUIDANCE_SCALE}, {NUM_STEPS} steps, Adam lr {LEARNING_RATE}\n")
    print("| Adam steps per step | PSNR | CPU s (one thread) |\n|---|---|---|")
    for iterations in NULL_TEXT_ITERATIONS:
        print(f"| {iterations} | {mean_std(by_iterations[iterations])} | {statistics.mean(seconds[iterations]):.1f} |")


def part_word_swap(editor, seeds):
    print("\n## 2. Word swap on generated pictures, source maps for the first "
          f"{int(INJECTION_FRACTION * NUM_STEPS)} of {NUM_STEPS} steps")
    names = cross_attention_layer_names(editor.unet)
    choices = {"no injection": None, "all layers": names,
               "middle block only": [name for name in names if name.startswith("mid_block")],
               "down + up blocks only": [name for name in names if not name.startswith("mid_block")]}
    judge = PocketJudge()
    kept = {choice: [] for choice in choices}
    success = {choice: [] for choice in choices}
    for old, new, other in PAIRS:
        prompts = [two_object_prompt(old, other), two_object_prompt(new, other)]
        for seed in seeds:
            noise = torch.randn(1, 4, 16, 16, generator=sdnotes.make_generator(seed))
            for choice, layers in choices.items():
                injected_steps = 0 if layers is None else int(INJECTION_FRACTION * NUM_STEPS)
                with inject_cross_attention(editor.pipe, num_steps=injected_steps, layer_names=layers):
                    images = editor.pipe(prompts, num_inference_steps=NUM_STEPS, guidance_scale=GUIDANCE_SCALE,
                                         latents=noise.expand(2, -1, -1, -1), output_type="pt").images
                kept[choice].append(kept_right_half(images[1], images[0]))
                success[choice].append(judge.classify(images[1:, :, :, :64])[0] == new)
    count = len(kept["no injection"])
    print(f"\n{len(PAIRS)} word pairs x seeds {seeds[0]}-{seeds[-1]} = {count} edits\n")
    print("| injected into | right half kept (mean ± std) | edits keeping > 50% | judge names the new object (left half) |")
    print("|---|---|---|---|")
    for choice in choices:
        print(f"| {choice} | {mean_std(kept[choice])} | {count_kept(kept[choice])} / {count} | "
              f"{sum(success[choice])} / {count} |")


def part_edit_a_picture(editor):
    print("\n## 3. Editing a rendered picture: inversion + prompt-to-prompt vs SDEdit")
    judge = PocketJudge()
    injected_steps = int(INJECTION_FRACTION * NUM_STEPS)
    methods = ["inversion + p2p (all layers)", "inversion, no injection"] + [f"SDEdit {s}" for s in SDEDIT_STRENGTHS]
    two = {method: {"kept": [], "left": [], "success": []} for method in methods}
    one = {method: {"kept": [], "side": [], "success": []} for method in methods}
    for old, new, other in PAIRS:
        for background in BACKGROUNDS:
            scenes = [("two", render([(old, 0.26), (other, 0.74)], background), two_object_prompt(old, other),
                       two_object_prompt(new, other), "left")]
            for side, centre in (("left", 0.28), ("right", 0.72))[BACKGROUNDS.index(background):][:1]:
                scenes.append(("one", render([(old, centre)], background, size=0.45),
                               f"{data.article(old)} {old} on the {side} on a {background} background",
                               f"{data.article(new)} {new} on the {side} on a {background} background", side))
            for kind, picture, source_prompt, edit_prompt, side in scenes:
                source_embeddings = editor.encode_text(source_prompt)
                edit_embeddings = editor.encode_text(edit_prompt)
                path = editor.invert(editor.encode_picture(picture), source_embeddings, NUM_STEPS)
                null_per_step = editor.null_text(path, source_embeddings, 2)
                edits = {methods[0]: editor.inverted_edit(path[-1], source_embeddings, edit_embeddings, null_per_step,
                                                          injected_steps)[1],
                         methods[1]: editor.inverted_edit(path[-1], source_embeddings, edit_embeddings, null_per_step,
                                                          0)[1]}
                for strength in SDEDIT_STRENGTHS:
                    edits[f"SDEdit {strength}"] = editor.sdedit(edit_prompt, picture, strength)
                original = to_tensor(picture)
                background_mask = far_background(picture)
                for method, image in edits.items():
                    if kind == "two":
                        two[method]["kept"].append(kept_right_half(image, original))
                        two[method]["left"].append(changes_on_left(image, original))
                        two[method]["success"].append(judge.classify(image[None, :, :, :64])[0] == new)
                    else:
                        one[method]["kept"].append((moved(image, original)[background_mask] <= TOLERANCE)
                                                   .float().mean().item())
                        one[method]["side"].append(object_side(to_picture(image)) == side)
                        one[method]["success"].append(judge.classify(image[None])[0] == new)
    count = len(two[methods[0]]["kept"])
    print(f"\ntwo-object scenes ({count}): edit the left object, keep the right one\n")
    print("| method | right half kept | edits keeping > 50% | share of changed pixels on the left | "
          "judge names the new object |")
    print("|---|---|---|---|---|")
    for method in methods:
        values = two[method]
        print(f"| {method} | {mean_std(values['kept'])} | {count_kept(values['kept'])} / {count} | "
              f"{mean_std(values['left'])} | {sum(values['success'])} / {count} |")
    count = len(one[methods[0]]["kept"])
    print(f"\none-object scenes ({count}): object on the left or right\n")
    print("| method | background kept | edits keeping > 50% | object_side unchanged | judge names the new object |")
    print("|---|---|---|---|---|")
    for method in methods:
        values = one[method]
        print(f"| {method} | {mean_std(values['kept'])} | {count_kept(values['kept'])} / {count} | "
              f"{sum(values['side'])} / {count} | {sum(values['success'])} / {count} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="123", help="which parts to run, e.g. 13 (default 123)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per word pair in part 2 (default 8)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    editor = Editor()
    if "1" in args.parts:
        part_reconstruction(editor)
    if "2" in args.parts:
        part_word_swap(editor, list(range(args.seeds)))
    if "3" in args.parts:
        part_edit_a_picture(editor)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
