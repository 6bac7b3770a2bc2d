"""The ``omnimer`` command line (the only module of the library that parses arguments).

    omnimer synth   --out DIR [--clips N] [--speakers N] [--seed S] [--from-annotations DIR]
                    [--label-in all|text|audio|video]
    omnimer ingest  --format indomer|chsims|meld|jsonl --input DIR --out DIR [--frames T] [--size PX]
                    [--max-audio-seconds S] [--valid-fraction F] [--seed S] [--quarantine] [--overwrite]
    omnimer inspect DIR
    omnimer tiny-model --out DIR [--full] [--seed S]
    omnimer train --config FILE [key=value ...]

Exit status: 0 on success, 2 when the input is refused (each problem printed as file:row:column: reason).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omnimer.cluster import connect
from omnimer.config import FORMATS, IngestConfig

log = logging.getLogger("omnimer")


def _synth(args: argparse.Namespace) -> int:
    from omnimer.data.synthetic import SynthConfig, synthesize

    config = SynthConfig(
        clips=args.clips,
        speakers=args.speakers,
        seed=args.seed,
        seconds=args.seconds,
        fps=args.fps,
        size=args.size,
        label_in=args.label_in,
    )
    summary = synthesize(
        Path(args.out),
        config,
        from_annotations=Path(args.from_annotations) if args.from_annotations else None,
    )
    splits = ", ".join(
        f"{name} {part['clips']} clips / {part['videos']} videos" for name, part in summary["splits"].items()
    )
    sys.stdout.write(
        f"synthesized {summary['clips']} clips of {summary['speakers']} speakers into {args.out}: {splits}\n"
    )
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from omnimer.data.formats import ManifestError
    from omnimer.data.ingest import IngestError, ingest

    cfg = IngestConfig(
        format=args.format,
        frames=args.frames,
        size=args.size,
        max_audio_seconds=args.max_audio_seconds,
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        shard_mb=args.shard_mb,
        video_dir=args.video_dir,
        audio_dir=args.audio_dir,
        label_sets=args.label_sets,
    )
    connect(args.num_cpus)
    try:
        info = ingest(
            Path(args.input), Path(args.out), cfg, quarantine=args.quarantine, overwrite=args.overwrite
        )
    except (IngestError, ManifestError) as err:
        sys.stderr.write(f"omnimer ingest: {err}\n")
        return 2
    rows = info["counts"]["rows"]
    sys.stdout.write(
        f"ingested {sum(rows.values())} clips into {args.out}: "
        + ", ".join(f"{s} {n}" for s, n in rows.items())
        + f"; {len(info['shards'])} shards; {len(info['quarantined'])} quarantined\n"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from omnimer.data.shards import inspect_dataset

    try:
        sys.stdout.write(inspect_dataset(Path(args.dir)) + "\n")
    except (FileNotFoundError, ValueError) as err:
        sys.stderr.write(f"omnimer inspect: {err}\n")
        return 2
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    from omnimer.model.tiny import build_tiny_model

    path = build_tiny_model(Path(args.out), seed=args.seed, full=args.full)
    kind = "full Qwen2.5-Omni" if args.full else "Qwen2.5-Omni Thinker"
    sys.stdout.write(f"tiny random-init {kind} checkpoint (seed {args.seed}) written to {path}\n")
    return 0


def _train(args: argparse.Namespace) -> int:
    from omnimer import storage
    from omnimer.config import load_train_config
    from omnimer.training.driver import run_training

    cfg = load_train_config(args.config, args.overrides)
    connect(args.num_cpus)
    state = run_training(cfg).state
    selected = state.selected if state is not None else None
    valid = (selected.valid if selected else None) or {}
    test = (selected.test if selected else None) or {}
    sys.stdout.write(
        f"run {cfg.run.name}: best epoch {state.best_epoch if state else None}, valid macro-F1 "
        f"{valid.get('macro_f1', float('nan')):.4f}, "
        f"test macro-F1 {test.get('macro_f1', float('nan')):.4f} "
        f"-> {storage.join(cfg.run.output_dir, cfg.run.name, 'record.json')}\n"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnimer", description="OmniMER data, training and sweep tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="render a synthetic IndoMER-format corpus (mp4 + wav + annotations)")
    synth.add_argument("--out", required=True, help="output dir (must not exist or be empty)")
    synth.add_argument("--clips", type=int, default=200)
    synth.add_argument("--speakers", type=int, default=20)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--seconds", type=float, default=2.0, help="clip duration")
    synth.add_argument("--fps", type=int, default=8, help="video frame rate")
    synth.add_argument("--size", type=int, default=96, help="video width and height in pixels")
    synth.add_argument("--from-annotations", help="render media for an existing IndoMER annotation set")
    synth.add_argument(
        "--label-in",
        default="all",
        help="all (default): every modality expresses the label at IndoMER-like agreement rates; text, "
        "audio or video: only that modality (and its aux target) carries the label, the others are "
        "independent of it",
    )
    synth.set_defaults(func=_synth)

    defaults = IngestConfig()
    ingest = sub.add_parser("ingest", help="decode a dataset into sharded Parquet on Ray Data")
    ingest.add_argument("--format", required=True, choices=FORMATS)
    ingest.add_argument("--input", required=True, help="dataset root (manifest files and media)")
    ingest.add_argument("--out", required=True, help="output dataset dir")
    ingest.add_argument("--frames", type=int, default=defaults.frames, help="frames sampled per clip (T)")
    ingest.add_argument("--size", type=int, default=defaults.size, help="frame height and width in pixels")
    ingest.add_argument("--max-audio-seconds", type=float, default=defaults.max_audio_seconds)
    ingest.add_argument(
        "--valid-fraction",
        type=float,
        default=defaults.valid_fraction,
        help="share of train carved into valid by whole source video",
    )
    ingest.add_argument("--seed", type=int, default=defaults.seed)
    ingest.add_argument("--shard-mb", type=int, default=defaults.shard_mb, help="target shard size in MB")
    ingest.add_argument("--video-dir", default=defaults.video_dir, help="IndoMER: folder of the mp4 files")
    ingest.add_argument("--audio-dir", default=defaults.audio_dir, help="IndoMER: folder of the wav files")
    ingest.add_argument(
        "--label-sets",
        default=defaults.label_sets,
        choices=("indomer", "chsims", "meld"),
        help="JSONL: whose label names the manifest uses",
    )
    ingest.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    ingest.add_argument(
        "--quarantine",
        action="store_true",
        help="write the good rows; list bad ones in dataset.json and quarantine.csv",
    )
    ingest.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    ingest.set_defaults(func=_ingest)

    tiny = sub.add_parser(
        "tiny-model", help="build a tiny random-init Qwen2.5-Omni Thinker + processor (HF format)"
    )
    tiny.add_argument("--out", required=True, help="output dir (a checkpoint dir for model.name_or_path)")
    tiny.add_argument(
        "--full", action="store_true", help="save a full Omni checkpoint (thinker + talker + token2wav)"
    )
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    train = sub.add_parser("train", help="train one run (Ray Train + DeepSpeed) and write its record.json")
    train.add_argument("--config", help="YAML with sections data, model, loss, train, eval, run")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.lr=1e-4 model.lora.rank=16")
    train.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (default: all)")
    train.set_defaults(func=_train)

    inspect = sub.add_parser("inspect", help="print counts, shapes and one decoded sample of a dataset")
    inspect.add_argument("dir")
    inspect.set_defaults(func=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from omnimer.storage import StorageError

    try:
        return args.func(args)
    except (ValueError, StorageError) as err:  # config validation: the message quotes the bad value
        sys.stderr.write(f"omnimer {args.command}: {err}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
