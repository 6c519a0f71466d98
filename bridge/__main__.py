"""`python -m bridge` is the same as the `sealroom` console script."""

from bridge.cli import main

raise SystemExit(main())
