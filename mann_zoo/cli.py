"""The ``mann-zoo`` command line."""

from __future__ import annotations

import sys

COMMANDS = {
    "speed": "training-step time of each core at the reference configuration",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mann-zoo COMMAND [options]\n\ncommands:")
        for name, text in COMMANDS.items():
            print(f"  {name:<8} {text}")
        print("\n'mann-zoo COMMAND --help' describes each command.")
        return
    command, rest = argv[0], argv[1:]
    if command == "speed":
        from .speed import main as speed

        speed(rest)
        return
    print(f"mann-zoo: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
