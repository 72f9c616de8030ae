"""`python -m harmonize_cli` is the `harmonize` program (so `torchrun -m harmonize_cli` works)."""

from .cli import main

if __name__ == "__main__":
    main()
