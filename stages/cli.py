"""The ``openvla`` command: a Typer app that gathers every stage command (``openvla <stage> --help``).

Stage modules import only Typer at module level; the library is imported inside each command, so ``--help`` is fast.
"""

from __future__ import annotations

import typer

from stages import bins, convert, finetune, pretrain, stats
from stages import demos as demos_stage
from stages import eval_bridge as eval_bridge_stage
from stages import eval_libero as eval_libero_stage
from stages import export as export_stage
from stages import serve as serve_stage

app = typer.Typer(
    name="openvla",
    help="OpenVLA pipeline stages (run them all with `dvc repro`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("demos")(demos_stage.main)
app.command("convert")(convert.main)
app.command("stats")(stats.main)
app.command("bins")(bins.main)
app.command("pretrain")(pretrain.main)
app.command("finetune")(finetune.main)
app.command("eval-bridge")(eval_bridge_stage.main)
app.command("export")(export_stage.main)
app.command("serve")(serve_stage.main)
app.command("eval-libero")(eval_libero_stage.main)

if __name__ == "__main__":
    app()
