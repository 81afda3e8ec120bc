"""CLI of the generator checkpoints: ``aging weights list | download | convert``."""

from __future__ import annotations

from pathlib import Path

import click

from aging.cli.common import user_error


MAX_SEEDS = 1000


def _parse_seeds(text: str) -> list[int]:
    """``'0,1,4-6'`` -> ``[0, 1, 4, 5, 6]``."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                if int(hi) - int(lo) > MAX_SEEDS:
                    raise ValueError("too many seeds")
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        seeds = [-1]
    if not seeds or len(seeds) > MAX_SEEDS or min(seeds) < 0 or max(seeds) >= 2**32:
        raise click.ClickException(f"--seeds {text!r}: not a list of at most {MAX_SEEDS} seeds from 0 to 2**32-1 "
                                   "(use e.g. 0,1,4-6)")
    return seeds


def _sha256(ctx, param, value: str | None) -> str | None:
    """``--sha256``: 64 hexadecimal digits (the check of :func:`aging.stylegan.weights.is_sha256`)."""
    from aging.stylegan.weights import is_sha256

    if value is not None and not is_sha256(value):
        raise click.BadParameter(f"{value}: expected 64 hexadecimal digits")
    return value


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@click.group()
def weights():
    """Known StyleGAN2 checkpoints: list, download into the cache, convert to the project's format.

    \b
    The cache is $AGING_CACHE (default ~/.cache/aging). Any --generator option of the other
    commands takes a path or the name of a downloaded checkpoint.
    \b
    Examples:
      aging weights list
      aging weights download stylegan2-ffhq-1024
      aging weights convert ffhq.pkl weights/ffhq-1024
    """


@weights.command("list")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Cache root (default: $AGING_CACHE or ~/.cache/aging).")
def list_weights(cache):
    """List the known public checkpoints and whether they are in the cache.

    \b
    Examples:
      aging weights list
      AGING_CACHE=/data/cache aging weights list
    """
    from aging.stylegan.weights import REGISTRY, cached_path, weights_dir

    click.echo(f"cache: {weights_dir(cache)}")
    for name, w in REGISTRY.items():
        here = cached_path(name, cache).is_file()
        click.echo(f"{name:<26} {'[cached]' if here else '[ -    ]'} size {_human(w.size):>8}  "
                   f"sha256 {w.sha256[:12] + '...' if w.sha256 else 'unknown'}")
        click.echo(f"    {w.description}")
        click.echo(f"    {w.url}")


@weights.command("download")
@click.argument("name", metavar="NAME|URL")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Cache root (default: $AGING_CACHE or ~/.cache/aging).")
@click.option("--sha256", default=None, metavar="HEX", callback=_sha256,
              help="Expected checksum (overrides the registry's).")
@click.option("--retries", default=3, show_default=True, type=click.IntRange(min=0),
              help="Further attempts after a network error.")
@click.option("--force", is_flag=True, help="Download again even if already cached.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def download_command(name, cache, sha256, retries, force, quiet):
    """Download a checkpoint into the cache (resumable, atomic, checksum verified).

    \b
    Examples:
      aging weights download stylegan2-ffhq-1024
      aging weights download stylegan2-ada-ffhq --cache /data/cache
      aging weights download https://example.org/net.pkl --sha256 0123abcd...
    """
    from aging.errors import AgingError
    from aging.io import sha256_file
    from aging.stylegan.weights import download_weights

    try:
        path = download_weights(name, cache=cache, sha256=sha256, retries=retries, force=force, progress=not quiet)
    except AgingError as exc:
        raise user_error(exc) from None
    except OSError as exc:  # the cache folder cannot be written
        raise click.ClickException(f"{exc.filename or cache}: {exc.strerror or exc}") from None
    click.echo(f"{path}")
    if not quiet:
        click.echo(f"sha256 {sha256_file(path)}")


@weights.command()
@click.argument("src", metavar="IN.pkl")
@click.argument("out", metavar="OUT", type=click.Path(path_type=Path))
@click.option("--entry", default="G_ema", show_default=True, help="Network of the pickle to convert.")
@click.option("--seeds", default="0,1,2", show_default=True, metavar="LIST",
              help="Seeds of the parity check (e.g. 0,1,4-6).")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def convert(src, out, entry, seeds, force):
    """Convert a checkpoint to the project's format (state dict + JSON), then check parity.

    IN.pkl is an NVIDIA network pickle (StyleGAN2, or StyleGAN v1 TensorFlow, whose 'Gs' is
    read; both read safely, no code is run), a downloaded registry name, or a checkpoint already
    in the project's format.
    OUT is a directory (generator.pt + generator.json) or a NAME.pt path (NAME.pt + NAME.json).
    The parity check decodes a few seeds with both loaders (psi 1 and 0.7, constant noise) and
    prints the max abs difference of the latents and images.

    \b
    Examples:
      aging weights convert ~/.cache/aging/weights/stylegan2-ffhq-1024x1024.pkl weights/ffhq-1024
      aging weights convert network-snapshot.pkl G.pt --entry G --seeds 0-7
      aging weights convert karras2019stylegan-ffhq-1024x1024.pkl weights/ffhq-v1
    """
    import numpy as np
    import torch

    from aging.errors import AgingError
    from aging.stylegan.checkpoints import load_checkpoint, own_format_paths, save_generator
    from aging.stylegan.weights import resolve_generator

    seed_list = _parse_seeds(seeds)
    weights_path, config_path = own_format_paths(out)
    if not force and (weights_path.exists() or config_path.exists()):
        raise click.ClickException(f"{out}: already exists (use --force to overwrite)")
    try:
        src = resolve_generator(src)
        G = load_checkpoint(src, entry=entry).eval()
        read_entry = "Gs" if getattr(G, "architecture", "stylegan2") == "stylegan1" else entry
        save_generator(G, out, source=f"{src}[{read_entry}]")
        G2 = load_checkpoint(out).eval()
    except AgingError as exc:
        raise user_error(exc) from None
    except OSError as exc:  # OUT cannot be written
        raise click.ClickException(f"{exc.filename or out}: {exc.strerror or exc}") from None

    diff_ws = diff_img = 0.0
    with torch.no_grad():
        for seed in seed_list:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
            for psi in (1.0, 0.7):
                ws1, ws2 = G.mapping(z, truncation_psi=psi), G2.mapping(z, truncation_psi=psi)
                img1, img2 = G.synthesis(ws1, "const"), G2.synthesis(ws2, "const")
                diff_ws = max(diff_ws, (ws1 - ws2).abs().max().item())
                diff_img = max(diff_img, (img1 - img2).abs().max().item())
    click.echo(f"wrote {weights_path} and {config_path.name} ({G.img_resolution} px, num_ws {G.num_ws}, "
               f"{sum(t.numel() for t in G.state_dict().values()):,} values)")
    click.echo(f"parity on seeds {','.join(map(str, seed_list))}: max abs diff ws {diff_ws:.3g}, "
               f"images {diff_img:.3g}")
    if diff_ws > 0 or diff_img > 0:
        raise click.ClickException("parity check failed: the converted generator differs from the source")


COMMANDS = [weights]
