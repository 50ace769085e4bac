"""Where the bundled files are: `templates/`, `static/` and `data/`, in a checkout or a wheel.

The repository keeps them at its top level (beside `app/`); the distribution ships them inside the
package, as `app/templates`, `app/static` and `app/data` (pyproject.toml maps the directories), so
an installed app runs from any working directory. `directory(name)` finds them through
`importlib.resources` first and falls back to the checkout's layout; `sample_recording()` is the
replay sample a user names with `REPLAY_FILE=sample`.

Jinja's loader and Starlette's StaticFiles need real directories, so a distribution that is not
unpacked on disk (a zip import) is refused with one clear error rather than served half-broken.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

Bundled = Literal["templates", "static", "data"]
SAMPLE = "sample-replay.jsonl"
# What `REPLAY_FILE` may say to mean the bundled sample.
SAMPLE_ALIAS = "sample"
_CHECKOUT = Path(__file__).resolve().parent.parent


class MissingResources(RuntimeError):
    """The bundled directory is neither in the installed package nor in a checkout."""


def directory(name: Bundled) -> Path:
    """The directory holding the bundled `name` files."""
    packaged = resources.files("app").joinpath(name)
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    checkout = _CHECKOUT / name
    if checkout.is_dir():
        return checkout
    raise MissingResources(
        f"the app's {name}/ directory is missing: looked in {packaged} (installed package) and "
        f"{checkout} (source checkout); reinstall the package from a wheel or an sdist"
    )


def sample_recording() -> Path:
    """The recording shipped with the app (`REPLAY_FILE=sample`)."""
    return directory("data") / SAMPLE
