"""The pocket model's parts: Stable Diffusion's own classes, made small.

Every part is the class real Stable Diffusion uses, so code written against
the pocket model runs unchanged on SD 1.5:

    text encoder  transformers.CLIPTextModel     (SD 1.5: 123M params, width 768)
    VAE           diffusers.AutoencoderKL        (SD 1.5: 84M params, 4 latent channels, 8x)
    U-Net         diffusers.UNet2DConditionModel (SD 1.5: 860M params)
    scheduler     SD's own schedule and scheduler settings (sdnotes/schedule.py)

The text encoder is trained the way CLIP was (Radford et al. 2021), together
with a small image tower; that image tower becomes the pocket judge.
Sizes were chosen so that 4 images x 25 steps with guidance take about 2-3 s on
2 CPU cores (see the model card).
"""

from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from sdnotes.pocket.data import IMAGE_SIZE

TEXT_WIDTH = 64  # SD 1.x: 768, SD 2.x: 1024
JUDGE_IMAGE_SIZE = 64  # the judge looks at images downsized to 64x64


def text_config():
    return CLIPTextConfig(
        vocab_size=49408,  # the real CLIP vocabulary
        max_position_embeddings=77,  # the real 77-token context
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=TEXT_WIDTH,
        hidden_act="quick_gelu",  # as OpenAI's CLIP
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def vision_config():
    return CLIPVisionConfig(
        image_size=JUDGE_IMAGE_SIZE,
        patch_size=8,
        num_channels=3,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        projection_dim=TEXT_WIDTH,
        hidden_act="quick_gelu",
    )


def make_clip():
    config = CLIPConfig(
        text_config=text_config().to_dict(),
        vision_config=vision_config().to_dict(),
        projection_dim=TEXT_WIDTH,
    )
    return CLIPModel(config)


def make_vae():
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,  # 3 downsamples: 8x, as SD
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 64, 128, 128),  # SD 1.5: (128, 256, 512, 512)
        layers_per_block=1,  # SD 1.5: 2
        latent_channels=4,  # as SD
        norm_num_groups=32,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # measured after training (SD 1.x: 0.18215)
    )


def make_unet():
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128, 128),  # SD 1.5: (320, 640, 1280, 1280)
        layers_per_block=1,  # SD 1.5: 2
        cross_attention_dim=TEXT_WIDTH,  # SD 1.5: 768
        attention_head_dim=8,
        norm_num_groups=32,
    )
