"""`python -m varbayes` (also what `torchrun -m varbayes run ...` launches)."""

from varbayes.cli import main

if __name__ == "__main__":  # not when a spawned worker process re-imports this module
    raise SystemExit(main())
