"""The ``remotemedia`` command (also ``python -m stream``).

With no arguments it runs the demo job: a generated stereo test signal at 48 kHz, in 20 ms frames
as a live source would send them, through a speech-model front end (down-mix, resample to 16 kHz,
gain, 512-sample frames, int16), written to a WAV file, then the per-stage table.

Every error a user can cause prints one line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .chain_spec import describe_chain_syntax, parse_chain
from .errors import ConfigError, StreamError
from .frames import AudioFrame
from .manifest import ManifestError, build_nodes, load, validate_manifest
from .node import Node
from .pipeline import Pipeline
from .testing import noise, split_frames, tone

if TYPE_CHECKING:
    from media_nodes import FileSink

EXIT_ERROR = 1
EXIT_INVALID = 2


def demo_signal(seconds: float, sample_rate: int = 48000) -> np.ndarray:
    """Stereo: a 440 Hz tone left, a 1 kHz tone right, light noise on both."""
    left = tone(440.0, seconds, sample_rate, amplitude=0.4)
    right = tone(1000.0, seconds, sample_rate, amplitude=0.3)
    return np.concatenate([left, right]) + noise(seconds, sample_rate, 2, amplitude=0.05)


def demo_pipeline(backend: str | None) -> Pipeline:
    from media_nodes import ChannelMix, FormatConvert, Gain, Rebuffer, Resample

    return Pipeline(
        [
            ChannelMix(channels=1, name="mix", backend=backend),
            Resample(sample_rate=16000, name="resample", backend=backend),
            Gain(gain_db=-3.0, name="gain", backend=backend),
            Rebuffer(samples=512, name="rebuffer", backend=backend),
            FormatConvert(format="s16", name="to_s16", backend=backend),
        ],
        name="demo",
    )


async def _frames(signal: np.ndarray, rate: int) -> AsyncIterator[AudioFrame]:
    for frame in split_frames(signal, rate, 960):
        yield frame


async def run_demo(out: Path, seconds: float, backend: str | None) -> str:
    signal = demo_signal(seconds)
    pipeline = demo_pipeline(backend)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    written = 0
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        async with pipeline:
            async for frame in pipeline.process(_frames(signal, 48000)):
                wav.writeframes(frame.samples.tobytes())
                written += frame.num_samples
    elapsed = time.perf_counter() - started
    return (
        f"{seconds:.1f} s of 48 kHz stereo -> {out} ({written} samples at 16 kHz mono s16) "
        f"in {elapsed * 1000:.0f} ms, {seconds / elapsed:.0f}x real time\n{pipeline.describe()}"
    )


def _middle(args: argparse.Namespace) -> list[Node]:
    """The processing stages from --chain and/or --pipeline (the pipeline file's nodes first)."""
    nodes: list[Node] = []
    if getattr(args, "pipeline", None):
        data = load(args.pipeline)
        problems = validate_manifest(data, args.allow_module)
        if problems:
            raise ManifestError(problems, str(args.pipeline))
        nodes.extend(build_nodes(data, args.allow_module)[0])
    if getattr(args, "chain", None):
        nodes.extend(parse_chain(args.chain, args.backend))
    return nodes


def _media_duration(path: str) -> float | None:
    import av

    try:
        with av.open(path) as container:
            return None if container.duration is None else container.duration / 1_000_000
    except (av.FFmpegError, OSError):
        return None  # FileSource reports the real problem with its own error


def _same_file(a: str, b: str) -> bool:
    """True when both paths name one file: the same path, a symlink to it or a hard link."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # one does not exist (or is a URL): not the same file
        return False


async def cmd_process(args: argparse.Namespace) -> str:
    """Decode, run the stages, encode. The output is written under a temporary name and put in
    place only when the whole input went through; a failed run names what it left, if anything.
    """
    from media_nodes import FileSink, FileSource

    from .console import ProgressProbe

    if _same_file(args.input, args.output):
        raise ConfigError(
            f"{args.output} is the input file {args.input}"
            f"{'' if args.input == args.output else ' (a link to it)'}: write to another path"
        )
    middle = _middle(args)
    probe = ProgressProbe(_media_duration(args.input))
    source = FileSource(args.input, realtime=args.realtime, name="input")
    sink = FileSink(args.output, name="output")
    pipeline = Pipeline([source, *middle, probe, sink], name="process")
    try:
        async with pipeline:
            async for _ in pipeline.process():
                pass
    except (StreamError, OSError) as exc:
        raise StreamError(f"{exc}; {_left_behind(sink, args.output)}") from exc
    except asyncio.CancelledError:  # Ctrl-C: main() says what was left
        args.left_behind = _left_behind(sink, args.output)
        raise
    return (
        f"{args.input} -> {args.output}: {probe.media_seconds:.2f} s of media, "
        f"{probe.speed:.1f}x real time\n{pipeline.describe()}{_stats(args, pipeline)}"
    )


def _stats(args: argparse.Namespace, pipeline: Pipeline) -> str:
    """The per-stage table of ``--stats`` (p50/p99/max, queue high-water, drops), or ''."""
    return f"\n{pipeline.stats().table()}" if getattr(args, "stats", False) else ""


def _left_behind(sink: FileSink, output: str) -> str:
    """What a run that did not finish left: the partial file, or no output."""
    if sink.partial_path is not None:
        return f"the output so far is in {sink.partial_path}"
    return f"{output} was not written"


async def cmd_live(args: argparse.Namespace) -> str:
    from media_nodes import FileSink, MicrophoneSource, SpeakerSink

    from .console import LevelProbe

    mic = MicrophoneSource(
        args.input_device, sample_rate=args.sample_rate, channels=args.channels, name="mic"
    )
    sink: Node
    counters: dict[str, Any] = {"overflows": lambda: mic.stats["overflows"]}
    front: list[Node] = []
    if args.out:
        if args.aec:
            raise ConfigError("--aec cancels the speaker's echo: it cannot be used with --out")
        sink = FileSink(args.out, name="output")
    else:
        speaker = SpeakerSink(args.output_device, name="speaker")
        counters["underruns"] = lambda: speaker.stats["underruns"]
        sink = speaker
        if args.aec:  # duplex: what the speaker plays, on the microphone's clock and rate
            from media_nodes import ChannelMix, EchoCancel

            if args.channels != 1:
                front.append(ChannelMix(channels=1, name="mono", backend=args.backend))
            reference = speaker.reference(microphone=mic)
            front.append(EchoCancel(reference, name="echo_cancel", backend=args.backend))
    levels = LevelProbe(counters)
    pipeline = Pipeline([mic, *front, *_middle(args), levels, sink], name="live")
    async with pipeline:
        # the sink emits nothing: this runs until Ctrl-C or --seconds, which closes the stream
        try:
            with contextlib.suppress(TimeoutError):
                async with (
                    asyncio.timeout(args.seconds),
                    contextlib.aclosing(pipeline.process()) as out,
                ):
                    async for _ in out:
                        pass
        except asyncio.CancelledError:  # Ctrl-C: the recording ends here, as it should
            if isinstance(sink, FileSink):
                sink.flush()
            args.stats_table = _stats(args, pipeline)  # main() prints it on its way out
            raise
        if isinstance(sink, FileSink):  # a stop is the end of a live stream: the file is whole
            sink.flush()
    return f"\n{levels.line()}\n{pipeline.describe()}{_stats(args, pipeline)}"


async def cmd_run(args: argparse.Namespace) -> str:
    pipeline = Pipeline.from_manifest(args.manifest, allow_modules=args.allow_module)
    count = 0
    async with pipeline:
        async for _ in pipeline.process():
            count += 1
    return f"{args.manifest}: {count} items out\n{pipeline.describe()}"


def cmd_validate(args: argparse.Namespace) -> tuple[str, int]:
    data = load(args.manifest)  # ManifestError (one line, exit 1) if over a limit or unparsable
    problems = validate_manifest(data, args.allow_module)
    if problems:
        return "\n".join(f"{args.manifest}: {p}" for p in problems), EXIT_INVALID
    return f"{args.manifest}: ok, {len(data['nodes'])} stages", 0


def cmd_devices(args: argparse.Namespace) -> str:
    from media_nodes import list_devices

    rows = [f"{'':2} {'#':>3}  {'name':<40} {'in':>3} {'out':>3}  {'rate':>7}"]
    for d in list_devices():
        mark = ("<" if d["default_input"] else " ") + (">" if d["default_output"] else " ")
        rows.append(
            f"{mark} {d['index']:>3}  {d['name'][:40]:<40} {d['max_input_channels']:>3} "
            f"{d['max_output_channels']:>3}  {d['default_sample_rate']:>7.0f}"
        )
    rows.append("< default input, > default output")
    return "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    trust = argparse.ArgumentParser(add_help=False)
    trust.add_argument(
        "--allow-module",
        action="append",
        default=[],
        metavar="PREFIX",
        help="let the pipeline file's module:Class types import modules under PREFIX "
        "(repeatable; media_nodes and stream always may)",
    )
    stages = argparse.ArgumentParser(add_help=False, parents=[trust])
    stages.add_argument("--chain", help=f"stages, comma-separated: {describe_chain_syntax()}")
    stages.add_argument("--pipeline", type=Path, help="a pipeline file (JSON/YAML) of stages")
    stages.add_argument("--backend", choices=["auto", "rust", "python"], default=None)
    stats = argparse.ArgumentParser(add_help=False)
    stats.add_argument(
        "--stats",
        action="store_true",
        help="print each stage's time (p50/p99/max), queue high-water and drops at the end",
    )

    parser = argparse.ArgumentParser(
        prog="remotemedia", description="RemoteMedia: real-time audio and video pipelines"
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", parents=[common], help="run the demo job (the default)")
    demo.add_argument("--out", type=Path, default=Path("out/demo.wav"), help="WAV file to write")
    demo.add_argument("--seconds", type=float, default=10.0, help="length of the test signal")
    demo.add_argument("--backend", choices=["auto", "rust", "python"], default=None)

    proc = sub.add_parser("process", parents=[common, stages, stats], help="file -> stages -> file")
    proc.add_argument("input", help="any file or URL ffmpeg reads")
    proc.add_argument("output", help="output file; container and codec from the extension")
    proc.add_argument("--realtime", action="store_true", help="pace input at its timestamps")

    live = sub.add_parser(
        "live", parents=[common, stages, stats], help="microphone -> stages -> speaker"
    )
    live.add_argument("--input-device", help="input device index or name substring")
    live.add_argument("--output-device", help="output device index or name substring")
    live.add_argument("--out", help="write to this file instead of the speaker")
    live.add_argument("--sample-rate", type=int, default=48000)
    live.add_argument("--channels", type=int, default=1)
    live.add_argument("--seconds", type=float, default=None, help="stop after this long")
    live.add_argument(
        "--aec", action="store_true", help="cancel the speaker's echo in the microphone signal"
    )

    run = sub.add_parser("run", parents=[common, trust], help="run a pipeline file")
    run.add_argument("manifest", type=Path)
    val = sub.add_parser("validate", parents=[common, trust], help="check a pipeline file")
    val.add_argument("manifest", type=Path)
    sub.add_parser("devices", parents=[common], help="list audio devices")
    sub.add_parser("serve", help="WebRTC server: browsers and peers stream through a pipeline")
    sub.add_parser("connect", help="WebRTC peer: send a file or device, record what comes back")
    return parser


def _device(value: str | None) -> int | str | None:
    return int(value) if value is not None and value.isdigit() else value


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in ("serve", "connect"):  # WebRTC: they parse their own args
        from .transport.cli import connect_main, serve_main

        return (serve_main if args_list[0] == "serve" else connect_main)(args_list[1:])
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "demo")  # the demo job is the default command
    args = parser.parse_args(args_list)
    level = logging.DEBUG if args.debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    status = 0
    try:
        if args.command == "demo":
            out = asyncio.run(run_demo(args.out, args.seconds, args.backend))
        elif args.command == "process":
            out = asyncio.run(cmd_process(args))
        elif args.command == "live":
            args.input_device = _device(args.input_device)
            args.output_device = _device(args.output_device)
            out = asyncio.run(cmd_live(args))
        elif args.command == "run":
            out = asyncio.run(cmd_run(args))
        elif args.command == "validate":
            out, status = cmd_validate(args)
        else:
            out = cmd_devices(args)
    except KeyboardInterrupt:
        if getattr(args, "stats_table", ""):  # live --stats: the table of the run so far
            print(args.stats_table.lstrip("\n"))
        left = getattr(args, "left_behind", None)  # process: the output is not whole
        print(f"remotemedia: stopped{'; ' + left if left else ''}", file=sys.stderr)
        return 130
    except (StreamError, OSError) as exc:
        if args.debug:
            raise
        print(f"remotemedia: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(out)
    return status
