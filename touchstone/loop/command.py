"""`touchstone loop STEP [--workspace DIR]`: one step of the current generation, alone, for debugging or
for a person who wants to look at what a step makes before the next one runs.

The current generation is the unfinished one, or else the one after the last finished. The steps before
STEP must be done and the steps after it not yet (rerunning a step replaces its outputs and its ledger
row, so `touchstone run` carries on from there). Generation 0 must be complete: `touchstone run` makes it.
Prints the step's summary as JSON."""

from __future__ import annotations

import json

from touchstone.config import load_yaml
from touchstone.errors import UserError
from touchstone.loop.ledger import BOOTSTRAP_STEPS, STEPS


def run_one_step(workspace: str, step: str) -> dict:
    """Run `step` of the current generation of `workspace` and return its summary."""
    # Here, not at the top: `touchstone` builds its parser from this module, and the loop's modules would
    # add about 0.4 s of imports to every command, `--help` included.
    from touchstone.loop.config import LoopConfig
    from touchstone.loop.generation import open_generation
    from touchstone.loop.run import current_generation, run_step
    from touchstone.loop.workspace import Workspace

    ws = Workspace(workspace)
    ledger = ws.open_ledger()
    try:
        if set(BOOTSTRAP_STEPS) - set(ledger.done_steps(0)):
            raise UserError(f"{ws.root}: generation 0 is not finished; `touchstone run` finishes it")
    finally:
        ledger.close()
    cfg = load_yaml(LoopConfig, ws.config_path)
    with ws.lock():
        ws.clean_staging()
        ledger = ws.open_ledger()
        try:
            gen = current_generation(ledger)
            done = ledger.done_steps(gen)
            at = STEPS.index(step)
            missing = [s for s in STEPS[:at] if s not in done]
            if missing:
                raise UserError(
                    f"generation {gen}: step {step} needs {missing[0]} first "
                    f"(`touchstone loop {missing[0]} --workspace {ws.root}`)"
                )
            later = [s for s in STEPS[at + 1 :] if s in done]
            if later:
                raise UserError(
                    f"generation {gen}: {later[0]} is done, so {step} cannot run again; a step can "
                    f"rerun only before the steps after it"
                )
            return run_step(ws, cfg, open_generation(ws, cfg, ledger, gen), step)
        finally:
            ledger.close()


def main(args) -> int:
    from touchstone.loop.run import quiet_transformers  # see run_one_step

    quiet_transformers()
    print(json.dumps(run_one_step(args.workspace, args.step), indent=2, sort_keys=True))
    return 0


def add_command(subparsers) -> None:
    """Add `loop` to the `touchstone` command's subparsers."""
    p = subparsers.add_parser(
        "loop",
        help="run one step of the current generation alone (for debugging)",
        description="Run one step of the current generation alone and print its summary. "
        "The steps before it must be done and the steps after it not yet; `touchstone run` "
        "carries on from there.",
    )
    p.set_defaults(func=main)
    p.add_argument("step", choices=STEPS, metavar="STEP", help=f"one of {', '.join(STEPS)}")
    p.add_argument("--workspace", default="workspace", help="workspace directory (default: ./workspace)")
