"""Data engine stage 3: a PatchGAN depth-quality discriminator, and top-K pseudo-label selection.

Training pairs: *real* = (labelled RGB, its ground-truth range + range mask), *fake* = (the same
RGB, the labeler's prediction). The discriminator sees 5 channels: normalized RGB, log range
(``1 + ln(d) / ln(1000)``: 0.1 m -> 0, 100 m -> 1; beyond range = 1) and the binary range mask.
Ground-truth pixels that are unknown (neither valid nor beyond range) take the labeler's value in
the real pair too, so holes in the ground truth are no give-away.

The quality score of a pseudo-label is the mean "real" probability over the discriminator's
patches. Selection keeps the top-K per domain (indoor / outdoor, from the pseudo-label manifest's
``domain`` field, see pseudo_label.py; any other domain value is ranked on its own).

Output folder::

    OUT/discriminator.pt    weights + optimizer + step (resumable; training is skipped when done)
    OUT/scores.jsonl        {"id", "score"} per pseudo-label (appended; restartable)
    OUT/selected.jsonl      the kept manifest lines (absolute paths, ``score`` = discriminator score)
    OUT/selected.txt        the same as a "list" dataset file: {"type": "list", "list_file": ...}
    OUT/selection.json      counts per domain and the K used
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dap_ros.settings import DEPTH_SCALE_M
from training.checkpointing import atomic_save, atomic_write_text

LOG_RANGE = math.log(1000.0)


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix style): 4x4 convolutions, stride 2 x3 then 1, GroupNorm, LeakyReLU; one
    logit per ~46x46-pixel patch. Horizontal padding wraps around (the ERP is periodic in azimuth)."""

    def __init__(self, in_channels: int = 5, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for i in range(layers):
            out = width * 2**i
            blocks += [nn.Conv2d(channels, out, 4, stride=2, padding=0)]
            if i > 0:
                blocks += [nn.GroupNorm(min(8, out), out)]
            blocks += [nn.LeakyReLU(0.2)]
            channels = out
        self.body = nn.ModuleList(blocks)
        self.head = nn.Conv2d(channels, 1, 4, stride=1, padding=0)

    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 2, 0, 0), mode="circular")  # azimuth wraps
        return F.pad(x, (0, 0, 1, 2), mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.body:
            x = layer(self._pad(x)) if isinstance(layer, nn.Conv2d) else layer(x)
        return self.head(self._pad(x))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) mean probability of "real" over patches."""
        return torch.sigmoid(self(x)).mean(dim=(1, 2, 3))


def encode(image: torch.Tensor, depth: torch.Tensor, beyond: torch.Tensor) -> torch.Tensor:
    """image (B,3,H,W) normalized; depth (B,1,H,W) official units; beyond (B,1,H,W) 0/1 -> (B,5,H,W)."""
    d = torch.where(beyond > 0.5, torch.ones_like(depth), depth.clamp(1e-3, 1.0))
    log_d = 1.0 + torch.log(d) / LOG_RANGE
    return torch.cat([image, log_d, (beyond > 0.5).float()], dim=1)


def real_and_fake(labeler: nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    image = batch["image"].to(device)
    with torch.no_grad():
        pred = labeler(image)
    pred_depth = pred["pred_depth"].float()
    pred_beyond = (pred["pred_mask"].float() > 0.5).float()
    valid = batch["valid"].to(device)
    gt_beyond = batch["beyond"].to(device).float()
    known = valid | (gt_beyond > 0.5)
    real_depth = torch.where(known, batch["depth"].to(device), pred_depth)
    real_beyond = torch.where(known, gt_beyond, pred_beyond)
    return encode(image, real_depth, real_beyond), encode(image, pred_depth, pred_beyond)


def train_discriminator(
    labeler: nn.Module, dataset, out_dir: Path, steps: int, batch_size: int = 4, lr: float = 2e-4,
    width: int = 32, device: torch.device | None = None, seed: int = 0, ckpt_every: int = 100,
) -> PatchDiscriminator:
    """Train (or continue training) the discriminator; its state is in OUT/discriminator.pt."""
    device = device or torch.device("cpu")
    from training.data import collate

    path = out_dir / "discriminator.pt"
    torch.manual_seed(seed)
    disc = PatchDiscriminator(width=width).to(device)
    opt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    step = 0
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        disc.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        if state.get("width") != width:
            raise SystemExit(f"error: {path} was trained with width {state.get('width')}, not {width}")
    if step >= steps:
        print(f"discriminator: {path} already trained ({step} steps)", file=sys.stderr)
        return disc.eval()
    labeler.eval()
    disc.train()
    bce = nn.BCEWithLogitsLoss()
    epoch = step  # a different shuffle per restart; exactness is not needed in this stage
    while step < steps:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
            collate_fn=collate, generator=torch.Generator().manual_seed(seed * 7919 + epoch),
        )
        for batch in loader:
            real, fake = real_and_fake(labeler, batch, device)
            logits_real, logits_fake = disc(real), disc(fake)
            loss = bce(logits_real, torch.ones_like(logits_real)) + bce(logits_fake, torch.zeros_like(logits_fake))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 10 == 0 or step == steps:
                print(f"discriminator: step {step}/{steps} loss {loss.item():.4f}", file=sys.stderr)
            if step % ckpt_every == 0 or step == steps:
                atomic_save({"model": disc.state_dict(), "optimizer": opt.state_dict(), "step": step,
                             "width": width}, path)
            if step >= steps:
                break
        epoch += 1
    return disc.eval()


def _read_manifest(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _absolute(record: dict, base: Path) -> dict:
    record = dict(record)
    for key in ("rgb", "depth", "mask"):
        if record.get(key) and not Path(record[key]).is_absolute():
            record[key] = str((base / record[key]).resolve())
    return record


@torch.no_grad()
def score_pseudo_labels(
    disc: PatchDiscriminator, manifest: Path, out_dir: Path, device: torch.device
) -> dict[str, float]:
    """{id: score}; appended to OUT/scores.jsonl one line per pseudo-label, already-scored ids skipped."""
    from dap_ros.io.images import load_rgb
    from training.data.sample import normalize_image, rgb_to_float
    from training.engine.pseudo_label import _repair_manifest

    scores_path = out_dir / "scores.jsonl"
    _repair_manifest(scores_path)  # a line cut by a kill
    scores = {r["id"]: float(r["score"]) for r in _read_manifest(scores_path)} if scores_path.is_file() else {}
    with open(scores_path, "a", encoding="utf-8") as fh:
        for record in _read_manifest(manifest):
            if record["id"] in scores:
                continue
            r = _absolute(record, manifest.parent)
            range_m = np.load(r["depth"]).astype(np.float32)
            h, w = range_m.shape
            image = normalize_image(rgb_to_float(load_rgb(r["rgb"]), h, w))[None]
            beyond = ~np.isfinite(range_m) | (range_m > DEPTH_SCALE_M)
            depth = np.where(beyond, 1.0, np.clip(range_m / DEPTH_SCALE_M, 1e-3, 1.0)).astype(np.float32)
            beyond_map = torch.from_numpy(beyond.astype(np.float32))[None, None]
            x = encode(image, torch.from_numpy(depth)[None, None], beyond_map)
            score = float(disc.score(x.to(device))[0])
            scores[record["id"]] = score
            fh.write(json.dumps({"id": record["id"], "score": score}) + "\n")
            fh.flush()
    return scores


def select_top_k(manifest: Path, scores: dict[str, float], out_dir: Path, top_k: int) -> Path:
    """Keep the top_k best-scored pseudo-labels of each domain -> OUT/selected.jsonl (manifest
    lines) and OUT/selected.txt (the "list" dataset file stage 4 trains on); returns the latter."""
    by_domain: dict[str, list[dict]] = {}
    for record in _read_manifest(manifest):
        record = _absolute(record, manifest.parent)
        record["score"] = scores[record["id"]]
        by_domain.setdefault(record.get("domain", "unknown"), []).append(record)
    kept, counts = [], {}
    for domain in sorted(by_domain):
        ranked = sorted(by_domain[domain], key=lambda r: (-r["score"], r["id"]))
        kept.extend(ranked[:top_k])
        counts[domain] = {"candidates": len(ranked), "kept": min(top_k, len(ranked)),
                          "min_kept_score": ranked[min(top_k, len(ranked)) - 1]["score"] if ranked else None}
    from training.engine.pseudo_label import write_list_file

    atomic_write_text("".join(json.dumps(r) + "\n" for r in kept), out_dir / "selected.jsonl")
    path = write_list_file(manifest, out_dir / "selected.txt", kept)
    atomic_write_text(json.dumps({"top_k_per_domain": top_k, "domains": counts}, indent=2) + "\n",
                      out_dir / "selection.json")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.engine select", description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeler", required=True, help="labeler checkpoint (exported .pth or training checkpoint)")
    parser.add_argument("--model-config", default="vitl")
    parser.add_argument("--labelled", required=True, help="dataset spec (JSON/YAML text or file) of labelled data")
    parser.add_argument("--pseudo", required=True, help="manifest.jsonl written by pseudo-label")
    parser.add_argument("--out", required=True)
    parser.add_argument("--top-k", type=int, default=300_000,
                        help="kept per domain (paper: 300K indoor + 300K outdoor)")
    parser.add_argument("--steps", type=int, default=2000, help="discriminator training steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--width", type=int, default=32, help="channels of the first PatchGAN layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    import yaml

    from dap_ros.model import load_model
    from training.data import build_dataset

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    text = Path(args.labelled).read_text() if Path(args.labelled).is_file() else args.labelled
    labelled = build_dataset(dict(yaml.safe_load(text)))
    labeler = load_model(args.labeler, args.model_config, device=device)
    disc = train_discriminator(labeler, labelled, out_dir, args.steps, args.batch_size, args.lr, args.width,
                               device, args.seed)
    scores = score_pseudo_labels(disc, Path(args.pseudo), out_dir, device)
    path = select_top_k(Path(args.pseudo), scores, out_dir, args.top_k)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
