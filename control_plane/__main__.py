# `python -m control_plane`: the CLI lives in `twin_cli` (local only; not deployed, see .funcignore).
from twin_cli.cli import main

raise SystemExit(main())
