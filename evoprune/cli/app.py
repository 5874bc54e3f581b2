"""The `evoprune` console script: one Typer app; each command lives in its own module and is registered here.

Bad input never shows a traceback: `EvopruneError` and Click's usage errors become one line on stderr and
exit code 2.
"""

from __future__ import annotations

import sys

import typer

from evoprune.errors import EvopruneError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Discover, apply and evaluate pruning metrics for large language models.",
)


# Each command module exposes `register(app)`. Add a module here when it adds commands.
COMMAND_MODULES = ("evoprune.cli.commands_core", "evoprune.cli.commands_search", "evoprune.cli.commands_export",
                   "evoprune.cli.commands_tune")


def _register() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 bad input, 1 unexpected failure)."""
    _register()
    from evoprune.cli.progress import LineProgress
    from evoprune.stats.progress import set_default_progress

    set_default_progress(LineProgress())  # statistics passes that no command reports on (the search's evaluator)
    try:
        result = app(args=argv, standalone_mode=False, prog_name="evoprune")
    except EvopruneError as exc:  # one line even when the message quotes a path or value holding a newline
        print("error: " + str(exc).replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except typer.TyperException as exc:  # Click usage errors: unknown option, bad type, missing value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        set_default_progress(None)  # main() is also called in-process (tests): leave no reporter behind
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
