"""Gradient inversion against what medfed's coordinator receives: the cnn plan, PneumoniaMNIST.

Attack: Geiping et al., NeurIPS 2020, "Inverting Gradients" (``medfed.privacy.attacks.inversion``:
cosine matching of the whole update, total-variation prior, Adam on signed gradients, pixels boxed
to the model's input range, labels from the head's bias). The attacker is the coordinator: it
knows the global model it sent, the round's settings and seed (so it replays medfed's batch order
and augmentation draws exactly) and, in the batch settings, the true labels (a stronger attacker
than a real one). Reconstructions are min-max scaled to [0, 1] before scoring, as medfed's image
pipeline scales every film (``display_pixels``): a prior the attacker has.

What the coordinator receives is produced by medfed's own code (``training.local_update``: the
plan's training loop, Opacus DP-SGD, client-side clipping and noise), from the round-1 global
model of the ``cnn`` plan (width 16, GroupNorm, 72k parameters):

    best        one site, 1 image, 1 local SGD step (lr 0.01): the attack's best case
    fedavg      one site, 8 images, batch 8, 4 local steps of the imaging demo's recipe
                (Adam lr 1e-3, shifts of 2 px and rotations of 10 degrees)
    fedavg-sgd  the same with plain SGD (lr 0.01) and no augmentation: several steps alone
    secagg      4 such sites under secure aggregation: the coordinator sees only their sum
    record-dp   the best case under record-level DP-SGD at epsilon = 1 (delta 1e-5, C = 1,
                noise from medfed.privacy.record_level for that site's one step)
    client-dp   the best case under client-level DP (distributed DP-FedAvg): the change clipped
                to its own norm, N(0, z^2 C^2 / 4) added, z for epsilon = 1 in one round

Scores: SSIM and PSNR of each original against its best-matching reconstruction after the
attacker's 3 x 3 median filter (``inversion.denoise``), SSIM without it too, time per attack.
Writes a grid PNG (originals above denoised reconstructions, one band per setting) to --out.

    python bench/gradient_inversion.py [--settings best fedavg ...] [--iterations 500]
        [--batch-iterations 30] [--images 1] [--restarts 1] [--out DIR] [--json PATH]

The default run takes about 5 minutes on 2 cores (the secure-aggregation attack, 32 images
through 4 unrolled local trainings, is most of it); bench/RESULTS.md has longer runs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine

from medfed.data.images import ImageDataset
from medfed.data.pneumonia import display_pixels, load_split
from medfed.privacy.accounting import noise_for_epsilon
from medfed.privacy.attacks import inversion as inv
from medfed.privacy.attacks.quality import best_matches
from medfed.privacy.record_level import RecordDpRequest, plan_record_dp
from medfed.protocol.tensors import Weights
from medfed.training.local_update import ClientSettings, MemoryClientState, local_update
from medfed.training.plan import DpSgdConfig, LocalTrainConfig
from medfed.training.plans import _vision
from medfed.training.plans.cnn import _model_of
from medfed.training.registry import get_plan

SETTINGS = ("best", "fedavg", "fedavg-sgd", "secagg", "record-dp", "client-dp")
DEMO_OPTIONS = {"width": 16.0, "augment_shift": 2.0, "augment_rotate": 10.0}
DELTA = 1e-5
SITES = 4


@dataclass(frozen=True)
class Setting:
    name: str
    sees: str
    images: int  # per site
    sites: int
    config: LocalTrainConfig
    record_dp: bool = False
    client_dp: bool = False


def settings(images: int) -> dict[str, Setting]:
    one = LocalTrainConfig(epochs=0, steps=1, batch_size=1, optimizer="sgd", learning_rate=0.01)
    demo = LocalTrainConfig(
        epochs=0,
        steps=4,
        batch_size=8,
        optimizer="adam",
        learning_rate=1e-3,
        seed=7,
        options=DEMO_OPTIONS,
    )
    sgd = LocalTrainConfig(epochs=0, steps=4, batch_size=8, optimizer="sgd", learning_rate=0.01)
    return {
        "best": Setting("best", "1 site's update: 1 image, 1 SGD step", 1, images, one),
        "fedavg": Setting(
            "fedavg", "1 site's update: 8 images, 4 Adam steps, augmented", 8, 1, demo
        ),
        "fedavg-sgd": Setting(
            "fedavg-sgd", "1 site's update: 8 images, 4 SGD steps (lr 0.01)", 8, 1, sgd
        ),
        "secagg": Setting(
            "secagg", f"sum of {SITES} sites' updates (8 images each)", 8, SITES, demo
        ),
        "record-dp": Setting(
            "record-dp", "best case, DP-SGD eps=1", 1, images, one, record_dp=True
        ),
        "client-dp": Setting(
            "client-dp", "best case, client-level DP eps=1", 1, images, one, client_dp=True
        ),
    }


def site_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training films in [0, 1] as medfed's DICOM pipeline gives them, and labels."""
    train = load_split("train")
    index = np.random.default_rng(seed).choice(len(train.labels), size=count, replace=False)
    return display_pixels(train.subset(np.sort(index))), train.labels[np.sort(index)].astype(
        np.float32
    )


def observed_update(
    setting: Setting, global_model: Weights, pixels: np.ndarray, labels: np.ndarray
) -> Weights:
    """What the coordinator can compute from what it receives: sum over sites of new - old."""
    plan = get_plan("cnn", "1")
    total: dict[str, np.ndarray] = {}
    per_site = setting.images
    for site in range(len(pixels) // per_site):
        rows = slice(site * per_site, (site + 1) * per_site)
        data = ImageDataset("pneumonia", pixels[rows], labels[rows], pixels[:1], labels[:1])
        config, client = setting.config, ClientSettings()
        if setting.record_dp:
            request = RecordDpRequest(
                epsilon=1.0, delta=DELTA, noise_multiplier=0.0, max_grad_norm=1.0, accountant="rdp"
            )
            dp = plan_record_dp(request, per_site, config.batch_size, config.steps, 0, 1)
            config = LocalTrainConfig(
                **{**config.__dict__, "dp": DpSgdConfig(dp.noise_multiplier, 1.0)}
            )
        if setting.client_dp:
            clean = local_update(
                plan,
                data,
                global_model,
                config,
                client,
                MemoryClientState(),
                np.random.default_rng(0),
            )
            clip = _norm({k: clean.wire[k] - global_model[k] for k in global_model})
            z = noise_for_epsilon(1.0, DELTA, 1.0, 1, "rdp")
            client = ClientSettings(clip_norm=clip, noise_std=z * clip / math.sqrt(SITES))
        update = local_update(
            plan,
            data,
            global_model,
            config,
            client,
            MemoryClientState(),
            np.random.default_rng(site),
        )
        for k, v in update.wire.items():
            total[k] = total.get(k, 0.0) + (v.astype(np.float64) - global_model[k])
    return {k: v.astype(np.float32) for k, v in total.items()}


def attack(
    setting: Setting,
    global_model: Weights,
    observed: Weights,
    labels: np.ndarray,
    iterations: int,
    seed: int,
    restarts: int = 1,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(raw and denoised reconstructions, each min-max scaled to [0, 1], label accuracy,
    seconds)."""
    model = _model_of(global_model)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in global_model.items()})
    names = [n for n, _ in model.named_parameters()]
    target = [torch.from_numpy(observed[n]) for n in names]
    n = len(labels)
    if setting.config.steps == 1 and n == 1:
        # iDLG: the head's bias moved by -lr * (sigmoid(z) - y), noise and all
        guess = np.array([inv.recover_label(-float(observed["head.bias"][0]))], np.float32)
        label_accuracy, y = float(guess[0] == labels[0]), torch.from_numpy(guess)
    else:
        label_accuracy, y = float("nan"), torch.from_numpy(labels)
    simulate = _simulator(setting, model, y)
    config = inv.InversionConfig(iterations=iterations, tv_weight=3e-2, restarts=restarts)
    result = inv.invert(
        simulate, target, (n, 1, 28, 28), config, torch.Generator().manual_seed(seed)
    )
    raw, denoised = _scaled(result.inputs), _scaled(inv.denoise(result.inputs))
    return raw, denoised, label_accuracy, result.seconds


def _scaled(inputs: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1] per image, as medfed's image pipeline scales every film."""
    low = inputs.min(axis=(1, 2, 3), keepdims=True)
    span = inputs.max(axis=(1, 2, 3), keepdims=True) - low
    return (inputs - low) / np.maximum(span, 1e-8)


def _simulator(setting: Setting, model: torch.nn.Module, y: torch.Tensor) -> inv.Simulator:
    """The update each site's dummies would produce (new - old weights): for one SGD step that
    is -lr x their gradient (clipping and noise change its length, not its direction)."""
    c = setting.config
    per_site = [
        inv.local_training_simulator(
            model,
            y[i * setting.images : (i + 1) * setting.images],
            steps=c.steps,
            batch_size=c.batch_size,
            learning_rate=c.learning_rate,
            optimizer=c.optimizer,
            seed=c.seed,
            transform=_vision.augmentation(c.options),
        )
        for i in range(len(y) // setting.images)
    ]
    if len(per_site) == 1:
        return per_site[0]
    return inv.summed_simulator(per_site, [setting.images] * len(per_site))


def _norm(weights: Weights) -> float:
    return math.sqrt(sum(float(np.vdot(v, v)) for v in weights.values()))


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    plan = get_plan("cnn", "1")
    global_model = plan.init_weights(1, args.seed, {"width": 16.0})
    rows, bands = [], []
    for name in args.settings:
        setting = settings(args.images)[name]
        count = setting.images * setting.sites
        pixels, labels = site_images(count, args.seed)
        torch.manual_seed(args.seed)  # Opacus's Poisson sampler; DP noise stays secret
        iterations = args.iterations if setting.images == 1 else args.batch_iterations
        if setting.images == 1:  # one image per site: each site's own update, attacked alone
            groups = [slice(i, i + 1) for i in range(count)]
        else:  # a batch (or the sum of several sites' batches), attacked as a whole
            groups = [slice(0, count)]
        recon, raw, accuracy, seconds = [], [], [], 0.0
        for group in groups:
            observed = observed_update(setting, global_model, pixels[group], labels[group])
            plain, images, acc, took = attack(
                setting, global_model, observed, labels[group], iterations, args.seed, args.restarts
            )
            raw.append(plain)
            recon.append(images)
            accuracy.append(acc)
            seconds += took
        reconstructions = np.concatenate(recon)
        matches = best_matches(pixels, reconstructions)
        ssim = [m.ssim for m in matches]
        psnr = [m.psnr for m in matches]
        ssim_raw = [m.ssim for m in best_matches(pixels, np.concatenate(raw))]
        known = [a for a in accuracy if not math.isnan(a)]
        rows.append(
            {
                "setting": name,
                "sees": setting.sees,
                "images": count,
                "iterations": iterations,
                "restarts": args.restarts,
                "ssim_median_raw": statistics.median(ssim_raw),
                "ssim_max_raw": max(ssim_raw),
                "ssim_median": statistics.median(ssim),
                "ssim_max": max(ssim),
                "psnr_median": statistics.median(psnr),
                "label_accuracy": statistics.mean(known) if known else None,
                "seconds": seconds,
            }
        )
        order = [m.index for m in matches]
        bands.append(np.concatenate([pixels[:, 0], reconstructions[order, 0]], axis=1))
        print(
            f"{name}: SSIM median {rows[-1]['ssim_median']:.3f} ({seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return rows, bands


def write_grid(bands: list[np.ndarray], path: Path, per_row: int = 8) -> None:
    """One band per setting: originals on top, their best reconstructions below."""
    from PIL import Image

    tiles = []
    for band in bands:  # (n, 56, 28): original over reconstruction
        padded = np.pad(band, ((0, (-len(band)) % per_row), (1, 1), (1, 1)), constant_values=1.0)
        rows = [
            np.concatenate(list(padded[i : i + per_row]), axis=1)
            for i in range(0, len(padded), per_row)
        ]
        block = np.concatenate(rows, axis=0)
        width = (28 + 2) * per_row
        block = np.pad(block, ((0, 6), (0, width - block.shape[1])), constant_values=1.0)
        tiles.append(block)
    grid = (np.clip(np.concatenate(tiles, axis=0), 0, 1) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| setting | what the coordinator sees | images | iterations x restarts | "
        "SSIM median (max), raw | SSIM median | SSIM max | PSNR median (dB) | "
        "label recovered | attack time (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        label = "—" if r["label_accuracy"] is None else f"{r['label_accuracy']:.0%}"
        lines.append(
            f"| {r['setting']} | {r['sees']} | {r['images']} | "
            f"{r['iterations']} x {r['restarts']} | "
            f"{r['ssim_median_raw']:.3f} ({r['ssim_max_raw']:.3f}) | {r['ssim_median']:.3f} | "
            f"{r['ssim_max']:.3f} | {r['psnr_median']:.1f} | "
            f"{label} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--iterations", type=int, default=500, help="single-image attacks")
    parser.add_argument("--batch-iterations", type=int, default=30, help="batch attacks")
    parser.add_argument("--images", type=int, default=1, help="sites (images) per best case")
    parser.add_argument("--restarts", type=int, default=1, help="random starts per attack")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("reports/inversion"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows, bands = run(args)
    write_grid(bands, args.out / "grid.png")
    print(table(rows))
    print(
        f"\nmachine: {machine()}; wall {time.perf_counter() - started:.0f} s; "
        f"grid: {args.out / 'grid.png'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
