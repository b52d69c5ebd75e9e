"""Write a synthetic ``shapes`` clip as a real H.264 MP4 (for demos, tests and benchmarks).

python -m vsa.tools.make_clip out/clips/demo_clip.mp4 --seed 7 --width 1280 --height 720 --fps 25 --frames 250
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vsa.sinks.video import VideoWriter
from vsa.sources.synthetic import ShapesScene, SyntheticParams


def make_clip(
    path: str | Path,
    seed: int = 7,
    width: int = 1280,
    height: int = 720,
    fps: float = 25.0,
    frames: int = 250,
    objects: int = 4,
    crf: int = 18,
) -> Path:
    scene = ShapesScene(
        SyntheticParams(
            seed=seed,
            fps=fps,
            width=width,
            height=height,
            frames=frames,
            objects=objects,
            pace=False,
        )
    )
    writer = VideoWriter(path, fps=fps, crf=crf, fragmented=False)
    for k in range(frames):
        image, _ = scene.render(k)
        writer.write(image, k / fps)
    writer.close()
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--objects", type=int, default=4)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = p.parse_args(argv)
    if Path(args.path).exists() and not args.force:
        print(f"{args.path} exists (use --force to overwrite)")
        return 0
    make_clip(args.path, args.seed, args.width, args.height, args.fps, args.frames, args.objects)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
