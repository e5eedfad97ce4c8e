#!/usr/bin/env bash
# The README's two set-up commands:  bash deploy/dev.sh demo  |  bash deploy/dev.sh test
# Both create .venv beside the checkout on first use and install uploaderd into it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/uploaderd" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -e '.[dev]'
    touch "$venv/.installed"
fi
case "${1:-}" in
    demo)
        exec "$venv/bin/uploaderd" demo ;;
    test)
        "$venv/bin/ruff" check uploaderd tests benchmarks
        "$venv/bin/ruff" format --check uploaderd tests benchmarks
        "$venv/bin/mypy" uploaderd
        exec "$venv/bin/python" -m pytest "${@:2}" ;;
    *)
        echo "usage: bash deploy/dev.sh demo|test [pytest args]" >&2
        exit 2 ;;
esac
