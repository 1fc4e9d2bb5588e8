"""The 2-D "cats and dogs" toy shared by notebooks 02 (noise prediction) and 06 (guidance).

Each "image" is a point in the plane. Cats sit around CAT_CENTER, dogs around
DOG_CENTER (the same peaks as notebook 01): a data distribution with two
peaks and empty space between them. Everything here is plumbing; the ideas
(the training loss, the reverse step, the guidance formulas) are written out
in the notebooks.

- `sample_cats_and_dogs(n, generator)`: points (n, 2) and labels (n,), 0 = cat, 1 = dog.
- `NoisePredictor`: a small MLP eps_theta(x_t, t), optionally also given a
  label; label NO_LABEL (2) stands for "no label", as the empty prompt does
  in Stable Diffusion (needed for classifier-free guidance).
- `denoising_loss`: DDPM's training loss (Ho et al. 2020, Algorithm 1); the
  same one notebook 02 writes out by hand.
- `train(model, points, labels, scheduler, ...)`: a plain Adam loop over a
  loss function; with `label_dropout` > 0 it hides the label some of the time
  (classifier-free guidance training, Ho & Salimans 2022).
- `NoisyClassifier` / `train_classifier`: p(label | x_t, t), trained on
  noised points, whose gradient steers sampling in classifier guidance
  (Dhariwal & Nichol 2021).
- `ideal_noise_prediction`: the best possible noise prediction E[eps | x_t]
  for this data, in closed form (the data is a known Gaussian mixture), to
  compare a trained network with.
- `sliced_wasserstein(samples, reference)`: one number for how far a cloud of
  generated points is from a true sample (notebooks 14 and 15 compare samplers
  with it).

Both networks train in a few seconds on a CPU.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

CAT_CENTER = (-1.0, -0.6)
DOG_CENTER = (1.0, 0.6)
SPREAD = 0.2  # standard deviation of each peak
CAT, DOG, NO_LABEL = 0, 1, 2
LABEL_NAMES = ("cat", "dog")
NUM_TRAIN_TIMESTEPS = 1000


def sample_cats_and_dogs(num_points, generator, spread=SPREAD):
    """`num_points` points (num_points, 2) and labels (num_points,): half cats (0), half dogs (1).

    spread: the standard deviation of each peak; with spread >= 0.5 the two kinds overlap.
    """
    num_cats = num_points // 2
    labels = torch.full((num_points,), DOG, dtype=torch.long)
    labels[:num_cats] = CAT
    centers = torch.tensor([CAT_CENTER, DOG_CENTER])  # (2, 2)
    points = centers[labels] + spread * torch.randn(num_points, 2, generator=generator)
    return points, labels


def cat_to_dog_direction():
    """Unit vector (2,) from the cat peak to the dog peak: the axis on which the two kinds differ."""
    difference = torch.tensor(DOG_CENTER) - torch.tensor(CAT_CENTER)
    return difference / difference.norm()


def timestep_features(timesteps, num_frequencies=8):
    """Sinusoidal features (N, 2 * num_frequencies) of integer timesteps (N,), as in the Transformer and the U-Net."""
    scaled = timesteps.float()[:, None] / NUM_TRAIN_TIMESTEPS  # (N, 1), in [0, 1)
    frequencies = math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32)  # (F,)
    angles = scaled * frequencies  # (N, F)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class NoisePredictor(nn.Module):
    """eps_theta(x_t, t[, label]): predicts the noise in a noisy 2-D point.

    with_labels=True adds a learned embedding of the label (cat, dog or
    NO_LABEL) to the input, like the text embedding in Stable Diffusion.
    """

    def __init__(self, hidden=128, with_labels=False):
        super().__init__()
        self.with_labels = with_labels
        label_width = 0
        if with_labels:
            label_width = 16
            self.label_embedding = nn.Embedding(3, label_width)
        self.net = nn.Sequential(
            nn.Linear(2 + 16 + label_width, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x, timesteps, labels=None):
        # x: (N, 2); timesteps: (N,) or a single int; labels: (N,) or None
        if not torch.is_tensor(timesteps) or timesteps.ndim == 0:
            timesteps = torch.full((x.shape[0],), int(timesteps))
        parts = [x, timestep_features(timesteps)]
        if self.with_labels:
            if labels is None:
                labels = torch.full((x.shape[0],), NO_LABEL, dtype=torch.long)
            parts.append(self.label_embedding(labels))
        return self.net(torch.cat(parts, dim=1))  # (N, 2)


def denoising_loss(model, x0, labels, scheduler, generator):
    """DDPM's training loss (Ho et al. 2020, Algorithm 1) on a batch x0 (B, 2)."""
    timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (x0.shape[0],), generator=generator)  # (B,)
    noise = torch.randn(x0.shape, generator=generator)  # (B, 2)
    noisy = scheduler.add_noise(x0, noise, timesteps)  # (B, 2)
    noise_pred = model(noisy, timesteps, labels)  # (B, 2)
    return F.mse_loss(noise_pred, noise)


def train(model, points, labels, scheduler, generator, steps=2000, batch_size=256, lr=2e-3,
          label_dropout=0.0, loss_fn=None, progress=True):
    """Train `model` with Adam; returns the list of losses, one per step.

    loss_fn(model, x0, labels, scheduler, generator) -> scalar; default `denoising_loss`.
    label_dropout: probability of replacing a label by NO_LABEL (classifier-free guidance training).
    """
    if not 0.0 <= label_dropout <= 1.0:
        raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
    if loss_fn is None:
        loss_fn = denoising_loss
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="training", disable=not progress):
        batch = torch.randint(0, points.shape[0], (batch_size,), generator=generator)  # (B,)
        batch_labels = None
        if labels is not None:
            batch_labels = labels[batch].clone()  # (B,)
            hide = torch.rand(batch_size, generator=generator) < label_dropout  # (B,)
            batch_labels[hide] = NO_LABEL
        loss = loss_fn(model, points[batch], batch_labels, scheduler, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


class NoisyClassifier(nn.Module):
    """p(label | x_t, t): tells cats from dogs even in noisy points. Returns logits (N, 2)."""

    def __init__(self, hidden=64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + 16, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x, timesteps):
        if not torch.is_tensor(timesteps) or timesteps.ndim == 0:
            timesteps = torch.full((x.shape[0],), int(timesteps))
        return self.net(torch.cat([x, timestep_features(timesteps)], dim=1))


def train_classifier(classifier, points, labels, scheduler, generator, steps=1000, batch_size=256, lr=2e-3,
                     progress=True):
    """Train `classifier` on points noised to random timesteps (cross-entropy); returns the losses."""
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses = []
    classifier.train()
    for _ in tqdm(range(steps), desc="training the classifier", disable=not progress):
        batch = torch.randint(0, points.shape[0], (batch_size,), generator=generator)  # (B,)
        timesteps = torch.randint(0, NUM_TRAIN_TIMESTEPS, (batch_size,), generator=generator)  # (B,)
        noise = torch.randn(batch_size, 2, generator=generator)  # (B, 2)
        noisy = scheduler.add_noise(points[batch], noise, timesteps)  # (B, 2)
        loss = F.cross_entropy(classifier(noisy, timesteps), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    classifier.eval()
    return losses


def ideal_noise_prediction(x, timesteps, scheduler, labels=None, spread=SPREAD):
    """E[eps | x_t] for the two-peak data, exactly: what a perfect noise predictor would answer.

    x: (N, 2); timesteps: an int or (N,); labels: None (both kinds) or (N,) with CAT, DOG or NO_LABEL.
    Noised to step t, each peak is a Gaussian around sqrt(alphabar) * center with variance
    alphabar * spread^2 + 1 - alphabar, and eps_hat = -sqrt(1 - alphabar) * grad log p_t(x).
    """
    if not torch.is_tensor(timesteps) or timesteps.ndim == 0:
        timesteps = torch.full((x.shape[0],), int(timesteps))
    alphabar = scheduler.alphas_cumprod[timesteps][:, None, None]  # (N, 1, 1)
    variance = alphabar * spread**2 + 1 - alphabar  # (N, 1, 1)
    centers = alphabar.sqrt() * torch.tensor([CAT_CENTER, DOG_CENTER])[None]  # (N, 2 peaks, 2)
    offsets = centers - x[:, None, :]  # (N, 2 peaks, 2)
    log_likelihood = -(offsets**2).sum(dim=2) / (2 * variance[:, :, 0])  # (N, 2 peaks)
    weights = torch.softmax(log_likelihood, dim=1)  # (N, 2 peaks): p(peak | x_t)
    if labels is not None:
        known = labels != NO_LABEL
        weights[known] = F.one_hot(labels[known], num_classes=2).to(weights.dtype)
    score = (weights[:, :, None] * offsets).sum(dim=1) / variance[:, 0]  # (N, 2): grad log p_t(x)
    return -(1 - alphabar[:, 0]).sqrt() * score


def sliced_wasserstein(samples, reference, num_directions=128, seed=2):
    """The sliced Wasserstein distance between two equally large point clouds (N, 2); returns a float.

    Project both clouds on a direction, sort each list of numbers and pair them
    up smallest with smallest: the mean absolute difference of the pairs is the
    1-D Wasserstein distance, the average distance each point must move to turn
    one distribution into the other. Averaged over `num_directions` random unit
    directions (Rabin et al. 2011; Deshpande et al. 2018). The directions come
    from `seed`, so every measurement made with the same seed uses the same ones.
    0 means the same distribution; two independent samples of one distribution
    are a little apart (the "floor" the notebooks print).
    """
    if samples.shape != reference.shape or samples.ndim != 2:
        raise ValueError(f"samples and reference must both be (N, d) with the same N, got "
                         f"{tuple(samples.shape)} and {tuple(reference.shape)}")
    directions = torch.randn(num_directions, samples.shape[1], generator=torch.Generator().manual_seed(seed))
    directions = directions / directions.norm(dim=1, keepdim=True)  # (D, d) unit vectors
    sorted_samples = (samples @ directions.T).sort(dim=0).values  # (N, D): one sorted column per direction
    sorted_reference = (reference @ directions.T).sort(dim=0).values  # (N, D)
    return (sorted_samples - sorted_reference).abs().mean().item()  # mean over pairs and directions
