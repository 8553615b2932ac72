"""``lsvit-pipeline``: synth, extract, merge and eda."""

from pathlib import Path
from typing import Annotated

import typer

from pipeline import options as o

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


# Each stage module owns its command body; the CLI only parses options and reports.
# (Commands are added below by the stage modules' owners.)


main = o.run_app(app)

if __name__ == "__main__":
    main()
