"""``gan-stylize``: optimisation-based neural style transfer (Gatys, Ecker & Bethge 2016, "Image
Style Transfer Using Convolutional Neural Networks", CVPR).

``gan-stylize content=digit:3 style=stripes out=result.png`` optimises the pixels of an image so
that its features at ``content_layer`` match the content image's (eq. 1) and the Gram matrices of
its features at ``style_layers`` match the style image's (eqs. 3-5), weighted ``alpha`` and
``beta`` (eq. 7), with an optional total-variation term; the optimisation is
:func:`gan_research.losses.style_transfer.optimize_image`. The feature network is the
``perceptual`` config group: ``random`` (a seeded random conv net, the default: no weights file
ships here), ``vgg19`` (the paper's network, from a local weights file) or ``classifier`` (the
embedded digits' classifier). The content is an image file or an embedded digit
(``digit:<index>``); the style a procedural texture (:mod:`gan_research.data.styles`) or an image
file. It writes the result, a strip (content | style | iterates | result) and, if asked, the
per-step losses as JSON; a progress bar (rich, on stderr) shows the losses as it runs.

As the other tools: every check runs before anything is written (the images are loaded, the
network is built and its target features computed), a refusal is one ``error: ...`` line on
stderr with exit code 2, and a plain command runs without Hydra's job machinery, so the images are
its only output. ``--help`` and ``--cfg job`` are Hydra's.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from gan_research.config import CONFIG_DIR
from gan_research.data.base import resize_images
from gan_research.data.digits import DigitsDataModule
from gan_research.data.styles import load_image, make_style, style_names
from gan_research.errors import (
    ConfigError,
    DataError,
    GanResearchError,
    exit_with_error,
    one_line,
    user_error_in,
)
from gan_research.losses.style_transfer import (
    StyleTransferObjective,
    StylizeResult,
    check_schedule,
    optimize_image,
)
from gan_research.utils.devices import resolve_device
from gan_research.utils.hydra_errors import hydra_error_message
from gan_research.utils.images import convert_channels
from gan_research.utils.safe_config import checked_node
from gan_research.utils.validation import check_int_at_least

CONFIG_NAME = "stylize"
_USAGE = "gan-stylize content=<image file | digit:<index>> style=<image file | style name> out=<file.png>"
_DIGIT = "digit:"
_NUM_DIGITS = 1797
_DIGIT_SIZE = 8
# The learning rate when lr=null: L-BFGS's strong-Wolfe line search scales its step itself (1 is
# its natural unit step); Adam's step is about lr per pixel, so 0.05 of the [-1, 1] range.
_DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.05}
# The digits classifier of perceptual=classifier reads digits at this size (the one the metrics
# train and cache); it resizes any image to it.
_CLASSIFIER_SIZE = 32
# Strip layout: pixels between tiles, and a caption band above them when the tiles are wide
# enough for the labels.
_GAP = 2
_CAPTION_HEIGHT = 14
_CAPTION_MIN_SIZE = 48


# --------------------------------------------------------------------------- inputs


def _text(value: Any, key: str, example: str) -> str:
    """A path-like option as text (Hydra parses ``content=3`` as an int, ``out=null`` as None)."""
    if value is None or isinstance(value, (bool, DictConfig, ListConfig, list, dict)) or str(value) == "":
        raise ConfigError(f"{key}={value!r} is invalid: expected {example}")
    return str(value)


def _load_file(path: str, key: str, size: int, channels: int) -> Tensor:
    """An image file for option ``key``, its error naming the option."""
    try:
        return load_image(path, size, channels)
    except DataError as err:
        raise DataError(f"{key}={path}: {err}") from None


def load_content(spec: Any, size: int, channels: int) -> tuple[Tensor, str]:
    """The content image (channels, size, size) in [-1, 1] and a description: an embedded digit
    (``digit:<index>``, scikit-learn's order) or an image file.

    Raises:
        ConfigError: a digit index out of range or not a number.
        DataError: a missing or unreadable file.
    """
    text = _text(spec, "content", "an image file or digit:<index>, e.g. content=digit:3")
    if text.startswith(_DIGIT):
        index = text.removeprefix(_DIGIT)
        if not index.isdigit() or int(index) >= _NUM_DIGITS:
            raise ConfigError(
                f"content={text} is invalid: expected digit:<index> with index 0 ... {_NUM_DIGITS - 1} "
                "(the embedded scikit-learn digits, e.g. content=digit:3)"
            )
        # The digits at their native 8 px, then the one asked resized as DigitsDataModule resizes
        # them all: the whole set at a large size would take gigabytes (1797 x 3 x 512² floats).
        datamodule = DigitsDataModule(image_size=_DIGIT_SIZE, channels=1)
        datamodule.setup("fit")
        image, label = datamodule.train_set[int(index)]
        image = resize_images(image.unsqueeze(0), size).clamp_(-1.0, 1.0)
        return convert_channels(image, channels)[0].contiguous(), f"embedded digit {index} (a {int(label)})"
    if isinstance(spec, int) and not Path(text).exists():
        # content=3 on the command line: Hydra made it a number; no file by that name.
        raise ConfigError(
            f"content={text}: no such image file; for an embedded digit write content=digit:{text}"
        )
    return _load_file(text, "content", size, channels), f"image {text}"


def load_style(spec: Any, size: int, channels: int, seed: int) -> tuple[Tensor, str]:
    """The style image (channels, size, size) in [-1, 1] and a description: a procedural style
    (:func:`gan_research.data.styles.make_style`, ``seed`` picks its colours) or an image file.

    Raises:
        ConfigError: a name that is neither a procedural style nor a path (listing the styles).
        DataError: a missing or unreadable file.
    """
    names = style_names()
    text = _text(spec, "style", f"a procedural style ({', '.join(names)}) or an image file")
    if text in names:
        return make_style(text, size, channels, seed), f"procedural style {text} (seed {seed})"
    path = Path(text)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return _load_file(text, "style", size, channels), f"image {text}"
    # A bare word with no file by that name: a mistyped style name far more often than a file.
    raise ConfigError(
        f"style={text} is neither a procedural style nor an image file; styles: {', '.join(names)} "
        "(or give the path of an image file)"
    )


def _output_path(value: Any, key: str, suffixes: Sequence[str] | None = None) -> Path:
    """An output file, refused now (not after the optimisation) when it cannot be written.

    ``suffixes``: the suffixes allowed; None: any image format PIL writes.
    """
    path = Path(_text(value, key, f"a file path, e.g. {key}=result.png"))
    suffix = path.suffix.lower()
    if suffixes is None:
        # Image formats PIL can write, by extension (.png, .jpg, .bmp, .webp, .tif, ...).
        fmt = Image.registered_extensions().get(suffix)
        if fmt is None or fmt not in Image.SAVE:
            raise ConfigError(f"{key}={path}: {suffix or 'no suffix'} is not an image format; use e.g. .png")
    elif suffix not in suffixes:
        raise ConfigError(f"{key}={path}: expected a {' or '.join(suffixes)} file")
    if path.is_dir():
        raise ConfigError(f"{key}={path} is a directory; name a file in it, e.g. {key}={path / 'result.png'}")
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"{key}={path}: its directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: its directory {parent} is not writable")
    return path


def perceptual_options() -> list[str]:
    """The ``perceptual`` options that build a feature network (``none`` builds none)."""
    return [
        p.stem
        for p in sorted((Path(CONFIG_DIR) / "perceptual").glob("*.yaml"))
        if "_target_" in OmegaConf.load(p)
    ]


def _check_network(cfg: DictConfig, choice: str) -> DictConfig:
    """The ``perceptual`` node, refused when it builds no network (``perceptual=none``)."""
    node = cfg.get("perceptual")
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(
            f"perceptual={choice} has no feature network; choose "
            f"{', '.join(f'perceptual={o}' for o in perceptual_options())}"
        )
    return node


def _network_settings(cfg: DictConfig, choice: str) -> dict[str, Any]:
    """content_layer, style_layers, beta and tv_weight: the command's, else the network's defaults."""
    defaults = cfg.networks.get(choice) if isinstance(cfg.get("networks"), DictConfig) else None
    settings = {}
    for key in ("content_layer", "style_layers", "beta", "tv_weight"):
        value = cfg.get(key)
        if value is None:
            if defaults is None or defaults.get(key) is None:
                raise ConfigError(
                    f"{key}=null and perceptual={choice} has no default for it (networks.{choice}.{key}); "
                    f"set {key}=..."
                )
            value = defaults.get(key)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        settings[key] = value
    if not isinstance(settings["content_layer"], str):
        raise ConfigError(f"content_layer={settings['content_layer']!r} is invalid: expected a layer name")
    if not isinstance(settings["style_layers"], dict) or not settings["style_layers"]:
        raise ConfigError(
            f"style_layers={settings['style_layers']!r} is invalid: expected {{layer: weight}}, "
            "e.g. style_layers={scale1:1,scale2:1}"
        )
    return settings


def build_extractor(cfg: DictConfig, choice: str, layers: Sequence[str], device: torch.device) -> nn.Module:
    """The ``perceptual`` network computing ``layers``, bound to its data and on ``device``.

    Raises:
        ConfigError: ``perceptual=none``, a layer the network does not have (listing its layers),
            a missing weights file (VGG19), a ``_target_`` outside the allow-list.
    """
    safe = checked_node(_check_network(cfg, choice), "conf/perceptual", "perceptual")
    try:
        extractor = instantiate(safe, layers=list(layers))
    except InstantiationException as err:
        ours = user_error_in(err)
        if ours is None:
            raise ConfigError(f"perceptual={choice} could not be built ({one_line(str(err))})") from None
        if "layers" in str(ours):
            # The network names its own option (perceptual (random).layers); the user set ours.
            raise ConfigError(
                f"content_layer / style_layers name a layer perceptual={choice} does not have: {ours}"
            ) from None
        raise ours from None
    # perceptual=classifier binds the digits' classifier; the other networks ignore the data.
    extractor.prepare(DigitsDataModule(image_size=_CLASSIFIER_SIZE, channels=1))
    return extractor.to(device)


# --------------------------------------------------------------------------- the request


@dataclass
class Request:
    """A checked ``gan-stylize`` command: every input loaded, the objective built, the outputs
    writable. Running it (:func:`run`) only optimises and writes."""

    objective: StyleTransferObjective
    content: Tensor
    style: Tensor
    steps: int
    optimizer: str
    lr: float
    init: str
    seed: int
    out: Path
    strip: Path
    history: Path | None
    strip_iterates: int
    progress: bool
    threads: int | None
    description: dict[str, Any] = field(default_factory=dict)


def prepare(cfg: DictConfig, choice: str) -> Request:
    """Every check of a ``gan-stylize`` command (``choice``: the ``perceptual`` option); nothing written.

    Raises:
        ConfigError, DataError: one line naming the bad value and the valid ones.
    """
    for key in ("content", "style", "out"):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is required: {_USAGE}")
    out = _output_path(cfg.out, "out")
    strip = (
        _output_path(cfg.strip, "strip")
        if cfg.get("strip") is not None
        else out.with_name(f"{out.stem}_strip.png")
    )
    history = _output_path(cfg.history, "history", (".json",)) if cfg.get("history") is not None else None
    named = {"out": out, "strip": strip, "history": history}
    paths = [p.resolve() for p in named.values() if p is not None]
    if len(set(paths)) != len(paths):
        given = ", ".join(f"{k}={p}" for k, p in named.items() if p is not None)
        raise ConfigError(f"{given}: each output must be a different file")
    size = check_int_at_least("", "size", cfg.get("size"), 1, form="override")
    channels = cfg.get("channels")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"channels={channels!r} is invalid: expected 1 (grey) or 3 (RGB)")
    style_seed = cfg.get("style_seed")
    if isinstance(style_seed, bool) or not isinstance(style_seed, int):
        raise ConfigError(f"style_seed={style_seed!r} is invalid: expected an integer")
    strip_iterates = check_int_at_least("", "strip_iterates", cfg.get("strip_iterates"), 0, form="override")
    threads = cfg.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads={threads!r} is invalid: expected null or an integer >= 1")
    optimizer = cfg.get("optimizer")
    lr = cfg.get("lr")
    if lr is None:
        lr = _DEFAULT_LR.get(optimizer, 1.0)  # an unknown optimiser is named by check_schedule
    steps, lr, seed = check_schedule(cfg.get("steps"), optimizer, lr, cfg.get("init"), cfg.get("seed"))
    device = resolve_device(cfg.get("device"))
    _check_network(cfg, choice)
    settings = _network_settings(cfg, choice)
    content, content_text = load_content(cfg.content, size, channels)
    style, style_text = load_style(cfg.style, size, channels, style_seed)
    layers = list(dict.fromkeys([settings["content_layer"], *settings["style_layers"]]))
    extractor = build_extractor(cfg, choice, layers, device)
    content, style = content.to(device), style.to(device)
    try:
        objective = StyleTransferObjective(
            extractor,
            content,
            style,
            settings["content_layer"],
            settings["style_layers"],
            cfg.get("alpha"),
            settings["beta"],
            settings["tv_weight"],
        )
    except RuntimeError as err:  # a network whose pooling leaves nothing of a small image
        raise ConfigError(
            f"perceptual={choice} cannot compute its features of a {size}x{size} image "
            f"({one_line(str(err), 200)}); try a larger size"
        ) from None
    return Request(
        objective=objective,
        content=content,
        style=style,
        steps=steps,
        optimizer=optimizer,
        lr=lr,
        init=cfg.get("init"),
        seed=seed,
        out=out,
        strip=strip,
        history=history,
        strip_iterates=strip_iterates,
        progress=bool(cfg.get("progress", True)),
        threads=threads,
        description={
            "content": content_text,
            "style": style_text,
            "perceptual": choice,
            **settings,
            "alpha": float(cfg.get("alpha")),
            "size": size,
            "channels": channels,
            "init": cfg.get("init"),
            "optimizer": optimizer,
            "lr": lr,
            "steps": steps,
            "seed": seed,
        },
    )


# --------------------------------------------------------------------------- images


def to_pil(image: Tensor) -> Image.Image:
    """A (C, H, W) tensor in [-1, 1] as an 8-bit PIL image (grey for C = 1, RGB for C = 3)."""
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else np.ascontiguousarray(array))


def make_strip(tiles: Sequence[tuple[str, Tensor]]) -> Image.Image:
    """The images side by side, ``_GAP`` white pixels apart, each labelled above when the tiles are
    at least ``_CAPTION_MIN_SIZE`` wide (smaller ones have no room for a legible label)."""
    channels = max(t.shape[0] for _, t in tiles)
    images = [to_pil(convert_channels(t.unsqueeze(0), channels)[0]) for _, t in tiles]
    height, width = images[0].height, images[0].width
    band = _CAPTION_HEIGHT if width >= _CAPTION_MIN_SIZE else 0
    size = (len(images) * width + (len(images) - 1) * _GAP, height + band)
    strip = Image.new(images[0].mode, size, "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default(size=10) if band else None
    for i, ((label, _), image) in enumerate(zip(tiles, images, strict=True)):
        left = i * (width + _GAP)
        strip.paste(image, (left, band))
        if band:
            draw.text((left + 1, 1), label, fill="black", font=font)
    return strip


def _snapshot_steps(steps: int, count: int) -> list[int]:
    """``count`` steps evenly spaced from 0 (the initial image) up to, not including, ``steps``."""
    return sorted({round(i * steps / count) for i in range(count)}) if count else []


def _write_files(files: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write every file whole or none: each to a temporary name beside it, then all renamed.

    Raises:
        ConfigError: a file could not be written (naming it and the OS error); none is left.
    """
    done: list[Path] = []
    try:
        for path, write in files.items():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            done.append(tmp)
            write(tmp)
        for (path, _), tmp in zip(files.items(), done, strict=True):
            os.replace(tmp, path)
    except OSError as err:
        for tmp in done:
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"could not write the results ({one_line(str(err))})") from None


def _save_image(image: Image.Image, final: Path) -> Callable[[Path], None]:
    fmt = Image.registered_extensions()[final.suffix.lower()]
    # JPEG has no alpha and no 16-bit grey; our images are 8-bit L or RGB, which every format takes.
    return lambda tmp: image.save(tmp, format=fmt)


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    """What a ``gan-stylize`` command produced."""

    result: StylizeResult
    files: list[Path]
    seconds: float


def _progress_bar(steps: int, enabled: bool) -> Any:
    """A rich progress bar on stderr (stdout keeps the result lines), or None."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("stylize"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[losses]}"),
        console=Console(stderr=True),
    )


def run(request: Request) -> Outcome:
    """Optimise the image of a checked request and write its files (result, strip, history)."""
    if request.threads:
        torch.set_num_threads(request.threads)
    snapshot_at = set(_snapshot_steps(request.steps, request.strip_iterates))
    snapshots: list[tuple[str, Tensor]] = []
    bar = _progress_bar(request.steps, request.progress)
    task = bar.add_task("stylize", total=request.steps, losses="") if bar is not None else None

    def callback(step: int, image: Tensor, losses: Mapping[str, float]) -> None:
        if step in snapshot_at:
            snapshots.append((f"step {step}", image[0].detach().cpu().clone()))
        if bar is not None:
            text = " ".join(f"{k} {losses[k]:.4g}" for k in ("content", "style", "tv", "total"))
            bar.update(task, completed=step, losses=text)

    started = time.perf_counter()
    if bar is not None:
        bar.start()
    try:
        result = optimize_image(
            request.objective,
            request.steps,
            request.optimizer,
            request.lr,
            request.init,
            request.seed,
            callback,
        )
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - started
    tiles = [("content", request.content.cpu()), ("style", request.style.cpu()), *snapshots]
    tiles.append((f"result ({request.steps})", result.image.cpu()))
    files: dict[Path, Callable[[Path], None]] = {
        request.out: _save_image(to_pil(result.image), request.out),
        request.strip: _save_image(make_strip(tiles), request.strip),
    }
    if request.history is not None:
        record = {**request.description, "seconds": round(seconds, 3), "history": result.history}
        text = json.dumps(record, indent=1) + "\n"
        files[request.history] = lambda tmp: tmp.write_text(text)
    _write_files(files)
    return Outcome(result, list(files), seconds)


# --------------------------------------------------------------------------- command line


def _base_keys() -> list[str]:
    """The options of conf/stylize.yaml, and its config groups."""
    cfg = OmegaConf.load(Path(CONFIG_DIR) / f"{CONFIG_NAME}.yaml")
    groups = [next(iter(d)) for d in cfg.get("defaults", []) if isinstance(d, DictConfig)]
    return [str(k) for k in cfg.keys() if k not in ("defaults", "hydra")] + [  # noqa: SIM118
        g for g in groups if not g.startswith("override")
    ]


def _override_key(line: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(line).key_or_group
    except (HydraException, ValueError) as err:
        message = one_line(str(err)).split(" See ")[0]
        raise ConfigError(f"cannot parse the override {line!r}: {message}") from None


def _check_overrides(overrides: Sequence[str]) -> None:
    """Refuse options gan-stylize does not have, before Hydra composes them: conf/ is shared with
    gan-train, so Hydra would accept ``model=dcgan`` as a config group nothing reads."""
    keys = _base_keys()
    for line in overrides:
        top = _override_key(line).split(".")[0].split("/")[0]
        if top != "hydra" and top not in keys:
            raise ConfigError(
                f"gan-stylize has no option {top!r} (in {line!r}); its options: {', '.join(keys)}"
            )


def _compose(overrides: Sequence[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="gan-stylize"):
            return compose(config_name=CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def _composed(overrides: Sequence[str]) -> tuple[DictConfig, str]:
    """The command's config and its ``perceptual`` choice; Hydra's errors as one ConfigError line."""
    _check_overrides(overrides)
    try:
        cfg = _compose(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        # The valid keys beside an unknown one are listed from the config composed without it.
        unknown = re.search(r"Could not override '([^']+)'", str(err))
        kept = [o for o in overrides if unknown is None or _override_key(o) != unknown.group(1)]
        message = hydra_error_message(err, list(overrides), compose_base=lambda: _compose(kept))
        raise ConfigError(message) from None
    choice = str(cfg.hydra.runtime.choices.get("perceptual"))
    return cfg, choice


def stylize_command(overrides: Sequence[str]) -> Outcome:
    """``gan-stylize`` as a function: compose, check, optimise, write.

    Raises:
        ConfigError, DataError: the command's error line; nothing written.
    """
    cfg, choice = _composed(overrides)
    return run(prepare(cfg, choice))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=CONFIG_NAME)
def _app(cfg: DictConfig) -> None:
    # Hydra's informational flags (--help, --cfg job, ...) return before reaching this.
    del cfg


def _informational(args: Any) -> bool:
    flags = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve", "package")
    flags += ("experimental_rerun", "config_path", "config_name", "config_dir")
    return any(getattr(args, flag, None) for flag in flags)


def main(argv: list[str] | None = None) -> None:
    """The ``gan-stylize`` console script: one ``error: ...`` line and exit code 2 on bad input,
    before anything is written; otherwise the files written and the final losses on stdout."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = get_args_parser().parse_args(argv)
    if args.multirun:
        exit_with_error("gan-stylize makes one image per command: run it once per setting, without -m")
    if _informational(args):
        sys.argv = [sys.argv[0], *argv]
        _app()
        return
    try:
        outcome = stylize_command(args.overrides)
    except GanResearchError as err:
        exit_with_error(err)
    first, last = outcome.result.history[0], outcome.result.history[-1]
    losses = ", ".join(f"{k} {first[k]:.4g} -> {last[k]:.4g}" for k in ("content", "style", "tv", "total"))
    print(f"wrote {', '.join(str(p) for p in outcome.files)}")
    print(f"{len(outcome.result.history) - 1} steps in {outcome.seconds:.1f} s; {losses}")


if __name__ == "__main__":
    main()
