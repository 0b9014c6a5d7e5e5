"""`python -m varbayes` (also what `torchrun -m varbayes run ...` launches)."""

from varbayes.cli import main

raise SystemExit(main())
