"""Data engine stage 2: run a labeler over unlabelled panoramas, write pseudo-labels + a manifest.

Output folder::

    OUT/depth/<id>.npy      float32 (H, W) radial range in metres at the labeler's input size;
                            +inf where the labeler's range mask says "beyond range" (sky)
    OUT/mask/<id>.npy       float16 (H, W) the labeler's pred_mask (probability of beyond range)
    OUT/manifest.jsonl      one JSON line per image (below), appended as each image is done
    OUT/list.txt            the same pseudo-labels as a "list" dataset file (RGB DEPTH m domain=D)
    OUT/info.json           the labeler checkpoint, model config and input size

Manifest line: ``{"id", "rgb", "depth", "mask", "unit": "m", "domain", "score", "confidence",
"height", "width"}`` with paths relative to the manifest's folder. ``confidence`` is the mean
certainty of the range mask (mean |2p - 1|); ``score`` starts equal to it and is replaced by the
discriminator's quality score in stage 3. ``list.txt`` makes them a dataset:
``{"type": "list", "list_file": OUT/list.txt}``.

Restartable: files are written atomically before their manifest line, and images whose id is
already in the manifest are skipped, so a killed run continues where it stopped.

Domain (indoor / outdoor) of each image: the ``domain`` field of a JSON-lines input list, else a
path component named ``indoor`` or ``outdoor`` (e.g. ``panos/outdoor/0001.jpg``), else ``--domain``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from dap_ros.settings import DEPTH_SCALE_M

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DOMAINS = ("indoor", "outdoor")


def list_inputs(source: str | Path, default_domain: str = "unknown") -> list[dict]:
    """[{"rgb": absolute path, "domain": str}] from a folder (recursive, sorted), a text file of
    paths (one a line) or a JSON-lines file with "rgb" (and optional "domain") fields."""
    source = Path(source)
    items = []
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        items = [{"rgb": str(p.resolve())} for p in paths]
    elif source.is_file():
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            entry = json.loads(line) if line.startswith("{") else {"rgb": line}
            path = Path(entry["rgb"])
            entry["rgb"] = str(path if path.is_absolute() else (source.parent / path).resolve())
            items.append(entry)
    else:
        raise FileNotFoundError(f"no such folder or list: {source}")
    for item in items:
        if item.get("domain") not in DOMAINS:
            parts = {p.lower() for p in Path(item["rgb"]).parts}
            item["domain"] = next((d for d in DOMAINS if d in parts), item.get("domain") or default_domain)
    return items


def item_id(path: str) -> str:
    """Stable id: file stem + a short hash of the full path (stems repeat across folders)."""
    digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:10]
    return f"{Path(path).stem}_{digest}"


def _save_npy(array: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def done_ids(manifest: Path) -> set[str]:
    if not manifest.is_file():
        return set()
    ids = set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            ids.add(json.loads(line)["id"])
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a kill: that image is redone
    return ids


def _repair_manifest(manifest: Path) -> None:
    """Drop a trailing partial line left by a killed run."""
    if manifest.is_file():
        lines = manifest.read_text(encoding="utf-8").splitlines()
        good = [ln for ln in lines if _parses(ln)]
        if len(good) != len(lines):
            manifest.write_text("".join(g + "\n" for g in good), encoding="utf-8")


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except json.JSONDecodeError:
        return False


@torch.no_grad()
def pseudo_label(
    checkpoint: str,
    model_config: str,
    inputs: list[dict],
    out_dir: str | Path,
    height: int = 512,
    width: int = 1024,
    batch_size: int = 4,
    device: str = "cpu",
    mask_threshold: float = 0.5,
) -> Path:
    from dap_ros.io.images import load_rgb
    from dap_ros.model import load_model
    from training.data.sample import normalize_image, rgb_to_float

    out_dir = Path(out_dir)
    (out_dir / "depth").mkdir(parents=True, exist_ok=True)
    (out_dir / "mask").mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.jsonl"
    info = {"labeler": str(checkpoint), "model_config": model_config, "height": height, "width": width,
            "mask_threshold": mask_threshold}
    info_path = out_dir / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text()) != info:
        raise SystemExit(f"error: {out_dir} holds pseudo-labels of another labeler/size ({info_path}); "
                         "use a new output folder")
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    _repair_manifest(manifest)
    skip = done_ids(manifest)
    todo = [item for item in inputs if item_id(item["rgb"]) not in skip]
    print(f"pseudo-label: {len(inputs)} images, {len(inputs) - len(todo)} already done, {len(todo)} to do",
          file=sys.stderr)
    model = load_model(checkpoint, model_config, device=device)
    failed = 0
    with open(manifest, "a", encoding="utf-8") as fh:
        for start in range(0, len(todo), batch_size):
            chunk, images = [], []
            for item in todo[start : start + batch_size]:
                try:
                    rgb = load_rgb(item["rgb"])
                except Exception as exc:  # noqa: BLE001 - an unreadable file is reported and skipped, never fatal
                    print(f"pseudo-label: skipping {item['rgb']}: {exc}", file=sys.stderr)
                    failed += 1
                    continue
                chunk.append(item)
                images.append(normalize_image(rgb_to_float(rgb, height, width)))
            if not chunk:
                continue
            pred = model(torch.stack(images).to(device))
            depth = pred["pred_depth"][:, 0].float().cpu().numpy() * DEPTH_SCALE_M
            prob = pred["pred_mask"][:, 0].float().cpu().numpy()
            for i, item in enumerate(chunk):
                ident = item_id(item["rgb"])
                in_range = (1.0 - prob[i]) > mask_threshold
                range_m = np.where(in_range, depth[i], np.inf).astype(np.float32)
                _save_npy(range_m, out_dir / "depth" / f"{ident}.npy")
                _save_npy(prob[i].astype(np.float16), out_dir / "mask" / f"{ident}.npy")
                confidence = float(np.mean(np.abs(2.0 * prob[i] - 1.0)))
                record = {
                    "id": ident,
                    "rgb": item["rgb"],
                    "depth": f"depth/{ident}.npy",
                    "mask": f"mask/{ident}.npy",
                    "unit": "m",
                    "domain": item["domain"],
                    "score": confidence,
                    "confidence": confidence,
                    "height": height,
                    "width": width,
                }
                fh.write(json.dumps(record) + "\n")
                fh.flush()
    if failed:
        print(f"pseudo-label: {failed} unreadable images skipped", file=sys.stderr)
    write_list_file(manifest, out_dir / "list.txt")
    return manifest


def write_list_file(manifest: Path, path: Path, records: list[dict] | None = None) -> Path:
    """The manifest's records as a "list" dataset file (training/DATA_AND_LOSSES.md):
    ``RGB DEPTH m domain=D`` with absolute paths, so ``{"type": "list", "list_file": path}`` reads them."""
    from training.checkpointing import atomic_write_text

    if records is None:
        records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if _parses(line)]
    lines = []
    for r in records:
        rgb = Path(r["rgb"]) if Path(r["rgb"]).is_absolute() else manifest.parent / r["rgb"]
        depth = Path(r["depth"]) if Path(r["depth"]).is_absolute() else manifest.parent / r["depth"]
        domain = r.get("domain") if r.get("domain") in DOMAINS else "unknown"
        lines.append(f"{shlex.quote(str(rgb.resolve()))} {shlex.quote(str(depth.resolve()))} m domain={domain}")
    return atomic_write_text("".join(line + "\n" for line in lines), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.engine pseudo-label",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the labeler (exported .pth or training checkpoint)")
    parser.add_argument("--model-config", default="vitl")
    parser.add_argument("--images", required=True, help="folder of panoramas, text list or JSON-lines list")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--domain", default="unknown", help="domain of images that carry no tag")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    inputs = list_inputs(args.images, args.domain)
    manifest = pseudo_label(args.checkpoint, args.model_config, inputs, args.out, args.height, args.width,
                            args.batch_size, args.device)
    print(manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
